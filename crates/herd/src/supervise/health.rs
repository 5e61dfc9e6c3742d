//! The nanny and the recyclers: whether a ready worker should be replaced,
//! and why. Pure: it judges the facts it is given at the time it is given.

use std::time::Instant;

use super::config::Supervision;
use super::core::WorkerFacts;
use super::events::RecycleReason;

/// Why worker `id` (ready, not leaving) should be replaced now, if it
/// should: a missing heartbeat first, then age, connections handled
/// (against `recycle_after`, its own limit), memory (`rss` is asked only
/// when a memory limit is set).
pub(crate) fn check(
    cfg: &Supervision,
    id: u32,
    w: &WorkerFacts,
    recycle_after: Option<u64>,
    rss: impl FnOnce() -> Option<u64>,
    now: Instant,
) -> Option<RecycleReason> {
    if let Some(timeout) = cfg.heartbeat_timeout {
        let last = w.heartbeat.map_or(w.started, |(at, _)| at);
        if now.saturating_duration_since(last) > timeout {
            return Some(RecycleReason::Hung {
                worker: id,
                timeout,
            });
        }
    }
    if let Some(limit) = cfg.max_age {
        if now.saturating_duration_since(w.started) > limit {
            return Some(RecycleReason::Age { worker: id, limit });
        }
    }
    if let (Some(limit), Some((_, handled))) = (recycle_after, w.heartbeat) {
        if handled >= limit {
            return Some(RecycleReason::Requests {
                worker: id,
                handled,
                limit,
            });
        }
    }
    if let Some(limit) = cfg.max_memory {
        if let Some(rss) = rss() {
            if rss > limit {
                return Some(RecycleReason::Memory {
                    worker: id,
                    rss,
                    limit,
                });
            }
        }
    }
    if let (Some(judge), Some(health)) = (&cfg.recycle_when, &w.health) {
        if let Some(reason) = (judge.0)(health) {
            return Some(RecycleReason::App { worker: id, reason });
        }
    }
    None
}

/// Whether a worker started at `started` and still not ready is past the
/// boot timeout.
pub(crate) fn boot_overdue(cfg: &Supervision, started: Instant, now: Instant) -> bool {
    now.saturating_duration_since(started) > cfg.boot_timeout
}

/// Spreads recycling points: a xorshift generator, enough for jitter.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The connections after which a new worker is recycled:
    /// `max_requests` plus 0 to `max_requests_jitter`.
    pub fn recycle_point(&mut self, cfg: &Supervision) -> Option<u64> {
        let max = cfg.max_requests?;
        let jitter = cfg.max_requests_jitter;
        Some(
            max + if jitter > 0 {
                self.next() % (jitter + 1)
            } else {
                0
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn worker(t: Instant) -> WorkerFacts {
        WorkerFacts {
            ready: true,
            started: t,
            leaving: false,
            heartbeat: Some((t, 0)),
            health: None,
            unready: None,
            drained: false,
        }
    }

    #[test]
    fn a_silent_worker_is_hung_and_that_comes_before_any_recycling() {
        let cfg = Supervision::new(1)
            .heartbeat_timeout(secs(2))
            .max_age(secs(1));
        let t = Instant::now();
        let w = worker(t);
        assert_eq!(check(&cfg, 7, &w, None, || None, t + secs(1)), None);
        let r = check(&cfg, 7, &w, None, || None, t + secs(3)).unwrap();
        assert_eq!(r.to_string(), "worker 7 sent no heartbeat for 2s");
        let beating = WorkerFacts {
            heartbeat: Some((t + secs(2), 0)),
            health: None,
            ..w
        };
        let r = check(&cfg, 7, &beating, None, || None, t + secs(3)).unwrap();
        assert_eq!(r.to_string(), "worker 7 is older than 1s");
    }

    #[test]
    fn recycling_by_requests_uses_the_worker_s_own_limit() {
        let cfg = Supervision::new(1).heartbeat_timeout(None);
        let t = Instant::now();
        let w = WorkerFacts {
            heartbeat: Some((t, 130)),
            health: None,
            ..worker(t)
        };
        assert_eq!(check(&cfg, 1, &w, Some(131), || None, t), None);
        let r = check(&cfg, 1, &w, Some(130), || None, t).unwrap();
        assert_eq!(
            r.to_string(),
            "worker 1 handled 130 connections (limit 130)"
        );
    }

    #[test]
    fn recycling_by_memory_reads_memory_only_when_limited() {
        let t = Instant::now();
        let w = worker(t);
        let cfg = Supervision::new(1).heartbeat_timeout(None);
        assert_eq!(check(&cfg, 1, &w, None, || panic!("read"), t), None);
        let cfg = cfg.max_memory(1000);
        assert_eq!(check(&cfg, 1, &w, None, || Some(1000), t), None);
        let r = check(&cfg, 1, &w, None, || Some(1001), t).unwrap();
        assert_eq!(
            r.to_string(),
            "worker 1 uses 1001 bytes of memory (limit 1000)"
        );
    }

    #[test]
    fn jitter_spreads_recycle_points_within_its_range() {
        let cfg = Supervision::new(1)
            .max_requests(30)
            .max_requests_jitter(300);
        let mut j = Jitter::new(42);
        let points: Vec<u64> = (0..50).map(|_| j.recycle_point(&cfg).unwrap()).collect();
        assert!(points.iter().all(|p| (30..=330).contains(p)), "{points:?}");
        assert!(points.iter().any(|p| *p != points[0]), "{points:?}");
        let plain = Supervision::new(1).max_requests(30);
        assert_eq!(j.recycle_point(&plain), Some(30));
        assert_eq!(j.recycle_point(&Supervision::new(1)), None);
    }

    #[test]
    fn boot_is_overdue_after_the_timeout() {
        let cfg = Supervision::new(1).boot_timeout(secs(5));
        let t = Instant::now();
        assert!(!boot_overdue(&cfg, t, t + secs(5)));
        assert!(boot_overdue(&cfg, t, t + secs(6)));
    }
}
