//! The range of every `herd run` value, checked in one place whether it
//! came from a flag, a `HERD_*` variable or the config file: outside its
//! range a value is one line of error and exit code 2, never a panic, a
//! wrapped number or a replacement storm. docs/security.md lists them.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Result};

/// A closed range of durations.
pub struct Span {
    pub min: Duration,
    pub max: Duration,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Workers: `-w`, and `herd ctl scale`.
pub const WORKERS: (usize, usize) = (1, 1024);
/// Sockets (`-l`): descriptors 3 to 66.
pub const LISTENS: usize = 64;
/// `--crash-limit`.
pub const CRASH_LIMIT: (usize, usize) = (1, 1000);
/// `--max-requests`.
pub const MAX_REQUESTS: (u64, u64) = (1, 1_000_000_000_000);
/// `--max-memory`: 1 MiB to 1 TiB.
pub const MAX_MEMORY: (u64, u64) = (1 << 20, 1 << 40);
/// `--log-max-size`: 4 KiB to 1 TiB.
pub const LOG_MAX_SIZE: (u64, u64) = (4 << 10, 1 << 40);
/// `--log-keep`.
pub const LOG_KEEP: (usize, usize) = (1, 1000);
/// `--grace`: 0 kills at once.
pub const GRACE: Span = Span {
    min: Duration::ZERO,
    max: secs(24 * 3600),
};
/// `--boot-timeout`.
pub const BOOT_TIMEOUT: Span = Span {
    min: ms(100),
    max: secs(3600),
};
/// `--backoff` (the first respawn delay; it doubles up to 10 s).
pub const BACKOFF: Span = Span {
    min: ms(1),
    max: secs(10),
};
/// `--max-age`.
pub const MAX_AGE: Span = Span {
    min: secs(1),
    max: secs(365 * 24 * 3600),
};
/// `--heartbeat-timeout`.
pub const HEARTBEAT_TIMEOUT: Span = Span {
    min: ms(100),
    max: secs(3600),
};
/// `--drain-delay`: 0 disconnects at once.
pub const DRAIN_DELAY: Span = Span {
    min: Duration::ZERO,
    max: secs(3600),
};
/// `--ready delay:D`.
pub const READY_DELAY: Span = Span {
    min: Duration::ZERO,
    max: secs(3600),
};

/// A duration as people write it: `250ms`, `30s`, `2m`, `1h`.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let s = d.as_secs();
        if d.is_zero() {
            f.write_str("0s")
        } else if d.subsec_nanos() != 0 || s == 0 {
            write!(f, "{}ms", d.as_millis())
        } else if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// Checks `d` (given as `text`) for `--flag`.
pub fn duration(flag: &str, text: &str, d: Duration, span: &Span) -> Result<Duration> {
    if d < span.min || d > span.max {
        bail!(
            "--{flag}: {text:?} is out of range: use {} to {}",
            Human(span.min),
            Human(span.max)
        );
    }
    Ok(d)
}

/// Checks a whole number for `--flag`.
pub fn number<T>(flag: &str, n: T, (min, max): (T, T)) -> Result<T>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if n < min || n > max {
        bail!("--{flag}: {n} is out of range: use {min} to {max}");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(Human(ms(100)).to_string(), "100ms");
        assert_eq!(Human(secs(90)).to_string(), "90s");
        assert_eq!(Human(secs(3600)).to_string(), "1h");
        assert_eq!(Human(secs(365 * 86_400)).to_string(), "365d");
        assert_eq!(Human(Duration::ZERO).to_string(), "0s");
    }

    #[test]
    fn out_of_range_is_one_line() {
        let e = number("workers", 100_000usize, WORKERS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--workers: 100000 is out of range: use 1 to 1024"
        );
        let e = duration("grace", "2d", secs(2 * 86_400), &GRACE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--grace: \"2d\" is out of range: use 0s to 1d"
        );
    }
}
