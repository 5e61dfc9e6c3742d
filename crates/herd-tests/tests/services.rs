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
