//! Requests a worker served: counted by [`Worker::serve`](super::Worker::serve)
//! in the per-request future its hyper service makes anyway
//! (`serve_conn.rs`), and sent with each heartbeat, as cluster2's heartbeats carried transactions and
//! their durations.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// The upper bounds of the latency histogram's buckets, in milliseconds
/// (a last bucket holds the slower ones).
pub const LATENCY_BOUNDS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// How many sets of counters a worker keeps; each runtime thread adds to
/// one (threads beyond this share), and a reading adds them up.
const SHARDS: usize = 16;

/// What `serve`'s layer touches on every request: the counts and the
/// disconnect flag, `'static` (allocated once per worker, for the life of
/// the process) so that the layer holds a plain reference, and the
/// per-request clone of the service that hyper makes touches no reference
/// count. Each thread counts in its own cache line: with one shared set,
/// a worker's runtime threads took turns owning it on every request.
pub(crate) struct Counting {
    pub requests: Requests,
    /// Set when the disconnect begins, as the worker's `disconnecting`
    /// channel is; `serve` reads it on every response.
    pub disconnecting: AtomicBool,
}

impl Counting {
    /// A new one, for the life of the process (a worker process connects
    /// once).
    pub fn leak() -> &'static Counting {
        Box::leak(Box::new(Counting {
            requests: Requests::default(),
            disconnecting: AtomicBool::new(false),
        }))
    }
}

/// Counts since the worker started, in [`SHARDS`] cache-line-sized sets.
pub(crate) struct Requests {
    shards: [Shard; SHARDS],
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

/// One thread's counters. A request's total is the sum of its buckets,
/// and those in flight are those begun less those counted.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    begun: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
}

/// This thread's shard index, given out in turn on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        i.get()
    })
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
    pub fn begin(&'static self) -> InFlight {
        let shard = &self.shards[shard_index()];
        shard.begun.fetch_add(1, Ordering::Relaxed);
        InFlight {
            shard,
            start: Instant::now(),
        }
    }

    pub fn counts(&self) -> Counts {
        let mut buckets = vec![0u64; LATENCY_BOUNDS_MS.len() + 1];
        let mut sum_us = 0;
        for s in &self.shards {
            for (n, b) in buckets.iter_mut().zip(&s.buckets) {
                *n += b.load(Ordering::Relaxed);
            }
            sum_us += s.sum_us.load(Ordering::Relaxed);
        }
        let total = buckets.iter().sum();
        // Read after the buckets: every request counted was begun before.
        let begun: u64 = self
            .shards
            .iter()
            .map(|s| s.begun.load(Ordering::Relaxed))
            .sum();
        Counts {
            total,
            in_flight: begun.saturating_sub(total),
            sum_us,
            buckets,
        }
    }
}

/// A request under way.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct InFlight {
    shard: &'static Shard,
    start: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        let ms = took.as_secs_f64() * 1000.0;
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        // Added to the shard it began in: a request may end on another
        // thread, and sums over shards do not mind.
        self.shard.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.shard
            .sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
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
        let r = &Counting::leak().requests;
        let a = r.begin();
        assert_eq!(r.counts().in_flight, 1);
        drop(a);
        let c = r.counts();
        assert_eq!((c.total, c.in_flight, c.buckets[0]), (1, 0, 1));
    }

    #[test]
    fn counts_add_up_over_threads() {
        let r = &Counting::leak().requests;
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        drop(r.begin());
                    }
                    r.begin()
                })
            })
            .collect();
        let open: Vec<InFlight> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let c = r.counts();
        let n = (SHARDS + 3) as u64;
        assert_eq!((c.total, c.in_flight), (100 * n, n));
        drop(open);
        let c = r.counts();
        assert_eq!((c.total, c.in_flight), (101 * n, 0));
        assert_eq!(c.buckets.iter().sum::<u64>(), c.total);
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
