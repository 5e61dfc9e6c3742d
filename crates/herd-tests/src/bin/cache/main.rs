//! The shared cache's fixture: one program that is the primary (with a
//! `CacheService`) and its workers, running the scenario named in
//! `CACHE_SCENARIO` (inherited by the workers) with `CACHE_WORKERS`
//! workers. The primary prints one JSON line per happening on stdout:
//! `{"event":"msg","worker":N,"msg":...}` for what a worker reports,
//! `{"event":"exit","worker":N,"signal":S,"code":C}`, and once every
//! worker exited `{"event":"stats","stats":{NAME: {...}}}` then
//! `{"event":"done"}`, after writing the persistent caches.
//!
//! Workers steer the primary with messages (scenarios.rs):
//! `{"ready":true}` (once all are ready the primary sends each `"go"`),
//! `{"tell":N,"msg":M}`, `{"kill":N}`, and
//! `{"when_misses":{"cache":C,"at_least":K,"kill":N}}`.

mod hosts;
mod scenarios;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herd::{Event, Primary, Role, Signal};
use serde_json::{json, Value};

fn out(v: Value) {
    println!("{v}");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match herd::role() {
        Role::Primary => rt.block_on(primary()),
        Role::Worker
            if hosts::SCENARIOS
                .contains(&std::env::var("CACHE_SCENARIO").unwrap_or_default().as_str()) =>
        {
            rt.block_on(hosts::worker())
        }
        Role::Worker => rt.block_on(scenarios::worker()),
    }
}

async fn primary() {
    let n: usize = std::env::var("CACHE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let primary = Primary::new().expect("primary");
    // CACHE_REDIS: the cache on that Redis, for the cluster CACHE_CLUSTER.
    let service = match (std::env::var("CACHE_REDIS"), std::env::var_os("CACHE_DIR")) {
        (Ok(url), _) => {
            let cluster = std::env::var("CACHE_CLUSTER").unwrap_or_else(|_| "test".into());
            herd::CacheService::with_redis(&primary, &url, &cluster)
        }
        (_, Some(dir)) => herd::CacheService::with_dir(&primary, dir),
        (_, None) => herd::CacheService::new(&primary),
    }
    .expect("cache service");
    hosts::commands(&primary, &service);
    if std::env::var_os("CACHE_EMIT").is_some() {
        let emitter = primary.emitter().expect("emitter");
        service.share_emitter(&emitter).expect("share the emitter");
    }
    let mut events = primary.events();
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(primary.fork().expect("fork"));
    }
    let mut ready = HashSet::new();
    let mut exited = HashSet::new();
    while let Some(ev) = events.next().await {
        match ev {
            Event::Message { worker, message } => {
                let msg: Value = message.decode().unwrap_or(Value::Null);
                if msg.get("ready").is_some() {
                    ready.insert(worker);
                    if ready.len() == n {
                        hosts::all_ready().await;
                        for h in &handles {
                            let _ = h.send(&"go").await;
                        }
                    }
                } else if let Some(to) = msg.get("tell").and_then(Value::as_u64) {
                    if let Some(h) = primary.worker(to as u32) {
                        let _ = h.send(&msg["msg"]).await;
                    }
                } else if let Some(id) = msg.get("kill").and_then(Value::as_u64) {
                    kill(&primary, id as u32);
                } else if let Some(w) = msg.get("when_misses") {
                    let cache = w["cache"].as_str().unwrap_or_default().to_string();
                    let at_least = w["at_least"].as_u64().unwrap_or(0);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    // The waiters' gets reached the store when it counted
                    // their misses (a poll with a deadline).
                    loop {
                        let misses = stats(&service)
                            .get(&cache)
                            .and_then(|s| s["misses"].as_u64())
                            .unwrap_or(0);
                        if misses >= at_least || Instant::now() > deadline {
                            out(json!({"event": "misses", "cache": cache, "misses": misses}));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if let Some(id) = w["kill"].as_u64() {
                        kill(&primary, id as u32);
                    }
                }
                out(json!({"event": "msg", "worker": worker, "msg": msg}));
            }
            Event::Exit { worker, status, .. } => {
                out(json!({
                    "event": "exit", "worker": worker,
                    "code": status.code, "signal": status.signal.map(|s| s.to_string()),
                }));
                exited.insert(worker);
                if exited.len() == n {
                    break;
                }
            }
            _ => {}
        }
    }
    out(json!({"event": "stats", "stats": stats(&service)}));
    service.flush();
    out(json!({"event": "done"}));
}

fn kill(primary: &Primary, id: u32) {
    if let Some(h) = primary.worker(id) {
        h.kill_with(Signal::SIGKILL);
        out(json!({"event": "killed", "worker": id}));
    }
}

fn stats(service: &herd::CacheService) -> serde_json::Map<String, Value> {
    service
        .stats()
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap()))
        .collect()
}
