//! Respawn, backoff, the crash-loop breaker, giving up.

use super::*;
use crate::supervise::status::SlotState;
use crate::supervise::{Restart, EXIT_CANNOT_BOOT};

fn respawn_delays(events: &[SupervisorEvent]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Respawn { after, .. } => Some(*after),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ready_worker_that_crashes_is_respawned_at_once() {
    let mut r = ready_cluster(quiet(2));
    r.at(1000).exit(1, 3);
    let ev = r.events();
    assert_eq!(
        ev,
        vec![SupervisorEvent::Respawn {
            slot: 0,
            previous: 1,
            after: Duration::ZERO
        }]
    );
    assert_eq!(r.m.next_due(), Some(r.now));
    r.tick();
    assert_eq!(r.calls(), vec![Call::Fork(3)]);
    let s = r.slot(0);
    assert_eq!(
        (s.state, s.worker, s.restarts),
        (SlotState::Starting, Some(3), 1)
    );
    let last = s.last_exit.unwrap();
    assert_eq!((last.worker, last.reason.as_str()), (1, "crashed"));
}

#[test]
fn backoff_doubles_up_to_the_max_and_resets_once_a_worker_is_ready() {
    let cfg = quiet(1)
        .backoff(ms(50))
        .backoff_max(ms(400))
        .crash_limit(100);
    let mut r = ready_cluster(cfg);
    r.at(10).exit(1, 1).tick();
    r.events();
    let mut id = 2;
    let mut t = 10;
    let mut delays = Vec::new();
    for _ in 0..6 {
        assert_eq!(r.calls(), vec![Call::Fork(id)]);
        r.exit(id, 9);
        let d = respawn_delays(&r.events());
        let after = d[0].as_millis() as u64;
        // Not a moment early.
        r.at(t + after - 1).tick();
        assert_eq!(r.calls(), vec![], "respawned early");
        t += after;
        r.at(t).tick();
        delays.push(after);
        id += 1;
    }
    assert_eq!(delays, vec![50, 100, 200, 400, 400, 400]);
    // Ready: the next death before ready starts over at 50 ms.
    assert_eq!(r.calls(), vec![Call::Fork(id)]);
    r.ready(id).exit(id, 1).tick();
    r.calls();
    r.exit(id + 1, 9);
    assert_eq!(respawn_delays(&r.events()), vec![Duration::ZERO, ms(50)]);
}

#[test]
fn the_breaker_trips_after_the_limit_of_deaths_before_ready_within_the_window() {
    let cfg = quiet(2).backoff(ms(20)).crash_limit(3);
    let mut r = ready_cluster(cfg);
    r.at(0).exit(1, 1).tick();
    let mut t = 0;
    for id in 3..=5 {
        assert_eq!(r.calls(), vec![Call::Fork(id)]);
        t += 1000;
        r.at(t).exit(id, 9);
        r.at(t + 500).tick();
    }
    let tripped: Vec<_> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::BreakerTripped { slot, reason } => Some((slot, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(tripped.len(), 1, "{tripped:?}");
    let (slot, reason) = &tripped[0];
    assert_eq!(*slot, 0);
    assert!(
        reason.contains("3 times") && reason.contains("(exit code 9, exit code 9, exit code 9)"),
        "{reason}"
    );
    // Left down; the other slot serves on.
    r.at(t + 60_000).tick();
    assert_eq!(r.calls(), vec![]);
    assert_eq!(r.slot(0).state, SlotState::Broken);
    assert_eq!(r.slot(1).state, SlotState::Ready);
    assert!(!r.m.gave_up());
}

#[test]
fn deaths_after_ready_never_trip_the_breaker() {
    let cfg = quiet(1).crash_limit(2);
    let mut r = ready_cluster(cfg);
    for id in 1..=5 {
        r.at(u64::from(id) * 10).exit(id, 1).tick();
        assert_eq!(r.calls(), vec![Call::Fork(id + 1)]);
        r.ready(id + 1);
    }
    assert!(r
        .events()
        .iter()
        .all(|e| !matches!(e, SupervisorEvent::BreakerTripped { .. })));
}

#[test]
fn the_cannot_boot_exit_code_trips_at_once() {
    let mut r = ready_cluster(quiet(2));
    r.at(5).exit(1, EXIT_CANNOT_BOOT).tick();
    let ev = r.events();
    assert!(
        matches!(&ev[..], [SupervisorEvent::BreakerTripped { slot: 0, reason }] if reason.contains("cannot boot")),
        "{ev:?}"
    );
    r.at(10_000).tick();
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn restart_policies_decide_which_exits_are_respawned() {
    let mut r = ready_cluster(quiet(3));
    // on-failure: a clean exit stays down, asked-for exits too.
    r.at(1).exit(1, 0);
    r.core.disconnect(2);
    r.exit(2, 1).tick();
    r.calls();
    assert_eq!(r.slot(0).state, SlotState::Stopped);
    assert_eq!(r.slot(1).state, SlotState::Stopped);
    assert_eq!(r.slot(1).last_exit.unwrap().reason, "asked to leave");

    let mut r = ready_cluster(quiet(1).restart(Restart::Always));
    r.at(1).exit(1, 0).tick();
    assert_eq!(r.calls(), vec![Call::Fork(2)]);

    let mut r = ready_cluster(quiet(1).restart(Restart::Never));
    r.at(1).killed(1).tick();
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn a_worker_never_ready_is_killed_at_the_boot_timeout_and_that_counts_as_a_failure() {
    let cfg = quiet(1)
        .boot_timeout(ms(400))
        .crash_limit(2)
        .backoff(ms(20));
    let mut r = Rig::new(cfg);
    r.calls();
    r.at(400).tick();
    assert_eq!(r.calls(), vec![], "killed at the timeout, not before");
    r.at(401).tick();
    assert_eq!(r.calls(), vec![Call::Kill(1, Kill::AsCrash)]);
    r.at(402).tick();
    assert_eq!(r.calls(), vec![], "killed once");
    r.killed(1).at(422).tick();
    assert_eq!(r.calls(), vec![Call::Fork(2)]);
    r.at(900).tick().killed(2);
    let ev = r.events();
    let reason = ev
        .iter()
        .find_map(|e| match e {
            SupervisorEvent::BreakerTripped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ev:?}"));
    assert!(
        reason.contains("2 times") && reason.contains("not ready within 400ms"),
        "{reason}"
    );
}

#[test]
fn when_every_slot_is_broken_the_supervisor_gives_up() {
    let cfg = quiet(2).crash_limit(1);
    let mut r = Rig::new(cfg);
    r.calls();
    r.at(10).exit(1, 1);
    assert!(!r.m.gave_up(), "one slot still runs");
    r.exit(2, 1);
    assert!(r.m.gave_up() && r.m.stopping());
    let ev = r.events();
    assert!(
        matches!(
            &ev[ev.len() - 2..],
            [SupervisorEvent::GaveUp { .. }, SupervisorEvent::Stopping]
        ),
        "{ev:?}"
    );
}

#[test]
fn a_failed_fork_trips_the_slot() {
    let mut r = ready_cluster(quiet(2));
    r.fail_forks(true);
    r.at(1).exit(1, 1).tick();
    let ev = r.events();
    assert!(
        ev.iter().any(|e| matches!(e,
            SupervisorEvent::BreakerTripped { slot: 0, reason } if reason.contains("cannot start a worker"))),
        "{ev:?}"
    );
}
