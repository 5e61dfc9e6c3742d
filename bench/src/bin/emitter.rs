//! The `emitter` benchmark, herd's side: the primary emits `N` events to
//! every one of `W` workers (`emit_to(Target::AllWorkers, ..)`), each
//! worker's subscription decodes them; timed from the first emit until
//! every worker reported it had all `N`. `bench/node/emitter.js` does the
//! same with Node's cluster and `worker.send` to each worker.
//!
//! Both pace the primary alike: each worker reports its count every
//! [`REPORT`] events, and the primary keeps at most [`WINDOW`] events
//! ahead of the slowest worker. A herd subscription holds at most
//! `herd::services::MAX_QUEUED` (16,384) unread and misses the newest past
//! that; on 2 cpus shared by 9 processes an unpaced primary may get that
//! far ahead of a worker (a run once failed so).
//!
//! ```text
//! emitter [--n N] [--workers W]
//! ```
//! Prints `herd.fanout MSGS_PER_S` (deliveries per second: N * W / time).

use std::time::{Duration, Instant};

use herd::services::Target;
use herd::{Primary, Role, Worker};
use serde::{Deserialize, Serialize};

/// The event's payload: the same small object as the ipc benchmark's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    kind: String,
    value: f64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often a worker reports how many events it has.
const REPORT: u64 = 2048;
/// How far the primary may get ahead of the slowest worker.
const WINDOW: u64 = 8192;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match herd::role() {
        Role::Worker => worker().await,
        Role::Primary => primary().await,
    }
}

fn opts() -> (u64, usize) {
    let (mut n, mut workers) = (100_000u64, 8usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v: u64 = args
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(&format!("{a} needs a number")));
        match a.as_str() {
            "--n" => n = v,
            "--workers" => workers = v as usize,
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if n == 0 || workers == 0 {
        usage("--n and --workers must be at least 1");
    }
    (n, workers)
}

fn usage(why: &str) -> ! {
    eprintln!("emitter: {why}\nusage: emitter [--n EVENTS] [--workers W]");
    std::process::exit(2)
}

async fn primary() -> Result<(), BoxError> {
    let (n, workers) = opts();
    let primary = Primary::new()?;
    let emitter = primary.emitter()?;
    let mut ready = emitter.on::<u64>("ready");
    let mut done = emitter.on::<u64>("done");
    let mut progress = emitter.on::<u64>("progress");
    for _ in 0..workers {
        primary.fork()?;
    }
    for _ in 0..workers {
        tokio::time::timeout(Duration::from_secs(30), ready.next())
            .await?
            .ok_or("no ready")?;
    }
    emitter.emit_to(Target::AllWorkers, "n", &n).await?;
    let start = Instant::now();
    let mut counts = std::collections::HashMap::new();
    for seq in 0..n {
        while seq >= WINDOW && slowest(&counts, workers) + WINDOW <= seq {
            let p = tokio::time::timeout(Duration::from_secs(60), progress.next())
                .await?
                .ok_or("no progress")?;
            counts.insert(p.from, p.payload);
        }
        let tick = Tick {
            seq,
            kind: "tick".into(),
            value: seq as f64 * 0.5,
        };
        emitter.emit_to(Target::AllWorkers, "tick", &tick).await?;
    }
    for _ in 0..workers {
        let got = tokio::time::timeout(Duration::from_secs(120), done.next())
            .await?
            .ok_or("no done")?;
        if got.payload != n {
            return Err(format!("{:?} got {} of {n}", got.from, got.payload).into());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("herd.fanout {:.0}", (n * workers as u64) as f64 / secs);
    primary.disconnect().await;
    Ok(())
}

/// The count of the worker furthest behind.
fn slowest(counts: &std::collections::HashMap<herd::services::Origin, u64>, workers: usize) -> u64 {
    if counts.len() < workers {
        return 0;
    }
    counts.values().copied().min().unwrap_or(0)
}

async fn worker() -> Result<(), BoxError> {
    let w = Worker::connect().await?;
    let emitter = w.emitter()?;
    let mut ticks = emitter.on::<Tick>("tick");
    let mut n = emitter.once::<u64>("n");
    emitter.to(Target::Primary).emit("ready", &0u64).await?;
    let n = n.next().await.ok_or("no n")?.payload;
    let mut got = 0u64;
    while got < n {
        let Some(t) = ticks.next().await else { break };
        if t.payload.seq != got {
            return Err(format!(
                "emit {} came where {got} was next ({} missed past the subscription's bound)",
                t.payload.seq,
                ticks.missed()
            )
            .into());
        }
        got += 1;
        if got.is_multiple_of(REPORT) {
            emitter.to(Target::Primary).emit("progress", &got).await?;
        }
    }
    emitter.to(Target::Primary).emit("done", &got).await?;
    // Until the primary's disconnect.
    w.disconnecting().await;
    Ok(())
}
