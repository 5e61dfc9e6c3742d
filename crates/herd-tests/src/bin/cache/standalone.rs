//! The standalone store's scenario (`store_kill`) and the primary's part
//! in it: the store worker SIGKILLed while 100 gets per worker wait for a
//! lease, then restarted, with a persistent cache read back.

use std::time::{Duration, Instant};

use herd::{CacheOptions, Worker};
use serde_json::{json, Value};

use crate::scenarios::{describe, many_gets, next_msg, rank, ready_then_go, report};

fn out(v: Value) {
    println!("{v}");
}

/// The wall clock in ms, to compare times across processes.
fn wall_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

/// The primary: once the persistent cache `w["persisted"]` is on disk
/// (a poll with a deadline), SIGKILLs the store worker, as a crash would:
/// not through herd, which would take it for a deliberate stop.
pub async fn kill_store(service: &herd::CacheService, w: &Value) {
    if let (Some(name), Some(dir)) = (w["persisted"].as_str(), std::env::var_os("CACHE_DIR")) {
        let file = std::path::Path::new(&dir).join(format!("{name}.cache.json"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"a\"")) {
            assert!(
                Instant::now() < deadline,
                "{} was not written",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let store = service.store_process().expect("a store worker runs");
    let pid = nix::unistd::Pid::from_raw(store.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill the store worker");
    out(json!({
        "event": "store_killed", "worker": store.id(), "pid": store.pid(), "at_ms": wall_ms(),
    }));
}

/// The primary, at the end: where the store is now.
pub fn report_store(service: &herd::CacheService) {
    let store = service.store_process();
    out(json!({
        "event": "store",
        "pid": store.as_ref().map(|s| s.pid()),
        "worker": store.as_ref().map(|s| s.id()),
        "restarts": service.store_restarts(),
    }));
}

/// A worker of `store_kill`.
pub async fn store_kill(w: &Worker) {
    let me = rank(w);
    let n: u64 = std::env::var("CACHE_WORKERS").unwrap().parse().unwrap();
    let lease = CacheOptions::default().lease(Duration::from_secs(20));
    let cache = w.cache("sk", lease).await.unwrap();
    let persisted = w
        .cache("p", CacheOptions::default().persist(true))
        .await
        .unwrap();
    ready_then_go(w).await;
    let mut fields = serde_json::Map::new();
    if me == 1 {
        persisted.set("a", &1).await.unwrap();
        let worker = w.clone();
        let r = cache
            .get_or_load("k", move || async move {
                for other in 2..=n {
                    report(&worker, json!({"tell": other, "msg": "start"})).await;
                }
                let at_least = 100 * (n - 1) + 1;
                let when = json!({
                    "cache": "sk", "at_least": at_least, "kill_store": true,
                    "persisted": "p", "then_tell": 1, "msg": "killed",
                });
                report(&worker, json!({ "when_misses": when })).await;
                assert_eq!(next_msg(&worker).await, json!("killed"));
                Ok::<_, String>("late".to_string())
            })
            .await;
        fields.insert("loader_outcome".into(), describe(&r));
    } else {
        assert_eq!(next_msg(w).await, json!("start"));
        let (outcomes, max_ms) = many_gets(&cache, "k", 100, move || async move {
            Ok(format!("value from worker {me}"))
        })
        .await;
        fields.insert("outcomes".into(), json!(outcomes));
        fields.insert("max_ms".into(), json!(max_ms));
        fields.insert("failed_at_ms".into(), json!(wall_ms()));
    }
    // The store comes back (a poll with a deadline): the caches opened
    // before serve again, the persistent one read back from its file.
    let t = Instant::now();
    let mut last = None;
    while t.elapsed() < Duration::from_secs(15) {
        match cache.set("back", &me).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fields.insert("back_ms".into(), json!(t.elapsed().as_millis() as u64));
    fields.insert("back_error".into(), json!(last));
    let a: Option<u64> = persisted.get("a").await.unwrap();
    fields.insert("a".into(), json!(a));
    let loaded: String = cache
        .get_or_load("again", || async { Ok::<_, String>(format!("by {me}")) })
        .await
        .unwrap();
    fields.insert("again".into(), json!(loaded));
    report(w, Value::Object(fields)).await;
}

/// A worker of `crash_loop` (with `CACHE_STORE_CRASH`: every store worker
/// exits at once): for 1.5 s, opens a cache every 50 ms; every open fails.
pub async fn crash_loop(w: &Worker) {
    let t = Instant::now();
    let (mut ok, mut errors, mut last) = (0, 0, None);
    // A window of time is what this measures: the restarts within it.
    while t.elapsed() < Duration::from_millis(1500) {
        match w.cache("c", CacheOptions::default()).await {
            Ok(_) => ok += 1,
            Err(e) => {
                errors += 1;
                last = Some(e.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report(w, json!({"ok": ok, "errors": errors, "last": last})).await;
}
