//! The one-call API under test: a cluster2-style program whose primary
//! and workers are both `Cluster::listen`. Its warm-up fills a cache
//! through the application itself, in-process, before the worker listens;
//! `/` answers from that cache. Prints JSON lines: the primary
//! `{"event":"ready","monitor":ADDR}` once every worker is ready and
//! `{"event":"done","code":N}` at the end; each worker
//! `{"event":"serving","worker":ID,"pid":PID,"address":ADDR}`.
//! `ONECALL_WARMUP_MS` makes the warm-up take that long.

#![deny(unsafe_code)]

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use herd::{Cluster, Listening, Monitor, Supervision};
use serde_json::json;

static CACHE: OnceLock<String> = OnceLock::new();

fn say(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let warm_ms: u64 = std::env::var("ONECALL_WARMUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cluster = Cluster::new("127.0.0.1:0")
        .supervision(Supervision::new(2))
        .monitor(Monitor::new("127.0.0.1:0".parse().unwrap()))
        .app(|worker| {
            let id = worker.id();
            Router::new()
                .route(
                    "/",
                    get(move || async move {
                        format!(
                            "cache: {} from worker {id}\n",
                            CACHE.get().map_or("cold", |s| s)
                        )
                    }),
                )
                .route(
                    "/fill",
                    get(move || async move {
                        CACHE.get_or_init(|| format!("warm{id}"));
                        "filled"
                    }),
                )
        })
        .warm_up(move |app| async move {
            tokio::time::sleep(Duration::from_millis(warm_ms)).await;
            app.get("/fill").await.map(drop)
        });
    match cluster.listen().await.expect("listen") {
        Listening::Primary(running) => {
            let monitor = running.monitor.as_ref().map(|m| m.local_addr().to_string());
            say(json!({ "event": "ready", "monitor": monitor }));
            let code = running.wait().await;
            say(json!({ "event": "done", "code": code }));
            std::process::exit(code);
        }
        Listening::Worker(serving) => {
            say(json!({
                "event": "serving",
                "worker": serving.worker.id(),
                "pid": std::process::id(),
                "address": serving.address.to_string(),
            }));
            serving.wait().await.expect("serve");
        }
    }
}
