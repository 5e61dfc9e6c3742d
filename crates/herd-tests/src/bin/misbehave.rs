//! Workers that misbehave on purpose, for the tests of what one worker
//! may cost the primary (tests/limits.rs, tests/memory.rs, tests/fd_limit.rs,
//! tests/slow_clients.rs).
//!
//! A fixture primary starts this program as its worker once told so
//! (`{"cmd":"setup","exec":PATH}`); `MISBEHAVE` (set per fork) picks what
//! it does. The raw modes speak the wire themselves (docs/protocol.md),
//! on the descriptor in `HERD_CHANNEL_FD`, as a worker written in another
//! language, or a hostile one, would:
//!
//! - `announce`: `hello`, then a user frame header announcing
//!   `MISBEHAVE_LEN` body bytes, then `MISBEHAVE_SEND` bytes of that body
//!   (default 0), then silence, forever.
//! - `listens`: `hello`, then `MISBEHAVE_N` `listen` requests for
//!   `127.0.0.1:0` with indexes 0, 1, 2...; it reads the answers, and
//!   sends a summary as a user message: `{"listened": N, "failed": N,
//!   "errno": E, "message": M}` (the first failure's errno and message).
//!
//! The library modes use `herd::Worker`:
//!
//! - `doorbell`: attacks the page of doorbells (`HERD_DOORBELL_FD`)
//!   before it connects: tries to shrink it to nothing, to grow it (by
//!   `ftruncate`, and by `fallocate` keeping its size) and to seal it
//!   against writes, then maps it and keeps writing garbage into every
//!   word but its own slot from a thread of its own. Once connected it
//!   sends what the attempts met, `{"doorbell": {"shrink": ERR, "grow":
//!   ERR, "allocate": ERR, "seal": ERR}}` (errno names, or `"ok"`), then
//!   answers each message `{"ping": N}` with `{"pong": N}`.
//! - `flood`: sends `{"f": 0}` .. `{"f": MISBEHAVE_N - 1}` as fast as
//!   `send` lets it, printing `misbehave flood: N sent` on stderr every
//!   100,000, then `{"flood_done": MISBEHAVE_N}`.
//! - `serve`: lowers its open-files limit to `MISBEHAVE_NOFILE` (soft and
//!   hard) if set, then serves HTTP on `MISBEHAVE_LISTEN` with
//!   `Worker::serve_with`: `/` answers `worker ID`, `/slow?ms=N` answers
//!   `slow done by ID` after N ms. `MISBEHAVE_HEADER_MS` and
//!   `MISBEHAVE_IDLE_MS` set the header-read and idle timeouts.

#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn num(name: &str) -> Option<u64> {
    var(name).and_then(|v| v.parse().ok())
}

fn main() {
    match var("MISBEHAVE").as_deref().unwrap_or("") {
        "announce" => announce(),
        "listens" => listens(),
        "flood" => runtime().block_on(flood()),
        "doorbell" => runtime().block_on(doorbell()),
        "serve" => {
            if let Some(n) = num("MISBEHAVE_NOFILE") {
                use nix::sys::resource::{setrlimit, Resource};
                setrlimit(Resource::RLIMIT_NOFILE, n, n).expect("lower RLIMIT_NOFILE");
            }
            runtime().block_on(serve())
        }
        other => panic!("misbehave: unknown MISBEHAVE={other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The channel, as a plain blocking socket.
fn channel() -> UnixStream {
    herd_tests::sys::take_channel()
}

/// A frame: the 8-byte header (`len` u32 LE, `kind`, `nfds` 0, two zero
/// bytes) and its body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(body);
    f
}

const CONTROL: u8 = 0;
const USER: u8 = 1;

fn hello(ch: &mut UnixStream) {
    let body = json!({"type": "hello", "version": 3, "pid": std::process::id()});
    ch.write_all(&frame(CONTROL, body.to_string().as_bytes()))
        .expect("write hello");
}

fn forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn announce() {
    let mut ch = channel();
    hello(&mut ch);
    let len = num("MISBEHAVE_LEN").expect("MISBEHAVE_LEN") as u32;
    let send = num("MISBEHAVE_SEND").unwrap_or(0) as usize;
    let mut head = len.to_le_bytes().to_vec();
    head.extend_from_slice(&[USER, 0, 0, 0]);
    ch.write_all(&head).expect("write header");
    ch.write_all(&vec![b'x'; send])
        .expect("write part of the body");
    forever()
}

/// Reads one frame's body (descriptors sent with it are closed by the
/// kernel: a plain read takes no control message).
fn read_frame(ch: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 8];
    ch.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0; len];
    ch.read_exact(&mut body).ok()?;
    Some((head[4], body))
}

