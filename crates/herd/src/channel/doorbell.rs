//! Doorbells: the primary's thread watches, for a few microseconds, for a
//! worker's next write instead of going to sleep at once.
//!
//! Waking a thread that sleeps in `epoll_wait` on another CPU is the
//! dearest part of a message between processes on a virtual machine. In
//! the cache benchmark it was a fifth of the worker's CPU, about 4 us per
//! write on this project's 2-CPU VM (docs/benchmarks.md, "Doorbells"). A
//! worker busy with requests writes again a few microseconds after the
//! primary answered its last ones. If the primary's thread is still awake
//! then, the write costs no wake-up.
//!
//! So each herd-aware worker has a slot (a counter on a cache line of its
//! own) in one page that the primary shares with its workers, and bumps it
//! after each write to its channel ([`Doorbell::ring`]). Before the
//! herd-primary thread sleeps, it watches the page ([`Spinner`]) for up to
//! its limit: [`DEFAULT_SPIN`], or `HERD_PRIMARY_SPIN_US` microseconds
//! (0 turns the watch off). A bump ends the watch, and the thread's next
//! poll finds the frame without having slept.
//!
//! The watch is for conversations: it runs only when the thread answered
//! a worker's request (a service's, such as a cache get, or the
//! application's) since it last slept ([`Doorbells::conversing`]), since
//! that worker is then likely to ask again at once. Other wake-ups (a new
//! connection to hand off, a heartbeat) sleep at once: the watch would
//! hold up the next of them for nothing, and take a CPU that the workers
//! need.
//!
//! A watch that sees no bump costs its whole limit, so it backs off: after
//! one that ends at its limit, the next 2, then 4, up to 1024 chances go
//! without a watch; one that ends with a bump starts over. And it gives
//! way: it yields the CPU every few microseconds, and when a yield comes
//! back late (another process had to run on this CPU: every CPU is busy),
//! the watch ends as one that saw nothing.
//!
//! The page is a hint and nothing more. Frames still go through the
//! socket, in order, and are read there. A worker that writes garbage into
//! the page, never rings or rings without cease changes only how long the
//! primary watches, never past the limit. The page cannot shrink under
//! the primary ([`SharedPage`]). Worker ids share the 64 slots modulo 64;
//! a bump by either ends a watch.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::SharedPage;

/// How long the primary's thread watches for a write before it sleeps,
/// unless `HERD_PRIMARY_SPIN_US` says otherwise.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// The longest watch `HERD_PRIMARY_SPIN_US` may set.
pub const MAX_SPIN: Duration = Duration::from_millis(1);
/// The environment variable that sets the watch, in microseconds.
pub const ENV_SPIN_US: &str = "HERD_PRIMARY_SPIN_US";
/// How often a watch yields the CPU (`sched_yield`).
const YIELD_EVERY: Duration = Duration::from_micros(5);
/// A yield that takes longer gave the CPU to another process: the CPUs
/// are busy, and the watch gives way.
const CONTENDED: Duration = Duration::from_micros(20);
/// Slots in the page: one cache line (8 words) each.
const SLOTS: usize = crate::sys::SHARED_WORDS / 8;
/// After this many watches in a row that saw nothing, the spinner skips
/// 1024 sleeps between watches.
const MAX_FAILS: u32 = 10;

/// What the herd-primary thread's watches came to since its primary
/// started ([`Primary::watch_stats`](crate::Primary::watch_stats)): shown
/// in the monitor's `/status` (`watch`) and `/metrics`
/// (`herd_primary_watches_total`, `herd_primary_watch_seconds_total`), so
/// that the CPU the watch costs is in plain sight.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchStats {
    /// The longest one watch may last, in microseconds
    /// (`HERD_PRIMARY_SPIN_US`).
    pub limit_us: u64,
    /// Watches that a worker's write ended: each spared that worker the
    /// wake-up of a sleeping primary.
    pub rang: u64,
    /// Watches that reached their limit.
    pub timed_out: u64,
    /// Watches that gave the CPU back early, to another process.
    pub gave_way: u64,
    /// Seconds spent watching, all watches together.
    pub seconds: f64,
}

