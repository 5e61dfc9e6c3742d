//! A slot's crash-loop breaker and respawn backoff. Pure: it counts what it
//! is told, at the times it is told.
//!
//! A worker that dies before it was ready counts as a failure; `crash_limit`
//! failures within `crash_window` trip the breaker. Each failure doubles the
//! respawn delay (from `backoff` up to `backoff_max`); a worker that becomes
//! ready resets both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::config::Supervision;

/// What to do after a death.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start a new worker after this delay.
    Respawn(Duration),
    /// Leave the slot down, for this reason.
    Trip(String),
}

/// One slot's record of failures.
#[derive(Debug, Default, Clone)]
pub(crate) struct Breaker {
    /// Deaths before ready within the window: when, and how.
    failures: VecDeque<(Instant, String)>,
    /// The last delay used, if the last death was a failure.
    backoff: Option<Duration>,
}

impl Breaker {
    /// A worker of the slot became ready: the slot is healthy again.
    pub fn ready(&mut self) {
        self.failures.clear();
        self.backoff = None;
    }

    /// A worker of slot `slot` died at `now`; `was_ready` says whether it
    /// had become ready, `how` how it ended ("exit code 9").
    pub fn death(
        &mut self,
        cfg: &Supervision,
        slot: usize,
        was_ready: bool,
        how: String,
        now: Instant,
    ) -> Verdict {
        if was_ready {
            self.ready();
            return Verdict::Respawn(Duration::ZERO);
        }
        let window = cfg.crash_window;
        self.failures.push_back((now, how));
        while self
            .failures
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= cfg.crash_limit {
            let seen: Vec<&str> = self.failures.iter().map(|(_, how)| how.as_str()).collect();
            return Verdict::Trip(format!(
                "slot {slot}: worker died {} times in {} without becoming ready ({}); not respawning",
                seen.len(),
                crate::supervise::events::human(window),
                seen.join(", ")
            ));
        }
        let delay = self
            .backoff
            .map_or(cfg.backoff, |b| b.saturating_mul(2).min(cfg.backoff_max));
        self.backoff = Some(delay);
        Verdict::Respawn(delay)
    }

    /// The delay before starting the slot afresh after something other
    /// than a death of its own (its worker died while a successor booted,
    /// and the successor failed too).
    pub fn current_backoff(&self, cfg: &Supervision) -> Duration {
        self.backoff.unwrap_or(cfg.backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Supervision {
        Supervision::new(1)
            .backoff(Duration::from_millis(50))
            .backoff_max(Duration::from_millis(400))
            .crash_limit(4)
            .crash_window(Duration::from_secs(10))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_once_ready() {
        let cfg = cfg().crash_limit(100);
        let mut b = Breaker::default();
        let t = Instant::now();
        let delays: Vec<Verdict> = (0..6)
            .map(|i| b.death(&cfg, 0, false, "exit code 9".into(), t + ms(i)))
            .collect();
        let want = [50, 100, 200, 400, 400, 400].map(|d| Verdict::Respawn(ms(d)));
        assert_eq!(delays, want);
        b.ready();
        assert_eq!(
            b.death(&cfg, 0, false, "exit code 9".into(), t + ms(10)),
            Verdict::Respawn(ms(50))
        );
    }

    #[test]
    fn the_limit_of_deaths_before_ready_within_the_window_trips() {
        let cfg = cfg();
        let mut b = Breaker::default();
        let t = Instant::now();
        for i in 0..3 {
            let v = b.death(&cfg, 2, false, format!("exit code {i}"), t + ms(i));
            assert!(matches!(v, Verdict::Respawn(_)), "{v:?}");
        }
        let Verdict::Trip(reason) = b.death(&cfg, 2, false, "exit code 9".into(), t + ms(3)) else {
            panic!("not tripped")
        };
        assert_eq!(
            reason,
            "slot 2: worker died 4 times in 10s without becoming ready (exit code 0, exit code 1, exit code 2, exit code 9); not respawning"
        );
    }

    #[test]
    fn deaths_older_than_the_window_do_not_count() {
        let cfg = cfg();
        let mut b = Breaker::default();
        let t = Instant::now();
        for i in 0..3 {
            b.death(&cfg, 0, false, "x".into(), t + ms(i));
        }
        // The fourth comes 11 s after the first three: they have expired.
        let v = b.death(&cfg, 0, false, "x".into(), t + Duration::from_secs(11));
        assert!(matches!(v, Verdict::Respawn(_)), "{v:?}");
    }

    #[test]
    fn a_death_after_ready_respawns_at_once_and_resets_the_count() {
        let cfg = cfg();
        let mut b = Breaker::default();
        let t = Instant::now();
        for i in 0..3 {
            b.death(&cfg, 0, false, "x".into(), t + ms(i));
        }
        assert_eq!(
            b.death(&cfg, 0, true, "x".into(), t + ms(5)),
            Verdict::Respawn(Duration::ZERO)
        );
        for i in 0..3 {
            let v = b.death(&cfg, 0, false, "x".into(), t + ms(10 + i));
            assert!(matches!(v, Verdict::Respawn(_)), "{v:?}");
        }
        assert_eq!(b.current_backoff(&cfg), ms(200));
    }
}
