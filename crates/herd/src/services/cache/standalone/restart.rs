//! The store worker's life: forked by the cache service, restarted when
//! it dies by itself, after a delay that grows while it keeps dying young.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::{ENV_DIR, ENV_STORE};
use super::{Phase, Standalone};
use crate::Event;

/// The first restart's delay.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two restarts.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A store worker that lived this long died old: the delay starts again.
const LIVED_LONG: Duration = Duration::from_secs(30);

/// The delay before the next start, after a store worker that lived
/// `lived` died, when the delay before it was `last` (`None`: the first).
pub(super) fn next_delay(last: Option<Duration>, lived: Duration) -> Duration {
    match last {
        Some(last) if lived < LIVED_LONG => (last * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// Starts the store worker now, and again each time it dies by itself.
pub(super) fn supervise(this: Arc<Standalone>) {
    tokio::spawn(async move {
        let mut delay = None;
        loop {
            let started = Instant::now();
            let Some(deliberate) = run_one(&this).await else {
                return;
            };
            if deliberate {
                tracing::info!("the cache's store worker was stopped: it is not restarted");
                this.lock().phase = Phase::Stopped;
                return;
            }
            let d = next_delay(delay, started.elapsed());
            delay = Some(d);
            {
                let mut state = this.lock();
                if let Phase::Down { until, .. } = &mut state.phase {
                    *until = Some(Instant::now() + d);
                }
            }
            tracing::warn!(
                delay_ms = d.as_millis() as u64,
                "restarting the cache's store worker"
            );
            // A delay of policy, not a wait for an event.
            tokio::time::sleep(d).await;
            if matches!(this.lock().phase, Phase::Stopped) {
                return;
            }
            this.restarts.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Forks one store worker and waits for its end: `Some(true)` when the
/// primary stopped it, `Some(false)` when it died (or could not start),
/// `None` when the service was stopped meanwhile.
async fn run_one(this: &Arc<Standalone>) -> Option<bool> {
    {
        let mut state = this.lock();
        if matches!(state.phase, Phase::Stopped) {
            return None;
        }
        state.phase = Phase::Starting {
            id: None,
            early_hello: None,
            queue: Default::default(),
        };
    }
    let mut env = vec![(ENV_STORE.to_string(), "1".to_string())];
    if let Some(d) = &this.dir {
        env.push((ENV_DIR.to_string(), d.display().to_string()));
    }
    let (worker, mut events) = match this.primary.fork_with_env_and_events(env) {
        Ok(forked) => forked,
        Err(e) => {
            tracing::error!(error = %e, "cannot fork the cache's store worker");
            let mut state = this.lock();
            state.phase = Phase::Down {
                why: format!("it could not be forked: {e}"),
                until: None,
            };
            return Some(false);
        }
    };
    let id = worker.id();
    let early = {
        let mut state = this.lock();
        match &mut state.phase {
            Phase::Starting {
                id: slot,
                early_hello,
                ..
            } => {
                *slot = Some(id);
                *early_hello == Some(id)
            }
            _ => false,
        }
    };
    if early {
        this.hello(id);
    }
    tracing::debug!(
        worker = id,
        pid = worker.pid(),
        "forked the cache's store worker"
    );
    let status = loop {
        match events.next().await {
            Some(Event::Exit { status, .. }) => break Some(status),
            Some(_) => {}
            None => break None,
        }
    };
    let why = match status {
        Some(s) => match (s.code, s.signal) {
            (_, Some(sig)) => format!("it was killed by {sig}"),
            (Some(code), None) => format!("it exited with code {code}"),
            (None, None) => "it exited".to_string(),
        },
        None => "its events ended".to_string(),
    };
    this.lost(id, why);
    Some(worker.exited_after_disconnect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_while_it_dies_young_and_is_bounded() {
        let young = Duration::from_millis(5);
        let mut d = next_delay(None, young);
        assert_eq!(d, FIRST_DELAY);
        let mut seen = vec![d];
        for _ in 0..10 {
            d = next_delay(Some(d), young);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[2], Duration::from_millis(400));
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*seen.last().unwrap(), MAX_DELAY);
        // One that lived long starts the delay again.
        assert_eq!(next_delay(Some(MAX_DELAY), LIVED_LONG), FIRST_DELAY);
    }
}