/// How one watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Rang,
    TimedOut,
    GaveWay,
}

/// The primary's side: the page its workers ring.
pub(crate) struct Doorbells {
    page: SharedPage,
    fd: OwnedFd,
    /// A worker's request was answered since the thread last slept.
    conversing: AtomicBool,
    /// The watches so far, by [`Outcome`], and their nanoseconds.
    outcomes: [AtomicU64; 3],
    nanos: AtomicU64,
    limit: Duration,
}

impl Doorbells {
    /// A new page, for watches of up to `limit`.
    pub(crate) fn new(limit: Duration) -> io::Result<Doorbells> {
        let (page, fd) = SharedPage::create(c"herd-doorbells")?;
        Ok(Doorbells {
            page,
            fd,
            conversing: AtomicBool::new(false),
            outcomes: Default::default(),
            nanos: AtomicU64::new(0),
            limit,
        })
    }

    /// The watches so far.
    pub(crate) fn stats(&self) -> WatchStats {
        let n = |o: Outcome| self.outcomes[o as usize].load(Ordering::Relaxed);
        WatchStats {
            limit_us: self.limit.as_micros() as u64,
            rang: n(Outcome::Rang),
            timed_out: n(Outcome::TimedOut),
            gave_way: n(Outcome::GaveWay),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Notes that the primary is answering a worker's request: the next
    /// sleep is worth a watch.
    pub(crate) fn conversing(&self) {
        self.conversing.store(true, Ordering::Relaxed);
    }

    /// The descriptor a worker inherits (`ENV_DOORBELL_FD`).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// A number that changes whenever any worker rings.
    fn rung(&self) -> u64 {
        let words = self.page.words();
        (0..SLOTS).fold(0u64, |sum, s| {
            sum.wrapping_add(words[s * 8].load(Ordering::Relaxed))
        })
    }
}

/// A worker's side: its slot in the primary's page.
pub(crate) struct Doorbell {
    page: SharedPage,
    slot: usize,
}

impl Doorbell {
    /// The doorbell `ENV_DOORBELL_FD` names, for worker `id`; `None` when
    /// the primary gave none. One that cannot be mapped is logged and
    /// done without: it only saves the primary wake-ups.
    pub(crate) fn from_env(id: u32) -> Option<Doorbell> {
        let var = crate::ENV_DOORBELL_FD;
        let text = std::env::var(var).ok()?;
        let opened = text
            .parse::<i32>()
            .map_err(|_| io::Error::other(format!("{text:?} is not a descriptor number")))
            .and_then(crate::sys::take_inherited_fd)
            .and_then(|fd| Doorbell::open(&fd, id));
        match opened {
            Ok(bell) => Some(bell),
            Err(e) => {
                tracing::warn!(error = %e, "{var} ignored: the primary will sleep between this worker's writes");
                None
            }
        }
    }

    pub(crate) fn open(fd: &OwnedFd, id: u32) -> io::Result<Doorbell> {
        let page = SharedPage::open(fd)?;
        let slot = (id as usize % SLOTS) * 8;
        Ok(Doorbell { page, slot })
    }

    /// Tells a watching primary that this worker just wrote.
    pub(crate) fn ring(&self) {
        self.page.words()[self.slot].fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell")
            .field("slot", &self.slot)
            .finish()
    }
}

/// When to watch: after a watch that saw nothing, skip the next 2, 4, ...
/// 1024 chances; after one that saw a ring, watch every time. Used from
/// one thread (the runtime's park hook); atomics only because the hook
/// must be `Sync`.
#[derive(Default)]
struct Backoff {
    skip: AtomicU32,
    fails: AtomicU32,
}

impl Backoff {
    /// Whether to watch before this sleep.
    fn watch_now(&self) -> bool {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Records how a watch ended.
    fn watched(&self, rang: bool) {
        if rang {
            self.fails.store(0, Ordering::Relaxed);
            return;
        }
        let fails = (self.fails.load(Ordering::Relaxed) + 1).min(MAX_FAILS);
        self.fails.store(fails, Ordering::Relaxed);
        self.skip.store(1 << fails, Ordering::Relaxed);
    }
}

/// The herd-primary runtime's park hook: watches the doorbells.
pub(crate) struct Spinner {
    bells: std::sync::Arc<Doorbells>,
    backoff: Backoff,
}

impl Spinner {
    pub(crate) fn new(bells: std::sync::Arc<Doorbells>) -> Spinner {
        Spinner {
            bells,
            backoff: Backoff::default(),
        }
    }

    /// Called before the thread sleeps: watches the page for up to the
    /// limit, when a request was answered since the last sleep and the
    /// backoff does not say to skip this time.
    pub(crate) fn before_park(&self) {
        if !self.bells.conversing.swap(false, Ordering::Relaxed) || !self.backoff.watch_now() {
            return;
        }
        let start = Instant::now();
        let outcome = self.watch();
        let bells = &self.bells;
        bells.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        bells.nanos.fetch_add(took, Ordering::Relaxed);
        self.backoff.watched(outcome == Outcome::Rang);
    }

    /// Watches until a worker rings, or the limit. Every [`YIELD_EVERY`]
    /// the watch yields the CPU, so that a process waiting for it (a
    /// worker, on a machine whose CPUs are all busy) runs instead of the
    /// watch; a yield that took longer than [`CONTENDED`] ends it.
    fn watch(&self) -> Outcome {
        let before = self.bells.rung();
        let start = Instant::now();
        let mut yielded = start;
        loop {
            // The clock every 16 looks: a look is some 64 loads, the clock
            // a vDSO call.
            for _ in 0..16 {
                std::hint::spin_loop();
                if self.bells.rung() != before {
                    return Outcome::Rang;
                }
            }
            let now = Instant::now();
            if now - start >= self.bells.limit {
                return Outcome::TimedOut;
            }
            if now - yielded >= YIELD_EVERY {
                std::thread::yield_now();
                yielded = Instant::now();
                if yielded - now >= CONTENDED {
                    return Outcome::GaveWay;
                }
            }
        }
    }
}

/// The watch `HERD_PRIMARY_SPIN_US` sets ([`DEFAULT_SPIN`] when unset);
/// a value that is not a number of microseconds up to [`MAX_SPIN`] is
/// logged and the default used.
pub(crate) fn spin_limit() -> Duration {
    let text = std::env::var(ENV_SPIN_US).ok();
    parse_spin(text.as_deref()).unwrap_or_else(|why| {
        tracing::warn!("{why}");
        DEFAULT_SPIN
    })
}

/// The watch a value of `HERD_PRIMARY_SPIN_US` sets, or why it is refused.
fn parse_spin(text: Option<&str>) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_SPIN);
    };
    match text.trim().parse::<u64>() {
        Ok(us) if Duration::from_micros(us) <= MAX_SPIN => Ok(Duration::from_micros(us)),
        _ => Err(format!(
            "{ENV_SPIN_US}={text:?} ignored: give microseconds from 0 (no watch) to {}; \
             using {}",
            MAX_SPIN.as_micros(),
            DEFAULT_SPIN.as_micros()
        )),
    }
}