fn listens() {
    let n = num("MISBEHAVE_N").expect("MISBEHAVE_N");
    let mut ch = channel();
    hello(&mut ch);
    // Requests go out from another thread, so that answers are read while
    // requests are still being written.
    let mut tx = ch.try_clone().expect("dup the channel");
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            let body = json!({"type": "listen", "seq": i + 1,
                              "addr": {"tcp": "127.0.0.1:0"}, "index": i});
            tx.write_all(&frame(CONTROL, body.to_string().as_bytes()))
                .expect("write listen");
        }
        tx
    });
    let (mut listened, mut failed) = (0u64, 0u64);
    let mut first_failure = None;
    while listened + failed < n {
        let Some((kind, body)) = read_frame(&mut ch) else {
            break;
        };
        if kind != CONTROL {
            continue;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("listened") => listened += 1,
            Some("listen_failed") => {
                failed += 1;
                first_failure.get_or_insert((v["errno"].clone(), v["message"].clone()));
            }
            _ => {}
        }
    }
    let mut tx = writer.join().expect("writer");
    let (errno, message) = first_failure.unwrap_or((Value::Null, Value::Null));
    let summary =
        json!({"listened": listened, "failed": failed, "errno": errno, "message": message});
    tx.write_all(&frame(USER, summary.to_string().as_bytes()))
        .expect("write summary");
    forever()
}

async fn doorbell() {
    let fd = herd_tests::sys::doorbell_fd();
    let outcome = |r: nix::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    let shrink = outcome(nix::unistd::ftruncate(&fd, 0));
    let grow = outcome(nix::unistd::ftruncate(&fd, 1 << 40));
    let allocate = outcome(nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        4096,
        1 << 30,
    ));
    let seal = outcome(
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE),
        )
        .map(drop),
    );
    let own = num("HERD_DOORBELL_SLOT").expect("HERD_DOORBELL_SLOT") as usize;
    std::thread::spawn(move || herd_tests::sys::scribble_forever(fd, own));
    let worker = herd::Worker::connect().await.expect("connect");
    worker
        .send(&json!({"doorbell": {"shrink": shrink, "grow": grow, "allocate": allocate, "seal": seal}}))
        .await
        .expect("send");
    while let Some(msg) = worker.recv().await {
        let v: Value = msg.decode().expect("a JSON message");
        if let Some(n) = v.get("ping") {
            worker.send(&json!({ "pong": n })).await.expect("send");
        }
    }
}

async fn flood() {
    let n = num("MISBEHAVE_N").expect("MISBEHAVE_N");
    let worker = herd::Worker::connect().await.expect("connect");
    for i in 0..n {
        worker.send(&json!({ "f": i })).await.expect("send");
        if (i + 1) % 100_000 == 0 {
            eprintln!("misbehave flood: {} sent", i + 1);
        }
    }
    worker
        .send(&json!({ "flood_done": n }))
        .await
        .expect("send");
    std::future::pending::<()>().await;
}

async fn serve() {
    let worker = herd::Worker::connect().await.expect("connect");
    let id = worker.id();
    let addr = var("MISBEHAVE_LISTEN").expect("MISBEHAVE_LISTEN");
    let listener = worker.listen(&addr).await.expect("listen");
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { format!("worker {id}\n") }),
        )
        .route(
            "/slow",
            axum::routing::get(
                move |q: axum::extract::Query<HashMap<String, u64>>| async move {
                    let ms = q.get("ms").copied().unwrap_or(500);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    format!("slow done by {id}\n")
                },
            ),
        );
    let mut options = herd::ServeOptions::new();
    if let Some(ms) = num("MISBEHAVE_HEADER_MS") {
        options = options.header_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = num("MISBEHAVE_IDLE_MS") {
        options = options.idle_timeout(Duration::from_millis(ms));
    }
    let _ = worker.serve_with(listener, app, options).await;
}
