//! The emitter's scenarios (`SVC`):
//!
//! - `emit`: three workers; every target form from the primary and from
//!   each worker, then `done` to everyone; each process reports what it got.
//! - `emit-order`: floods from the primary and two workers; each receiver
//!   checks the order per sender.
//! - `emit-kill`: worker 2 is SIGKILLed; emits to it, to all and through
//!   the primary from worker 1 go on; workers 1 and 3 get everything.
//! - `emit-once-off`: `once` fires once, `off` ends a stream and stops
//!   deliveries, in both roles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herd::services::{Origin, Subscription, Target};
use herd::{Emitter, Primary, Worker};
use serde_json::{json, Value};

use crate::say;

const FLOOD: u64 = 20_000;

fn name(o: Origin) -> String {
    match o {
        Origin::Primary => "p".into(),
        Origin::Worker(id) => format!("w{id}"),
    }
}

async fn next<T: serde::de::DeserializeOwned>(
    sub: &mut Subscription<T>,
    what: &str,
) -> herd::services::Emitted<T> {
    match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
        Ok(Some(e)) => e,
        other => panic!("{what}: {:?}", other.map(|o| o.is_some())),
    }
}

/// Collects `ev` until `done` came from each of `senders`: what came, in
/// order, as "sender:payload".
async fn collect(
    ev: &mut Subscription<Value>,
    done: &mut Subscription<Value>,
    senders: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut finished = BTreeSet::new();
    while finished.len() < senders {
        tokio::select! {
            e = next(ev, "ev") => got.push(format!("{}:{}", name(e.from), e.payload.as_str().unwrap_or("?"))),
            d = next(done, "done") => { finished.insert(name(d.from)); }
        }
    }
    // What was queued before the last `done` is here by order per sender.
    while let Some(e) = ev.try_next() {
        got.push(format!(
            "{}:{}",
            name(e.from),
            e.payload.as_str().unwrap_or("?")
        ));
    }
    got.sort();
    got
}

async fn start(workers: usize) -> (Primary, Emitter, Vec<herd::WorkerHandle>) {
    let p = Primary::new().unwrap();
    let em = p.emitter().unwrap();
    let mut ready = em.on::<u32>("ready");
    let handles: Vec<_> = (0..workers).map(|_| crate::fork(&p)).collect();
    for _ in 0..workers {
        next(&mut ready, "ready").await;
    }
    (p, em, handles)
}

async fn worker_start() -> (Worker, Emitter) {
    let w = Worker::connect().await.unwrap();
    let em = w.emitter().unwrap();
    (w, em)
}

pub async fn primary(s: &str) {
    match s {
        "emit" => emit_primary().await,
        "emit-order" => order_primary().await,
        "emit-kill" => kill_primary().await,
        "emit-once-off" => once_off_primary().await,
        _ => panic!("{s}"),
    }
}

pub async fn worker(s: &str) {
    let (w, em) = worker_start().await;
    match s {
        "emit" => emit_worker(w, em).await,
        "emit-order" => order_worker(w, em).await,
        "emit-kill" => kill_worker(w, em).await,
        "emit-once-off" => once_off_worker(w, em).await,
        _ => panic!("{s}"),
    }
}

async fn emit_primary() {
    let p = Primary::new().unwrap();
    let em = p.emitter().unwrap();
    let mut ready = em.on::<u32>("ready");
    let (mut ev, mut done) = (em.on::<Value>("ev"), em.on::<Value>("done"));
    for _ in 0..3 {
        crate::fork(&p);
    }
    for _ in 0..3 {
        next(&mut ready, "ready").await;
    }
    em.emit("ev", "p-default").await.unwrap();
    em.emit_to(Target::Worker(2), "ev", "p-to-2").await.unwrap();
    em.to(Target::Myself).emit("ev", "p-self").await.unwrap();
    em.emit_to(&[1u32, 3][..], "ev", "p-1-3").await.unwrap();
    em.emit_to(Target::Worker(99), "ev", "p-to-nobody")
        .await
        .unwrap();
    em.emit_to(Target::AllWorkers, "go", &()).await.unwrap();
    em.emit_to([Target::Primary, Target::AllWorkers], "done", &0)
        .await
        .unwrap();
    let got = collect(&mut ev, &mut done, 4).await;
    say(json!({"event": "emit", "got": got}));
}

