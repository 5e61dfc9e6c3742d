//! Foreign workers: any program (Node, Python, Go...) run as a worker
//! without knowing herd, by the conventions such programs already speak.
//!
//! - **Sockets** by systemd's socket activation: the primary binds every
//!   listen itself (`shared`: one socket for all; `reuseport`: one per
//!   worker, a successor taking over its predecessor's) and starts the
//!   worker with them at descriptors 3, 4... and `LISTEN_FDS`,
//!   `LISTEN_FDNAMES`, and `LISTEN_PID` equal to the worker's own pid. A
//!   Node server takes its socket with `server.listen({ fd: 3 })`, a Python
//!   one with `socket.socket(fileno=3)`.
//! - **Readiness and liveness** by sd_notify: each worker gets its own
//!   `NOTIFY_SOCKET` (a datagram socket the primary binds in a per-user
//!   runtime directory; for a worker that runs as another user, in a
//!   directory that user can search, the socket given to that user, mode
//!   0600). `READY=1` makes it ready (with
//!   [`ForeignReady::Notify`]), `WATCHDOG=1` is its heartbeat (with
//!   [`Foreign::watchdog`], which also sets `WATCHDOG_USEC`), `STATUS=` shows
//!   in [`Primary::status`](crate::Primary::status), `STOPPING=1` marks its
//!   exit as deliberate, `WATCHDOG=trigger` kills it (SIGABRT, as systemd).
//!   `HERD_HANDLED=N` (herd's own field) reports the connections it has
//!   handled, for recycling by count.
//! - **Life**: a foreign worker has no channel. It is online and listening
//!   as soon as it is started (its sockets are already listening then, so
//!   connections queue for it from the first instant), ready as
//!   [`ForeignReady`] says, and its disconnect is [`Foreign::stop_signal`]
//!   (SIGTERM) followed, past the supervisor's grace period, by SIGKILL.
//!   `HERD_WORKER_ID` carries its id.
//!
//! `LISTEN_PID` must be the worker's own pid, which is only known after
//! fork, and setting the environment between fork and exec is not safe in
//! a threaded primary. So the primary starts a **trampoline**, its own
//! executable by default, as `EXE __exec PROGRAM ARGS...`: the trampoline
//! (single-threaded, before anything else runs) sets `LISTEN_PID` to its pid
//! and execs the program, which keeps that pid. A program using foreign
//! workers calls [`trampoline`] first thing in `main`.
//!
//! `rr` and `lc` need herd-aware workers (the primary hands them each
//! connection over the channel): use `shared` or `reuseport` here.
//!
//! ```no_run
//! use herd::foreign::{Foreign, ForeignReady};
//! use herd::{Policy, Primary, Settings, Supervision, Supervisor};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     herd::foreign::trampoline(); // returns unless started as a trampoline
//!     let rt = tokio::runtime::Runtime::new()?;
//!     rt.block_on(async {
//!         let node = Foreign::new("node", ["server.js"])
//!             .listen(Some("web"), "127.0.0.1:8080".parse()?)
//!             .ready(ForeignReady::Notify);
//!         let primary = Primary::with_settings(
//!             Settings::builder().policy(Policy::ReusePort).foreign(node),
//!         )?;
//!         for b in primary.bind_foreign()? {
//!             println!("listening on {} (fd {})", b.address, b.fd);
//!         }
//!         std::process::exit(Supervisor::new(primary, Supervision::new(2)).run().await)
//!     })
//! }
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::{ListenAddr, ListenOptions, Signal, EXIT_CANNOT_BOOT};

mod accepting;
pub(crate) mod notify;
mod rundir;
pub(crate) use accepting::{seen, Seen};

/// The argument that makes an executable a trampoline (see [`trampoline`]).
pub const TRAMPOLINE_ARG: &str = "__exec";
/// Set by the primary for the trampoline only.
pub(crate) const ENV_TRAMPOLINE: &str = "HERD_TRAMPOLINE";

