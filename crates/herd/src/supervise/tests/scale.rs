//! Scaling, also while a reload runs.

use super::*;
use crate::supervise::events::ReloadPhase;
use crate::supervise::status::SlotState;

fn succ(old: u32, new: u32) -> Call {
    Call::Successor { old, new }
}

fn finished(events: Vec<SupervisorEvent>) -> Option<usize> {
    events.into_iter().find_map(|e| match e {
        SupervisorEvent::Reload(ReloadPhase::Finished { replaced, .. }) => Some(replaced),
        _ => None,
    })
}

#[test]
fn scaling_up_and_down_starts_new_slots_and_retires_the_newest() {
    let mut r = ready_cluster(quiet(2));
    r.m.scale(4, r.now);
    assert_eq!(r.calls(), vec![Call::Fork(3), Call::Fork(4)]);
    assert_eq!(r.m.wanted(), 4);
    r.ready(3).ready(4);
    assert!(r.events().contains(&SupervisorEvent::ClusterReady {
        ready: 4,
        wanted: 4
    }));
    r.m.scale(1, r.now);
    assert_eq!(
        r.calls(),
        vec![
            Call::Disconnect(4),
            Call::Disconnect(3),
            Call::Disconnect(2)
        ]
    );
    // Their graceful exits respawn nothing.
    r.exit(2, 0).exit(3, 0).exit(4, 0).at(10).tick();
    assert_eq!(r.calls(), vec![]);
    assert_eq!(r.live(), vec![1]);
}

#[test]
fn scaling_down_removes_empty_slots_first() {
    let mut r = ready_cluster(quiet(3));
    r.at(1).exit(1, 1);
    assert_eq!(r.slot(0).state, SlotState::Backoff);
    r.m.scale(2, r.now);
    r.tick();
    assert_eq!(r.calls(), vec![], "the empty slot went, not a worker");
    let s = r.m.snapshot(r.now).status;
    assert_eq!(
        s.slots.iter().map(|s| s.slot).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!((s.ready, s.wanted), (2, 2));
}

#[test]
fn scaling_up_during_a_reload_starts_the_new_slots_at_once() {
    let mut r = ready_cluster(quiet(2));
    r.m.reload(r.now).unwrap();
    assert_eq!(r.calls(), vec![succ(1, 3)]);
    r.m.scale(3, r.now);
    assert_eq!(r.calls(), vec![Call::Fork(4)]);
    r.ready(4).ready(3);
    assert_eq!(r.calls(), vec![Call::Disconnect(1), succ(2, 5)]);
    r.ready(5);
    assert_eq!(r.calls(), vec![Call::Disconnect(2)]);
    assert_eq!(finished(r.events()), Some(2));
    assert_eq!(r.ready_count(), 3);
}

#[test]
fn scaling_down_during_a_surge_reload_kills_the_successors_of_the_slots_removed() {
    let mut r = ready_cluster(quiet(3).surge(3));
    r.m.reload(r.now).unwrap();
    assert_eq!(r.calls(), vec![succ(1, 4), succ(2, 5), succ(3, 6)]);
    r.m.scale(1, r.now);
    assert_eq!(
        r.calls(),
        vec![
            Call::Kill(6, Kill::Deliberate),
            Call::Disconnect(3),
            Call::Kill(5, Kill::Deliberate),
            Call::Disconnect(2),
        ]
    );
    // A successor of a slot gone that reports ready late goes nowhere.
    r.ready(5);
    assert_eq!(r.calls(), vec![]);
    r.ready(4);
    assert_eq!(r.calls(), vec![Call::Disconnect(1)]);
    assert_eq!(finished(r.events()), Some(1));
    let s = r.m.snapshot(r.now).status;
    assert_eq!(s.slots.len(), 1);
    assert_eq!(s.slots[0].worker, Some(4));
}

#[test]
fn a_slot_scaled_away_while_its_successor_boots_leaves_no_worker_behind() {
    let mut r = ready_cluster(quiet(2).surge(2));
    r.m.reload(r.now).unwrap();
    r.calls();
    r.m.scale(1, r.now);
    assert_eq!(
        r.calls(),
        vec![Call::Kill(4, Kill::Deliberate), Call::Disconnect(2)]
    );
    r.killed(4).exit(2, 0).at(10).tick();
    assert_eq!(r.calls(), vec![], "nothing respawned for the slot gone");
    r.ready(3);
    assert_eq!(r.calls(), vec![Call::Disconnect(1)]);
    assert_eq!(finished(r.events()), Some(1));
}
