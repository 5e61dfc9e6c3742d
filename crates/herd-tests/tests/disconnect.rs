//! Graceful disconnect, from the primary and from the worker itself, one
//! worker at a time and cluster-wide.

mod common;

use common::*;
use serde_json::{json, Value};

/// Waits for worker `id`'s `message` event whose body has `key`.
fn expect_message_with(c: &mut Cluster, id: u32, key: &str) -> Value {
    c.expect(|v| v["event"] == "message" && v["worker"] == id && v["message"].get(key).is_some())
}

#[test]
fn a_graceful_disconnect_waits_for_an_open_connection_to_finish() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let listening = c.expect_event("listening", id);
    let addr = listening["address"].as_str().unwrap().to_string();

    let client = std::thread::spawn(move || http_get(&addr, "/slow?ms=800&notify=1"));
    // The request is in the worker's hands (its handler has started).
    expect_message_with(&mut c, id, "slow_started");
    c.cmd(json!({"cmd": "disconnect", "worker": id}));

    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 0, "{}", c.dump());
    assert_eq!(exit["signal"], Value::Null);
    assert_eq!(exit["exited_after_disconnect"], true);
    // The worker could only have written the whole response before it
    // exited: the open connection was let finish.
    let body = client
        .join()
        .unwrap()
        .expect("the slow response arrives complete");
    assert_eq!(body, format!("slow done by {id}\n"));
    let names: Vec<String> = c
        .events_of(id)
        .iter()
        .filter_map(|v| v["event"].as_str())
        .filter(|e| ["disconnect", "exit"].contains(e))
        .map(String::from)
        .collect();
    assert_eq!(names, ["disconnect", "exit"], "{}", c.dump());
}

#[test]
fn a_worker_can_disconnect_itself() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "disconnect"}}));
    c.expect_event("disconnect", id);
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 0, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
    assert_eq!(exit["state"], "dead");
}

#[test]
fn a_worker_can_kill_itself() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "kill"}}));
    c.expect_event("disconnect", id);
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 0, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
}

#[test]
fn repeated_disconnects_of_one_worker_are_harmless() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    for _ in 0..3 {
        c.cmd(json!({"cmd": "disconnect", "worker": id}));
    }
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 0);
    // Once more after it is gone.
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    c.cmd(json!({"cmd": "kill", "worker": id}));
    c.cmd(json!({"cmd": "workers"}));
    let workers = c.expect(|v| v["event"] == "workers");
    assert_eq!(workers["ids"], json!([]));
    let count = |e: &str| c.events_of(id).iter().filter(|v| v["event"] == e).count();
    assert_eq!((count("disconnect"), count("exit")), (1, 1), "{}", c.dump());
}

#[test]
fn cluster_wide_disconnect_with_no_workers_completes_at_once() {
    let mut c = Cluster::start(&[]);
    c.cmd(json!({"cmd": "disconnect_all"}));
    let done = c.expect(|v| v["event"] == "all_disconnected");
    assert_eq!(done["workers"], 0);
}

#[test]
fn cluster_wide_disconnect_with_several_workers_ends_them_all() {
    let mut c = Cluster::start(&[]);
    let listen = [("FIXTURE_LISTEN", "127.0.0.1:0")];
    let ids = [c.fork(&listen), c.fork(&listen), c.fork(&[])];
    for id in &ids[..2] {
        c.expect_event("listening", *id);
    }
    c.expect_event("online", ids[2]);
    let pids: Vec<u32> = ids.iter().map(|id| c.worker_pid(*id)).collect();

    c.cmd(json!({"cmd": "disconnect_all"}));
    let done = c.expect(|v| v["event"] == "all_disconnected");
    assert_eq!(done["workers"], 0, "{}", c.dump());
    for id in ids {
        let exit = c.expect_event("exit", id);
        assert_eq!(exit["code"], 0, "{}", c.dump());
        assert_eq!(exit["exited_after_disconnect"], true);
    }
    c.cmd(json!({"cmd": "workers"}));
    let workers = c.expect(|v| v["event"] == "workers");
    assert_eq!(workers["ids"], json!([]), "the registry is empty");
    assert!(
        wait_until(TIMEOUT, || pids.iter().all(|p| !alive(*p))),
        "worker processes are gone"
    );
}

#[test]
fn a_graceful_disconnect_closes_an_idle_keep_alive_connection_and_exits() {
    use std::io::{Read, Write};
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let addr = c.expect_event("listening", id)["address"]
        .as_str()
        .unwrap()
        .to_string();
    // One request on a keep-alive connection, which then stays open, idle.
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 0, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
    // The server closed the idle connection (after letting it linger, in
    // case its client was about to use it).
    let rest = conn.read(&mut buf).unwrap_or(0);
    assert_eq!(rest, 0, "{}", String::from_utf8_lossy(&buf[..rest]));
}
