//! The health verdict: up only when every wanted worker is ready; marked
//! down and reloads through health answer "draining" while workers serve.

use super::*;
use crate::supervise::events::ReloadPhase;
use crate::supervise::status::Health;

fn verdicts(events: Vec<SupervisorEvent>) -> Vec<Health> {
    events
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Health { health } => Some(health),
            _ => None,
        })
        .collect()
}

#[test]
fn health_is_down_until_every_wanted_worker_is_ready_then_up() {
    let mut r = Rig::new(quiet(2));
    assert_eq!(r.m.health(), Health::Down);
    r.at(10).ready(1);
    assert_eq!(r.m.health(), Health::Down, "one of two");
    r.at(20).ready(2);
    assert_eq!(r.m.health(), Health::Up);
    assert_eq!(verdicts(r.all_events()), vec![Health::Up]);
    // A crash takes it down until the respawn is ready.
    r.at(30).exit(1, 1);
    assert_eq!(r.m.health(), Health::Down);
}

#[test]
fn marking_down_drains_while_workers_keep_serving_and_marking_up_restores() {
    let mut r = ready_cluster(quiet(2));
    assert_eq!(r.m.health(), Health::Up);
    r.m.mark_down(true, r.now);
    assert_eq!(r.m.health(), Health::Draining);
    assert!(r.calls().is_empty(), "no worker is touched");
    assert_eq!(r.m.snapshot(r.now).status.ready, 2);
    assert!(r.m.snapshot(r.now).status.marked_down);
    r.m.mark_down(false, r.now);
    assert_eq!(r.m.health(), Health::Up);
    assert_eq!(verdicts(r.all_events()), vec![Health::Draining, Health::Up]);
}

#[test]
fn a_reload_through_health_drains_first_replaces_then_marks_up() {
    let mut r = ready_cluster(quiet(1).reload_via_health(true).drain_delay(ms(500)));
    let id = r.m.reload(r.now).unwrap();
    assert_eq!(r.m.health(), Health::Draining, "marked down at once");
    assert!(
        r.calls().is_empty(),
        "nothing replaced during the drain delay"
    );
    assert_eq!(r.m.next_due(), Some(r.t0 + ms(500)));
    // Asked again while draining: the same reload.
    assert_eq!(r.m.reload(r.now).unwrap(), id);
    r.at(499).tick();
    assert!(r.calls().is_empty());
    r.at(500).tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 1, new: 2 }]);
    assert_eq!(r.m.health(), Health::Draining, "still down while replacing");
    r.at(600).ready(2);
    let outcomes = r.m.take_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, id);
    assert_eq!(r.m.health(), Health::Up, "up once the reload ended");
    let events = r.all_events();
    assert!(events.iter().any(|e| matches!(
        e,
        SupervisorEvent::Reload(ReloadPhase::Finished { replaced: 1, .. })
    )));
    assert_eq!(verdicts(events), vec![Health::Draining, Health::Up]);
}

#[test]
fn a_shutdown_answers_draining_and_cancels_a_reload_still_draining() {
    let mut r = ready_cluster(quiet(1).reload_via_health(true).drain_delay(ms(500)));
    let id = r.m.reload(r.now).unwrap();
    r.at(100);
    r.m.stop(r.now);
    assert_eq!(r.m.health(), Health::Draining);
    let outcomes = r.m.take_outcomes();
    assert_eq!(
        outcomes,
        vec![(id, Err(crate::supervise::ReloadError::Stopping))]
    );
    r.at(600).tick();
    assert!(r.calls().is_empty(), "no reload after the stop");
}

#[test]
fn a_reload_queued_behind_a_reload_through_health_drains_first_too() {
    let mut r = ready_cluster(quiet(1).reload_via_health(true).drain_delay(ms(500)));
    let first = r.m.reload(r.now).unwrap();
    r.at(500).tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 1, new: 2 }]);
    // Asked while the first replaces: it waits, and then drains again.
    let second = r.m.reload(r.now).unwrap();
    assert_ne!(first, second);
    r.at(600).ready(2);
    assert_eq!(r.m.take_outcomes().len(), 1, "the first finished");
    assert_eq!(r.m.health(), Health::Draining, "marked down for the second");
    assert_eq!(
        r.calls(),
        vec![Call::Disconnect(1)],
        "nothing replaced during its drain delay"
    );
    r.at(1100).tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 2, new: 3 }]);
    r.at(1200).ready(3);
    assert_eq!(r.m.take_outcomes()[0].0, second);
    assert_eq!(r.m.health(), Health::Up);
}
