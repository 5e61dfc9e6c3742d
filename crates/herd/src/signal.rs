//! [`Signal`]: a Unix signal, herd's own type in its API.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal as Nix;

/// A Unix signal: what ended a worker ([`ExitStatus`](crate::ExitStatus)),
/// what to send one ([`WorkerHandle::kill_with`](crate::WorkerHandle::kill_with)).
///
/// ```
/// use herd::Signal;
/// assert_eq!("TERM".parse::<Signal>().unwrap(), Signal::SIGTERM);
/// assert_eq!("sigkill".parse::<Signal>().unwrap().to_string(), "SIGKILL");
/// assert_eq!(Signal::from_raw(9), Some(Signal::SIGKILL));
/// assert!("SIGNOPE".parse::<Signal>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(Nix);

#[allow(missing_docs)]
impl Signal {
    pub const SIGHUP: Signal = Signal(Nix::SIGHUP);
    pub const SIGINT: Signal = Signal(Nix::SIGINT);
    pub const SIGQUIT: Signal = Signal(Nix::SIGQUIT);
    pub const SIGILL: Signal = Signal(Nix::SIGILL);
    pub const SIGABRT: Signal = Signal(Nix::SIGABRT);
    pub const SIGBUS: Signal = Signal(Nix::SIGBUS);
    pub const SIGFPE: Signal = Signal(Nix::SIGFPE);
    pub const SIGKILL: Signal = Signal(Nix::SIGKILL);
    pub const SIGUSR1: Signal = Signal(Nix::SIGUSR1);
    pub const SIGSEGV: Signal = Signal(Nix::SIGSEGV);
    pub const SIGUSR2: Signal = Signal(Nix::SIGUSR2);
    pub const SIGPIPE: Signal = Signal(Nix::SIGPIPE);
    pub const SIGALRM: Signal = Signal(Nix::SIGALRM);
    pub const SIGTERM: Signal = Signal(Nix::SIGTERM);
    pub const SIGCHLD: Signal = Signal(Nix::SIGCHLD);
    pub const SIGCONT: Signal = Signal(Nix::SIGCONT);
    pub const SIGSTOP: Signal = Signal(Nix::SIGSTOP);
    pub const SIGTSTP: Signal = Signal(Nix::SIGTSTP);
    pub const SIGTTIN: Signal = Signal(Nix::SIGTTIN);
    pub const SIGTTOU: Signal = Signal(Nix::SIGTTOU);
    pub const SIGWINCH: Signal = Signal(Nix::SIGWINCH);
}

impl Signal {
    /// The signal with this number, if it is one.
    pub fn from_raw(n: i32) -> Option<Signal> {
        Nix::try_from(n).ok().map(Signal)
    }

    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0 as i32
    }

    /// Its name: `SIGTERM`, `SIGKILL`...
    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }

    pub(crate) fn to_nix(self) -> Nix {
        self.0
    }
}

impl FromStr for Signal {
    type Err = String;
    /// `SIGTERM`, `TERM` or `term`, or a number.
    fn from_str(s: &str) -> Result<Signal, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::from_raw(n).ok_or_else(|| format!("{n} is not a signal number"));
        }
        let upper = t.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        name.parse::<Nix>()
            .map(Signal)
            .map_err(|_| format!("unknown signal {s:?}: use a name such as SIGTERM, TERM or INT"))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
