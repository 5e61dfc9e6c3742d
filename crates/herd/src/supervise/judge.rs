//! Recycling by the application's judgement, as cluster2's `shouldKill`:
//! a predicate over how a worker is doing ([`WorkerHealth`]), and the
//! built-in [`Degraded`] rule for a worker that leaks or slows down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::RecycleReason;

/// How a worker is doing, as its last heartbeat said: what a recycling
/// predicate ([`Supervision::recycle_when`](crate::Supervision::recycle_when))
/// judges.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct WorkerHealth {
    /// The worker's id.
    pub worker: u32,
    /// How long it has been up.
    pub uptime: Duration,
    /// Its resident memory in bytes.
    pub rss_bytes: u64,
    /// CPU seconds it used per second over the last interval.
    pub cpu_per_sec: Option<f64>,
    /// Requests served since it started.
    pub requests: u64,
    /// Requests per second over the last interval.
    pub requests_per_sec: Option<f64>,
    /// Requests under way.
    pub in_flight: u64,
    /// The median request duration over the last interval, in ms.
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile over the last interval, in ms.
    pub latency_p99_ms: Option<f64>,
    /// What the application reports ([`Worker::set_status`](crate::Worker::set_status)).
    pub app: serde_json::Map<String, serde_json::Value>,
}

/// What a user predicate is: a reason to replace the worker, or none.
type JudgeFn = dyn Fn(&WorkerHealth) -> Option<String> + Send + Sync;

/// A user predicate.
#[derive(Clone)]
pub(crate) struct Judge(pub Arc<JudgeFn>);

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Judge")
    }
}

/// cluster2's degraded worker: its requests per second fell more than
/// `drop` (10%) below its own peak while its CPU per second and its
/// memory rose above what they were at that peak, for `beats` (5)
/// heartbeats in a row. A peak under `min_peak_rps` (1 request per
/// second) is no peak: an idle worker is not judged.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct Degraded {
    pub(crate) drop: f64,
    pub(crate) beats: u32,
    pub(crate) min_peak_rps: f64,
}

impl Default for Degraded {
    fn default() -> Degraded {
        Degraded {
            drop: 0.1,
            beats: 5,
            min_peak_rps: 1.0,
        }
    }
}

impl Degraded {
    /// The defaults: 10% below peak, 5 heartbeats, a peak of at least 1
    /// request per second.
    pub fn new() -> Degraded {
        Degraded::default()
    }

    /// How far below its peak (a share: 0.1 is 10%) a worker must fall.
    pub fn drop(mut self, share: f64) -> Self {
        self.drop = share.clamp(0.0, 1.0);
        self
    }

    /// For how many heartbeats in a row.
    pub fn beats(mut self, beats: u32) -> Self {
        self.beats = beats.max(1);
        self
    }

    /// The smallest peak, in requests per second, worth judging.
    pub fn min_peak_rps(mut self, rps: f64) -> Self {
        self.min_peak_rps = rps.max(0.0);
        self
    }
}

/// One worker's course, heartbeat by heartbeat, for [`Degraded`].
#[derive(Debug, Default)]
pub(crate) struct Decline {
    /// Its best interval: requests per second, CPU per second and memory
    /// then.
    peak: Option<(f64, f64, u64)>,
    streak: u32,
    last_beat: Option<Instant>,
}

impl Decline {
    /// Takes in the heartbeat that came at `at` (once per heartbeat);
    /// says when the worker is degraded.
    pub fn observe(
        &mut self,
        rule: &Degraded,
        at: Instant,
        h: &WorkerHealth,
    ) -> Option<RecycleReason> {
        if self.last_beat == Some(at) {
            return None;
        }
        self.last_beat = Some(at);
        let (Some(rps), Some(cpu)) = (h.requests_per_sec, h.cpu_per_sec) else {
            return None;
        };
        match self.peak {
            Some((peak, ..)) if rps <= peak => {}
            _ => {
                self.peak = Some((rps, cpu, h.rss_bytes));
                self.streak = 0;
                return None;
            }
        }
        let (peak, peak_cpu, peak_rss) = self.peak?;
        let worse = peak >= rule.min_peak_rps
            && rps < peak * (1.0 - rule.drop)
            && cpu > peak_cpu
            && h.rss_bytes > peak_rss;
        self.streak = if worse { self.streak + 1 } else { 0 };
        (self.streak >= rule.beats).then_some(RecycleReason::Degraded {
            worker: h.worker,
            requests_per_sec: rps,
            peak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(rps: f64, cpu: f64, rss: u64) -> WorkerHealth {
        WorkerHealth {
            worker: 7,
            rss_bytes: rss,
            cpu_per_sec: Some(cpu),
            requests_per_sec: Some(rps),
            ..WorkerHealth::default()
        }
    }

    #[test]
    fn a_worker_slower_while_costlier_for_five_beats_is_degraded() {
        let rule = Degraded::new();
        let mut d = Decline::default();
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_secs(i);
        assert!(
            d.observe(&rule, at(0), &beat(100.0, 0.5, 100)).is_none(),
            "the peak"
        );
        for i in 1..5 {
            assert!(
                d.observe(&rule, at(i), &beat(80.0, 0.6, 120)).is_none(),
                "beat {i}"
            );
        }
        // The same heartbeat seen again at the next tick counts once.
        assert!(d.observe(&rule, at(4), &beat(80.0, 0.6, 120)).is_none());
        let r = d
            .observe(&rule, at(5), &beat(80.0, 0.6, 120))
            .expect("degraded");
        assert!(r.to_string().contains("80.0 requests/s"), "{r}");
    }

    #[test]
    fn slower_but_not_costlier_or_an_idle_worker_is_not_degraded() {
        let rule = Degraded::new().beats(2);
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_secs(i);
        // Less traffic, less CPU: the load fell, not the worker.
        let mut d = Decline::default();
        d.observe(&rule, at(0), &beat(100.0, 0.5, 100));
        for i in 1..10 {
            assert!(d.observe(&rule, at(i), &beat(50.0, 0.3, 120)).is_none());
        }
        // A peak under the minimum is no peak.
        let mut d = Decline::default();
        d.observe(&rule, at(0), &beat(0.5, 0.01, 100));
        for i in 1..10 {
            assert!(d.observe(&rule, at(i), &beat(0.1, 0.02, 120)).is_none());
        }
        // A recovery resets the streak.
        let mut d = Decline::default();
        d.observe(&rule, at(0), &beat(100.0, 0.5, 100));
        assert!(d.observe(&rule, at(1), &beat(80.0, 0.6, 120)).is_none());
        assert!(d.observe(&rule, at(2), &beat(95.0, 0.6, 120)).is_none());
        assert!(d.observe(&rule, at(3), &beat(80.0, 0.6, 120)).is_none());
        assert!(d.observe(&rule, at(4), &beat(80.0, 0.6, 120)).is_some());
    }
}
