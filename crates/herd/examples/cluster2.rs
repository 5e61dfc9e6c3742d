//! A cluster2-style server in one call: routes, a warm-up that fills a
//! cache before the worker takes traffic, and a monitor port for load
//! balancers and Prometheus.
//!
//!     cargo run --example cluster2
//!     curl http://127.0.0.1:8080/            # a worker, warm
//!     curl http://127.0.0.1:9090/ecv         # status=AVAILABLE&ServeTraffic=true...
//!     curl http://127.0.0.1:9090/metrics
//!
//! `HERD_WORKERS` (default: one per CPU) and `HERD_MONITOR_TOKEN` (turns on
//! `POST /ecv/markDown`, `/ecv/markUp`, `/reload`, `/scale?workers=N`).

use std::sync::OnceLock;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use herd::{Cluster, Listening, Monitor, Supervision};

/// What the warm-up loads once per worker: here, a table the first
/// request would otherwise wait for.
static PRICES: OnceLock<Vec<(String, u32)>> = OnceLock::new();

async fn load_prices() -> &'static str {
    PRICES.get_or_init(|| {
        // A slow load (a database, a file): done before any user waits.
        std::thread::sleep(Duration::from_millis(200));
        vec![("apple".into(), 3), ("pear".into(), 4)]
    });
    "loaded"
}

#[tokio::main]
async fn main() -> Result<(), herd::Error> {
    let workers = std::env::var("HERD_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(herd::available_cpus);
    let cluster = Cluster::new("127.0.0.1:8080")
        .supervision(Supervision::new(workers).drain_delay(Duration::from_secs(2)))
        .monitor(
            Monitor::new("127.0.0.1:9090".parse().unwrap())
                .token_from_env("HERD_MONITOR_TOKEN")?
                .deps(herd::deps!(lock = "../../Cargo.lock")),
        )
        .app(|worker| {
            let id = worker.id();
            Router::new()
                .route(
                    "/",
                    get(move || async move {
                        let prices = PRICES.get().map_or(0, Vec::len);
                        format!("worker {id}: {prices} prices, warm\n")
                    }),
                )
                .route("/load", get(load_prices))
        })
        .warm_up(|app| async move {
            // Through the application itself, in-process: the route the
            // first user hits, and what it needs, are ready first.
            app.get("/load").await?;
            app.get("/").await.map(drop)
        });
    match cluster.listen().await? {
        Listening::Primary(running) => {
            println!(
                "cluster2: every worker warm; http://127.0.0.1:8080/ and http://127.0.0.1:9090/ecv"
            );
            std::process::exit(running.wait().await);
        }
        Listening::Worker(serving) => serving.wait().await,
    }
}
