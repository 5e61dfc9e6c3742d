//! The services between real processes (src/bin/services): the transport
//! (its own frames, order per sender, requests each way, unknown services,
//! the worker's departure), the emitter's every target form, and the status
//! registry.

mod svc;

use serde_json::json;
use svc::Svc;

#[test]
fn service_frames_keep_their_order_answer_requests_and_never_mix_with_messages() {
    let mut s = Svc::start("transport");
    let r = s.report("transport");
    assert!(
        r["dup"].as_str().unwrap().contains("registered already"),
        "{r}"
    );
    assert!(r["bad"].as_str().unwrap().contains("ASCII letters"), "{r}");
    assert_eq!(r["out_of_order"], 0, "{r}");
    // Each worker's WorkerGone came after all its 2000 messages.
    assert_eq!(r["gone_after"], json!({"1": 2000, "2": 2000}), "{r}");
    assert_eq!(r["answers"], json!({"1": {"Ok": 1}, "2": {"Ok": 2}}), "{r}");
    // The application's messages saw nothing of the services' traffic.
    let mut plain = r["plain"].as_array().unwrap().clone();
    plain.sort_by_key(|v| v["plain"].as_u64());
    assert_eq!(plain, [json!({"plain": 1}), json!({"plain": 2})], "{r}");
    assert!(r["gone_send"].as_str().unwrap().contains("worker 1"), "{r}");
    for id in [1, 2] {
        let w = s.worker_line(id, "worker");
        assert_eq!(w["doubled"], 42, "{w}");
        assert!(
            w["unknown"]
                .as_str()
                .unwrap()
                .contains("no service \"nope\" in the primary"),
            "{w}"
        );
        assert_eq!(w["pushes"], 500, "{w}");
        assert_eq!(w["in_order"], true, "{w}");
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn every_emitter_target_form_reaches_exactly_its_targets_worker_to_worker_included() {
    let mut s = Svc::start("emit");
    let p = s.report("emit");
    // The primary: its default emit and its emit to itself; each worker's
    // default emit (primary and itself) and its emit to the primary.
    assert_eq!(
        strings(&p["got"]),
        sorted(&[
            "p:p-default",
            "p:p-self",
            "w1:w1-default",
            "w1:w1-to-p",
            "w2:w2-default",
            "w2:w2-to-p",
            "w3:w3-default",
            "w3:w3-to-p",
        ]),
        "{p}"
    );
    for id in 1..=3u64 {
        let w = s.worker_line(id, "worker");
        let prev = if id == 1 { 3 } else { id - 1 };
        let mut want = vec![
            "p:p-default".to_string(),
            format!("w{id}:w{id}-default"),
            format!("w{id}:w{id}-self"),
            format!("w{prev}:w{prev}-to-next"),
            "w1:w1-all".into(),
            "w2:w2-all".into(),
            "w3:w3-all".into(),
        ];
        want.push(if id == 2 { "p:p-to-2" } else { "p:p-1-3" }.into());
        want.sort();
        assert_eq!(strings(&w["got"]), want, "worker {id}: {w}");
    }
}

#[test]
fn emits_keep_their_order_per_sender_under_load() {
    let mut s = Svc::start("emit-order");
    let p = s.report("emit-order");
    assert_eq!(p["primary"]["disorder"], 0, "{p}");
    assert_eq!(
        p["primary"]["counts"],
        json!({"w1": 20000, "w2": 20000}),
        "{p}"
    );
    for (id, counts) in [
        (1, json!({"p": 20000, "w1": 20000})),
        (2, json!({"p": 20000, "w1": 20000})),
        (3, json!({"p": 20000, "w1": 20000, "w2": 20000})),
    ] {
        let w = s.worker_line(id, "worker");
        assert_eq!(w["order"]["disorder"], 0, "{w}");
        assert_eq!(w["order"]["counts"], counts, "worker {id}: {w}");
    }
}

#[test]
fn an_emit_to_a_sigkilled_worker_is_dropped_and_disturbs_no_other() {
    let mut s = Svc::start("emit-kill");
    let p = s.report("emit-kill");
    assert_eq!(p["errors"], 0, "{p}");
    assert_eq!(p["killed"], "SIGKILL", "{p}");
    for id in [1, 3] {
        let w = s.worker_line(id, "worker");
        assert_eq!(w["order"]["disorder"], 0, "{w}");
        let want = if id == 1 {
            json!({"p": 20000})
        } else {
            json!({"p": 20000, "w1": 1000})
        };
        assert_eq!(w["order"]["counts"], want, "worker {id}: {w}");
    }
}

#[test]
fn once_fires_once_and_off_ends_the_stream_in_both_roles() {
    let mut s = Svc::start("emit-once-off");
    let r = s.report("emit-once-off");
    assert_eq!(
        (r["first_a"].clone(), r["a_after"].clone()),
        (json!(1), json!(null)),
        "{r}"
    );
    assert_eq!(r["first_b"], 1, "{r}");
    assert_eq!(r["offed"], 1, "{r}");
    assert_eq!(r["b_after"], json!(null), "{r}");
    assert_eq!(
        (r["c"].clone(), r["b2"].clone()),
        (json!(9), json!(7)),
        "{r}"
    );
    let w = &r["worker"];
    assert_eq!(w["first_x"], 1, "{r}");
    assert_eq!(w["x_after"], json!(null), "{r}");
    assert_eq!(w["y_count"], 1, "{r}");
    assert_eq!(w["y_offed"], 1, "{r}");
    assert_eq!(w["y_after"], json!(null), "{r}");
}

#[test]
fn the_status_registry_reads_and_sets_within_its_timeout_and_entries_go_with_their_worker() {
    let mut s = Svc::start("status");
    let r = s.report("status");
    let names = r["names"].as_array().unwrap();
    let find = |n: &str| {
        names
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(find("load")["workers"], json!([1, 2, 3]), "{r}");
    assert_eq!(find("load")["updatable"], json!([1, 2, 3]), "{r}");
    assert_eq!(find("name")["updatable"], json!([]), "{r}");
    assert_eq!(find("heartbeat")["workers"], json!([1, 2, 3]), "{r}");
    assert_eq!(find("replace_queue")["primary"], true, "{r}");
    // Worker 3 never answers: a partial result, within the timeout.
    assert_eq!(r["got"]["answers"], json!({"1": 10, "2": 20}), "{r}");
    assert_eq!(r["got"]["missing"], json!([3]), "{r}");
    let ms = r["get_ms"].as_u64().unwrap();
    assert!((450..3000).contains(&ms), "get_status took {ms} ms: {r}");
    // set_status: who applied it, who refused, who did not answer.
    assert_eq!(r["set"]["applied"], json!([1, 2]), "{r}");
    assert_eq!(r["set"]["missing"], json!([3]), "{r}");
    assert_eq!(r["after_set"]["answers"], json!({"1": 50, "2": 50}), "{r}");
    assert_eq!(r["big"]["applied"], json!([1]), "{r}");
    assert!(
        r["big"]["refused"]["2"]
            .as_str()
            .unwrap()
            .contains("500 is over 100"),
        "{r}"
    );
    assert!(
        r["view_only"]["refused"]["1"]
            .as_str()
            .unwrap()
            .contains("no update"),
        "{r}"
    );
    assert_eq!(r["name"]["answers"], json!({"1": "worker-1"}), "{r}");
    assert_eq!(
        r["queue"]["primary"],
        json!({"reload": null, "replacing": []}),
        "{r}"
    );
    // The heartbeat built-in carries Worker::set_status's fields.
    assert_eq!(r["beats"], json!([1, 2, 3]), "{r}");
    assert_eq!(r["beat_app"], json!({"role": "worker"}), "{r}");
    // Worker 1 SIGKILLed: its entries went with it.
    assert_eq!(r["after_kill"]["answers"], json!({"2": 50}), "{r}");
    assert_eq!(r["after_kill"]["missing"], json!([3]), "{r}");
    let after = r["names_after_kill"].as_array().unwrap();
    assert!(!after.iter().any(|x| x["name"] == "name"), "{r}");
}

#[test]
fn a_flooding_worker_is_held_back_and_the_primary_keeps_only_its_bound() {
    let mut s = Svc::start("flood");
    let w = s.worker_line(1, "worker");
    // The worker's own queue filled (32 MiB) because the primary stopped
    // reading it: the refusal names the backlog.
    assert!(
        w["refused"].as_str().unwrap().contains("not reading"),
        "{w}"
    );
    let sent = w["sent"].as_u64().unwrap();
    assert!(sent > 30_000, "{w}");
    s.tell("drain");
    let r = s.report("flood");
    // What waited in the primary: at most its message_queue (1024, 8 MiB).
    let queued = r["queued"].as_u64().unwrap();
    assert!((1..=1024).contains(&queued), "{r}");
    // Nothing was lost: everything sent arrived once the primary read on.
    assert_eq!(r["total"].as_u64().unwrap(), sent, "{r}");
}
