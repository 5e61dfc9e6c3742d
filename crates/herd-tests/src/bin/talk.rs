//! A primary and its worker talking, for tests/payloads.rs and
//! tests/requests.rs: exact payloads, and messages with a reply.
//!
//! `TALK` (inherited by the worker) picks the scenario; the primary forks
//! one worker, plays its side, prints `{"event":"forked","pid":PID}` and
//! then one JSON line `{"event":SCENARIO, ...}` with what each side saw,
//! and exits (its workers die with it). Floats are printed as their bits,
//! so that nothing on the way to the test can round them.
//!
//! - `float`, `bytes`, `nan`: a payload each way (worker to primary, then
//!   primary to worker, which reports what it got).
//! - `ask`: a request each way, with plain messages around them.
//! - `dies`: the primary asks; the worker exits without answering.
//! - `timeout`: a request each way that is held unanswered past its
//!   timeout, answered late, then a request that is answered.
//! - `bound`: the worker's own bound on its waiting requests, then a raw
//!   worker (`TALK_RAW=1`, speaking the wire itself) that floods requests
//!   the primary holds, and sends replies to no request.

#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use herd::{Event, Events, Primary, Request, Role, Worker, WorkerHandle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Floats that a lossy parser gets wrong, or nearly.
const FLOATS: [f64; 8] = [
    123456789.12345679,
    0.1,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    9007199254740993.0,
    0.30000000000000004,
    -8.98846567431158e307,
];

/// Byte strings as a message holds them: in a plain field, and in an
/// internally tagged enum (which serde buffers on the way in).
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Blob {
    data: herd::Binary,
    chunk: Chunk,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
#[serde(tag = "type")]
enum Chunk {
    Last { buf: herd::Binary },
}

fn blob() -> Blob {
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 256) as u8).collect();
    Blob {
        chunk: Chunk::Last {
            buf: data.iter().rev().copied().collect::<Vec<u8>>().into(),
        },
        data: data.into(),
    }
}

#[derive(Serialize, Deserialize)]
struct Num {
    x: f64,
}

#[derive(Serialize, Deserialize)]
struct Add {
    a: u64,
    b: u64,
}

