//! The benchmarks' clustered HTTP hello-world: herd's side of
//! `bench/node/cluster_hello.js`, answering every request with `hello world`.
//!
//! ```text
//! hello [ADDR] [--workers N] [--plain] [--monitor]
//! ```
//!
//! - `ADDR`: where to listen (default `127.0.0.1:0`: a free port, shared by
//!   every worker as Node's `listen(0)` is).
//! - `--workers N` (or `HERD_WORKERS=N`): how many workers (default: one per
//!   CPU). The policy comes from `HERD_SCHED_POLICY=rr|lc|shared|reuseport`.
//! - `--plain`: no herd at all. One process serves the same axum app on a
//!   tokio `TcpListener`, with the same runtime as a herd worker: the
//!   baseline of the keep-alive benchmark.
//! - `--monitor`: what an operator turns on to watch the cluster, for the
//!   `monitor` and `metrics64` benchmarks. The primary runs the workers
//!   under a [`Supervisor`] and serves [`herd::Monitor`] on a free loopback
//!   port; each worker serves the same app through [`Worker::serve`], whose
//!   layer counts every request and its latency for the heartbeats.
//!   Without it (the default, what every other scenario runs) workers serve
//!   with plain `axum::serve`: no counting layer, no supervisor, no monitor.
//!   With it there are no connection counts (no `counts` answers).
//!
//! Runtimes: every process runs what `#[tokio::main]` builds (a
//! multi-threaded runtime, a thread per CPU), as herd's examples do.
//! `HELLO_PRIMARY_THREADS=N` gives the primary N threads instead (1: a
//! current-thread runtime, as Node's primary has one thread).
//!
//! Once every worker listens, the primary prints one line, which scripts wait
//! for instead of sleeping:
//!
//! ```text
//! ready port=PORT workers=N policy=POLICY pid=PID
//! ```
//!
//! (with `--monitor`, once every worker is ready, and ending
//! `monitor=IP:PORT`).
//!
//! Each worker counts the connections it accepted. On SIGUSR2, or a line
//! `counts` on its standard input, the primary asks every worker (a herd
//! message) and prints one line with the answers, by worker id:
//!
//! ```text
//! {"counts":{"1":5012,"2":4988}}
//! ```
//!
//! A line `reset` on standard input sets every count back to zero.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::{routing::get, Router};
use herd::supervise::ClusterEvent;
use herd::{Event, Monitor, Primary, Role, Supervision, Supervisor, Worker};
use herd_bench::Args;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The primary's question to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Ask {
    /// Report your accepted-connection count, quoting `req`.
    Counts { req: u64 },
    /// Set your count back to zero.
    Reset,
}

/// A worker's answer to [`Ask::Counts`].
#[derive(Debug, Serialize, Deserialize)]
struct Count {
    req: u64,
    conns: u64,
}

/// What the operator asked for, by signal or on standard input.
#[derive(Debug, Clone, Copy)]
enum Command {
    Counts,
    Reset,
}

/// How long the primary waits for every worker's count.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);

fn parse_args() -> Result<Args, String> {
    herd_bench::parse_args(herd::available_cpus(), true)
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("hello: {e}\nusage: hello [ADDR] [--workers N] [--plain] [--monitor]");
        std::process::exit(2)
    });
    if args.plain {
        return runtime(None)?.block_on(plain(&args.addr));
    }
    match herd::role() {
        Role::Primary => {
            let threads = match std::env::var("HELLO_PRIMARY_THREADS") {
                Ok(n) => Some(n.parse::<usize>().map_err(|_| {
                    format!("HELLO_PRIMARY_THREADS={n:?} is not a number of threads")
                })?),
                Err(_) => None,
            };
            if args.monitor {
                runtime(threads)?.block_on(monitored_primary(args.workers))
            } else {
                runtime(threads)?.block_on(primary(args.workers))
            }
        }
        Role::Worker if args.monitor => runtime(None)?.block_on(serving_worker(&args.addr)),
        Role::Worker => runtime(None)?.block_on(worker(&args.addr)),
    }
}

/// What `#[tokio::main]` builds, or a runtime of `threads` threads (1: a
/// current-thread runtime).
fn runtime(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    match threads {
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// Forks the workers, prints `ready` once all listen, answers count requests.
async fn primary(workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    let primary = Primary::new()?;
    let mut events = primary.events();
    for _ in 0..workers {
        primary.fork()?;
    }
    let mut commands = commands()?;
    let mut listening = 0;
    let mut next_req = 0;
    // The count request being answered: its id and the answers so far.
    let mut asking: Option<(u64, BTreeMap<u32, u64>)> = None;
    let deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Listening { address, .. }) => {
                    listening += 1;
                    if listening == workers {
                        let port = address.port().map_or("?".to_string(), |p| p.to_string());
                        println!(
                            "ready port={port} workers={workers} policy={} pid={}",
                            primary.policy(),
                            std::process::id()
                        );
                    }
                }
                Some(Event::Message { worker, message }) => {
                    let Ok(count) = message.decode::<Count>() else { continue };
                    if let Some((req, answers)) = &mut asking {
                        if count.req == *req {
                            answers.insert(worker, count.conns);
                        }
                        if answers.len() == primary.workers().len() {
                            print_counts(answers);
                            asking = None;
                        }
                    }
                }
                Some(Event::Exit { worker, status, exited_after_disconnect: false }) => {
                    eprintln!("hello: worker {worker} died ({status}); stopping");
                    primary.kill_all(herd::Signal::SIGKILL).await;
                    std::process::exit(1);
                }
                Some(_) => {}
                None => return Ok(()),
            },
            Some(cmd) = commands.recv() => {
                let ask = match cmd {
                    Command::Counts => {
                        next_req += 1;
                        asking = Some((next_req, BTreeMap::new()));
                        deadline.as_mut().reset(tokio::time::Instant::now() + COUNT_TIMEOUT);
                        Ask::Counts { req: next_req }
                    }
                    Command::Reset => Ask::Reset,
                };
                for w in primary.workers() {
                    if let Err(e) = w.send(&ask).await {
                        eprintln!("hello: cannot ask worker {}: {e}", w.id());
                    }
                }
            }
            () = &mut deadline, if asking.is_some() => {
                let (_, answers) = asking.take().expect("asking");
                eprintln!("hello: only {} of {} workers answered", answers.len(), primary.workers().len());
                print_counts(&answers);
            }
        }
    }
}

