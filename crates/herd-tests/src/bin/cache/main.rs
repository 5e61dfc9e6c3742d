//! The shared cache's fixture: one program that is the primary (with a
//! `CacheService`) and its workers, running the scenario named in
//! `CACHE_SCENARIO` (inherited by the workers) with `CACHE_WORKERS`
//! workers. The primary prints one JSON line per happening on stdout:
//! `{"event":"msg","worker":N,"msg":...}` for what a worker reports,
//! `{"event":"exit","worker":N,"signal":S,"code":C}`, and once every
//! worker exited `{"event":"stats","stats":{NAME: {...}},"watch":W}`
//! (`W`: `Primary::watch_stats`) then
//! `{"event":"done"}`, after writing the persistent caches.
//!
//! Workers steer the primary with messages (scenarios.rs):
//! `{"ready":true}` (once all are ready the primary sends each `"go"`),
//! `{"tell":N,"msg":M}`, `{"kill":N}`, and
//! `{"when_misses":{"cache":C,"at_least":K,"kill":N}}` (standalone.rs
//! adds `"kill_store"`).
//!
//! Workers are named by rank (1 to `CACHE_WORKERS`, in `CACHE_RANK`), the
//! order they were forked in: their ids, but for a standalone store
//! (`CACHE_STANDALONE`), whose worker is forked first. Another worker's
//! exit (the store worker's) is `{"event":"other_exit","worker":ID,...}`.

mod hosts;
mod scenarios;
mod standalone;

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
    let standalone = std::env::var_os("CACHE_STANDALONE").is_some();
    let service = match (std::env::var("CACHE_REDIS"), std::env::var_os("CACHE_DIR")) {
        (Err(_), dir) if standalone => match dir {
            Some(dir) => herd::CacheService::standalone_with_dir(&primary, dir),
            None => herd::CacheService::standalone(&primary),
        },
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
    for rank in 1..=n {
        let env = [("CACHE_RANK", rank.to_string())];
        handles.push(primary.fork_with_env(env).expect("fork"));
    }
    // A worker's rank, from its id (`None`: not one of the application's).
    let rank_of = |id: u32| handles.iter().position(|h| h.id() == id).map(|i| i + 1);
    let mut ready = HashSet::new();
    let mut exited = HashSet::new();
    while let Some(ev) = events.next().await {
        match ev {
            Event::Message { worker, message } => {
                let Some(worker) = rank_of(worker) else {
                    continue;
                };
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
                    if let Some(h) = by_rank(&handles, to) {
                        let _ = h.send(&msg["msg"]).await;
                    }
                } else if let Some(rank) = msg.get("kill").and_then(Value::as_u64) {
                    kill(&handles, rank);
                } else if let Some(w) = msg.get("when_misses") {
                    let cache = w["cache"].as_str().unwrap_or_default().to_string();
                    let at_least = w["at_least"].as_u64().unwrap_or(0);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    // The waiters' gets reached the store when it counted
                    // their misses (a poll with a deadline).
                    loop {
                        let misses = stats(&service)
                            .await
                            .get(&cache)
                            .and_then(|s| s["misses"].as_u64())
                            .unwrap_or(0);
                        if misses >= at_least || Instant::now() > deadline {
                            out(json!({"event": "misses", "cache": cache, "misses": misses}));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if let Some(rank) = w["kill"].as_u64() {
                        kill(&handles, rank);
                    }
                    if w.get("kill_store").is_some() {
                        standalone::kill_store(&service, w).await;
                        if let (Some(to), Some(m)) = (w["then_tell"].as_u64(), w.get("msg")) {
                            if let Some(h) = by_rank(&handles, to) {
                                let _ = h.send(m).await;
                            }
                        }
                    }
                }
                out(json!({"event": "msg", "worker": worker, "msg": msg}));
            }
            Event::Exit { worker, status, .. } => {
                let Some(worker) = rank_of(worker) else {
                    out(json!({
                        "event": "other_exit", "worker": worker,
                        "code": status.code, "signal": status.signal.map(|s| s.to_string()),
                    }));
                    continue;
                };
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
    out(json!({"event": "stats", "stats": stats(&service).await, "watch": primary.watch_stats()}));
    if standalone {
        standalone::report_store(&service);
    }
    // Writes the persistent caches (a standalone store worker's too, and
    // waits for it to exit).
    service.stop().await;
    out(json!({"event": "done"}));
}

fn by_rank(handles: &[herd::WorkerHandle], rank: u64) -> Option<&herd::WorkerHandle> {
    handles.get((rank as usize).checked_sub(1)?)
}

fn kill(handles: &[herd::WorkerHandle], rank: u64) {
    if let Some(h) = by_rank(handles, rank) {
        h.kill_with(Signal::SIGKILL);
        out(json!({"event": "killed", "worker": rank}));
    }
}

async fn stats(service: &herd::CacheService) -> serde_json::Map<String, Value> {
    service
        .fetch_stats()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(name, s)| (name, serde_json::to_value(s).unwrap()))
        .collect()
}
