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
//! own, one of 64: a worker forked while 64 others hold one goes without)
//! in one page that the primary shares with its workers, and bumps it
//! after each write to its channel ([`Doorbell::ring`]). Before the
//! herd-primary thread sleeps, it watches the page ([`Spinner`]) for up to
//! its limit: [`DEFAULT_SPIN`], or `HERD_PRIMARY_SPIN_US` microseconds
//! (0 turns the watch off). A bump ends the watch, and the thread's next
//! poll finds the frame without having slept.
//!
//! The watch is for conversations: it runs only when the thread answered
//! a worker's service request (such as a cache get, answered on the
//! thread at once) since it last slept ([`Doorbells::conversing`]), since
//! that worker is then likely to ask again at once. Other wake-ups (a new
//! connection to hand off, a heartbeat) sleep at once: the watch would
//! hold up the next of them for nothing, and take a CPU that the workers
//! need. Nor is there a watch when a worker rang after its channel was
//! last read ([`ReadMark`]): its frame may be in the socket already, and
//! epoll finds it at once. The watch ends when any live worker's slot
//! moves past what its reader last saw.
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
//! primary watches, up to the limit (or whether it watches at all). The
//! page's size cannot change under the primary ([`SharedPage`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
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
    /// Watches that a worker's write (of any frame) ended: each spared
    /// that worker the wake-up of a sleeping primary.
    pub rang: u64,
    /// Watches that reached their limit.
    pub timed_out: u64,
    /// Watches that gave the CPU back early, to another process.
    pub gave_way: u64,
    /// Seconds spent watching, all watches together (not counting the
    /// time a watch had yielded the CPU).
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
    /// Each slot's count when its worker's channel was last read
    /// ([`ReadMark`]): a slot that has moved since may have a frame unread.
    seen: [AtomicU64; SLOTS],
    /// The slots held by live workers, one bit each ([`claim`](Self::claim)).
    claimed: std::sync::Mutex<u64>,
    /// The same bits, read by the watch without the lock.
    live: AtomicU64,
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
            seen: std::array::from_fn(|_| AtomicU64::new(0)),
            claimed: std::sync::Mutex::new(0),
            live: AtomicU64::new(0),
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

    /// Notes that the primary is answering a worker's service request (on
    /// this thread, at once): the next sleep is worth a watch.
    pub(crate) fn conversing(&self) {
        self.conversing.store(true, Ordering::Relaxed);
    }

    /// The descriptor a worker inherits (`ENV_DOORBELL_FD`).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether a live worker rang after its channel was last read: its
    /// frame may be in the socket already, and epoll will say so at once.
    fn unread(&self) -> bool {
        let words = self.page.words();
        let mut live = self.live.load(Ordering::Relaxed);
        while live != 0 {
            let s = live.trailing_zeros() as usize;
            live &= live - 1;
            if words[s * 8].load(Ordering::Relaxed) != self.seen[s].load(Ordering::Relaxed) {
                return true;
            }
        }
        false
    }

    /// A slot of its own for a new worker, and what its channel's reader
    /// notes its reads with; `None` when all [`SLOTS`] are taken (that
    /// worker goes without a doorbell). The slot is free again when the
    /// mark drops.
    pub(crate) fn claim(self: &Arc<Doorbells>) -> Option<ReadMark> {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (!*claimed).trailing_zeros() as usize;
        if slot >= SLOTS {
            return None;
        }
        *claimed |= 1 << slot;
        let mark = ReadMark {
            bells: self.clone(),
            slot,
        };
        // What an earlier holder rang is read, or gone with it.
        mark.reading();
        self.live.store(*claimed, Ordering::Relaxed);
        Some(mark)
    }
}

/// Held by the primary's reader of one worker's channel
/// ([`Doorbells::claim`]): notes, just before each read of the socket,
/// how far the worker had rung. Every write it rang for by then is in the
/// socket for that read.
pub(crate) struct ReadMark {
    bells: Arc<Doorbells>,
    slot: usize,
}

impl ReadMark {
    /// The worker's slot (`ENV_DOORBELL_SLOT`).
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Called just before reading the channel's socket.
    pub(crate) fn reading(&self) {
        // Acquire: pairs with the ring's Release, so that what the worker
        // wrote before it rang is in the socket for the read that follows.
        let now = self.bells.page.words()[self.slot * 8].load(Ordering::Acquire);
        self.bells.seen[self.slot].store(now, Ordering::Relaxed);
    }
}

impl Drop for ReadMark {
    fn drop(&mut self) {
        // Nothing reads this channel any more: the slot goes back.
        let mut claimed = self.bells.claimed.lock().unwrap_or_else(|p| p.into_inner());
        *claimed &= !(1 << self.slot);
        self.bells.live.store(*claimed, Ordering::Relaxed);
    }
}

