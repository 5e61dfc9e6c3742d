//! The reload benchmark's herd server: the same `hello world` app as
//! `hello.rs`, run under a [`Supervisor`], so that SIGHUP starts a
//! rolling restart (successor first, one worker at a time) and SIGTERM a
//! graceful shutdown. Workers serve with [`Worker::serve`], which answers
//! with `Connection: close` once a disconnect begins instead of closing idle
//! keep-alive connections under a client's feet.
//!
//! ```text
//! hello_supervised [ADDR] [--workers N]
//! ```
//!
//! - `ADDR`: where to listen (default `127.0.0.1:0`, a free port shared by
//!   every worker).
//! - `--workers N` (or `HERD_WORKERS=N`): how many workers (default 2). The
//!   policy comes from `HERD_SCHED_POLICY=rr|lc|shared|reuseport`.
//!
//! Lines on stdout, which scripts wait for instead of sleeping:
//!
//! ```text
//! ready port=PORT workers=N policy=POLICY pid=PID      all N workers ready
//! reload started workers=N
//! reload finished replaced=N ms=MS                      MS: start to last replacement
//! reload aborted reason=...
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use axum::{routing::get, Router};
use herd::supervise::ClusterEvent;
use herd::{Event, Primary, ReloadPhase, Role, Supervision, Supervisor, SupervisorEvent, Worker};

fn parse_args() -> Result<(String, usize), String> {
    herd_bench::parse_args(2, false).map(|a| (a.addr, a.workers))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, workers) = parse_args().unwrap_or_else(|e| {
        eprintln!("hello_supervised: {e}\nusage: hello_supervised [ADDR] [--workers N]");
        std::process::exit(2)
    });
    match herd::role() {
        // The primary accepts and hands connections over: one thread, as in
        // Node (and as hello.rs).
        Role::Primary => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(primary(workers)),
        Role::Worker => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(worker(&addr)),
    }
}

async fn primary(workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    let primary = Primary::new()?;
    let sup = Supervisor::new(
        primary.clone(),
        Supervision::new(workers).grace(Duration::from_secs(10)),
    );
    let mut events = sup.cluster_events();
    let mut run = tokio::spawn(sup.run());
    let mut port = None;
    let mut ready = BTreeSet::new();
    let mut announced = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(ClusterEvent::Core(Event::Listening { address, .. })) => {
                    port.get_or_insert_with(|| address.port().map_or("?".to_string(), |p| p.to_string()));
                }
                Some(ClusterEvent::Core(Event::Ready { worker })) => {
                    ready.insert(worker);
                    if !announced && ready.len() >= workers {
                        announced = true;
                        println!(
                            "ready port={} workers={workers} policy={} pid={}",
                            port.as_deref().unwrap_or("?"),
                            primary.policy(),
                            std::process::id()
                        );
                    }
                }
                Some(ClusterEvent::Core(Event::Exit { worker, status, exited_after_disconnect })) => {
                    ready.remove(&worker);
                    if !exited_after_disconnect {
                        eprintln!("hello_supervised: worker {worker} died ({status})");
                    }
                }
                Some(ClusterEvent::Supervisor(SupervisorEvent::Reload(phase))) => match phase {
                    ReloadPhase::Started { workers } => println!("reload started workers={workers}"),
                    ReloadPhase::Finished { replaced, took } => println!(
                        "reload finished replaced={replaced} ms={:.1}",
                        took.as_secs_f64() * 1000.0
                    ),
                    ReloadPhase::Aborted { reason } => println!("reload aborted reason={reason}"),
                    _ => {}
                },
                Some(ClusterEvent::Supervisor(SupervisorEvent::BreakerTripped { reason, .. })) => {
                    eprintln!("hello_supervised: critical: {reason}")
                }
                Some(_) => {}
                None => return Ok(()),
            },
            code = &mut run => std::process::exit(code.unwrap_or(1)),
        }
    }
}

async fn worker(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let worker = Worker::connect().await?;
    let listener = worker.listen(addr).await?;
    let app = Router::new().route("/", get(|| async { "hello world" }));
    // Returns after a graceful disconnect, once the last connection is
    // done: the worker ends with `main`.
    worker.serve(listener, app).await?;
    Ok(())
}
