//! Recycling by age, by connections handled (with jitter), by memory.

use super::*;
use crate::supervise::events::RecycleReason;

fn recycles(events: Vec<SupervisorEvent>) -> Vec<(u32, RecycleReason)> {
    events
        .into_iter()
        .filter_map(|e| match e {
            SupervisorEvent::Recycle { worker, reason, .. } => Some((worker, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn by_age_one_worker_at_a_time() {
    let mut r = ready_cluster(quiet(2).max_age(ms(800)));
    r.at(800).tick();
    assert_eq!(r.calls(), vec![]);
    r.at(801).tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 1, new: 3 }]);
    let rec = recycles(r.events());
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].1.to_string(), "worker 1 is older than 800ms");
    r.at(900).tick().ready(3);
    assert_eq!(
        r.calls(),
        vec![Call::Disconnect(1), Call::Successor { old: 2, new: 4 }]
    );
    assert_eq!(recycles(r.events())[0].0, 2);
    assert_eq!(r.slot(0).restarts, 1);
}

#[test]
fn by_requests_at_the_worker_s_own_limit_drawn_with_jitter() {
    let mut r = ready_cluster(quiet(1).max_requests(30).max_requests_jitter(300));
    let mut at = None;
    for handled in 0..=400 {
        r.beat(1, handled).tick();
        if !r.calls().is_empty() {
            at = Some(handled);
            break;
        }
    }
    let at = at.expect("recycled");
    assert!((30..=330).contains(&at), "recycled at {at}");
    let rec = recycles(r.events());
    assert_eq!(
        rec[0].1,
        RecycleReason::Requests {
            worker: 1,
            handled: at,
            limit: at
        }
    );
}

#[test]
fn by_memory_only_the_worker_that_grew() {
    let limit = 96 << 20;
    let mut r = ready_cluster(quiet(2).max_memory(limit));
    r.set_rss(1, 50 << 20).set_rss(2, 50 << 20).at(100).tick();
    assert_eq!(r.calls(), vec![]);
    r.set_rss(1, 160 << 20).at(200).tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 1, new: 3 }]);
    let text = recycles(r.events())[0].1.to_string();
    assert!(
        text.contains("bytes of memory") && text.contains(&format!("limit {limit}")),
        "{text}"
    );
}

#[test]
fn workers_not_ready_or_leaving_are_not_recycled() {
    let mut r = Rig::new(quiet(2).max_age(ms(100)).boot_timeout(ms(10_000)));
    r.calls();
    r.ready(2);
    r.core.disconnect(2);
    r.calls();
    r.at(500).tick();
    assert_eq!(r.calls(), vec![]);
}

fn health(id: u32, rps: f64, cpu: f64, rss: u64) -> crate::supervise::WorkerHealth {
    crate::supervise::WorkerHealth {
        worker: id,
        requests_per_sec: Some(rps),
        cpu_per_sec: Some(cpu),
        rss_bytes: rss,
        ..Default::default()
    }
}

#[test]
fn the_applications_own_judgement_replaces_a_worker_successor_first() {
    let mut r = ready_cluster(quiet(2).recycle_when(|h| {
        (h.app.get("sick") == Some(&serde_json::json!(true)))
            .then(|| "the app says it is sick".into())
    }));
    let mut sick = health(2, 10.0, 0.1, 1);
    sick.app.insert("sick".into(), serde_json::json!(true));
    r.at(100)
        .health(1, health(1, 10.0, 0.1, 1))
        .health(2, sick)
        .tick();
    assert_eq!(r.calls(), vec![Call::Successor { old: 2, new: 3 }]);
    let ev = r.events();
    assert!(
        ev.iter().any(
            |e| matches!(e, SupervisorEvent::Recycle { worker: 2, reason, .. }
            if reason.to_string() == "worker 2: the app says it is sick")
        ),
        "{ev:?}"
    );
}

#[test]
fn a_degraded_worker_is_replaced_after_its_streak_and_a_healthy_one_is_not() {
    let mut r =
        ready_cluster(quiet(2).recycle_degraded(crate::supervise::Degraded::new().beats(3)));
    r.at(1000)
        .health(1, health(1, 100.0, 0.5, 100))
        .health(2, health(2, 100.0, 0.5, 100))
        .tick();
    for i in 2..=4 {
        // Worker 1 slows down while it costs more; worker 2 holds.
        r.at(1000 * i)
            .health(1, health(1, 70.0, 0.7, 150))
            .health(2, health(2, 99.0, 0.5, 100))
            .tick();
    }
    assert_eq!(r.calls(), vec![Call::Successor { old: 1, new: 3 }]);
    let ev = r.events();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            SupervisorEvent::Recycle {
                worker: 1,
                reason: RecycleReason::Degraded { .. },
                ..
            }
        )),
        "{ev:?}"
    );
}
