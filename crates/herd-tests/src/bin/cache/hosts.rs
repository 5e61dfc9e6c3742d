//! Scenarios of several herd instances on one Redis (issue 16, point 3),
//! and what lets a test steer a running instance: commands on the
//! primary's stdin (`{"tell":N,"msg":M}`, `{"health":true}`), and
//! `CACHE_GO_FILE`, a file the primary waits for before its workers go
//! (so that two instances start their gets together).

use std::time::{Duration, Instant};

use herd::{CacheError, CacheOptions, Primary, Worker};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

pub const SCENARIOS: [&str; 4] = ["hold_lease", "wait_load", "redis_away", "emit_across"];

fn out(v: Value) {
    println!("{v}");
}

/// Reads the test's commands on stdin, when `CACHE_COMMANDS` is set (the
/// test closes stdin before the primary's end: the runtime waits for the
/// blocking read).
pub fn commands(primary: &Primary, service: &herd::CacheService) {
    if std::env::var_os("CACHE_COMMANDS").is_none() {
        return;
    }
    let (primary, service) = (primary.clone(), service.clone());
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(to) = cmd.get("tell").and_then(Value::as_u64) {
                if let Some(h) = primary.worker(to as u32) {
                    let _ = h.send(&cmd["msg"]).await;
                }
            } else if cmd.get("health").is_some() {
                let h = service.redis_health();
                out(
                    json!({"event": "health", "health": h, "stats": service.stats().into_iter().collect::<std::collections::BTreeMap<_, _>>()}),
                );
            }
        }
    });
}

/// Every worker is ready: say so, and wait for `CACHE_GO_FILE` when set.
pub async fn all_ready() {
    out(json!({"event": "all_ready"}));
    let Some(file) = std::env::var_os("CACHE_GO_FILE") else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(&file).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn report(w: &Worker, v: Value) {
    w.send(&v).await.expect("report to the primary");
}

async fn next_msg(w: &Worker) -> Value {
    let m = tokio::time::timeout(Duration::from_secs(30), w.recv())
        .await
        .expect("a message within 30 s")
        .expect("the primary is there");
    m.decode().unwrap()
}

fn describe(r: &Result<String, CacheError>) -> Value {
    match r {
        Ok(v) => json!({"ok": v}),
        Err(CacheError::Load(e)) => json!({"load_error": e}),
        Err(CacheError::Timeout(d)) => json!({"timeout_ms": d.as_millis() as u64}),
        Err(e) => json!({"other": e.to_string()}),
    }
}

fn lease_options() -> CacheOptions {
    CacheOptions::default().lease(Duration::from_millis(1500))
}

pub async fn worker() {
    let w = Worker::connect().await.expect("connect");
    let id = w.id();
    let host = std::env::var("CACHE_CLUSTER_HOST").unwrap_or_default();
    match std::env::var("CACHE_SCENARIO").unwrap_or_default().as_str() {
        // Takes the lease and loads for ever (the test kills this instance).
        "hold_lease" => {
            let cache = w.cache("hl", lease_options()).await.unwrap();
            let worker = w.clone();
            let r = cache
                .get_or_load("k", move || async move {
                    worker.send(&json!({"loader_ran": true})).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, String>("never".to_string())
                })
                .await;
            report(&w, json!({"unexpected": describe(&r)})).await;
        }
        // 100 gets once told "go", each with a 100 ms loader.
        "wait_load" => {
            let cache = w.cache("hl", lease_options()).await.unwrap();
            report(&w, json!({"ready": true})).await;
            assert_eq!(next_msg(&w).await, json!("go"));
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..100 {
                let (cache, w2, host) = (cache.clone(), w.clone(), host.clone());
                set.spawn(async move {
                    let r = cache
                        .get_or_load("k", move || async move {
                            let _ = w2.send(&json!({"loader_ran": w2.id()})).await;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, String>(format!("from {host} worker {}", w2.id()))
                        })
                        .await;
                    describe(&r)
                });
            }
            let mut outcomes = Vec::new();
            while let Some(r) = set.join_next().await {
                outcomes.push(r.unwrap());
            }
            let max_ms = start.elapsed().as_millis() as u64;
            report(&w, json!({"outcomes": outcomes, "max_ms": max_ms})).await;
        }
        // Redis goes away and comes back while this worker uses the cache.
        "redis_away" => {
            let cache = w.cache("ra", CacheOptions::default()).await.unwrap();
            cache.set("a", &1).await.unwrap();
            report(&w, json!({"phase": "up"})).await;
            assert_eq!(next_msg(&w).await, json!("down"));
            let t = Instant::now();
            let got = cache
                .get_or_load("b", || async {
                    Ok::<_, String>("loaded while away".to_string())
                })
                .await;
            let set = cache.set("c", &3).await.err().map(|e| e.to_string());
            report(&w, json!({"phase": "down", "got": describe(&got), "got_ms": t.elapsed().as_millis() as u64, "set": set})).await;
            assert_eq!(next_msg(&w).await, json!("back"));
            let got = cache
                .get_or_load("d", || async {
                    Ok::<_, String>("loaded when back".to_string())
                })
                .await;
            let again: Option<String> = cache.get("d").await.unwrap_or(None);
            let a: Option<u64> = cache.get("a").await.unwrap_or(None);
            report(
                &w,
                json!({"phase": "back", "got": describe(&got), "again": again, "a": a, "id": id}),
            )
            .await;
        }
        // Host a's worker 1 emits to every worker; every worker of both
        // hosts reports what it heard.
        "emit_across" => {
            let emitter = w.emitter().unwrap();
            let mut hello = emitter.on::<String>("hello");
            report(&w, json!({"ready": true})).await;
            assert_eq!(next_msg(&w).await, json!("go"));
            if host == "a" && id == 1 {
                emitter
                    .to(herd::Target::AllWorkers)
                    .emit("hello", &format!("from {host} worker {id}"))
                    .await
                    .unwrap();
            }
            let heard = tokio::time::timeout(Duration::from_secs(10), hello.next()).await;
            let heard = heard.ok().flatten().map(|e| e.payload);
            report(&w, json!({"heard": heard, "host": host})).await;
        }
        other => panic!("unknown CACHE_SCENARIO {other:?}"),
    }
}
