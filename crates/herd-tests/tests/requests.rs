//! Messages with a reply, between real processes: a request answered each
//! way, apart from plain messages; a worker that dies before answering, a
//! request held past its timeout, late replies and replies to nothing;
//! the bounds on waiting requests, on both sides.

mod talk;

use serde_json::json;
use talk::Talk;

#[test]
fn a_request_is_answered_each_way_and_plain_messages_never_see_a_reply() {
    let r = Talk::start("ask").report("ask");
    // The worker asked the primary (2 + 3); the primary asked the worker
    // through its handle (4 * 5).
    assert_eq!(r["p_asked"], json!({"ok": 20}), "{r}");
    let messages = r["messages"].as_array().unwrap();
    // The worker's plain messages, in order, and its request's answer
    // only where it put it; its `recv` saw the primary's plain messages
    // and nothing else.
    let plain: Vec<_> = messages
        .iter()
        .filter(|m| m.get("recv").is_none())
        .collect();
    assert_eq!(
        plain,
        [
            &json!({"plain": 1}),
            &json!({"plain": 2}),
            &json!({"asked": {"ok": 5}})
        ],
        "{r}"
    );
    let echoes: Vec<_> = messages.iter().filter_map(|m| m.get("recv")).collect();
    assert_eq!(
        echoes,
        [&json!({"plain": "p1"}), &json!({"plain": "p2"})],
        "{r}"
    );
}

#[test]
fn a_request_to_a_worker_that_dies_fails_when_it_dies_naming_it() {
    let r = Talk::start("dies").report("dies");
    let e = r["outcome"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(e.contains(&format!("worker {}", r["worker"])), "{e}");
    assert!(e.contains("died"), "{e}");
    // At the worker's exit, not at the request's 30 s timeout.
    assert!(r["ms"].as_u64().unwrap() < 5000, "{r}");
    assert_eq!(r["exit"], 3);
}

#[test]
fn a_request_held_past_its_timeout_fails_then_its_late_reply_is_dropped() {
    let r = Talk::start("timeout").report("timeout");
    let p = r["p_outcome"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(p.contains("no reply from worker 1 within 300ms"), "{p}");
    let w = r["w_outcome"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(w.contains("no reply from the primary within 300ms"), "{w}");
    for ms in [&r["p_ms"], &r["w_ms"]] {
        let ms = ms.as_u64().unwrap();
        assert!((300..5000).contains(&ms), "{r}");
    }
    // The late replies went nowhere: the next requests get their own.
    assert_eq!(r["p_after"], json!({"ok": 2}), "{r}");
    assert_eq!(r["w_after"], json!({"ok": 42}), "{r}");
}

#[test]
fn waiting_requests_are_bounded_on_each_side_with_a_clear_error() {
    let r = Talk::start("bound").report("bound");
    let max = r["max"].as_u64().unwrap();
    // The worker's own bound: one request more than MAX_PENDING waiting
    // fails at once.
    let e = r["w_over"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        e.contains(&format!("{max} requests to the primary already wait")),
        "{e}"
    );
    // A worker speaking the wire itself floods the primary, which holds
    // what it delivered: MAX_PENDING, the rest answered with an error.
    assert_eq!(r["held"], max, "{r}");
    let raw = &r["raw"];
    assert_eq!(raw["refused"], r["flood"].as_u64().unwrap() - max, "{r}");
    assert!(
        raw["error"]
            .as_str()
            .unwrap()
            .contains("wait for an answer"),
        "{r}"
    );
    // Its replies to no request (before, among and after the flood, and a
    // second one to the same request) were dropped: it is still connected
    // and answers.
    assert_eq!(r["ping"], json!({"ok": "pong"}), "{r}");
    assert_eq!(r["again"], json!({"ok": "pong"}), "{r}");
    assert_eq!(r["raw_connected"], true, "{r}");
}
