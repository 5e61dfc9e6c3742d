//! The primary's API under test, called directly (not through the
//! fixture's commands). The first argument picks the scenario; workers are
//! this same program, started with the primary's own arguments (the
//! default under test), so they know it too. Prints JSON lines.
//!
//! - `settings`: prints `{"event":"report", ...}`: the settings a plain
//!   primary shows (`exec`, `args`, `cwd`, `policy`), what its worker
//!   says it runs with (its own executable, arguments and directory), the
//!   policy read before any setup, whether a `setup` of `shared` made
//!   after that read was taken, and how the listen then behaved
//!   (`handed_off`: connections the primary handed off, 0 where the
//!   workers accept on a shared socket), and what `setup` answered after
//!   the first fork: asking for another policy, for the same, for another
//!   field.
//! - `events`: forks `PROBE_FORKS` workers in a row, each with
//!   `fork_with_events` (every other with `fork_with_env_and_events`),
//!   then prints each one's stream as `{"event":"worker_events","worker",
//!   "names":[..],"ids":[..]}` up to its `exit` (each worker is asked to
//!   disconnect once ready), and `{"event":"done"}`.
//!
//! Every worker's pid is printed as `{"event":"forked","pid"}` as soon as
//! it is known, so that the test can kill what is left.

use std::io::Write;
use std::time::Duration;

use herd::{Event, Policy, Primary, Role, Settings, Worker};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(15);

fn say(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn lossy(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<String> {
    args.map(|a| a.to_string_lossy().into_owned()).collect()
}

#[tokio::main]
async fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match (herd::role(), scenario.as_str()) {
        (Role::Primary, "settings") => settings().await,
        (Role::Primary, "events") => events().await,
        (Role::Worker, _) => worker().await,
        (_, other) => panic!("unknown scenario {other:?}: settings or events"),
    }
}

async fn settings() {
    let primary = Primary::new().expect("primary");
    let shown = primary.settings();
    let policy_read = primary.policy();
    let setup_before = primary
        .setup(Settings::builder().policy(Policy::Shared))
        .err()
        .map(|e| e.to_string());
    let policy_before_fork = primary.policy();

    let mut events = primary.events();
    let w = primary.fork().expect("fork");
    say(json!({ "event": "forked", "pid": w.pid() }));
    let (mut report, mut address, mut ready) = (None, None, false);
    while report.is_none() || address.is_none() || !ready {
        match tokio::time::timeout(TIMEOUT, events.next()).await {
            Ok(Some(Event::Message { message, .. })) => {
                report = message.decode::<Value>().ok();
            }
            Ok(Some(Event::Listening { address: a, .. })) => address = Some(a.to_string()),
            Ok(Some(Event::Ready { .. })) => ready = true,
            Ok(Some(_)) => {}
            _ => panic!("the worker did not report, listen and get ready in time"),
        }
    }
    // One connection: the primary hands it off under `rr`; under `shared`
    // the worker accepts it itself.
    let address = address.unwrap();
    let mut conn = tokio::net::TcpStream::connect(address.as_str())
        .await
        .expect("connect to the worker");
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_to_string(&mut answer))
        .await
        .expect("the worker's answer in time")
        .expect("read the worker's answer");
    let handed_off: u64 = primary.listens().iter().map(|l| l.handed_off).sum();

    let answer_of = |s: Settings| primary.setup(s).err().map(|e| e.to_string());
    let change = answer_of(Settings::builder().policy(Policy::RoundRobin).build());
    let same = answer_of(Settings::builder().policy(Policy::Shared).build());
    let other = answer_of(Settings::builder().silent(false).build());
    say(json!({
        "event": "report",
        "settings": {
            "exec": shown.exec().map(|p| p.display().to_string()),
            "args": shown.args().map(|a| lossy(a.iter().cloned())),
            "cwd": shown.cwd().map(|p| p.display().to_string()),
            "policy": shown.policy().map(|p| p.to_string()),
        },
        "worker": report,
        "answer": answer,
        "policy_read": policy_read.to_string(),
        "setup_before_fork": setup_before,
        "policy_before_fork": policy_before_fork.to_string(),
        "handed_off": handed_off,
        "setup_other_policy_after_fork": change,
        "policy_after_refusal": primary.policy().to_string(),
        "setup_same_policy_after_fork": same,
        "setup_other_field_after_fork": other,
    }));
    w.disconnect();
    let _ = tokio::time::timeout(TIMEOUT, w.wait()).await;
}

async fn events() {
    let n: usize = std::env::var("PROBE_FORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let primary = Primary::new().expect("primary");
    let mut forked = Vec::new();
    // In a row, as fast as they go: each worker runs (and may be online)
    // before the next fork, and before its stream is read.
    for i in 0..n {
        let (w, events) = if i % 2 == 0 {
            primary.fork_with_events()
        } else {
            primary.fork_with_env_and_events([("PROBE_N", i.to_string())])
        }
        .expect("fork");
        say(json!({ "event": "forked", "pid": w.pid() }));
        forked.push((w, events));
    }
    for (w, mut events) in forked {
        let (mut names, mut ids) = (Vec::new(), Vec::new());
        loop {
            let Ok(Some(event)) = tokio::time::timeout(TIMEOUT, events.next()).await else {
                names.push("timeout");
                break;
            };
            names.push(event.name());
            ids.push(event.worker());
            match event {
                Event::Ready { .. } => w.disconnect(),
                Event::Exit { .. } => break,
                _ => {}
            }
        }
        say(json!({ "event": "worker_events", "worker": w.id(), "names": names, "ids": ids }));
    }
    say(json!({ "event": "done" }));
}

/// Listens on 127.0.0.1:0, answering each connection with `worker ID`,
/// and (in the `settings` scenario) reports what it runs with; leaves when
/// the primary disconnects it.
async fn worker() {
    let worker = Worker::connect().await.expect("connect");
    let mut listener = worker.listen("127.0.0.1:0").await.expect("listen");
    let id = worker.id();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.write_all(format!("worker {id}\n").as_bytes()).await;
        }
    });
    if std::env::args().nth(1).as_deref() != Some("settings") {
        // Until the channel closes after the disconnect: then `main` returns.
        while worker.recv().await.is_some() {}
        return;
    }
    let report = json!({
        "exe": std::env::current_exe().ok().map(|p| p.display().to_string()),
        "args": lossy(std::env::args_os().skip(1)),
        "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
    });
    worker.send(&report).await.expect("send the report");
    while worker.recv().await.is_some() {}
}