async fn emit_worker(w: Worker, em: Emitter) {
    let me = w.id();
    let (mut ev, mut done) = (em.on::<Value>("ev"), em.on::<Value>("done"));
    let mut go = em.once::<()>("go");
    em.to(Target::Primary).emit("ready", &me).await.unwrap();
    next(&mut go, "go").await;
    let nextw = me % 3 + 1;
    em.emit("ev", &format!("w{me}-default")).await.unwrap();
    em.emit_to(Target::AllWorkers, "ev", &format!("w{me}-all"))
        .await
        .unwrap();
    em.emit_to(Target::Worker(nextw), "ev", &format!("w{me}-to-next"))
        .await
        .unwrap();
    em.emit_to(Target::Primary, "ev", &format!("w{me}-to-p"))
        .await
        .unwrap();
    em.emit_to(Target::Myself, "ev", &format!("w{me}-self"))
        .await
        .unwrap();
    em.emit_to([Target::Primary, Target::AllWorkers], "done", &0)
        .await
        .unwrap();
    let got = collect(&mut ev, &mut done, 4).await;
    say(json!({"event": "worker", "id": me, "got": got}));
    // Stay until the test is done (the primary's emits may still come).
    std::future::pending::<()>().await;
}

/// Order per sender under load: `FLOOD` numbered emits from the primary
/// (to all workers), from worker 1 (to all workers and the primary) and
/// from worker 2 (to worker 3 and the primary).
async fn order_primary() {
    let (_p, em, _w) = start(3).await;
    let mut n = em.on::<u64>("n");
    let mut done = em.on::<Value>("done");
    em.emit_to(Target::AllWorkers, "go", &()).await.unwrap();
    for i in 0..FLOOD {
        em.emit_to(Target::AllWorkers, "n", &i).await.unwrap();
    }
    em.emit_to([Target::Primary, Target::AllWorkers], "done", &0)
        .await
        .unwrap();
    // `done` from the primary itself and from each worker.
    let report = check_order(&mut n, &mut done, 4).await;
    say(json!({"event": "emit-order", "primary": report}));
}

async fn order_worker(w: Worker, em: Emitter) {
    let me = w.id();
    let mut n = em.on::<u64>("n");
    let mut done = em.on::<Value>("done");
    let mut go = em.once::<()>("go");
    em.to(Target::Primary).emit("ready", &me).await.unwrap();
    // Floods while it reads what the others flood.
    let sender = em.clone();
    tokio::spawn(async move {
        next(&mut go, "go").await;
        let targets: Vec<Target> = match me {
            1 => vec![Target::AllWorkers, Target::Primary],
            2 => vec![Target::Worker(3), Target::Primary],
            _ => vec![],
        };
        if !targets.is_empty() {
            for i in 0..FLOOD {
                sender.emit_to(targets.clone(), "n", &i).await.unwrap();
            }
        }
        sender
            .emit_to([Target::Primary, Target::AllWorkers], "done", &0)
            .await
            .unwrap();
    });
    let report = check_order(&mut n, &mut done, 4).await;
    say(json!({"event": "worker", "id": me, "order": report}));
    std::future::pending::<()>().await;
}

/// Per sender: how many came and whether they came in order.
async fn check_order(
    n: &mut Subscription<u64>,
    done: &mut Subscription<Value>,
    senders: usize,
) -> Value {
    let mut next_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut disorder = 0u64;
    let mut finished = BTreeSet::new();
    let mut take = |e: herd::services::Emitted<u64>| {
        let want = next_of.entry(name(e.from)).or_default();
        if e.payload != *want {
            disorder += 1;
        }
        *want = e.payload + 1;
    };
    while finished.len() < senders {
        tokio::select! {
            biased;
            e = next(n, "n") => take(e),
            d = next(done, "done") => { finished.insert(name(d.from)); }
        }
    }
    while let Some(e) = n.try_next() {
        take(e);
    }
    json!({"counts": next_of, "disorder": disorder})
}

/// Worker 2 is SIGKILLed; then the primary emits `FLOOD` to all workers
/// and to worker 2 by name, and worker 1 emits to worker 2 and 3 through
/// the primary.
async fn kill_primary() {
    let (_p, em, workers) = start(3).await;
    workers[1].kill_with(herd::Signal::SIGKILL);
    let mut emitted_errors = 0;
    for i in 0..FLOOD {
        // To a dead worker by name: dropped, no error, no delay to others.
        if em.emit_to(Target::Worker(2), "n", &i).await.is_err() {
            emitted_errors += 1;
        }
        if em.emit_to(Target::AllWorkers, "n", &i).await.is_err() {
            emitted_errors += 1;
        }
    }
    em.emit_to(Target::AllWorkers, "go", &()).await.unwrap();
    em.emit_to(Target::AllWorkers, "done", &0).await.unwrap();
    let status = workers[1].wait().await;
    say(
        json!({"event": "emit-kill", "errors": emitted_errors, "killed": status.signal.map(|s| s.to_string())}),
    );
}

