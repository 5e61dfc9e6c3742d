//! What the supervisor does: [`Supervision`], built with the defaults a
//! production user would pick and changed by builder methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::systemd::ServiceManager;

/// The exit code with which a worker says "I cannot boot" (bad
/// configuration, missing dependency): it stops the slot's respawns at once
/// instead of crash-looping (sysexits' EX_CONFIG).
pub const EXIT_CANNOT_BOOT: i32 = 78;

/// When a worker that exited is started again. A cluster whose every slot
/// the policy keeps down ends (see [`Supervisor::run`]).
///
/// [`Supervisor::run`]: crate::Supervisor::run
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Whatever the exit, unless it was asked for.
    Always,
    /// After a crash: a signal or a non-zero code, not asked for (default).
    #[default]
    OnFailure,
    /// Never.
    Never,
}

impl std::str::FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "never" => Ok(Restart::Never),
            o => Err(format!(
                "unknown restart policy {o:?}: use always, on-failure or never"
            )),
        }
    }
}

impl fmt::Display for Restart {
    /// The name [`FromStr`](std::str::FromStr) reads: `always`,
    /// `on-failure`, `never`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        })
    }
}

/// Where the supervisor's systemd notifications go.
#[derive(Debug, Clone)]
pub(crate) enum Systemd {
    /// The manager named by the environment when the supervisor is made.
    FromEnv,
    /// This one, or none.
    Given(Option<Arc<ServiceManager>>),
}

/// What the supervisor does, with the defaults a production user would
/// pick. Build it with [`Supervision::new`] and the builder methods:
///
/// ```
/// use std::time::Duration;
/// use herd::{Restart, Supervision};
/// let supervision = Supervision::new(4)
///     .restart(Restart::Always)
///     .grace(Duration::from_secs(10))
///     .max_requests(10_000)
///     .max_requests_jitter(1_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Supervision {
    pub(crate) workers: usize,
    pub(crate) restart: Restart,
    pub(crate) backoff: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) crash_limit: usize,
    pub(crate) crash_window: Duration,
    pub(crate) boot_timeout: Duration,
    pub(crate) grace: Duration,
    pub(crate) surge: usize,
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) max_requests: Option<u64>,
    pub(crate) max_requests_jitter: u64,
    pub(crate) max_memory: Option<u64>,
    pub(crate) handle_signals: bool,
    pub(crate) drain_delay: Duration,
    pub(crate) recycle_when: Option<super::judge::Judge>,
    pub(crate) degraded: Option<super::judge::Degraded>,
    pub(crate) reload_via_health: bool,
    pub(crate) systemd: Systemd,
}

impl Supervision {
    /// How long a new worker may take to become ready, unless set.
    pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a disconnecting worker may take before it is killed,
    /// unless set.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

    /// Supervision of `workers` workers (at least 1) with the defaults:
    /// restart on failure, backoff from 100 ms doubling up to 10 s, 5
    /// deaths before ready within 60 s trip the breaker, 30 s to boot, 30 s
    /// of grace, one replacement at a time, a 10 s heartbeat timeout, no
    /// recycling, signals handled, systemd told when `NOTIFY_SOCKET` is set.
    pub fn new(workers: usize) -> Supervision {
        Supervision {
            workers: workers.max(1),
            restart: Restart::OnFailure,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            crash_limit: 5,
            crash_window: Duration::from_secs(60),
            boot_timeout: Supervision::DEFAULT_BOOT_TIMEOUT,
            grace: Supervision::DEFAULT_GRACE,
            surge: 1,
            heartbeat_timeout: Some(Duration::from_secs(10)),
            max_age: None,
            max_requests: None,
            max_requests_jitter: 0,
            max_memory: None,
            handle_signals: true,
            drain_delay: Duration::ZERO,
            recycle_when: None,
            degraded: None,
            reload_via_health: false,
            systemd: Systemd::FromEnv,
        }
    }

    /// When to respawn a worker that exited.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The first respawn delay after a worker died before it was ready;
    /// each further one doubles, up to [`backoff_max`](Self::backoff_max).
    pub fn backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The longest respawn delay.
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// How many deaths before ready, within the
    /// [`crash_window`](Self::crash_window), leave a slot down (at least 1).
    pub fn crash_limit(mut self, deaths: usize) -> Self {
        self.crash_limit = deaths.max(1);
        self
    }