/// A worker's side: its slot in the primary's page.
pub(crate) struct Doorbell {
    page: SharedPage,
    slot: usize,
}

impl Doorbell {
    /// The doorbell `ENV_DOORBELL_FD` names, at the slot
    /// `ENV_DOORBELL_SLOT` gives; `None` when the primary gave none. One
    /// that cannot be mapped is logged and done without: it only saves
    /// the primary wake-ups.
    pub(crate) fn from_env() -> Option<Doorbell> {
        let var = crate::ENV_DOORBELL_FD;
        let text = std::env::var(var).ok()?;
        let slot = std::env::var(crate::ENV_DOORBELL_SLOT).unwrap_or_default();
        let opened = slot
            .parse::<usize>()
            .ok()
            .filter(|s| *s < SLOTS)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{}={slot:?} is not a slot from 0 to {}",
                    crate::ENV_DOORBELL_SLOT,
                    SLOTS - 1
                ))
            })
            .and_then(|slot| {
                let raw = text.parse::<i32>().map_err(|_| {
                    io::Error::other(format!("{text:?} is not a descriptor number"))
                })?;
                Ok((slot, raw))
            })
            .and_then(|(slot, raw)| Ok((slot, crate::sys::take_inherited_fd(raw)?)))
            .and_then(|(slot, fd)| match Doorbell::open(&fd, slot) {
                // Mapped: the descriptor is no longer needed.
                Ok(bell) => Ok(bell),
                // Not the primary's page (a stale variable): whatever
                // file that number names is left open, as it was.
                Err(e) => {
                    let _ = fd.into_raw_fd();
                    Err(e)
                }
            });
        match opened {
            Ok(bell) => Some(bell),
            Err(e) => {
                tracing::warn!(error = %e, "{var} ignored: the primary will sleep between this worker's writes");
                None
            }
        }
    }

    /// Maps the page `fd` names, to ring at `slot` (below [`SLOTS`]).
    pub(crate) fn open(fd: &OwnedFd, slot: usize) -> io::Result<Doorbell> {
        let page = SharedPage::open(fd)?;
        Ok(Doorbell {
            page,
            slot: slot * 8,
        })
    }

    /// Tells a watching primary that this worker just wrote.
    pub(crate) fn ring(&self) {
        // Release: pairs with the primary reader's Acquire (ReadMark).
        self.page.words()[self.slot].fetch_add(1, Ordering::Release);
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
    bells: Arc<Doorbells>,
    backoff: Backoff,
}

impl Spinner {
    pub(crate) fn new(bells: Arc<Doorbells>) -> Spinner {
        Spinner {
            bells,
            backoff: Backoff::default(),
        }
    }

    /// Called before the thread sleeps: watches the page for up to the
    /// limit, when a request was answered since the last sleep, every
    /// worker's writes so far were read (otherwise the sleep ends at once:
    /// epoll sees the frame), and the backoff does not say to skip.
    pub(crate) fn before_park(&self) {
        let bells = &self.bells;
        if !bells.conversing.swap(false, Ordering::Relaxed)
            || bells.unread()
            || !self.backoff.watch_now()
        {
            return;
        }
        let (outcome, spun) = self.watch();
        bells.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let spun = u64::try_from(spun.as_nanos()).unwrap_or(u64::MAX);
        bells.nanos.fetch_add(spun, Ordering::Relaxed);
        self.backoff.watched(outcome == Outcome::Rang);
    }

    /// Watches until a worker rings, or the limit: how it ended, and the
    /// time it spun (not counting the time the CPU was yielded). Every
    /// [`YIELD_EVERY`] the watch yields the CPU, so that a process waiting
    /// for it (a worker, on a machine whose CPUs are all busy) runs
    /// instead of the watch; a yield that took longer than [`CONTENDED`]
    /// ends it. The clock is read after each look at the page, so that no
    /// look (which a worker can make slow) stretches the watch much.
    fn watch(&self) -> (Outcome, Duration) {
        let start = Instant::now();
        let (mut yielded, mut away) = (start, Duration::ZERO);
        loop {
            std::hint::spin_loop();
            let rang = self.bells.unread();
            let now = Instant::now();
            if rang {
                return (Outcome::Rang, (now - start).saturating_sub(away));
            }
            if now - start >= self.bells.limit {
                return (Outcome::TimedOut, (now - start).saturating_sub(away));
            }
            if now - yielded >= YIELD_EVERY {
                std::thread::yield_now();
                yielded = Instant::now();
                away += yielded - now;
                if yielded - now >= CONTENDED {
                    return (Outcome::GaveWay, (yielded - start).saturating_sub(away));
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

#[cfg(test)]
mod tests;
