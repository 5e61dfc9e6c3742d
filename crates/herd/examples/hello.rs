//! A clustered hello world: one worker per CPU answering `hello world` on
//! 127.0.0.1:8080, kept up by herd's supervisor.
//!
//! ```text
//! cargo run --release --example hello [ADDRESS]
//! curl http://127.0.0.1:8080/
//! ```
//!
//! - `ADDRESS`: where to listen (default `127.0.0.1:8080`; `127.0.0.1:0`
//!   picks a free port, `unix:/tmp/hello.sock` a Unix socket).
//! - `HERD_WORKERS`: how many workers (default: one per CPU).
//! - `HERD_SCHED_POLICY`: `rr` (default), `lc`, `shared` or `reuseport`.
//! - `HERD_LOG=debug`: the library's own log, as `NODE_DEBUG=cluster`.
//!
//! The primary prints each worker's life. A crashed worker is respawned;
//! SIGHUP replaces every worker one at a time without dropping a request;
//! Ctrl-C (SIGINT) or SIGTERM disconnects them gracefully and exits.

use herd::supervise::ClusterEvent;
use herd::{Event, Primary, Role, Supervision, Supervisor, SupervisorEvent, Worker};

const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

#[tokio::main]
async fn main() {
    // The workers run this same program with the same arguments.
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    match herd::role() {
        Role::Primary => primary(&address).await,
        Role::Worker => worker(&address).await,
    }
}

async fn primary(address: &str) {
    let workers = match std::env::var("HERD_WORKERS") {
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("hello: HERD_WORKERS={n:?} is not a positive number");
                std::process::exit(2);
            }
        },
        Err(_) => herd::available_cpus(),
    };
    let primary = match Primary::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "hello: primary {} starting {workers} worker(s) on {address}, policy {}",
        std::process::id(),
        primary.policy()
    );

    // The supervisor keeps the workers up, handles the signals, and gives
    // up (exit code 1) when no worker can start.
    let sup = Supervisor::new(primary, Supervision::new(workers));
    let mut events = sup.cluster_events();
    let run = sup.run();
    tokio::pin!(run);
    let mut log = Log::default();
    loop {
        tokio::select! {
            Some(event) = events.next() => log.print(&event),
            code = &mut run => {
                // The last events (the last exits) may still be queued.
                while let Some(event) = events.try_next() {
                    log.print(&event);
                }
                println!("hello: all workers gone; exiting with code {code}");
                std::process::exit(code);
            }
        }
    }
}

/// Prints the cluster's life, one line per event.
#[derive(Default)]
struct Log {
    announced: bool,
}

impl Log {
    fn print(&mut self, event: &ClusterEvent) {
        match event {
            ClusterEvent::Core(event) => self.core(event),
            ClusterEvent::Supervisor(SupervisorEvent::BreakerTripped { slot, reason }) => {
                println!("hello: worker slot {slot} left down: {reason}")
            }
            ClusterEvent::Supervisor(event) => println!("hello: {event}"),
            _ => {}
        }
    }

    fn core(&mut self, event: &Event) {
        match event {
            Event::Fork { worker } => println!("worker {worker}: forked"),
            Event::Online { worker } => println!("worker {worker}: online"),
            Event::Listening { worker, address } => {
                println!("worker {worker}: listening on {address}");
                if !self.announced {
                    self.announced = true;
                    let try_it = match address.path() {
                        Some(path) => {
                            format!("curl --unix-socket {} http://hello/", path.display())
                        }
                        None => format!("curl http://{address}/"),
                    };
                    println!("hello: listening on {address}; try `{try_it}`");
                }
            }
            Event::Ready { worker } => println!("worker {worker}: ready"),
            Event::Disconnect { worker } => println!("worker {worker}: disconnected"),
            Event::Exit {
                worker,
                status,
                exited_after_disconnect,
            } => {
                let how = if *exited_after_disconnect {
                    "as asked"
                } else {
                    "unexpectedly"
                };
                println!("worker {worker}: exited {how} ({status})");
            }
            Event::Error { worker, error } => println!("worker {worker}: error: {error}"),
            _ => {}
        }
    }
}

async fn worker(address: &str) {
    let worker = match Worker::connect().await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hello worker: {e}");
            std::process::exit(1);
        }
    };
    let listener = match worker.listen(address).await {
        Ok(l) => l,
        Err(e) => {
            // EADDRINUSE, EACCES...: respawning would not help.
            eprintln!("hello worker {}: {e}", worker.id());
            std::process::exit(herd::EXIT_CANNOT_BOOT);
        }
    };
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello world" }));
    // `axum::serve(listener, app).with_graceful_shutdown(worker.disconnecting())`
    // works too; `Worker::serve` is that, plus `Connection: close` on the
    // answers given while disconnecting, so that no keep-alive client is
    // reset by a reload, and header-read and idle timeouts (30 s and 75 s,
    // `Worker::serve_with` and `herd::ServeOptions` to change them), so
    // that no slow client holds a reload until its grace runs out.
    if let Err(e) = worker.serve(listener, app).await {
        eprintln!("hello worker {}: {e}", worker.id());
        std::process::exit(1);
    }
    // Serving ended with a graceful disconnect: the worker ends with
    // `main`, as a Node worker ends when its event loop is empty (clean up
    // here; the primary reports the exit code `main` gives).
}