    /// The window of [`crash_limit`](Self::crash_limit).
    pub fn crash_window(mut self, window: Duration) -> Self {
        self.crash_window = window;
        self
    }

    /// How long a new worker may take to become ready before it is killed.
    pub fn boot_timeout(mut self, timeout: Duration) -> Self {
        self.boot_timeout = timeout;
        self
    }

    /// How long a disconnecting worker may take before it is killed.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How many replacements run at once (at least 1).
    pub fn surge(mut self, at_once: usize) -> Self {
        self.surge = at_once.max(1);
        self
    }

    /// Replace a ready worker whose heartbeat is missing this long (`None`:
    /// never).
    pub fn heartbeat_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.heartbeat_timeout = timeout.into();
        self
    }

    /// Recycle workers older than this (`None`: never).
    pub fn max_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.max_age = age.into();
        self
    }

    /// Recycle workers after this many connections, plus up to
    /// [`max_requests_jitter`](Self::max_requests_jitter) more, chosen per
    /// worker (`None`: never).
    pub fn max_requests(mut self, connections: impl Into<Option<u64>>) -> Self {
        self.max_requests = connections.into();
        self
    }

    /// The spread of [`max_requests`](Self::max_requests), so that workers
    /// started together are not recycled together.
    pub fn max_requests_jitter(mut self, jitter: u64) -> Self {
        self.max_requests_jitter = jitter;
        self
    }

    /// Recycle workers whose resident memory exceeds this many bytes
    /// (`None`: never).
    pub fn max_memory(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.max_memory = bytes.into();
        self
    }

    /// Recycle by the application's judgement (cluster2's `shouldKill`): at
    /// each tick, `judge` sees every ready worker's last [`WorkerHealth`]
    /// and returns a reason to replace it (successor first), or `None`.
    ///
    /// [`WorkerHealth`]: crate::supervise::WorkerHealth
    pub fn recycle_when(
        mut self,
        judge: impl Fn(&super::judge::WorkerHealth) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.recycle_when = Some(super::judge::Judge(Arc::new(judge)));
        self
    }

    /// Recycle degraded workers, by `rule` (see [`Degraded`]). Off by
    /// default.
    ///
    /// [`Degraded`]: crate::supervise::Degraded
    pub fn recycle_degraded(mut self, rule: super::judge::Degraded) -> Self {
        self.degraded = Some(rule);
        self
    }

    /// How long health answers "draining" before a shutdown disconnects
    /// the workers (they keep serving meanwhile), so that a load balancer
    /// polling the health endpoint stops sending first. Set it to a little
    /// more than the balancer's check interval times its fall count.
    /// Default: none.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Reload through health: a reload first marks the host down (health
    /// answers "draining"), waits the drain delay, replaces the workers,
    /// then marks the host up again, so a load balancer sends nothing to a
    /// worker that is closing. For hosts behind a balancer whose programs
    /// close idle keep-alive connections at once. Default: off.
    pub fn reload_via_health(mut self, on: bool) -> Self {
        self.reload_via_health = on;
        self
    }

    /// Whether the supervisor handles TERM and INT (stop; a second one
    /// kills), HUP (reload), TTIN and TTOU (one worker more or less), from
    /// the start of [`Supervisor::run`] to its end. On by default. (Once a
    /// handler is installed the process keeps it: after `run` returns,
    /// these signals no longer end the process by themselves. Exit with
    /// the code `run` returned.)
    ///
    /// [`Supervisor::run`]: crate::Supervisor::run
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// The service manager to tell about the cluster's life (READY=1,
    /// RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1), or `None` to tell
    /// nobody. By default, the one the environment names
    /// ([`ServiceManager::from_env`], read by [`Supervisor::new`]).
    ///
    /// [`Supervisor::new`]: crate::Supervisor::new
    pub fn systemd(mut self, manager: Option<ServiceManager>) -> Self {
        self.systemd = Systemd::Given(manager.map(Arc::new));
        self
    }
}
