//! The workers' side of each scenario (`CACHE_SCENARIO`). Each reports
//! what it saw to the primary, which prints it for the test to judge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::{Cache, CacheError, CacheOptions, ChangeKind, Worker};
use serde_json::{json, Value};

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

pub async fn report(w: &Worker, v: Value) {
    w.send(&v).await.expect("report to the primary");
}

/// Waits for the primary's next message (bounded: a test never hangs).
pub async fn next_msg(w: &Worker) -> Value {
    let m = tokio::time::timeout(Duration::from_secs(20), w.recv())
        .await
        .expect("a message from the primary within 20 s")
        .expect("the primary is there");
    m.decode().unwrap()
}

pub async fn ready_then_go(w: &Worker) {
    report(w, json!({"ready": true})).await;
    assert_eq!(next_msg(w).await, json!("go"));
}

pub fn describe(r: &Result<String, CacheError>) -> Value {
    match r {
        Ok(v) => json!({"ok": v}),
        Err(CacheError::Load(e)) => json!({"load_error": e}),
        Err(CacheError::Timeout(d)) => json!({"timeout_ms": d.as_millis() as u64}),
        Err(e) => json!({"other": e.to_string()}),
    }
}

/// `n` concurrent `get_or_load` of `key`, each with `loader`; every
/// outcome and the slowest caller's time.
pub async fn many_gets<F, Fut>(cache: &Cache, key: &str, n: usize, loader: F) -> (Vec<Value>, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send,
{
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (cache, key, loader) = (cache.clone(), key.to_string(), loader.clone());
        set.spawn(async move {
            let r = cache.get_or_load(&key, loader).await;
            describe(&r)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = set.join_next().await {
        outcomes.push(r.unwrap());
    }
    (outcomes, start.elapsed().as_millis() as u64)
}

/// This worker's rank among the application's (1 to `CACHE_WORKERS`):
/// its id but for a standalone store, whose worker is forked first.
pub fn rank(w: &Worker) -> u32 {
    env("CACHE_RANK").parse().unwrap_or(w.id())
}

pub async fn worker() {
    let w = Worker::connect().await.expect("connect");
    if let Some(store) = herd::CacheService::store_worker(&w) {
        if std::env::var_os("CACHE_STORE_CRASH").is_some() {
            // A store worker that cannot start (crash_loop).
            std::process::exit(3);
        }
        store.run().await.expect("run the cache's store");
        return;
    }
    let id = rank(&w);
    let scenario = env("CACHE_SCENARIO");
    match scenario.as_str() {
        "store_kill" => crate::standalone::store_kill(&w).await,
        "crash_loop" => crate::standalone::crash_loop(&w).await,
        "single_flight" | "failing_loader" => {
            let fail = scenario == "failing_loader";
            let cache = w.cache("sf", CacheOptions::default()).await.unwrap();
            ready_then_go(&w).await;
            let worker = Arc::new(w.clone());
            let (outcomes, max_ms) = many_gets(&cache, "k", 100, move || {
                let worker = worker.clone();
                async move {
                    let _ = worker.send(&json!({"loader_ran": rank(&worker)})).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if fail {
                        Err("boom".to_string())
                    } else {
                        Ok(format!("value from worker {}", rank(&worker)))
                    }
                }
            })
            .await;
            report(&w, json!({"outcomes": outcomes, "max_ms": max_ms})).await;
        }
        "kill_loader" => {
            let cache = w
                .cache("kl", CacheOptions::default().lease(Duration::from_secs(20)))
                .await
                .unwrap();
            ready_then_go(&w).await;
            if id == 1 {
                let worker = w.clone();
                let r = cache
                    .get_or_load("k", move || async move {
                        // Others wait on this lease; the primary kills
                        // this worker once their gets reached it.
                        let n: u64 = env("CACHE_WORKERS").parse().unwrap();
                        for other in 2..=n {
                            worker.send(&json!({"tell": other, "msg": "start"})).await.unwrap();
                        }
                        worker
                            .send(&json!({"when_misses": {"cache": "kl", "at_least": 301, "kill": 1}}))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, String>("never".to_string())
                    })
                    .await;
                report(&w, json!({"unexpected": describe(&r)})).await;
            } else {
                // Start once worker 1 holds the lease.
                assert_eq!(next_msg(&w).await, json!("start"));
                let (outcomes, max_ms) = many_gets(&cache, "k", 100, move || async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(format!("value from worker {id}"))
                })
                .await;
                report(&w, json!({"outcomes": outcomes, "max_ms": max_ms})).await;
            }
        }
        "watch" => {
            let cache = w.cache("w", CacheOptions::default()).await.unwrap();
            if id == 1 {
                let mut one = cache.watch("k").await.unwrap();
                let mut all = cache.watch_all().await.unwrap();
                report(&w, json!({"tell": 2, "msg": "write"})).await;
                let mut seen_one = Vec::new();
                let mut seen_all = Vec::new();
                let deadline = Duration::from_secs(10);
                while seen_one.len() < 101 {
                    let c = tokio::time::timeout(deadline, one.next())
                        .await
                        .unwrap()
                        .unwrap();
                    seen_one.push(json!([
                        c.key,
                        c.kind == ChangeKind::Del,
                        c.value::<u64>().map(|v| v.unwrap())
                    ]));
                }
                while seen_all.len() < 102 {
                    let c = tokio::time::timeout(deadline, all.next())
                        .await
                        .unwrap()
                        .unwrap();
                    seen_all.push(json!(c.key));
                }
                one.unwatch().await.unwrap();
                report(&w, json!({"one": seen_one, "all": seen_all})).await;
            } else {
                assert_eq!(next_msg(&w).await, json!("write"));
                for i in 0..100u64 {
                    cache.set("k", &i).await.unwrap();
                    if i == 50 {
                        cache.set("other", &"x").await.unwrap();
                    }
                }
                cache.del("k").await.unwrap();
                report(&w, json!({"wrote": true})).await;
            }
        }
        "expire" => {
            let cache = w
                .cache(
                    "ex",
                    CacheOptions::default().expire(Duration::from_millis(300)),
                )
                .await
                .unwrap();
            let mut all = cache.watch_all().await.unwrap();
            let t0 = Instant::now();
            cache.set("k", &1).await.unwrap();
            let before: Option<u64> = cache.get("k").await.unwrap();
            let set = all.next().await.unwrap();
            let expired = tokio::time::timeout(Duration::from_secs(5), all.next())
                .await
                .unwrap()
                .unwrap();
            let after_ms = t0.elapsed().as_millis() as u64;
            let after: Option<u64> = cache.get("k").await.unwrap();
            report(
                &w,
                json!({
                    "before": before, "first": format!("{:?}", set.kind),
                    "second": format!("{:?}", expired.kind), "after_ms": after_ms,
                    "after": after, "keys": cache.keys().await.unwrap(),
                }),
            )
            .await;
        }
        "persist_write" => {
            let cache = w
                .cache("p", CacheOptions::default().persist(true))
                .await
                .unwrap();
            cache.set("a", &1).await.unwrap();
            cache.set("b", &json!({"x": [1, 2]})).await.unwrap();
            report(&w, json!({"wrote": cache.keys().await.unwrap()})).await;
        }
        "persist_read" => {
            let cache = w
                .cache("p", CacheOptions::default().persist(true))
                .await
                .unwrap();
            let a: Option<u64> = cache.get("a").await.unwrap();
            let b: Option<Value> = cache.get("b").await.unwrap();
            let stats = cache.stats().await.unwrap();
            report(
                &w,
                json!({
                    "keys": cache.keys().await.unwrap(), "a": a, "b": b,
                    "corrupt_files": stats.corrupt_files,
                }),
            )
            .await;
        }
        "evict" => {
            let by_count = w
                .cache("n", CacheOptions::default().max_entries(10))
                .await
                .unwrap();
            for i in 0..20 {
                by_count.set(&format!("k{i:02}"), &i).await.unwrap();
            }
            let by_bytes = w
                .cache("b", CacheOptions::default().max_bytes(4096))
                .await
                .unwrap();
            for i in 0..20 {
                by_bytes
                    .set(&format!("k{i:02}"), &"x".repeat(500))
                    .await
                    .unwrap();
            }
            let too_big = by_bytes.set("huge", &"x".repeat(5000)).await;
            report(
                &w,
                json!({
                    "count_keys": by_count.keys().await.unwrap(),
                    "count_stats": by_count.stats().await.unwrap(),
                    "bytes_keys": by_bytes.keys().await.unwrap(),
                    "bytes_stats": by_bytes.stats().await.unwrap(),
                    "too_big": too_big.err().map(|e| e.to_string()),
                }),
            )
            .await;
        }
        "basics" => {
            let c = w.cache("basics", CacheOptions::default()).await.unwrap();
            let first = c.set_if_null("n", &1).await.unwrap();
            let second = c.set_if_null("n", &2).await.unwrap();
            let n: Option<u64> = c.get("n").await.unwrap();
            c.set("z", &Value::Null).await.unwrap();
            let over_null = c.set_if_null("z", &3).await.unwrap();
            c.set("a", &"A").await.unwrap();
            let keys = c.keys().await.unwrap();
            let deleted = c.del("a").await.unwrap();
            let deleted_again = c.del("a").await.unwrap();
            let missing: Option<String> = c.get("a").await.unwrap();
            let other = w
                .cache(
                    "basics",
                    CacheOptions::default().expire(Duration::from_secs(1)),
                )
                .await
                .err()
                .map(|e| e.to_string());
            let bad_name = w
                .cache("../x", CacheOptions::default())
                .await
                .err()
                .map(|e| e.to_string());
            report(
                &w,
                json!({
                    "first": first, "second": second, "n": n, "over_null": over_null,
                    "keys": keys, "deleted": deleted, "deleted_again": deleted_again,
                    "missing": missing, "keys_after": c.keys().await.unwrap(),
                    "other_options": other, "bad_name": bad_name,
                }),
            )
            .await;
        }
        "local_copy" => {
            let c = w.cache("lc", CacheOptions::default()).await.unwrap();
            if id == 1 {
                c.set("k", &1).await.unwrap();
                let a: Option<u64> = c.get("k").await.unwrap();
                let b: Option<u64> = c.get("k").await.unwrap();
                let hits_before = c.local_hits();
                report(&w, json!({"tell": 2, "msg": "set"})).await;
                assert_eq!(next_msg(&w).await, json!("was_set"));
                // Worker 2's set returned; the invalidation follows within
                // one notice's latency (a poll with a deadline).
                let t = Instant::now();
                let mut seen = None;
                while t.elapsed() < Duration::from_secs(5) {
                    seen = c.get::<u64>("k").await.unwrap();
                    if seen == Some(2) {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                c.set("k", &3).await.unwrap();
                let own: Option<u64> = c.get("k").await.unwrap();
                report(
                    &w,
                    json!({
                        "a": a, "b": b, "hits_before": hits_before, "seen": seen,
                        "stale_us": t.elapsed().as_micros() as u64, "own": own,
                    }),
                )
                .await;
            } else {
                assert_eq!(next_msg(&w).await, json!("set"));
                c.set("k", &2).await.unwrap();
                report(&w, json!({"tell": 1, "msg": "was_set"})).await;
            }
        }
        "wait_timeout" => {
            let c = w.cache("wt", CacheOptions::default()).await.unwrap();
            if id == 1 {
                let worker = w.clone();
                let _ = c
                    .get_or_load("k", move || async move {
                        worker
                            .send(&json!({"tell": 2, "msg": "wait"}))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, String>("never".to_string())
                    })
                    .await;
            } else {
                assert_eq!(next_msg(&w).await, json!("wait"));
                let t = Instant::now();
                let r = c
                    .get_or_load_within("k", Duration::from_millis(300), || async {
                        Ok::<_, String>("w2".to_string())
                    })
                    .await;
                let waited_ms = t.elapsed().as_millis() as u64;
                let stats = c.stats().await.unwrap();
                report(
                    &w,
                    json!({"r": describe(&r), "waited_ms": waited_ms, "loads": stats.loads}),
                )
                .await;
                report(&w, json!({"kill": 1})).await;
            }
        }
        "hot_key" => hot_key(&w).await,
        other => panic!("unknown CACHE_SCENARIO {other:?}"),
    }
}

/// 32 callers spin on one key (no local copy) while another sets it and
/// reads it back 300 times: every read after a set returns sees that set
/// (or a later one), though concurrent gets of the key share requests.
async fn hot_key(w: &Worker) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let cache = w
        .cache("hot", CacheOptions::default().local_copy(false))
        .await
        .unwrap();
    cache.set("k", &0u64).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let mut spinners = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (cache, stop, gets) = (cache.clone(), stop.clone(), gets.clone());
        spinners.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v: Option<u64> = cache.get("k").await.unwrap();
                assert!(v.is_some());
                gets.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut stale = Vec::new();
    for i in 1..=300u64 {
        cache.set("k", &i).await.unwrap();
        let v: u64 = cache.get("k").await.unwrap().unwrap();
        gets.fetch_add(1, Ordering::Relaxed);
        if v < i {
            stale.push((i, v));
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = spinners.join_next().await {
        r.unwrap();
    }
    let store_hits = cache.stats().await.unwrap().hits;
    let gets = gets.load(Ordering::Relaxed);
    report(
        w,
        json!({"stale": stale, "gets": gets, "store_hits": store_hits}),
    )
    .await;
}
