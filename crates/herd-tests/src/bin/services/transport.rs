//! `transport`: two workers and a service `t`. Each worker sends 2000
//! numbered messages, asks (doubling), asks a service the primary does not
//! have, answers the primary's request, checks the order of 500 pushes,
//! sends one plain user message, and exits. The primary reports what it
//! saw per worker: the order of the messages, the WorkerGone after them,
//! the user messages (only the plain one), and the answers.

use std::collections::BTreeMap;
use std::time::Duration;

use herd::services::{Pushed, ServiceEvent};
use serde_json::{json, Value};

use crate::say;

const N: u64 = 2000;
const PUSHES: u64 = 500;

pub async fn primary() {
    let p = herd::Primary::new().unwrap();
    let (svc, mut inbox) = p.service("t").unwrap();
    // A second registration of the name is refused.
    let dup = p.service("t").err().map(|e| e.to_string());
    let bad = p.service("no spaces").err().map(|e| e.to_string());
    let mut events = p.events();
    let ids: Vec<u32> = (0..2).map(|_| crate::fork(&p).id()).collect();
    crate::online(&mut events, 2).await;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut out_of_order = 0;
    let mut gone_after: BTreeMap<u32, u64> = BTreeMap::new();
    let mut asking = None;
    let mut pushed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gone_after.len() < 2 {
        let ev = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("the workers' traffic within 30 s")
            .unwrap();
        match ev {
            ServiceEvent::Message { worker, message } => {
                let n: u64 = message.decode().unwrap();
                let want = next.entry(worker).or_default();
                if n != *want {
                    out_of_order += 1;
                }
                *want = n + 1;
                if n == N - 1 && !pushed && next.values().filter(|v| **v == N).count() == 2 {
                    pushed = true;
                    // Apart from this loop, which must go on answering.
                    let (svc, ids) = (svc.clone(), ids.clone());
                    asking = Some(tokio::spawn(async move {
                        for i in 0..PUSHES {
                            svc.broadcast(None, &i).await.unwrap();
                        }
                        let mut answers = BTreeMap::new();
                        for id in ids {
                            let r: Result<u32, _> =
                                svc.request(id, &"who?", Duration::from_secs(10)).await;
                            answers.insert(id, json!(r.map_err(|e| e.to_string())));
                        }
                        answers
                    }));
                }
            }
            ServiceEvent::Request { worker: _, request } => {
                let n: u64 = request.decode().unwrap();
                request.reply(&(n * 2)).unwrap();
            }
            ServiceEvent::WorkerGone { worker } => {
                gone_after.insert(worker, next.get(&worker).copied().unwrap_or(0));
            }
            _ => {}
        }
    }
    let answers = asking.expect("pushed").await.unwrap();
    // The application's own messages: only the plain one per worker.
    let mut plain = Vec::new();
    while let Some(ev) = events.try_next() {
        if let herd::Event::Message { message, .. } = ev {
            plain.push(message.decode::<Value>().unwrap());
        }
    }
    say(json!({
        "event": "transport",
        "dup": dup,
        "bad": bad,
        "out_of_order": out_of_order,
        "gone_after": gone_after,
        "answers": answers,
        "plain": plain,
        "gone_send": svc.send(ids[0], &1).await.err().map(|e| e.to_string()),
    }));
}

pub async fn worker() {
    let w = herd::Worker::connect().await.unwrap();
    let (svc, mut inbox) = w.service("t").unwrap();
    let (nope, _) = w.service("nope").unwrap();
    for i in 0..N {
        svc.send(&i).await.unwrap();
    }
    let doubled: u64 = svc.request(&21u64).await.unwrap();
    let unknown = nope
        .request_with_timeout::<_, u64>(&1, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    let mut got = 0u64;
    let mut in_order = true;
    let mut asked = false;
    while got < PUSHES || !asked {
        match tokio::time::timeout(Duration::from_secs(20), inbox.recv()).await {
            Ok(Some(Pushed::Message(m))) => {
                in_order &= m.decode::<u64>().unwrap() == got;
                got += 1;
            }
            Ok(Some(Pushed::Request(r))) => {
                r.reply(&w.id()).unwrap();
                asked = true;
            }
            other => panic!("worker {}: {other:?} after {got} pushes", w.id()),
        }
    }
    w.send(&json!({"plain": w.id()})).await.unwrap();
    say(
        json!({"event": "worker", "id": w.id(), "doubled": doubled, "unknown": unknown,
               "pushes": got, "in_order": in_order}),
    );
    w.flush().await;
    w.disconnect();
    w.flush().await;
}

/// `flood`: the worker floods service `f` with 1 KiB messages, never
/// waiting (`send_now`), while the primary reads none of them, until its
/// send is refused (`Error::Backlog`): the primary held at most its bound.
/// When told `drain` on stdin, the primary counts what waited in its
/// inbox, then reads everything up to the worker's `end`.
pub async fn flood_primary() {
    let p = herd::Primary::new().unwrap();
    let (_svc, mut inbox) = p.service("f").unwrap();
    crate::fork(&p);
    let mut line = String::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line).map(|_| line))
        .await
        .unwrap()
        .unwrap();
    // What waits now, held back by the bound (reading it frees room, and
    // the primary reads on).
    let queued = inbox.len() as u64;
    let mut total = 0u64;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), inbox.recv())
            .await
            .expect("the rest within 30 s")
            .unwrap();
        if let ServiceEvent::Message { message, .. } = ev {
            if message.decode::<Value>().unwrap() == json!("end") {
                break;
            }
            total += 1;
        }
    }
    say(json!({"event": "flood", "queued": queued, "total": total}));
}

pub async fn flood_worker() {
    let w = herd::Worker::connect().await.unwrap();
    let (svc, _inbox) = w.service("f").unwrap();
    let pad = "x".repeat(1000);
    let mut sent = 0u64;
    let refused = loop {
        match svc.send_now(&pad) {
            Ok(()) => sent += 1,
            Err(e) => break e.to_string(),
        }
        if sent & 1023 == 0 {
            tokio::task::yield_now().await;
        }
    };
    say(json!({"event": "worker", "id": w.id(), "sent": sent, "refused": refused}));
    svc.send(&"end").await.unwrap();
    std::future::pending::<()>().await;
}
