//! Requests a worker served: counted by [`Worker::serve`](super::Worker::serve)
//! in the one layer it already puts in front of the application, and sent
//! with each heartbeat, as cluster2's heartbeats carried transactions and
//! their durations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The upper bounds of the latency histogram's buckets, in milliseconds
/// (a last bucket holds the slower ones).
pub const LATENCY_BOUNDS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// Counts since the worker started.
#[derive(Default)]
pub(crate) struct Requests {
    total: AtomicU64,
    in_flight: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
}

/// What [`Requests`] says at one moment.
pub(crate) struct Counts {
    pub total: u64,
    pub in_flight: u64,
    pub sum_us: u64,
    /// Requests per latency bucket (not cumulative), the last one slower
    /// than every bound.
    pub buckets: Vec<u64>,
}

#[cfg_attr(not(feature = "axum"), allow(dead_code))]
impl Requests {
    /// A request begins; it is counted when the guard drops (when the
    /// response is ready, or the request was abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            requests: self.clone(),
            start: Instant::now(),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            total: self.total.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A request under way.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct InFlight {
    requests: Arc<Requests>,
    start: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let r = &self.requests;
        let took = self.start.elapsed();
        let ms = took.as_secs_f64() * 1000.0;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        r.buckets[i].fetch_add(1, Ordering::Relaxed);
        r.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        r.total.fetch_add(1, Ordering::Relaxed);
        r.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `q` quantile (0 to 1) of a histogram of [`LATENCY_BOUNDS_MS`]
/// buckets, in milliseconds, interpolated within its bucket (as
/// Prometheus's `histogram_quantile`); `None` for an empty one. Past the
/// last bound, the last bound.
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total = buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0.0;
    for (i, &n) in buckets.iter().enumerate() {
        let n = n as f64;
        if n > 0.0 && below + n >= rank {
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BOUNDS_MS.get(i - 1).copied().unwrap_or(5000.0)
            };
            let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(lower);
            };
            return Some(lower + (upper - lower) * ((rank - below) / n).clamp(0.0, 1.0));
        }
        below += n;
    }
    LATENCY_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_their_latency() {
        let r = Arc::new(Requests::default());
        let a = r.begin();
        assert_eq!(r.counts().in_flight, 1);
        drop(a);
        let c = r.counts();
        assert_eq!((c.total, c.in_flight, c.buckets[0]), (1, 0, 1));
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut b = vec![0u64; LATENCY_BOUNDS_MS.len() + 1];
        assert_eq!(quantile_ms(&b, 0.5), None);
        // 100 requests between 10 and 25 ms.
        b[4] = 100;
        assert_eq!(quantile_ms(&b, 0.5), Some(17.5));
        assert_eq!(quantile_ms(&b, 0.99), Some(10.0 + 15.0 * 0.99));
        // More buckets than bounds (a worker's own heartbeat), or huge
        // counts: an answer, never a panic.
        let mut odd = vec![0u64; 20];
        odd[15] = u64::MAX;
        odd[16] = u64::MAX;
        assert_eq!(quantile_ms(&odd, 0.5), Some(5000.0));
        // One very slow one: the p99 stays in the bulk, the max bucket is
        // capped at the last bound.
        b[12] = 1;
        assert!(quantile_ms(&b, 0.99).unwrap() < 25.0);
        assert_eq!(quantile_ms(&b, 1.0), Some(5000.0));
    }
}