/// When a foreign worker counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForeignReady {
    /// When it sends `READY=1` on its `NOTIFY_SOCKET`.
    Notify,
    /// When it waits for connections on one of its sockets (default), as
    /// /proc shows it: a thread blocked in `accept` on one, or one in its
    /// epoll set (Node, Go, tokio, asyncio...), or, for servers that wait
    /// with `poll`/`select` (Python's socketserver), a thread in `poll` or
    /// `select` while the process holds one: a heuristic, since the fds a
    /// poll waits on are not visible; a program that waits in `poll` on
    /// something else during its warm-up should use [`Notify`](Self::Notify).
    /// The processes it started count as it does (a pre-fork server such
    /// as gunicorn, whose master holds the socket while its children
    /// accept), and so does a `READY=1` it sends meanwhile.
    /// A worker with no sockets is ready once it has run for a second. Until it is
    /// ready, connections wait in the socket's queue (never refused), and
    /// a rolling restart keeps its predecessor serving.
    #[default]
    Listening,
    /// This long after it started, if it is still running.
    Delay(Duration),
}

impl FromStr for ForeignReady {
    type Err = String;
    /// `notify`, `listening` or `delay:DURATION` (`500ms`, `2s`, `1m`).
    ///
    /// ```
    /// use herd::foreign::ForeignReady;
    /// use std::time::Duration;
    /// assert_eq!("delay:2s".parse::<ForeignReady>().unwrap(), ForeignReady::Delay(Duration::from_secs(2)));
    /// assert!("soon".parse::<ForeignReady>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "notify" => Ok(ForeignReady::Notify),
            "listening" => Ok(ForeignReady::Listening),
            other => match other.strip_prefix("delay:") {
                Some(d) => parse_duration(d).map(ForeignReady::Delay),
                None => Err(format!(
                    "unknown readiness {other:?}: use notify, listening or delay:DURATION (e.g. delay:2s)"
                )),
            },
        }
    }
}

impl fmt::Display for ForeignReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForeignReady::Notify => f.write_str("notify"),
            ForeignReady::Listening => f.write_str("listening"),
            ForeignReady::Delay(d) => write!(f, "delay:{}ms", d.as_millis()),
        }
    }
}

/// Parses a duration with [`humantime`]: a sequence of numbers with
/// units (`ms`, `s`, `m`, `h`, `d`... e.g. `250ms`, `30s`, `1.5s`, `2m`,
/// `1h 30m`), or a bare whole number of seconds. Never panics: a value too
/// large for a [`Duration`] is an error.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(herd::foreign::parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(herd::foreign::parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(herd::foreign::parse_duration("30").unwrap(), Duration::from_secs(30));
/// assert!(herd::foreign::parse_duration("fast").is_err());
/// assert!(herd::foreign::parse_duration("18446744073709551616s").is_err());
/// assert!(herd::foreign::parse_duration("99999999999999999999h").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {s:?}: too large"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use e.g. 500ms, 30s, 2m or 1h"))
}

/// One socket a foreign worker gets.
#[derive(Debug, Clone)]
pub(crate) struct ForeignListen {
    pub name: Option<String>,
    pub addr: Option<ListenAddr>,
    /// Already bound and listening (e.g. from systemd), adopted as is.
    pub socket: Option<Arc<OwnedFd>>,
    pub options: ListenOptions,
}

/// How to run a foreign worker: the program, its sockets and how it tells
/// readiness. Put it in the settings with
/// [`Settings::foreign`](crate::Settings::foreign); then `fork`, the
/// supervisor, reloads and recycling work as with herd-aware workers.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) listens: Vec<ForeignListen>,
    pub(crate) ready: ForeignReady,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) stop_signal: Signal,
    pub(crate) trampoline: Option<PathBuf>,
    pub(crate) runtime_dir: Option<PathBuf>,
}

