//! Messages between the primary and its workers: size, order, errors, and
//! user messages that look like herd's own.

mod common;

use common::*;
use serde_json::{json, Value};

const SIXTEEN_MIB: u64 = 16 << 20;

/// Waits for a `message` event from worker `id` whose body matches `pred`.
fn expect_message(c: &mut Cluster, id: u32, pred: impl Fn(&Value) -> bool) -> Value {
    c.expect(|v| v["event"] == "message" && v["worker"] == id && pred(v))
}

#[test]
fn a_16_mib_message_goes_from_the_primary_to_a_worker() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "send_big", "worker": id, "len": SIXTEEN_MIB}));
    let sent = c.expect(|v| v["event"] == "sent" && v["worker"] == id);
    assert_eq!(sent["ok"], true, "{sent}");
    // The worker answers with what it got.
    let got = expect_message(&mut c, id, |v| v["message"].get("len").is_some());
    assert_eq!(got["message"]["len"], SIXTEEN_MIB);
    assert_eq!(got["message"]["ok"], true);
}

#[test]
fn a_16_mib_message_goes_from_a_worker_to_the_primary() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "big", "len": SIXTEEN_MIB}}));
    let got = expect_message(&mut c, id, |v| v.get("len").is_some());
    assert_eq!(got["len"], SIXTEEN_MIB);
    assert_eq!(got["ok"], true);
}

#[test]
fn a_send_to_a_gone_worker_returns_an_error() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "kill", "worker": id, "signal": "SIGKILL"}));
    c.expect_event("exit", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": "hello?"}));
    let sent = c.expect(|v| v["event"] == "sent" && v["worker"] == id);
    assert_eq!(sent["ok"], false, "{sent}");
    let error = sent["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("worker {id}")) && error.contains("gone"),
        "{error}"
    );
}

#[test]
fn messages_from_the_primary_arrive_in_order() {
    const N: u64 = 1000;
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    for seq in 0..N {
        c.cmd(json!({"cmd": "send", "worker": id, "msg": {"seq": seq}}));
    }
    // The worker echoes each message as it gets it, on its own ordered
    // channel back: the echoes' order is the order of arrival.
    for seq in 0..N {
        let echo = expect_message(&mut c, id, |v| v["message"].get("echo").is_some());
        assert_eq!(echo["message"]["echo"]["seq"], seq, "{}", c.dump());
    }
}

#[test]
fn messages_from_a_worker_arrive_in_order() {
    const N: u64 = 5000;
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "count", "n": N}}));
    for seq in 0..N {
        let m = expect_message(&mut c, id, |v| v["message"].get("seq").is_some());
        assert_eq!(m["message"]["seq"], seq, "{}", c.dump());
    }
}

#[test]
fn a_user_message_shaped_like_a_control_message_reaches_the_worker_as_a_plain_message() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.expect_event("listening", id);
    let lookalikes = [
        json!({"type": "disconnect"}),
        json!({"type": "conns", "handle": 1}),
        json!({"type": "listened", "seq": 1, "handle": 1, "mode": "handoff",
               "address": "127.0.0.1:1", "count_closes": false}),
    ];
    for msg in &lookalikes {
        c.cmd(json!({"cmd": "send", "worker": id, "msg": msg}));
        let echo = expect_message(&mut c, id, |v| v["message"].get("echo").is_some());
        assert_eq!(&echo["message"]["echo"], msg, "delivered as is");
    }
    // Nothing else happened: the worker still answers, is not leaving, and
    // was never disconnected.
    c.cmd(json!({"cmd": "send", "worker": id, "msg": "ping"}));
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"marker": 1}}));
    expect_message(&mut c, id, |v| v["message"]["echo"]["marker"] == 1);
    c.cmd(json!({"cmd": "state", "worker": id}));
    let state = c.expect(|v| v["event"] == "state" && v["worker"] == id);
    assert!(
        ["listening", "ready"].contains(&state["state"].as_str().unwrap()),
        "{state}"
    );
    assert_eq!(state["connected"], true);
    assert_eq!(state["exited_after_disconnect"], false);
    assert!(
        c.events_of(id).iter().all(|v| v["event"] != "disconnect"),
        "{}",
        c.dump()
    );
}

#[test]
fn a_user_message_shaped_like_a_control_message_reaches_the_primary_as_a_plain_message() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    let lookalikes = [
        json!({"type": "disconnecting"}),
        json!({"type": "hello", "version": 1, "pid": 1}),
        json!({"type": "listen", "seq": 1, "addr": "tcp:127.0.0.1:0", "index": 0}),
        json!({"type": "unlisten", "handle": 1}),
    ];
    for msg in &lookalikes {
        c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "say", "msg": msg}}));
        let got = expect_message(&mut c, id, |v| v["message"].get("type").is_some());
        assert_eq!(&got["message"], msg, "delivered as is");
    }
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"marker": 1}}));
    expect_message(&mut c, id, |v| v["message"]["echo"]["marker"] == 1);
    c.cmd(json!({"cmd": "state", "worker": id}));
    let state = c.expect(|v| v["event"] == "state" && v["worker"] == id);
    // A real `disconnecting` would have marked the worker as leaving.
    assert!(
        !["disconnected", "dead"].contains(&state["state"].as_str().unwrap()),
        "{state}"
    );
    assert_eq!(state["connected"], true);
    assert_eq!(state["exited_after_disconnect"], false);
    assert!(
        c.events_of(id)
            .iter()
            .all(|v| !["listening", "disconnect", "error"].contains(&v["event"].as_str().unwrap())),
        "{}",
        c.dump()
    );
}
