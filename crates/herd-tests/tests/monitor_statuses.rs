//! The monitor's status registry routes (`/statuses`, `/statuses/NAME`)
//! against a real supervised cluster, through curl: three workers register
//! the status `load` (fixture `FIXTURE_STATUS`), worker 3's view and update
//! never answer. A read collects workers 1 and 2 within the timeout and
//! names worker 3 missing; a set (with the token) reaches the same two;
//! the heartbeat built-in has every worker; bad names, unknown names and
//! bad timeouts are refused with a 4xx that says why.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "st4tus-token";

/// Three workers registering `load`, worker 3 silent, under the monitor:
/// the cluster and the monitor's base URL, once the three registered.
fn cluster() -> (Cluster, String) {
    let mut c = Cluster::start(&[
        ("FIXTURE_SUPERVISE", "3"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_MONITOR", "1"),
        ("FIXTURE_MONITOR_TOKEN", TOKEN),
        ("FIXTURE_STATUS", "load"),
        ("FIXTURE_STATUS_SILENT", "3"),
    ]);
    let m = c.expect(|v| v["event"] == "monitor");
    let base = format!("http://{}", m["address"].as_str().unwrap());
    for _ in 0..3 {
        c.expect(|v| v["message"]["status_registered"].is_u64());
    }
    let listed = wait_until(TIMEOUT, || {
        let (code, body) = curl("GET", &format!("{base}/statuses"), None);
        code == 200 && holders(&body, "load") == [1, 2, 3]
    });
    assert!(listed, "load never listed by 3 workers\n{}", c.dump());
    (c, base)
}

fn holders(names: &str, name: &str) -> Vec<u64> {
    let v: Value = serde_json::from_str(names).unwrap_or(Value::Null);
    v.as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .and_then(|n| n["workers"].as_array())
        .map(|w| w.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn a_read_collects_the_answers_within_its_timeout_and_names_the_worker_that_did_not_answer() {
    let (c, base) = cluster();
    let t = Instant::now();
    let (code, body) = curl("GET", &format!("{base}/statuses/load?timeout_ms=400"), None);
    let took = t.elapsed();
    assert_eq!(code, 200, "{body}\n{}", c.dump());
    let r = parse(&body);
    assert_eq!(r["name"], "load");
    assert_eq!(r["timeout_ms"], 400);
    let answers = r["answers"].as_object().unwrap();
    assert_eq!(answers.keys().collect::<Vec<_>>(), ["1", "2"], "{body}");
    for (id, v) in answers {
        assert_eq!(v["worker"].to_string(), *id, "{body}");
        assert_eq!(v["value"], Value::Null, "{body}");
    }
    assert_eq!(r["missing"], serde_json::json!([3]), "{body}");
    // Bounded by the timeout asked for, not by the silent worker.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "the read took {took:?}"
    );

    // The heartbeat built-in: every worker's latest beat, once each sent one.
    let mut beats = Value::Null;
    let all = wait_until(TIMEOUT, || {
        let (code, body) = curl("GET", &format!("{base}/statuses/heartbeat"), None);
        beats = parse(&body);
        code == 200 && beats["answers"].as_object().is_some_and(|a| a.len() == 3)
    });
    assert!(all, "not every worker's heartbeat: {beats}");
    assert!(beats["answers"]["3"]["handled"].is_u64(), "{beats}");

    // `/status` lists the names (not the values) and the caches (none here).
    let (code, body) = curl("GET", &format!("{base}/status"), None);
    assert_eq!(code, 200);
    let doc = parse(&body);
    let names: Vec<&str> = doc["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    for want in ["heartbeat", "load", "replace_queue"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(doc["caches"].is_object(), "{body}");
}

#[test]
fn a_set_needs_the_token_and_reports_who_applied_it() {
    let (c, base) = cluster();
    let url = format!("{base}/statuses/load?timeout_ms=300");
    let (code, body) = curl_with("POST", &url, None, Some("\"debug\""));
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl_with("POST", &url, Some("wrong"), Some("\"debug\""));
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl_with("POST", &url, Some(TOKEN), Some("{not json"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("as JSON"), "{body}");
    let (code, body) = curl_with("POST", &url, Some(TOKEN), Some("\"debug\""));
    assert_eq!(code, 200, "{body}\n{}", c.dump());
    let r = parse(&body);
    assert_eq!(r["applied"], serde_json::json!([1, 2]), "{body}");
    assert_eq!(r["missing"], serde_json::json!([3]), "{body}");
    let (_, body) = curl("GET", &url, None);
    let r = parse(&body);
    for id in ["1", "2"] {
        assert_eq!(r["answers"][id]["value"], "debug", "{body}");
    }
    // The heartbeat has no update.
    let (code, body) = curl_with(
        "POST",
        &format!("{base}/statuses/heartbeat"),
        Some(TOKEN),
        Some("1"),
    );
    assert_eq!(code, 409, "{body}");
}

#[test]
fn unknown_names_malformed_names_and_bad_timeouts_are_refused_saying_why() {
    let (_c, base) = cluster();
    let (code, body) = curl("GET", &format!("{base}/statuses/nope"), None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"nope\"") && body.contains("load"), "{body}");
    let long = "x".repeat(129);
    for (path, says) in [
        (format!("/statuses/{long}"), "1 to 128 bytes"),
        (
            format!("/statuses/{}", "%41".repeat(2000)),
            "1 to 128 bytes",
        ),
        ("/statuses/%zz".to_string(), "percent-encoded"),
        ("/statuses/%FF".to_string(), "percent-encoded"),
        ("/statuses/a/b".to_string(), "one path segment"),
        ("/statuses/".to_string(), "1 to 128 bytes"),
        ("/statuses/load?timeout_ms=0".to_string(), "1 to 10000"),
        ("/statuses/load?timeout_ms=99999".to_string(), "1 to 10000"),
        ("/statuses/load?timeout_ms=abc".to_string(), "1 to 10000"),
    ] {
        let (code, body) = curl("GET", &format!("{base}{path}"), None);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let (code, body) = curl("DELETE", &format!("{base}/statuses/load"), None);
    assert_eq!(code, 405, "{body}");
    // A percent-encoded name is its decoded self.
    let (code, body) = curl(
        "GET",
        &format!("{base}/statuses/%6Coad?timeout_ms=200"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(parse(&body)["name"], "load");
}