impl Foreign {
    /// Runs `program` (looked up in `PATH` if it has no slash) with `args`.
    pub fn new<P, I, S>(program: P, args: I) -> Foreign
    where
        P: Into<OsString>,
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Foreign {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            listens: Vec::new(),
            ready: ForeignReady::default(),
            watchdog: None,
            stop_signal: Signal::SIGTERM,
            trampoline: None,
            runtime_dir: None,
        }
    }

    /// Adds a socket to bind: the k-th call gives descriptor 3+k, named
    /// `name` in `LISTEN_FDNAMES` (`unknown` if none).
    pub fn listen(self, name: Option<&str>, addr: ListenAddr) -> Self {
        self.listen_with(name, addr, ListenOptions::default())
    }

    /// [`listen`](Self::listen) with options: backlog, mode, TCP_NODELAY
    /// (on by default, see [`ListenOptions::nodelay`]).
    ///
    /// ```
    /// use herd::foreign::Foreign;
    /// use herd::ListenOptions;
    /// let spec = Foreign::new("python3", ["app.py"]).listen_with(
    ///     Some("web"),
    ///     "127.0.0.1:0".parse().unwrap(),
    ///     ListenOptions::new().nodelay(false),
    /// );
    /// ```
    pub fn listen_with(
        mut self,
        name: Option<&str>,
        addr: ListenAddr,
        options: ListenOptions,
    ) -> Self {
        self.listens.push(ForeignListen {
            name: name.map(str::to_string),
            addr: Some(addr),
            socket: None,
            options,
        });
        self
    }

    /// Adds a socket that is already bound and listening (one that systemd
    /// passed to the primary, see [`crate::systemd::listen_fds`]). Under
    /// `reuseport` it must have SO_REUSEPORT set (systemd: `ReusePort=yes`)
    /// so that the primary can bind one more per worker.
    pub fn listen_socket(mut self, name: Option<&str>, socket: OwnedFd) -> Self {
        self.listens.push(ForeignListen {
            name: name.map(str::to_string),
            addr: None,
            socket: Some(Arc::new(socket)),
            options: ListenOptions::default(),
        });
        self
    }

    /// When a worker counts as ready. Default: [`ForeignReady::Listening`].
    pub fn ready(mut self, ready: ForeignReady) -> Self {
        self.ready = ready;
        self
    }

    /// Expect `WATCHDOG=1` at least this often: sets `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`) for the worker, and only its `WATCHDOG=1` then count
    /// as heartbeats (set the supervisor's `heartbeat_timeout` to the same).
    /// Without it (default) a foreign worker counts as alive while its
    /// process runs.
    pub fn watchdog(mut self, timeout: Option<Duration>) -> Self {
        self.watchdog = timeout;
        self
    }

    /// The signal that asks a worker to stop gracefully. Default: SIGTERM.
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// The executable to start as `EXE __exec PROGRAM ARGS...` (see
    /// [`trampoline`]). Default: the current executable.
    pub fn trampoline(mut self, exe: impl Into<PathBuf>) -> Self {
        self.trampoline = Some(exe.into());
        self
    }

    /// Where the workers' notification sockets go. Default:
    /// [`runtime_dir`].
    pub fn runtime_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime_dir = Some(dir.into());
        self
    }

    /// The program.
    pub fn program(&self) -> &OsStr {
        &self.program
    }
}

/// A socket the primary bound (or adopted) for foreign workers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bound {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// The address as bound: `127.0.0.1:41234` (the real port when 0 was
    /// asked), `[::]:80`, `udp:0.0.0.0:53`, `unix:/run/app.sock`.
    pub address: ListenAddr,
    /// The descriptor number the workers get it at (3, 4...).
    pub fd: i32,
    /// Whether it was passed in (systemd) rather than bound by herd.
    pub inherited: bool,
}

/// If this process was started as a foreign worker's trampoline (`EXE
/// __exec PROGRAM ARGS...` by a herd primary), sets `LISTEN_PID` (and
/// `WATCHDOG_PID` when `WATCHDOG_USEC` is set) to this process's pid and
/// execs the program, keeping the pid; never returns then. Otherwise
/// returns at once. Call it first in `main`, before any thread starts.
///
/// If the program cannot be executed the trampoline prints why and exits
/// with [`EXIT_CANNOT_BOOT`], which stops the supervisor from respawning.
pub fn trampoline() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(TRAMPOLINE_ARG))
        || std::env::var_os(ENV_TRAMPOLINE).is_none()
    {
        return;
    }
    use std::os::unix::process::CommandExt;
    // Single-threaded here: the environment may be changed.
    std::env::remove_var(ENV_TRAMPOLINE);
    let pid = std::process::id().to_string();
    std::env::set_var("LISTEN_PID", &pid);
    if std::env::var_os("WATCHDOG_USEC").is_some() {
        std::env::set_var("WATCHDOG_PID", &pid);
    }
    let Some(program) = args.next() else {
        eprintln!("herd: trampoline started without a program");
        std::process::exit(EXIT_CANNOT_BOOT);
    };
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!("herd: cannot run {}: {err}", Path::new(&program).display());
    std::process::exit(EXIT_CANNOT_BOOT);
}

pub use rundir::reachable_dir;
pub use rundir::runtime_dir;
