//! The worker's heartbeat: liveness and load, sent to the primary at each
//! interval.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Worker;
use crate::channel::wire::Control;

/// Reports liveness and load at each interval. It runs on the worker's
/// runtime, so a worker whose runtime is blocked stops beating, and the
/// primary's nanny notices.
pub(super) async fn run(worker: Worker, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = std::time::Instant::now();
    loop {
        tick.tick().await;
        let (rss, cpu_ms) = own_usage();
        let r = worker.inner.counting.requests.counts();
        let beat = crate::channel::wire::Beat {
            requests: r.total,
            in_flight: r.in_flight,
            latency_sum_us: r.sum_us,
            latency_buckets: r.buckets,
            uptime_ms: started.elapsed().as_millis() as u64,
            rss,
            cpu_ms,
            open: worker.inner.busy.count.load(Ordering::Relaxed) as u64,
            handled: worker.inner.busy.handled.load(Ordering::Relaxed),
            app: worker.inner.status.lock().unwrap().clone(),
        };
        if worker
            .inner
            .outbox
            .control(&Control::Heartbeat(beat), Vec::new())
            .is_err()
        {
            return;
        }
    }
}

/// This process's resident memory (bytes) and CPU time (ms), from /proc;
/// zeros where /proc cannot be read.
fn own_usage() -> (u64, u64) {
    use crate::procfs::{cpu_ms, rss_bytes, Proc};
    (
        rss_bytes(Proc::Me).unwrap_or(0),
        cpu_ms(Proc::Me).unwrap_or(0),
    )
}
