//! Payloads round-trip exactly, both ways, between real processes: floats
//! to the bit, byte strings as bytes, and floats JSON cannot carry refused
//! where they are sent.

mod talk;

use serde_json::json;
use talk::Talk;

#[test]
fn floats_arrive_as_the_same_doubles_from_a_worker_and_from_the_primary() {
    let r = Talk::start("float").report("float");
    // 123456789.12345679 first: a lossy parser comes back 1 ULP off.
    assert_eq!(r["sent"][0], 4728057454355442549u64);
    assert_eq!(r["w2p"], r["sent"], "worker to primary: {r}");
    assert_eq!(r["p2w"], r["sent"], "primary to worker: {r}");
}

#[test]
fn byte_strings_travel_as_bytes_from_a_worker_and_from_the_primary_in_tagged_enums_too() {
    let r = Talk::start("bytes").report("bytes");
    assert_eq!(r["w2p_equal"], true, "{r}");
    assert_eq!(r["p2w_equal"], true, "{r}");
    // As base64 (4 characters per 3 bytes), not an array of numbers (up
    // to 4 characters per byte).
    let n = r["n"].as_u64().unwrap();
    for len in [&r["w2p_len"], &r["p2w_len"]] {
        let len = len.as_u64().unwrap();
        assert!(
            len <= n * 4 / 3 + 100,
            "{len} bytes on the wire for {n}: {r}"
        );
    }
}

#[test]
fn nan_and_infinities_are_refused_at_send_in_a_worker_and_in_the_primary() {
    let r = Talk::start("nan").report("nan");
    let refused = |errors: &serde_json::Value, what: &[&str]| {
        for (e, what) in errors.as_array().unwrap().iter().zip(what) {
            let e = e["error"].as_str().unwrap_or_else(|| panic!("sent: {r}"));
            assert!(e.contains(what) && e.contains("JSON cannot carry"), "{e}");
        }
    };
    refused(&r["w2p_first"]["w_errors"], &["NaN", "inf"]);
    refused(&r["p_errors"], &["NaN", "-inf"]);
    // Nothing reached the receiver: its first message is the one after.
    assert!(r["w2p_first"]["w_errors"].is_array(), "{r}");
    assert_eq!(r["p2w_first"], json!({"after": 1}), "{r}");
}
