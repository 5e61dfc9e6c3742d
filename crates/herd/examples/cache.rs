//! The shared cache, end to end: the primary serves the caches, four
//! workers ask for one missing key at once, and one load answers them all.
//!
//! ```text
//! cargo run -p herd --example cache
//! ```
//! prints which worker loaded, what each got, and the cache's counters.

use std::time::Duration;

use herd::{CacheOptions, CacheService, Event, Primary, Role, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match herd::role() {
        Role::Primary => {
            let primary = Primary::new()?;
            // Before the first fork: the workers' requests find it there.
            let service = CacheService::new(&primary)?;
            let mut events = primary.events();
            for _ in 0..4 {
                primary.fork()?;
            }
            let mut left = 4;
            while let Some(event) = events.next().await {
                match event {
                    Event::Message { worker, message } => {
                        println!("worker {worker}: {}", message.decode::<String>()?);
                    }
                    Event::Exit { .. } => {
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            for (name, stats) in service.stats() {
                println!(
                    "cache {name}: {} load(s), {} hit(s), {} miss(es)",
                    stats.loads, stats.hits, stats.misses
                );
            }
        }
        Role::Worker => {
            let worker = Worker::connect().await?;
            let greetings = worker
                .cache(
                    "greetings",
                    CacheOptions::default().expire(Duration::from_secs(60)),
                )
                .await?;
            let me = worker.id();
            let text: String = greetings
                .get_or_load("hello", || async move {
                    // A slow source: the other workers wait for this load.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(format!("hello, loaded by worker {me}"))
                })
                .await?;
            worker.send(&text).await?;
            // Read again: the local copy answers, with no message.
            let again: Option<String> = greetings.get("hello").await?;
            assert_eq!(again.as_deref(), Some(text.as_str()));
            worker.flush().await;
        }
    }
    Ok(())
}
