//! A worker sampling itself (feature `profile`): `pprof`'s SIGPROF
//! sampler over every thread of the process, drawn as a flamegraph. It
//! runs on a blocking thread of its own: the worker's runtime goes on
//! serving while it samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Samples per second.
const FREQUENCY: i32 = 99;

/// One profiler per process at a time (pprof's sampler is process-wide).
static RUNNING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

pub(super) async fn profile(length: Duration) -> Result<String, String> {
    if RUNNING.swap(true, Ordering::SeqCst) {
        return Err("a profile of this worker is under way already".into());
    }
    let running = Running;
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| format!("cannot start the profiler: {e}"))?;
        std::thread::sleep(length);
        let report = guard
            .report()
            .build()
            .map_err(|e| format!("cannot build the profile: {e}"))?;
        drop(guard);
        let mut svg = Vec::new();
        report
            .flamegraph(&mut svg)
            .map_err(|e| format!("cannot draw the flamegraph: {e}"))?;
        String::from_utf8(svg).map_err(|e| format!("the flamegraph is not UTF-8: {e}"))
    })
    .await
    .map_err(|e| format!("the profiler's thread failed: {e}"))?
}
