//! A scriptable cluster for the integration tests.
//!
//! As the primary it reads commands from stdin, one JSON object a line, and
//! prints every event (and every command's answer) on stdout as one JSON
//! object a line. Its workers are this same program; `FIXTURE_MODE` (set
//! per fork) picks their behaviour:
//!
//! - `serve` (default): listen on each address of `FIXTURE_LISTEN`
//!   (comma-separated) with axum (`/` answers `worker ID`, `/slow?ms=N`
//!   answers after N ms), bind `FIXTURE_UDP` and answer datagrams, and
//!   obey messages (`{"cmd":"exit","code":N}`, `disconnect`, `kill`,
//!   `{"cmd":"big","len":N}`, `{"cmd":"say","msg":M}` sends M as is,
//!   `{"cmd":"count","n":N}` sends `{"seq":0}`..`{"seq":N-1}`,
//!   `{"cmd":"env","names":[..]}` answers `{"id","env":{name:value|null},"args"}`,
//!   anything else is echoed as `{"echo": msg}`). `/slow?ms=N&notify=1`
//!   first sends `{"slow_started": N}`. With `FIXTURE_ANNOUNCE_DISCONNECT=1`
//!   the worker sends `{"disconnecting": ID}` when its disconnect begins.
//!   `{"cmd":"listen","addr":A}` listens on A and serves it as above.
//!   `FIXTURE_LISTEN_OPTIONS` (JSON: `backlog`, `ipv6_only`, `mode`) are
//!   the options of every listen.
//!   Once it listens, a worker says it is ready (`Worker::ready`) unless
//!   `FIXTURE_WARMUP=manual`: then it waits for `{"cmd":"ready"}`.
//!   `{"cmd":"status","key":K,"value":V}` sets a heartbeat field,
//!   `{"cmd":"alloc","mb":N}` allocates and touches N MiB (answers
//!   `{"allocated": N}`). `FIXTURE_BUILD` is the worker's "build", which `/`
//!   reports as `worker ID build B` when set.
//! - `noaccept`: listen on `FIXTURE_LISTEN` but never accept.
//! - `lateaccept`: listen on `FIXTURE_LISTEN`, and serve as `serve` does
//!   only once told to by the message `{"cmd":"accept"}`.
//! - `garbage`: connect, then write bytes that are no frame onto the channel.
//! - `exit`: exit at once with `FIXTURE_EXIT_CODE`.
//!
//! The primary: `FIXTURE_POLICY`, `FIXTURE_HEARTBEAT_MS`,
//! `FIXTURE_READINESS=explicit` (workers are ready when they say so) set
//! its settings; `FIXTURE_SUPERVISE=N` runs it under `supervise` (see
//! [`supervision_from_env`]). Every line it prints carries `t_ms`, the
//! milliseconds since it started. `{"cmd":"heartbeat","worker":ID}` answers
//! `{"event":"heartbeat","worker":ID,"beat":{"open","handled","app"}|null,
//! "age_ms"}` from `WorkerHandle::last_heartbeat`. `{"cmd":"pause_events"}`
//! stops reading events until `{"cmd":"resume_events"}`; messages `{"f":N}`
//! are counted, not printed (see [`FloodCount`]).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use herd::{Event, Primary, Role, Settings, Signal, Worker, WorkerHandle};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// When the process started, for the `t_ms` of each line.
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn out(mut v: Value) {
    let start = *START.get_or_init(std::time::Instant::now);
    if let Some(m) = v.as_object_mut() {
        m.insert("t_ms".into(), json!(start.elapsed().as_millis() as u64));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{v}");
    let _ = stdout.flush();
}

#[tokio::main]
async fn main() {
    match herd::role() {
        Role::Primary => primary().await,
        Role::Worker => worker().await,
    }
}

async fn primary() {
    START.get_or_init(std::time::Instant::now);
    let mut settings = Settings::new();
    if std::env::var("FIXTURE_READINESS").as_deref() == Ok("explicit") {
        settings = settings.readiness(herd::Readiness::Explicit);
    }
    if let Ok(p) = std::env::var("FIXTURE_POLICY") {
        settings = settings.policy(p.parse().expect("FIXTURE_POLICY"));
    }
    if let Some(ms) = std::env::var("FIXTURE_HEARTBEAT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings = settings.heartbeat(Duration::from_millis(ms));
    }
    let primary = Primary::with_settings(settings).expect("primary");
    let mut events = primary.events();
    let handles: std::sync::Arc<std::sync::Mutex<HashMap<u32, WorkerHandle>>> = Default::default();
    let h2 = handles.clone();
    let p2 = primary.clone();
    tokio::spawn(async move {
        let mut flood = FloodCount::default();
        loop {
            // harden: `pause_events` stops this reader (backpressure tests).
            let _ = events_paused().subscribe().wait_for(|p| !*p).await;
            let Some(ev) = events.next().await else { break };
            if flood.counted(&ev) {
                continue;
            }
            let state = ev
                .worker()
                .and_then(|id| {
                    p2.worker(id)
                        .or_else(|| h2.lock().unwrap().get(&id).cloned())
                })
                .map(|w| format!("{:?}", w.state()).to_lowercase());
            let mut v = json!({ "event": ev.name(), "worker": ev.worker(), "state": state });
            if let Some(w) = ev.worker().and_then(|id| p2.worker(id)) {
                v["pid"] = json!(w.pid());
            }
            match &ev {
                Event::Listening { address, .. } => {
                    v["address"] = json!(address.to_string());
                    v["kind"] = json!(address.kind().to_string());
                }
                Event::Exit {
                    status,
                    exited_after_disconnect,
                    ..
                } => {
                    v["code"] = json!(status.code);
                    v["signal"] = json!(status.signal.map(|s| s.as_str()));
                    v["exited_after_disconnect"] = json!(exited_after_disconnect);
                }
                Event::Message { message, .. } => {
                    let body: Value = message.decode().unwrap_or(Value::Null);
                    // Big messages are summarised to keep lines short.
                    match body.as_str() {
                        Some(s) if s.len() > 1024 => {
                            v["len"] = json!(s.len());
                            v["ok"] = json!(s.bytes().all(|b| b == b'x'));
                        }
                        _ => v["message"] = body,
                    }
                    if v["message"].get("flood_done").is_some() {
                        flood.summary(ev.worker(), &mut v);
                    }
                }
                Event::Error { error, .. } => v["error"] = json!(error.to_string()),
                Event::Critical { slot, reason } => {
                    v["slot"] = json!(slot);
                    v["reason"] = json!(reason);
                }
                Event::Recycle { reason, .. } => v["reason"] = json!(reason),
                Event::Reload(phase) => match phase {
                    herd::ReloadPhase::Started { workers } => {
                        v["phase"] = json!("started");
                        v["workers"] = json!(workers);
                    }
                    herd::ReloadPhase::Replaced { old, new } => {
                        v["phase"] = json!("replaced");
                        v["old"] = json!(old);
                        v["new"] = json!(new);
                    }
                    herd::ReloadPhase::Finished { replaced, took } => {
                        v["phase"] = json!("finished");
                        v["replaced"] = json!(replaced);
                        v["ms"] = json!(took.as_millis() as u64);
                    }
                    herd::ReloadPhase::Aborted { reason } => {
                        v["phase"] = json!("aborted");
                        v["reason"] = json!(reason);
                    }
                    _ => {}
                },
                Event::Setup(s) => {
                    v["exec"] = json!(s.get_exec().map(|p| p.display().to_string()));
                    v["silent"] = json!(s.get_silent());
                    v["args"] = json!(s
                        .get_args()
                        .map(|a| a.iter().map(|x| x.to_string_lossy()).collect::<Vec<_>>()));
                }
                _ => {}
            }
            out(v);
        }
    });
    out(json!({ "event": "started", "pid": std::process::id() }));
    let supervised = supervision_from_env();
    if supervised.is_none() {
        // A plain primary handles no signal itself (Node's does not):
        // this program stops its workers as a server's main would.
        tokio::spawn(stop_on_signal(primary.clone()));
    }
    if let Some(cfg) = supervised {
        let p = primary.clone();
        tokio::spawn(async move {
            let code = p.supervise(cfg).await;
            out(json!({ "event": "supervise_done", "code": code }));
            std::process::exit(code);
        });
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(cmd) = serde_json::from_str::<Value>(&line) else {
            out(json!({ "event": "bad_command", "line": line }));
            continue;
        };
        let id = cmd["worker"].as_u64().unwrap_or(0) as u32;
        let worker = || {
            primary
                .worker(id)
                .or_else(|| handles.lock().unwrap().get(&id).cloned())
        };
        match cmd["cmd"].as_str().unwrap_or("") {
            "fork" => {
                let env: Vec<(String, String)> = cmd["env"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                match primary.fork_with_env(env) {
                    Ok(w) => {
                        handles.lock().unwrap().insert(w.id(), w.clone());
                        out(json!({ "event": "forked", "worker": w.id(), "pid": w.pid() }));
                    }
                    Err(e) => out(json!({ "event": "fork_error", "error": e.to_string() })),
                }
            }
            "fork_successor" => {
                // Replaces `worker` (the successor inherits the primary's
                // environment, not a per-fork one).
                let r = match worker() {
                    Some(old) => primary.fork_successor(&old).map_err(|e| e.to_string()),
                    None => Err("no such worker".to_string()),
                };
                match r {
                    Ok(w) => {
                        handles.lock().unwrap().insert(w.id(), w.clone());
                        out(json!({ "event": "forked", "worker": w.id(), "pid": w.pid() }));
                    }
                    Err(e) => out(json!({ "event": "fork_error", "error": e })),
                }
            }
            "setup" => {
                let mut s = Settings::new();
                if let Some(e) = cmd["exec"].as_str() {
                    s = s.exec(e);
                }
                if let Some(a) = cmd["args"].as_array() {
                    s = s.args(a.iter().map(|x| x.as_str().unwrap_or("").to_string()));
                }
                if let Some(b) = cmd["silent"].as_bool() {
                    s = s.silent(b);
                }
                if let Some(env) = cmd["env"].as_object() {
                    for (k, v) in env {
                        s = s.env(k, v.as_str().unwrap_or(""));
                    }
                }
                // harden: the limits one worker is held to.
                if let Some(n) = cmd["max_frame"].as_u64() {
                    s = s.max_frame(n as usize);
                }
                if let Some(ms) = cmd["frame_timeout_ms"].as_u64() {
                    s = s.frame_timeout(Duration::from_millis(ms));
                }
                if let Some(n) = cmd["max_listens"].as_u64() {
                    s = s.max_listens(n as usize);
                }
                if let Some(n) = cmd["message_queue"].as_u64() {
                    s = s.message_queue(n as usize);
                }
                primary.setup(s);
            }
            "send" => {
                let r = match worker() {
                    Some(w) => w.send(&cmd["msg"]).await.map_err(|e| e.to_string()),
                    None => Err("no such worker".to_string()),
                };
                out(json!({ "event": "sent", "worker": id, "ok": r.is_ok(), "error": r.err() }));
            }
            "send_big" => {
                let len = cmd["len"].as_u64().unwrap_or(0) as usize;
                let big = "x".repeat(len);
                let r = match worker() {
                    Some(w) => w.send(&big).await.map_err(|e| e.to_string()),
                    None => Err("no such worker".to_string()),
                };
                out(json!({ "event": "sent", "worker": id, "ok": r.is_ok(), "error": r.err() }));
            }
            "disconnect" => {
                if let Some(w) = worker() {
                    w.disconnect();
                }
            }
            "kill" => {
                let sig: Signal = cmd["signal"]
                    .as_str()
                    .unwrap_or("SIGTERM")
                    .parse()
                    .expect("signal");
                if let Some(w) = worker() {
                    w.kill_with(sig);
                }
            }
            "reload" => primary.reload(),
            "scale" => primary.scale(cmd["workers"].as_u64().unwrap_or(1) as usize),
            "shutdown" => primary.shutdown(),
            "pause_events" => drop(events_paused().send_replace(true)),
            "resume_events" => drop(events_paused().send_replace(false)),
            "disconnect_all" => {
                let p = primary.clone();
                tokio::spawn(async move {
                    p.disconnect().await;
                    out(json!({ "event": "all_disconnected", "workers": p.workers().len() }));
                });
            }
            "heartbeat" => {
                let v = match worker().and_then(|w| w.last_heartbeat()) {
                    Some((at, beat)) => json!({
                        "event": "heartbeat", "worker": id,
                        "beat": {
                            "open": beat.open, "handled": beat.handled, "app": beat.app,
                            "uptime_ms": beat.uptime_ms, "rss": beat.rss, "cpu_ms": beat.cpu_ms,
                        },
                        "age_ms": at.elapsed().as_millis() as u64,
                    }),
                    None => json!({ "event": "heartbeat", "worker": id, "beat": null }),
                };
                out(v);
            }
            "workers" => {
                let ids: Vec<u32> = primary.workers().iter().map(|w| w.id()).collect();
                out(json!({ "event": "workers", "ids": ids }));
            }
            "state" => {
                let v = match worker() {
                    Some(w) => json!({
                        "event": "state", "worker": id,
                        "state": format!("{:?}", w.state()).to_lowercase(),
                        "connected": w.is_connected(), "dead": w.is_dead(),
                        "exited_after_disconnect": w.exited_after_disconnect(),
                    }),
                    None => json!({ "event": "state", "worker": id, "state": null }),
                };
                out(v);
            }
            other => out(json!({ "event": "bad_command", "cmd": other })),
        }
    }
    // stdin closed: keep running until killed.
    std::future::pending::<()>().await;
}

/// SIGTERM or SIGINT: disconnect every worker, then exit 0; a second
/// signal kills them and exits 1.
async fn stop_on_signal(primary: Primary) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::select! {
        _ = primary.disconnect() => std::process::exit(0),
        _ = async { tokio::select! { _ = term.recv() => (), _ = int.recv() => () } } => {
            let _ = tokio::time::timeout(Duration::from_secs(5), primary.kill_all(Signal::SIGKILL)).await;
            std::process::exit(1);
        }
    }
}

async fn worker() {
    let mode = std::env::var("FIXTURE_MODE").unwrap_or_else(|_| "serve".into());
    if mode == "exit" {
        let code = std::env::var("FIXTURE_EXIT_CODE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        std::process::exit(code);
    }
    if mode == "connect_twice" {
        return connect_twice().await;
    }
    let worker = Worker::connect().await.expect("connect");
    if mode == "garbage" {
        write_garbage();
        std::future::pending::<()>().await;
    }
    if mode == "hostlisten" {
        write_host_listen(worker.id());
        std::future::pending::<()>().await;
    }
    let id = worker.id();
    if std::env::var("FIXTURE_ANNOUNCE_DISCONNECT").as_deref() == Ok("1") {
        let w = worker.clone();
        // Held until the announcement is queued, so that it goes out before
        // the channel closes.
        let hold = worker.hold();
        tokio::spawn(async move {
            w.disconnecting().await;
            let _ = w.send(&json!({ "disconnecting": id })).await;
            drop(hold);
        });
    }
    let addrs: Vec<String> = std::env::var("FIXTURE_LISTEN")
        .map(|s| {
            s.split(',')
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for addr in addrs {
        listen_and_serve(&worker, &mode, &addr).await;
    }
    if std::env::var("FIXTURE_WARMUP").as_deref() != Ok("manual") {
        worker.ready();
    }
    if let Ok(addr) = std::env::var("FIXTURE_UDP") {
        let sock = worker.bind_udp(&addr).await.expect("bind_udp");
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((_, peer)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(format!("worker {id}").as_bytes(), peer).await;
            }
        });
    }
    while let Some(msg) = worker.recv().await {
        let v: Value = msg.decode().unwrap_or(Value::Null);
        if let Some(s) = v.as_str() {
            let _ = worker
                .send(&json!({ "len": s.len(), "ok": s.bytes().all(|b| b == b'x') }))
                .await;
            continue;
        }
        match v["cmd"].as_str() {
            Some("exit") => std::process::exit(v["code"].as_i64().unwrap_or(0) as i32),
            Some("disconnect") => worker.disconnect(),
            Some("kill") => worker.kill().await,
            Some("listen") => {
                listen_and_serve(&worker, &mode, v["addr"].as_str().unwrap_or("")).await;
            }
            Some("spin") => {
                // Block every runtime thread: the worker's heartbeat stops.
                for _ in 0..64 {
                    tokio::spawn(async {
                        #[allow(clippy::empty_loop)]
                        loop {}
                    });
                }
            }
            Some("ready") => worker.ready(),
            Some("accept") => {
                accept_now().send_replace(true);
            }
            Some("status") => {
                worker.set_status(v["key"].as_str().unwrap_or(""), &v["value"]);
            }
            Some("alloc") => {
                let mb = v["mb"].as_u64().unwrap_or(0) as usize;
                // Touch every page so that it counts as resident; keep it.
                let block = vec![1u8; mb << 20];
                std::mem::forget(std::hint::black_box(block));
                let _ = worker.send(&json!({ "allocated": mb })).await;
            }
            Some("say") => {
                let _ = worker.send(&v["msg"]).await;
            }
            Some("count") => {
                for seq in 0..v["n"].as_u64().unwrap_or(0) {
                    worker.send(&json!({ "seq": seq })).await.expect("send seq");
                }
            }
            Some("env") => {
                let env: serde_json::Map<String, Value> = v["names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .map(|n| (n.to_string(), json!(std::env::var(n).ok())))
                    .collect();
                let args: Vec<String> = std::env::args().skip(1).collect();
                let _ = worker
                    .send(&json!({ "id": id, "env": env, "args": args }))
                    .await;
            }
            Some("big") => {
                let len = v["len"].as_u64().unwrap_or(0) as usize;
                worker.send(&"x".repeat(len)).await.expect("send big");
            }
            _ => {
                let _ = worker.send(&json!({ "echo": v })).await;
            }
        }
    }
}

/// Listens on `addr` and serves the fixture's app on it (or, in `noaccept`
/// mode, never accepts); a listen error is sent as
/// `{"listen_error", "kind", "addr"}`.
async fn listen_and_serve(worker: &Worker, mode: &str, addr: &str) {
    let id = worker.id();
    let me = match std::env::var("FIXTURE_BUILD") {
        Ok(b) => format!("worker {id} build {b}\n"),
        Err(_) => format!("worker {id}\n"),
    };
    let options: herd::ListenOptions = std::env::var("FIXTURE_LISTEN_OPTIONS")
        .map(|o| serde_json::from_str(&o).expect("FIXTURE_LISTEN_OPTIONS"))
        .unwrap_or_default();
    match worker.listen_with(addr, options).await {
        Ok(listener) if mode == "noaccept" => {
            // Keep the listener (and its queue) without ever accepting.
            std::mem::forget(listener);
        }
        Ok(listener) => {
            let app = axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(move || {
                        let me = me.clone();
                        async move { me }
                    }),
                )
                .route(
                    "/slow",
                    axum::routing::get({
                        let sw = worker.clone();
                        move |q: axum::extract::Query<HashMap<String, u64>>| {
                            let sw = sw.clone();
                            async move {
                                let ms = q.get("ms").copied().unwrap_or(500);
                                if q.get("notify") == Some(&1) {
                                    let _ = sw.send(&json!({ "slow_started": ms })).await;
                                }
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                format!("slow done by {id}\n")
                            }
                        }
                    }),
                );
            let w = worker.clone();
            let late = mode == "lateaccept";
            tokio::spawn(async move {
                if late {
                    let _ = accept_now().subscribe().wait_for(|go| *go).await;
                }
                let _ = w.serve(listener, app).await;
            });
        }
        Err(e) => {
            let kind = format!("{:?}", e.kind());
            let _ = worker
                .send(&json!({ "listen_error": e.to_string(), "kind": kind, "addr": addr }))
                .await;
        }
    }
}

/// harden: set by `{"cmd":"pause_events"}`, cleared by `resume_events`:
/// while set, the primary's event reader reads nothing.
fn events_paused() -> &'static tokio::sync::watch::Sender<bool> {
    static PAUSED: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> =
        std::sync::OnceLock::new();
    PAUSED.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// harden: messages `{"f": N}` (a flood) are counted, not printed; the
/// `{"flood_done": N}` message that ends a flood is printed with
/// `flood_seen` (how many came) and `flood_in_order` (each N was the next).
#[derive(Default)]
struct FloodCount(HashMap<u32, (u64, bool)>);

impl FloodCount {
    fn counted(&mut self, ev: &Event) -> bool {
        let Event::Message { worker, message } = ev else {
            return false;
        };
        let Some(f) = message.decode::<Value>().ok().and_then(|v| v["f"].as_u64()) else {
            return false;
        };
        let (seen, in_order) = self.0.entry(*worker).or_insert((0, true));
        *in_order &= f == *seen;
        *seen += 1;
        true
    }

    fn summary(&self, worker: Option<u32>, v: &mut Value) {
        let (seen, in_order) = worker
            .and_then(|w| self.0.get(&w))
            .copied()
            .unwrap_or((0, true));
        v["flood_seen"] = json!(seen);
        v["flood_in_order"] = json!(in_order);
    }
}

/// Set by `{"cmd":"accept"}`: `lateaccept` listeners start accepting.
fn accept_now() -> &'static tokio::sync::watch::Sender<bool> {
    static ACCEPT: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> =
        std::sync::OnceLock::new();
    ACCEPT.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// `FIXTURE_MODE=connect_twice`, started by a test (not by a primary)
/// with `HERD_CHANNEL_FD` naming a descriptor open on /dev/null: the first
/// `Worker::connect` takes it and fails half-way (it cannot be registered
/// with the runtime), closing it. Then another file is opened at that same
/// number and `connect` is called again: it must fail without taking (and
/// so closing) that file. Prints `{"first","second","reopened_still_open"}`.
async fn connect_twice() {
    use std::os::fd::AsRawFd;
    let fd: i32 = std::env::var(herd::ENV_CHANNEL_FD)
        .unwrap()
        .parse()
        .unwrap();
    let first = Worker::connect().await.err().map(|e| e.to_string());
    let file = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: dup2 onto `fd`, a number this test owns (herd closed it);
    // the file's own descriptor stays owned by `file`.
    let r = unsafe { libc::dup2(file.as_raw_fd(), fd) };
    assert_eq!(r, fd);
    let second = Worker::connect().await.err().map(|e| e.to_string());
    // SAFETY: F_GETFD only reads the descriptor's flags.
    let still_open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    out(json!({ "first": first, "second": second, "reopened_still_open": still_open }));
}

/// Writes, straight onto the channel, a well-formed `listen` frame whose
/// address is a host name (as a worker written from docs/protocol.md in
/// another language might): the wire carries addresses only.
fn write_host_listen(id: u32) {
    let body = json!({
        "type": "listen", "seq": 1000 + id,
        "addr": {"tcp": "no-such-host.invalid:80"}, "index": 0,
    })
    .to_string();
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(body.as_bytes());
    write_channel(&frame);
}

/// Writes `bytes` straight onto the channel.
fn write_channel(bytes: &[u8]) {
    let fd: i32 = std::env::var(herd::ENV_CHANNEL_FD)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: `fd` is the channel socket, open for this process's whole
    // life; writing to it is the deliberate misbehaviour under test.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, bytes.len() as isize);
}

/// Writes bytes that are no valid frame straight onto the channel.
fn write_garbage() {
    write_channel(b"\xde\xad\xbe\xef this is not a herd frame \xff\xff\xff\xff");
}

/// `FIXTURE_SUPERVISE=N` runs the primary under `supervise` with N workers;
/// `FIXTURE_SUP_*` variables (milliseconds, counts or bytes) override
/// defaults: `GRACE_MS`, `HEARTBEAT_TIMEOUT_MS`, `BOOT_TIMEOUT_MS`,
/// `CRASH_LIMIT`, `CRASH_WINDOW_MS`, `BACKOFF_MS`, `BACKOFF_MAX_MS`,
/// `MAX_REQUESTS`, `JITTER`, `MAX_AGE_MS`, `MAX_MEMORY` (bytes), `SURGE`,
/// and `RESTART` (always, on-failure, never).
fn supervision_from_env() -> Option<herd::Supervision> {
    let n: usize = std::env::var("FIXTURE_SUPERVISE").ok()?.parse().ok()?;
    let var = |k: &str| {
        std::env::var(format!("FIXTURE_SUP_{k}"))
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let ms = Duration::from_millis;
    let mut cfg = herd::Supervision::new(n);
    if let Some(v) = var("GRACE_MS") {
        cfg.grace = ms(v);
    }
    if let Some(v) = var("HEARTBEAT_TIMEOUT_MS") {
        cfg.heartbeat_timeout = Some(ms(v));
    }
    if let Some(v) = var("BOOT_TIMEOUT_MS") {
        cfg.boot_timeout = ms(v);
    }
    if let Some(v) = var("CRASH_LIMIT") {
        cfg.crash_limit = v as usize;
    }
    if let Some(v) = var("BACKOFF_MS") {
        cfg.backoff = ms(v);
    }
    if let Some(v) = var("MAX_REQUESTS") {
        cfg.max_requests = Some(v);
    }
    if let Some(v) = var("JITTER") {
        cfg.max_requests_jitter = v;
    }
    if let Some(v) = var("CRASH_WINDOW_MS") {
        cfg.crash_window = ms(v);
    }
    if let Some(v) = var("BACKOFF_MAX_MS") {
        cfg.backoff_max = ms(v);
    }
    if let Some(v) = var("MAX_AGE_MS") {
        cfg.max_age = Some(ms(v));
    }
    if let Some(v) = var("MAX_MEMORY") {
        cfg.max_memory = Some(v);
    }
    if let Some(v) = var("SURGE") {
        cfg.surge = v as usize;
    }
    if let Ok(r) = std::env::var("FIXTURE_SUP_RESTART") {
        cfg.restart = r.parse().expect("FIXTURE_SUP_RESTART");
    }
    Some(cfg)
}
