//! cluster2's services between a primary and its workers: the emitter
//! (an event that reaches the processes it names) and the status registry
//! (each worker's view of a named status, read and set from the primary).
//!
//!     cargo run --example services
//!
//! The primary forks two workers; each registers a `hits` status with an
//! update, and emits `hello` to every worker (the other one through the
//! primary). The primary reads `hits` everywhere, sets it to 100, reads it
//! again, tells every worker `bye` and ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::services::Target;
use herd::{Primary, Role, Worker};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Hello {
    worker: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match herd::role() {
        Role::Primary => primary().await,
        Role::Worker => worker().await,
    }
}

async fn primary() -> Result<(), Box<dyn std::error::Error>> {
    let primary = Primary::new()?;
    // Made before the forks, so nothing the workers say is missed.
    let emitter = primary.emitter()?;
    let statuses = primary.statuses()?;
    let mut ready = emitter.on::<u32>("ready");
    for _ in 0..2 {
        primary.fork()?;
    }
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(10), ready.next()).await?;
        println!("primary: worker {:?} is ready", r.map(|r| r.payload));
    }
    let hits = statuses.get_status("hits", Duration::from_secs(1)).await;
    println!(
        "primary: hits {:?}, no answer from {:?}",
        hits.answers, hits.missing
    );
    let set = statuses
        .set_status("hits", &100, Duration::from_secs(1))
        .await?;
    println!("primary: set hits=100, applied by {:?}", set.applied);
    let hits = statuses.get_status("hits", Duration::from_secs(1)).await;
    println!("primary: hits {:?}", hits.answers);
    emitter.emit_to(Target::AllWorkers, "bye", &()).await?;
    primary.disconnect().await;
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let worker = Worker::connect().await?;
    let me = worker.id();
    let emitter = worker.emitter()?;
    let mut hellos = emitter.on::<Hello>("hello");
    let mut bye = emitter.once::<()>("bye");

    let hits = Arc::new(AtomicU64::new(u64::from(me)));
    let (read, write) = (hits.clone(), hits.clone());
    worker
        .statuses()?
        .register_with_update(
            "hits",
            move || {
                let n = read.load(Ordering::Relaxed);
                async move { n }
            },
            move |n: u64| {
                write.store(n, Ordering::Relaxed);
                async { Ok(()) }
            },
        )
        .await?;

    // To every worker: this one at once, the other through the primary.
    emitter
        .emit_to(Target::AllWorkers, "hello", &Hello { worker: me })
        .await?;
    emitter.to(Target::Primary).emit("ready", &me).await?;
    loop {
        tokio::select! {
            Some(hello) = hellos.next() => {
                println!("worker {me}: hello from worker {} ({:?})", hello.payload.worker, hello.from);
            }
            _ = bye.next() => break,
        }
    }
    println!("worker {me}: bye");
    worker.disconnect();
    worker.disconnecting().await;
    Ok(())
}
