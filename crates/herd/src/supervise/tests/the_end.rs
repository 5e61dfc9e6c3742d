//! When every worker exited and the restart policy starts none again, the
//! cluster ends: cleanly when each exited 0.

use super::*;
use crate::supervise::config::Restart;

#[test]
fn on_failure_ends_the_cluster_cleanly_when_every_worker_exits_0() {
    let mut r = ready_cluster(quiet(2).restart(Restart::OnFailure));
    r.at(1).exit(1, 0).tick();
    assert!(!r.m.stopping(), "one worker still runs");
    r.exit(2, 0).tick();
    assert!(r.m.stopping(), "nothing will come back: the cluster ends");
    assert!(!r.m.gave_up(), "every worker exited 0: a clean end");
    assert_eq!(r.calls(), vec![]);
}

#[test]
fn never_ends_the_cluster_as_a_failure_when_a_worker_failed() {
    let mut r = ready_cluster(quiet(2).restart(Restart::Never));
    r.at(1).exit(1, 0).exit(2, 3).tick();
    assert!(r.m.stopping() && r.m.gave_up());
}

#[test]
fn always_restarts_workers_that_exit_0_and_the_cluster_stays() {
    let mut r = ready_cluster(quiet(2).restart(Restart::Always));
    r.at(1).exit(1, 0).exit(2, 0).tick();
    assert!(!r.m.stopping());
    assert_eq!(r.calls(), vec![Call::Fork(3), Call::Fork(4)]);
}