/// `--monitor`: the workers under a supervisor, the monitor on a free
/// loopback port; prints `ready ... monitor=ADDR` once every worker is
/// ready, and exits with the supervisor's code (TERM stops it gracefully).
async fn monitored_primary(workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    let primary = Primary::new()?;
    let sup = Supervisor::new(
        primary.clone(),
        Supervision::new(workers).grace(Duration::from_secs(10)),
    );
    let monitor = Monitor::new("127.0.0.1:0".parse()?).start(&sup)?;
    let mut events = sup.cluster_events();
    let mut run = tokio::spawn(sup.run());
    let mut port = None;
    let mut ready = std::collections::BTreeSet::new();
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
                            "ready port={} workers={workers} policy={} pid={} monitor={}",
                            port.as_deref().unwrap_or("?"),
                            primary.policy(),
                            std::process::id(),
                            monitor.local_addr()
                        );
                    }
                }
                Some(ClusterEvent::Core(Event::Exit { worker, status, exited_after_disconnect })) => {
                    ready.remove(&worker);
                    if !exited_after_disconnect {
                        eprintln!("hello: worker {worker} died ({status})");
                    }
                }
                Some(_) => {}
                None => std::process::exit((&mut run).await.unwrap_or(1)),
            },
            code = &mut run => std::process::exit(code.unwrap_or(1)),
        }
    }
}

fn print_counts(answers: &BTreeMap<u32, u64>) {
    let counts: BTreeMap<String, u64> = answers.iter().map(|(w, n)| (w.to_string(), *n)).collect();
    println!("{}", serde_json::json!({ "counts": counts }));
}

/// SIGUSR2 and `counts` lines ask for the counts; `reset` lines reset them.
fn commands() -> io::Result<mpsc::UnboundedReceiver<Command>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let on_signal = tx.clone();
    tokio::spawn(async move {
        while usr2.recv().await.is_some() {
            if on_signal.send(Command::Counts).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let cmd = match line.trim() {
                "counts" => Command::Counts,
                "reset" => Command::Reset,
                "" => continue,
                other => {
                    eprintln!("hello: unknown command {other:?} (use counts or reset)");
                    continue;
                }
            };
            if tx.send(cmd).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Serves the app on the cluster's shared port, counting connections, and
/// answers the primary's questions about the count.
async fn worker(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let worker = Worker::connect().await?;
    let listener = worker.listen(addr).await?;
    let conns = Arc::new(AtomicU64::new(0));
    let counted = conns.clone();
    let listener = listener.tap_io(move |conn| {
        counted.fetch_add(1, Ordering::Relaxed);
        if let Some(tcp) = conn.as_tcp() {
            let _ = tcp.set_nodelay(true);
        }
    });
    let link = worker.clone();
    tokio::spawn(async move {
        while let Some(msg) = link.recv().await {
            match msg.decode::<Ask>() {
                Ok(Ask::Counts { req }) => {
                    let conns = conns.load(Ordering::Relaxed);
                    let _ = link.send(&Count { req, conns }).await;
                }
                Ok(Ask::Reset) => conns.store(0, Ordering::Relaxed),
                Err(e) => eprintln!("hello: worker {}: bad message: {e}", link.id()),
            }
        }
    });
    axum::serve(listener, app())
        .with_graceful_shutdown(worker.disconnecting())
        .await?;
    Ok(())
}

/// `--monitor`: the same app through [`Worker::serve`], which counts each
/// request and its latency (sent with every heartbeat) in the one layer it
/// puts in front of the app.
async fn serving_worker(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let worker = Worker::connect().await?;
    let listener = worker.listen(addr).await?;
    // Returns after a graceful disconnect, once the last connection is
    // done: the worker ends with `main`.
    worker.serve(listener, app()).await?;
    Ok(())
}

/// The same app and runtime without herd: one process, a tokio listener.
async fn plain(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let port = listener.local_addr()?.port();
    let conns = Arc::new(AtomicU64::new(0));
    let counted = conns.clone();
    let listener = listener.tap_io(move |tcp| {
        counted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
    });
    let mut commands = commands()?;
    tokio::spawn(async move {
        while let Some(cmd) = commands.recv().await {
            match cmd {
                Command::Counts => {
                    print_counts(&BTreeMap::from([(0, conns.load(Ordering::Relaxed))]))
                }
                Command::Reset => conns.store(0, Ordering::Relaxed),
            }
        }
    });
    println!(
        "ready port={port} workers=1 policy=plain pid={}",
        std::process::id()
    );
    axum::serve(listener, app()).await?;
    Ok(())
}