impl AsRawFd for Doorbells {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn backoff_doubles_its_skips_and_a_ring_resets_it() {
        let b = Backoff::default();
        assert!(b.watch_now());
        b.watched(false);
        let skipped = |b: &Backoff| (0..).take_while(|_| !b.watch_now()).count();
        assert_eq!(skipped(&b), 2);
        b.watched(false);
        assert_eq!(skipped(&b), 4);
        for _ in 0..20 {
            b.watched(false);
            let _ = skipped(&b);
        }
        b.watched(false);
        assert_eq!(skipped(&b), 1 << MAX_FAILS, "the skips stop growing");
        b.watched(true);
        assert!(b.watch_now(), "after a ring, the next sleep is watched");
        assert!(b.watch_now());
    }

    #[test]
    fn a_ring_in_another_mapping_ends_the_watch() {
        let bells = Arc::new(Doorbells::new(Duration::from_secs(30)).unwrap());
        // The worker's mapping of the same page, as it opens it.
        let fd = bells.fd.try_clone().unwrap();
        let bell = Doorbell::open(&fd, 67).unwrap();
        let spinner = Spinner::new(bells);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Rings until the watch saw it, however late the watch starts.
        let ringer = std::thread::spawn({
            let done = done.clone();
            move || {
                while !done.load(Ordering::Relaxed) {
                    bell.ring();
                    std::thread::yield_now();
                }
            }
        });
        // A watch may give way (this machine runs other tests): watch
        // again until one sees a ring, long before the limit.
        let t = Instant::now();
        while spinner.watch() != Outcome::Rang {
            assert!(t.elapsed() < Duration::from_secs(10), "no ring seen");
        }
        done.store(true, Ordering::Relaxed);
        ringer.join().unwrap();
    }

