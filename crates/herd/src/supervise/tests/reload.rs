//! Rolling restarts: successor first, surge, failures, queueing.

use super::*;
use crate::supervise::events::{RecycleReason, ReloadPhase};
use crate::supervise::status::SlotState;
use crate::supervise::{ReloadError, Restart};

fn phases(events: Vec<SupervisorEvent>) -> Vec<ReloadPhase> {
    events
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Reload(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn succ(old: u32, new: u32) -> Call {
    Call::Successor { old, new }
}

#[test]
fn successors_come_first_and_at_most_surge_boot_at_once() {
    let mut r = ready_cluster(quiet(3).surge(2));
    let id = r.m.reload(r.now).unwrap();
    assert_eq!(
        phases(r.events()),
        vec![ReloadPhase::Started { workers: 3 }]
    );
    // Two successors boot; no old worker is touched yet.
    assert_eq!(r.calls(), vec![succ(1, 4), succ(2, 5)]);
    assert_eq!(r.slot(0).state, SlotState::Replacing);
    assert_eq!(r.slot(0).successor, Some(4));
    assert_eq!(r.slot(2).state, SlotState::Replacing, "queued");
    assert_eq!(r.ready_count(), 3, "the old ones serve meanwhile");
    r.at(100).ready(5);
    // 5 takes slot 1; 2 leaves; the third successor starts.
    assert_eq!(r.calls(), vec![Call::Disconnect(2), succ(3, 6)]);
    r.at(200).ready(4);
    assert_eq!(r.calls(), vec![Call::Disconnect(1)]);
    assert!(r.m.take_outcomes().is_empty());
    r.at(300).ready(6);
    assert_eq!(r.calls(), vec![Call::Disconnect(3)]);
    assert_eq!(
        phases(r.events()),
        vec![
            ReloadPhase::Replaced { old: 2, new: 5 },
            ReloadPhase::Replaced { old: 1, new: 4 },
            ReloadPhase::Replaced { old: 3, new: 6 },
            ReloadPhase::Finished {
                replaced: 3,
                took: ms(300)
            },
        ]
    );
    let outcomes = r.m.take_outcomes();
    assert_eq!(outcomes.len(), 1);
    let (done_id, done) = &outcomes[0];
    assert_eq!(*done_id, id);
    assert_eq!(done.as_ref().unwrap().replaced, 3);
    let s = r.slot(1);
    assert_eq!(
        (s.state, s.worker, s.reloads, s.restarts),
        (SlotState::Ready, Some(5), 1, 0)
    );
    // The old ones leave gracefully; their exits are no crash.
    r.exit(1, 0).exit(2, 0).exit(3, 0).at(400).tick();
    assert_eq!(r.calls(), vec![]);
    assert_eq!(
        r.slot(0).last_exit.unwrap().reason,
        "replaced by worker 4 (reload)"
    );
}

#[test]
fn a_predecessor_still_running_after_the_grace_period_is_killed() {
    let mut r = ready_cluster(quiet(1).grace(ms(1000)));
    r.m.reload(r.now).unwrap();
    r.at(10).ready(2);
    assert_eq!(r.calls(), vec![succ(1, 2), Call::Disconnect(1)]);
    r.at(1009).tick();
    assert_eq!(r.calls(), vec![]);
    r.at(1010).tick().at(1020).tick();
    assert_eq!(r.calls(), vec![Call::Kill(1, Kill::Deliberate)]);
}

#[test]
fn a_successor_never_ready_aborts_the_reload_at_the_boot_timeout_and_the_old_one_stays() {
    let mut r = ready_cluster(quiet(2).boot_timeout(ms(500)));
    r.m.reload(r.now).unwrap();
    assert_eq!(r.calls(), vec![succ(1, 3)]);
    r.at(500).tick();
    assert_eq!(r.calls(), vec![]);
    r.at(501).tick();
    assert_eq!(r.calls(), vec![Call::Kill(3, Kill::Deliberate)]);
    let p = phases(r.events());
    assert!(
        matches!(&p[1..], [ReloadPhase::Aborted { reason }] if reason == "new worker 3 was not ready within 500ms"),
        "{p:?}"
    );
    let (_, outcome) = r.m.take_outcomes().pop().unwrap();
    assert!(
        matches!(outcome, Err(ReloadError::Aborted { .. })),
        "{outcome:?}"
    );
    for slot in 0..2 {
        assert_eq!(r.slot(slot).state, SlotState::Ready);
    }
    assert_eq!(r.slot(0).worker, Some(1));
    // The killed successor's exit changes nothing.
    r.killed(3).at(600).tick();
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn a_successor_that_exits_before_ready_aborts_the_reload() {
    let mut r = ready_cluster(quiet(2));
    r.m.reload(r.now).unwrap();
    r.calls();
    r.at(10).exit(3, 3);
    let p = phases(r.events());
    assert!(
        matches!(&p[1..], [ReloadPhase::Aborted { reason }] if reason == "new worker 3 exited (exit code 3) before it was ready"),
        "{p:?}"
    );
    assert_eq!(r.calls(), vec![], "no disconnect, no successor for slot 1");
    assert_eq!(r.live(), vec![1, 2]);
    assert_eq!(r.ready_count(), 2);
}

#[test]
fn a_worker_that_dies_while_its_successor_boots_waits_for_it() {
    let mut r = ready_cluster(quiet(2));
    r.m.reload(r.now).unwrap();
    r.calls();
    r.at(10).exit(1, 1).tick();
    assert_eq!(r.calls(), vec![], "no worker beside the successor");
    assert_eq!((r.slot(0).worker, r.slot(0).successor), (None, Some(3)));
    r.at(20).ready(3);
    assert_eq!(r.calls(), vec![succ(2, 4)]);
    assert_eq!(r.slot(0).worker, Some(3));
    r.ready(4);
    assert_eq!(r.calls(), vec![Call::Disconnect(2)]);
    let p = phases(r.events());
    assert!(
        matches!(p.last(), Some(ReloadPhase::Finished { replaced: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn a_reload_asked_while_one_runs_runs_after_it() {
    let mut r = ready_cluster(quiet(1));
    let first = r.m.reload(r.now).unwrap();
    let second = r.m.reload(r.now).unwrap();
    let third = r.m.reload(r.now).unwrap();
    assert_ne!(first, second);
    assert_eq!(second, third, "asked twice meanwhile: one more reload");
    assert_eq!(r.calls(), vec![succ(1, 2)]);
    r.at(10).ready(2);
    // The first ends, the second begins with the new worker.
    assert_eq!(r.calls(), vec![Call::Disconnect(1), succ(2, 3)]);
    let ids: Vec<u64> = r.m.take_outcomes().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![first]);
    r.at(20).ready(3);
    let outcomes = r.m.take_outcomes();
    assert!(
        matches!(&outcomes[..], [(id, Ok(_))] if *id == second),
        "{outcomes:?}"
    );
    let started = phases(r.events())
        .into_iter()
        .filter(|p| matches!(p, ReloadPhase::Started { .. }))
        .count();
    assert_eq!(started, 2);
}

#[test]
fn stopping_aborts_the_reload_and_answers_the_one_queued() {
    let mut r = ready_cluster(quiet(2));
    let first = r.m.reload(r.now).unwrap();
    let second = r.m.reload(r.now).unwrap();
    r.m.stop(r.now);
    let outcomes = r.m.take_outcomes();
    assert!(
        matches!(&outcomes[..], [(a, Err(ReloadError::Aborted { reason })), (b, Err(ReloadError::Stopping))]
            if *a == first && *b == second && reason == "shutting down"),
        "{outcomes:?}"
    );
    assert_eq!(r.events().last(), Some(&SupervisorEvent::Stopping));
    assert_eq!(r.m.reload(r.now), Err(ReloadError::Stopping));
    // No respawn, no replacement while stopping.
    r.calls();
    r.at(10).ready(3).exit(1, 1).tick();
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn a_reload_of_no_worker_finishes_at_once() {
    // One slot left down by the policy, the other waiting to respawn: no
    // worker to replace (and the cluster, one slot still coming back,
    // does not end).
    let mut r = Rig::new(quiet(2).restart(Restart::OnFailure));
    r.calls();
    r.at(1).exit(1, 0).exit(2, 1);
    r.m.reload(r.now).unwrap();
    let p = phases(r.events());
    assert!(
        matches!(
            &p[..],
            [
                ReloadPhase::Started { workers: 0 },
                ReloadPhase::Finished { replaced: 0, .. }
            ]
        ),
        "{p:?}"
    );
}

#[test]
fn a_hung_worker_goes_to_the_front_of_the_queue_and_is_killed_once_replaced() {
    let cfg = Supervision::new(3)
        .heartbeat_timeout(ms(1000))
        .max_memory(1000);
    let mut r = ready_cluster(cfg);
    // Workers 1 and 2 grew: recycled one at a time (1 first).
    r.set_rss(1, 2000).set_rss(2, 2000);
    r.at(500).beat(1, 0).beat(2, 0).beat(3, 0).tick();
    assert_eq!(r.calls(), vec![succ(1, 4)]);
    // Worker 3 stops beating: it is next, before worker 2.
    r.at(1200).beat(2, 0).tick();
    r.at(1600).beat(2, 0).tick();
    assert_eq!(r.calls(), vec![]);
    r.ready(4);
    assert_eq!(r.calls(), vec![Call::Disconnect(1), succ(3, 5)]);
    r.ready(5);
    assert_eq!(r.calls(), vec![Call::Kill(3, Kill::Deliberate), succ(2, 6)]);
    let recycled: Vec<(u32, bool)> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Recycle { worker, reason, .. } => {
                Some((worker, matches!(reason, RecycleReason::Hung { .. })))
            }
            _ => None,
        })
        .collect();
    assert_eq!(recycled, vec![(1, false), (3, true), (2, false)]);
    assert_eq!(r.slot(2).restarts, 1, "a recycle counts as a restart");
}

#[test]
fn a_hung_worker_whose_successor_fails_is_killed_and_respawned() {
    let cfg = Supervision::new(1).heartbeat_timeout(ms(1000));
    let mut r = ready_cluster(cfg);
    r.at(1001).tick();
    assert_eq!(r.calls(), vec![succ(1, 2)]);
    r.exit(2, 1);
    assert_eq!(r.calls(), vec![Call::Kill(1, Kill::AsCrash)]);
    r.killed(1).tick();
    assert_eq!(r.calls(), vec![Call::Fork(3)]);
}