async fn kill_worker(w: Worker, em: Emitter) {
    let me = w.id();
    let mut n = em.on::<u64>("n");
    let mut done = em.on::<Value>("done");
    let mut go = em.once::<()>("go");
    em.to(Target::Primary).emit("ready", &me).await.unwrap();
    let sender = em.clone();
    tokio::spawn(async move {
        next(&mut go, "go").await;
        if me == 1 {
            for i in 0..1000u64 {
                sender
                    .emit_to([Target::Worker(2), Target::Worker(3)], "n", &i)
                    .await
                    .unwrap();
            }
        }
        sender
            .emit_to(Target::AllWorkers, "done", &0)
            .await
            .unwrap();
    });
    // From the primary, worker 1 and worker 3 (worker 2 is dead).
    let report = check_order(&mut n, &mut done, 3).await;
    say(json!({"event": "worker", "id": me, "order": report}));
    std::future::pending::<()>().await;
}

async fn once_off_primary() {
    let (_p, em, _w) = start(1).await;
    // The primary's own once and off.
    let mut a = em.once::<u32>("a");
    let mut b = em.on::<u32>("b");
    em.emit_to(Target::AllWorkers, "go", &()).await.unwrap();
    let first_a = next(&mut a, "a").await.payload;
    let a_after = tokio::time::timeout(Duration::from_secs(10), a.next())
        .await
        .unwrap()
        .map(|e| e.payload);
    let first_b = next(&mut b, "b").await.payload;
    let offed = em.off("b");
    let b_after = tokio::time::timeout(Duration::from_secs(10), b.next())
        .await
        .unwrap()
        .map(|e| e.payload);
    // Tell the worker; it emits b again, and c: c arrives, b has no one.
    let mut c = em.on::<u32>("c");
    let mut b2_seen = em.on::<u32>("b2");
    let mut report = em.on::<Value>("report");
    em.emit_to(Target::AllWorkers, "offed", &()).await.unwrap();
    let c_payload = next(&mut c, "c").await.payload;
    let b2 = next(&mut b2_seen, "b2").await.payload;
    let worker = next(&mut report, "report").await.payload;
    say(
        json!({"event": "emit-once-off", "first_a": first_a, "a_after": a_after,
               "first_b": first_b, "offed": offed, "b_after": b_after, "c": c_payload,
               "b2": b2, "worker": worker}),
    );
}

async fn once_off_worker(w: Worker, em: Emitter) {
    let me = w.id();
    let mut go = em.once::<()>("go");
    let mut offed = em.once::<()>("offed");
    em.to(Target::Primary).emit("ready", &me).await.unwrap();
    next(&mut go, "go").await;
    for i in 1..=3u32 {
        em.emit_to(Target::Primary, "a", &i).await.unwrap();
    }
    em.emit_to(Target::Primary, "b", &1).await.unwrap();
    next(&mut offed, "offed").await;
    // After the primary's off: these b go to no one.
    em.emit_to(Target::Primary, "b", &2).await.unwrap();
    // The worker's own once and off, through itself.
    let mut x = em.once::<u32>("x");
    let mut y = em.on::<u32>("y");
    let mut y_count = 0;
    for i in 1..=3u32 {
        em.emit_to(Target::Myself, "x", &i).await.unwrap();
    }
    let first_x = x.next().await.map(|e| e.payload);
    let x_after = x.next().await.map(|e| e.payload);
    em.emit_to(Target::Myself, "y", &1).await.unwrap();
    while y.try_next().is_some() {
        y_count += 1;
    }
    let y_offed = em.off("y");
    em.emit_to(Target::Myself, "y", &2).await.unwrap();
    let y_after = y.next().await.map(|e| e.payload);
    em.emit_to(Target::Primary, "b2", &7).await.unwrap();
    em.emit_to(Target::Primary, "c", &9).await.unwrap();
    let report = json!({"first_x": first_x, "x_after": x_after, "y_count": y_count,
                        "y_offed": y_offed, "y_after": y_after});
    em.emit_to(Target::Primary, "report", &report)
        .await
        .unwrap();
    std::future::pending::<()>().await;
}