    #[test]
    fn a_watch_with_no_ring_ends_by_its_limit() {
        let spinner = Spinner::new(Arc::new(Doorbells::new(Duration::from_millis(5)).unwrap()));
        let t = Instant::now();
        assert_ne!(spinner.watch(), Outcome::Rang);
        let took = t.elapsed();
        // At its limit, or sooner if it gave way to another process.
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn only_a_sleep_after_a_request_is_watched() {
        let spinner = Spinner::new(Arc::new(Doorbells::new(Duration::from_millis(1)).unwrap()));
        // Nothing asked: no watch.
        spinner.before_park();
        assert_eq!(
            spinner.bells.stats(),
            WatchStats {
                limit_us: 1000,
                ..WatchStats::default()
            }
        );
        spinner.bells.conversing();
        spinner.before_park();
        let stats = spinner.bells.stats();
        assert_eq!(stats.rang, 0, "no worker rang");
        assert_eq!(stats.timed_out + stats.gave_way, 1, "watched: {stats:?}");
        assert!(stats.seconds > 0.0 && stats.seconds < 2.0, "{stats:?}");
        assert_eq!(spinner.backoff.fails.load(Ordering::Relaxed), 1);
        assert!(
            !spinner.bells.conversing.load(Ordering::Relaxed),
            "the next sleep needs a request of its own"
        );
    }

    #[test]
    fn the_page_cannot_be_shrunk_by_a_worker() {
        let bells = Doorbells::new(DEFAULT_SPIN).unwrap();
        let fd = bells.fd.try_clone().unwrap();
        let e = nix::unistd::ftruncate(&fd, 0).unwrap_err();
        assert_eq!(e, nix::errno::Errno::EPERM, "sealed against shrinking");
        // Nor can more seals be added (a write seal would fail the
        // workers' mappings).
        let e = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE),
        )
        .unwrap_err();
        assert_eq!(e, nix::errno::Errno::EPERM);
        // Garbage in every word changes only what the watch reads.
        let bell = Doorbell::open(&fd, 1).unwrap();
        for w in bell.page.words() {
            w.store(u64::MAX, Ordering::Relaxed);
        }
        let _ = bells.rung();
    }

    #[test]
    fn the_limit_is_microseconds_up_to_a_millisecond() {
        assert_eq!(parse_spin(None), Ok(DEFAULT_SPIN));
        assert_eq!(parse_spin(Some("0")), Ok(Duration::ZERO));
        assert_eq!(parse_spin(Some(" 20 ")), Ok(Duration::from_micros(20)));
        assert_eq!(parse_spin(Some("1000")), Ok(MAX_SPIN));
        for bad in ["1001", "-1", "20us", ""] {
            let why = parse_spin(Some(bad)).unwrap_err();
            assert!(
                why.contains(ENV_SPIN_US) && why.contains("from 0 (no watch) to 1000"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_file_that_could_shrink_is_refused() {
        let fd = nix::sys::memfd::memfd_create(
            c"not-sealed",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        let e = Doorbell::open(&fd, 1).unwrap_err();
        assert!(e.to_string().contains("not sealed"), "{e}");
    }
}
