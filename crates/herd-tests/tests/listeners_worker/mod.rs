//! Drives the `listeners` worker (src/bin/listeners.rs) from a fixture
//! primary: listeners opened, closed and opened again by name.
#![allow(dead_code)]

use serde_json::{json, Value};

use crate::common::*;

/// The `listeners` program.
pub const LISTENERS: &str = env!("CARGO_BIN_EXE_listeners");

/// What each command is answered with (one of these keys).
const ANSWERS: [&str; 7] = [
    "listened",
    "relistened",
    "listen_error",
    "closed",
    "paused",
    "resumed",
    "error",
];

/// Forks a `listeners` worker and waits for it to be online.
pub fn fork_listeners(c: &mut Cluster) -> u32 {
    c.cmd(json!({"cmd": "setup", "exec": LISTENERS}));
    let id = c.fork(&[]);
    c.cmd(json!({"cmd": "setup", "exec": FIXTURE}));
    c.expect_event("online", id);
    id
}

/// Sends `msg` to worker `id` and waits for its answer.
pub fn ask(c: &mut Cluster, id: u32, msg: Value) -> Value {
    c.cmd(json!({"cmd": "send", "worker": id, "msg": msg}));
    let v = c.expect(|v| {
        v["event"] == "message"
            && v["worker"] == id
            && ANSWERS.iter().any(|k| v["message"].get(k).is_some())
    });
    v["message"].clone()
}

/// Worker `id` listens on `addr` as `name`; returns the address as bound.
pub fn listen(c: &mut Cluster, id: u32, name: &str, addr: &str) -> String {
    let r = ask(c, id, json!({"cmd": "listen", "name": name, "addr": addr}));
    assert_eq!(
        r["listened"],
        name,
        "worker {id} listen {addr}: {r}\n{}",
        c.dump()
    );
    r["address"].as_str().unwrap().to_string()
}

/// A port free now, on 127.0.0.1 (another process may take it before it
/// is listened on: see [`listen_on_a_free_port`]).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Worker `id` listens as `name` on a port given in full (not 0), as a
/// server configured with its port does; returns `127.0.0.1:PORT`. A port
/// that another process took between its release and the listen is
/// replaced by another.
pub fn listen_on_a_free_port(c: &mut Cluster, id: u32, name: &str) -> String {
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let r = ask(c, id, json!({"cmd": "listen", "name": name, "addr": addr}));
        if r["listened"] == name {
            assert_eq!(r["address"], addr.as_str());
            return addr;
        }
        assert_eq!(r["kind"], "AddrInUse", "{r}");
        eprintln!("another process took {addr} before the worker listened; again");
    }
    panic!("another process took the free port every time");
}

/// The primary's listens on `address` (its text form): `(workers, queued)`
/// of each.
pub fn listens_on(c: &mut Cluster, address: &str) -> Vec<(u64, u64)> {
    c.cmd(json!({"cmd": "listens"}));
    let v = c.expect(|v| v["event"] == "listens");
    v["listens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["address"] == address)
        .map(|l| {
            (
                l["workers"].as_u64().unwrap(),
                l["queued"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The port of `127.0.0.1:PORT`.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether worker `id` answers on `addr` within the test's timeout
/// (requests are spread by the policy, so several may be needed).
pub fn served_by_eventually(addr: &str, id: u32) -> bool {
    wait_until(TIMEOUT, || {
        http_get(addr, "/").is_ok_and(|b| worker_of(&b) == id)
    })
}