fn say(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn outcome<T: Serialize>(r: &Result<T, herd::Error>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

#[tokio::main]
async fn main() {
    let scenario = std::env::var("TALK").expect("TALK");
    match herd::role() {
        Role::Worker if std::env::var_os("TALK_RAW").is_some() => raw_worker(),
        Role::Worker => worker(&scenario).await,
        Role::Primary => {
            let primary = Primary::new().expect("primary");
            let mut events = primary.events();
            let w = primary.fork().expect("fork");
            say(json!({"event": "forked", "pid": w.pid()}));
            until(&mut events, |e| matches!(e, Event::Online { .. })).await;
            let report = match scenario.as_str() {
                "float" => float(&mut events, &w).await,
                "bytes" => bytes(&mut events, &w).await,
                "nan" => nan(&mut events, &w).await,
                "ask" => ask(&mut events, &w).await,
                "dies" => dies(&mut events, &w).await,
                "timeout" => timeout(&mut events, &w).await,
                "bound" => bound(&primary, &mut events, &w).await,
                other => panic!("talk: unknown TALK={other:?}"),
            };
            let mut report = report;
            report["event"] = json!(scenario);
            say(report);
            std::process::exit(0);
        }
    }
}

/// The next event that `pred` accepts; the others are skipped, except
/// errors, which end the scenario.
async fn until(events: &mut Events, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let wait = async {
        loop {
            let e = events.next().await.expect("events");
            if let Event::Error { error, .. } = &e {
                panic!("talk: error event: {error}");
            }
            if pred(&e) {
                return e;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("talk: no such event within 10 s")
}

async fn message(events: &mut Events) -> herd::Message {
    match until(events, |e| matches!(e, Event::Message { .. })).await {
        Event::Message { message, .. } => message,
        _ => unreachable!(),
    }
}

async fn request(events: &mut Events) -> Request {
    match until(events, |e| matches!(e, Event::Request { .. })).await {
        Event::Request { request, .. } => request,
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------- primary

async fn float(events: &mut Events, w: &WorkerHandle) -> Value {
    let got: Vec<f64> = message(events).await.decode().expect("decode floats");
    w.send(&FLOATS).await.expect("send floats");
    let back: Value = message(events).await.decode().unwrap();
    json!({"sent": bits(&FLOATS), "w2p": bits(&got), "p2w": back["bits"]})
}

async fn bytes(events: &mut Events, w: &WorkerHandle) -> Value {
    let m = message(events).await;
    let got: Blob = m.decode().expect("decode bytes");
    w.send(&blob()).await.expect("send bytes");
    let back: Value = message(events).await.decode().unwrap();
    json!({"n": 2 * 65536, "w2p_equal": got == blob(), "w2p_len": m.len(),
           "p2w_equal": back["equal"], "p2w_len": back["len"]})
}

async fn nan(events: &mut Events, w: &WorkerHandle) -> Value {
    let w2p_first: Value = message(events)
        .await
        .decode()
        .unwrap_or(json!("undecodable"));
    let p_errors = [
        outcome(&w.send(&Num { x: f64::NAN }).await),
        outcome(&w.send(&vec![1.0, f64::NEG_INFINITY]).await),
    ];
    w.send(&json!({"after": 1})).await.unwrap();
    let p2w_first: Value = message(events).await.decode().unwrap();
    json!({"w2p_first": w2p_first, "p_errors": p_errors, "p2w_first": p2w_first["first"]})
}

async fn ask(events: &mut Events, w: &WorkerHandle) -> Value {
    w.send(&json!({"plain": "p1"})).await.unwrap();
    let asking = {
        let w = w.clone();
        tokio::spawn(async move { w.request::<_, u64>(&Add { a: 4, b: 5 }).await })
    };
    w.send(&json!({"plain": "p2"})).await.unwrap();
    let mut messages = Vec::new();
    let mut answered = 0;
    // The worker's request, its plain messages, and its echoes of ours.
    while messages.len() < 5 || answered < 1 {
        match until(events, |e| {
            matches!(e, Event::Message { .. } | Event::Request { .. })
        })
        .await
        {
            Event::Request { request, worker } => {
                assert_eq!(request.worker(), Some(worker));
                let add: Add = request.decode().unwrap();
                request.reply(&(add.a + add.b)).await.unwrap();
                answered += 1;
            }
            Event::Message { message, .. } => messages.push(message.decode::<Value>().unwrap()),
            _ => unreachable!(),
        }
    }
    let p_asked = asking.await.unwrap();
    json!({"messages": messages, "p_asked": outcome(&p_asked)})
}

async fn dies(events: &mut Events, w: &WorkerHandle) -> Value {
    let started = Instant::now();
    let r = w.request::<_, Value>(&json!({"die": 3})).await;
    let ms = started.elapsed().as_millis() as u64;
    let exit = until(events, |e| matches!(e, Event::Exit { .. })).await;
    let Event::Exit { status, .. } = exit else {
        unreachable!()
    };
    json!({"outcome": outcome(&r), "ms": ms, "worker": w.id(), "exit": status.code})
}

async fn timeout(events: &mut Events, w: &WorkerHandle) -> Value {
    // Ours, held by the worker past its timeout.
    let started = Instant::now();
    let r = w
        .request_with_timeout::<_, Value>(&json!("hold"), Duration::from_millis(300))
        .await;
    let p_ms = started.elapsed().as_millis() as u64;
    // Now the worker answers it, late; then a request that is answered.
    w.send(&json!("answer late")).await.unwrap();
    let p_after = w.request::<_, u64>(&Add { a: 1, b: 1 }).await;
    // The worker's, held here past its timeout.
    let held = request(events).await;
    let w_timeout: Value = message(events).await.decode().unwrap();
    held.reply(&"late").await.unwrap();
    let next = request(events).await;
    let add: Add = next.decode().unwrap();
    next.reply(&(add.a + add.b)).await.unwrap();
    let w_after: Value = message(events).await.decode().unwrap();
    json!({"p_outcome": outcome(&r), "p_ms": p_ms, "p_after": outcome(&p_after),
           "w_outcome": w_timeout["outcome"], "w_ms": w_timeout["ms"],
           "w_after": w_after["after"]})
}

async fn bound(primary: &Primary, events: &mut Events, w: &WorkerHandle) -> Value {
    let max = herd::request::MAX_PENDING;
    // The worker asks MAX_PENDING times; every request is held here.
    let mut held = Vec::new();
    while held.len() < max {
        held.push(request(events).await);
    }
    w.send(&json!("all held")).await.unwrap();
    let w_over: Value = message(events).await.decode().unwrap();
    drop(held);
    // A raw worker floods requests; the primary holds what it gets, and
    // answers with an error past the bound.
    let raw = primary
        .fork_with_env([("TALK_RAW", "1")])
        .expect("fork raw");
    say(json!({"event": "forked", "pid": raw.pid()}));
    let flood = max + 100;
    let mut held = Vec::new();
    let mut summary = None;
    while summary.is_none() {
        match until(events, |e| {
            e.worker() == Some(raw.id())
                && matches!(e, Event::Message { .. } | Event::Request { .. })
        })
        .await
        {
            Event::Request { request, .. } => held.push(request),
            Event::Message { message, .. } => summary = Some(message.decode::<Value>().unwrap()),
            _ => unreachable!(),
        }
    }
    // It still answers a request of ours, a second reply to it dropped.
    let ping = raw.request::<_, Value>(&"ping").await;
    let again = raw.request::<_, Value>(&"ping").await;
    json!({"w_over": w_over["outcome"], "max": max, "flood": flood, "held": held.len(),
           "raw": summary, "ping": outcome(&ping), "again": outcome(&again),
           "raw_connected": raw.is_connected()})
}

// ---------------------------------------------------------------- worker

async fn worker(scenario: &str) {
    let worker = Worker::connect().await.expect("connect");
    match scenario {
        "float" => {
            worker.send(&FLOATS).await.unwrap();
            let got: Vec<f64> = worker.recv().await.unwrap().decode().unwrap();
            worker.send(&json!({"bits": bits(&got)})).await.unwrap();
        }
        "bytes" => {
            worker.send(&blob()).await.unwrap();
            let m = worker.recv().await.unwrap();
            let equal = m.decode::<Blob>().map(|b| b == blob()).unwrap_or(false);
            worker
                .send(&json!({"equal": equal, "len": m.len()}))
                .await
                .unwrap();
        }
        "nan" => {
            let errors = [
                outcome(&worker.send(&Num { x: f64::NAN }).await),
                outcome(&worker.send(&[f64::INFINITY]).await),
            ];
            worker.send(&json!({ "w_errors": errors })).await.unwrap();
            let first: Value = worker
                .recv()
                .await
                .unwrap()
                .decode()
                .unwrap_or(json!("undecodable"));
            worker.send(&json!({ "first": first })).await.unwrap();
        }
        "ask" => {
            let answerer = worker.clone();
            tokio::spawn(async move {
                while let Some(req) = answerer.recv_request().await {
                    let add: Add = req.decode().unwrap();
                    req.reply(&(add.a * add.b)).await.unwrap();
                }
            });
            let echo = worker.clone();
            tokio::spawn(async move {
                while let Some(m) = echo.recv().await {
                    let v: Value = m.decode().unwrap();
                    echo.send(&json!({ "recv": v })).await.unwrap();
                }
            });
            worker.send(&json!({"plain": 1})).await.unwrap();
            let r = worker.request::<_, u64>(&Add { a: 2, b: 3 }).await;
            worker.send(&json!({"plain": 2})).await.unwrap();
            worker.send(&json!({ "asked": outcome(&r) })).await.unwrap();
        }
        "dies" => {
            let req = worker.recv_request().await.unwrap();
            let v: Value = req.decode().unwrap();
            std::process::exit(v["die"].as_i64().unwrap_or(1) as i32);
        }
        "timeout" => {
            let held = worker.recv_request().await.unwrap();
            assert_eq!(
                worker.recv().await.unwrap().decode::<String>().unwrap(),
                "answer late"
            );
            held.reply(&"late").await.unwrap();
            let next = worker.recv_request().await.unwrap();
            let add: Add = next.decode().unwrap();
            next.reply(&(add.a + add.b)).await.unwrap();
            // Ours, held by the primary.
            let started = Instant::now();
            let r = worker
                .request_with_timeout::<_, Value>(&"hold", Duration::from_millis(300))
                .await;
            let ms = started.elapsed().as_millis() as u64;
            worker
                .send(&json!({"outcome": outcome(&r), "ms": ms}))
                .await
                .unwrap();
            let after = worker.request::<_, u64>(&Add { a: 20, b: 22 }).await;
            worker
                .send(&json!({ "after": outcome(&after) }))
                .await
                .unwrap();
        }
        "bound" => {
            for i in 0..herd::request::MAX_PENDING {
                let w = worker.clone();
                tokio::spawn(async move {
                    let _ = w.request::<_, Value>(&i).await;
                });
            }
            // Once the primary holds them all, one more is refused here.
            let _ = worker.recv().await;
            let r = worker.request::<_, Value>(&"one more").await;
            worker
                .send(&json!({ "outcome": outcome(&r) }))
                .await
                .unwrap();
        }
        other => panic!("talk: unknown TALK={other:?}"),
    }
    std::future::pending::<()>().await;
}

/// A worker written against the wire (docs/protocol.md) that floods the
/// primary with requests and replies to requests never made.
fn raw_worker() {
    let mut ch = herd_tests::sys::take_channel();
    let frame = |kind: u8, body: Value| {
        let body = body.to_string().into_bytes();
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&[kind, 0, 0, 0]);
        f.extend_from_slice(&body);
        f
    };
    let hello = json!({"type": "hello", "version": 3, "pid": std::process::id()});
    ch.write_all(&frame(0, hello)).unwrap();
    let flood = herd::request::MAX_PENDING + 100;
    let mut tx = ch.try_clone().unwrap();
    let mut writer = Some(std::thread::spawn(move || {
        // Replies to no request, before and among the requests.
        tx.write_all(&frame(3, json!({"id": 77, "msg": "stray"})))
            .unwrap();
        for i in 1..=flood {
            tx.write_all(&frame(2, json!({"id": i, "msg": i}))).unwrap();
        }
        tx.write_all(&frame(3, json!({"id": u64::MAX, "error": "stray"})))
            .unwrap();
    }));
    let mut refused = 0;
    loop {
        let mut head = [0u8; 8];
        if ch.read_exact(&mut head).is_err() {
            std::process::exit(0);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut body = vec![0; len];
        ch.read_exact(&mut body).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match head[4] {
            3 if v["error"].is_string() => {
                refused += 1;
                if refused == 100 {
                    // One writer at a time on the socket.
                    writer.take().unwrap().join().unwrap();
                    let summary = json!({"refused": refused, "error": v["error"]});
                    ch.write_all(&frame(1, summary)).unwrap();
                }
            }
            2 => {
                // Answered twice: the second is a reply to no request.
                let reply = frame(3, json!({"id": v["id"], "msg": "pong"}));
                ch.write_all(&reply).unwrap();
                ch.write_all(&reply).unwrap();
            }
            _ => {}
        }
    }
}
