//! An operator's actions on one worker: drain, undrain, replace, and what
//! a drained worker means for the nanny, the count and a reload.

use super::*;
use crate::supervise::events::RecycleReason;
use crate::supervise::WorkerActionError;

fn succ(old: u32, new: u32) -> Call {
    Call::Successor { old, new }
}

fn conflict(e: Result<impl std::fmt::Debug, WorkerActionError>) -> String {
    match e {
        Err(WorkerActionError::Conflict(why)) => why,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn a_drained_worker_is_out_of_rotation_counts_as_ready_and_comes_back() {
    let mut r = ready_cluster(quiet(2));
    let now = r.now;
    r.m.drain(1, now).unwrap();
    assert!(r.core.worker(1).unwrap().drained);
    assert_eq!(r.ready_count(), 2, "a drained slot still counts as ready");
    assert!(r.events().iter().any(|e| matches!(
        e,
        SupervisorEvent::Drain {
            worker: 1,
            slot: 0,
            drained: true
        }
    )));
    // Again: a no-op.
    r.m.drain(1, now).unwrap();
    // The last one in rotation may not go.
    assert!(conflict(r.m.drain(2, now)).contains("only worker in rotation"));
    r.m.undrain(1, now).unwrap();
    assert!(!r.core.worker(1).unwrap().drained);
    assert!(r.events().iter().any(|e| matches!(
        e,
        SupervisorEvent::Drain {
            worker: 1,
            drained: false,
            ..
        }
    )));
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn unknown_booting_and_replaced_workers_are_refused_with_the_reason() {
    let mut r = Rig::new(quiet(2));
    let now = r.now;
    assert!(matches!(
        r.m.drain(9, now),
        Err(WorkerActionError::NotFound(_))
    ));
    assert!(matches!(
        r.m.replace(9, now),
        Err(WorkerActionError::NotFound(_))
    ));
    assert!(conflict(r.m.drain(1, now)).contains("still booting"));
    r.ready(1).ready(2);
    r.calls();
    assert_eq!(r.m.replace(1, now).unwrap(), 0);
    assert_eq!(r.calls(), vec![succ(1, 3)]);
    assert!(conflict(r.m.replace(1, now)).contains("being replaced already"));
    assert!(conflict(r.m.drain(3, now)).contains("booting to replace worker 1"));
    r.m.stop(now);
    assert!(conflict(r.m.undrain(2, now)).contains("shutting down"));
}

#[test]
fn replace_is_successor_first_for_that_slot_only() {
    let mut r = ready_cluster(quiet(3));
    let now = r.now;
    r.m.replace(2, now).unwrap();
    assert_eq!(r.calls(), vec![succ(2, 4)]);
    let recycled: Vec<_> = r
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Recycle { worker, reason, .. } => Some((worker, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(recycled, vec![(2, RecycleReason::Operator { worker: 2 })]);
    r.ready(4);
    assert_eq!(r.calls(), vec![Call::Disconnect(2)]);
    assert_eq!(r.slot(1).worker, Some(4));
    assert_eq!(r.slot(0).worker, Some(1));
    assert_eq!(r.slot(2).worker, Some(3));
}

#[test]
fn a_drained_worker_is_not_replaced_as_hung_but_a_reload_replaces_it() {
    let cfg = Supervision::new(2).heartbeat_timeout(ms(1000));
    let mut r = ready_cluster(cfg);
    let now = r.now;
    r.m.drain(1, now).unwrap();
    // Worker 1 is stopped in a debugger: no heartbeat. Worker 2 beats.
    r.at(900).beat(2, 0).tick();
    r.at(1800).beat(2, 0).tick();
    r.at(2500).beat(2, 0).tick();
    assert_eq!(r.calls(), vec![], "a drained worker is left alone");
    r.m.reload(r.now).unwrap();
    let calls = r.calls();
    assert!(calls.contains(&succ(1, 3)), "{calls:?}");
}
