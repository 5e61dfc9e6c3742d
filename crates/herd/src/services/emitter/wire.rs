//! The emitter's frames, inside service frames of `herd.emitter`:
//!
//! - worker to primary: `{"e":EVENT,"t":{"p":BOOL,"w":"all"|[IDS]},"p":PAYLOAD}`:
//!   `t.p` delivers to the primary, `t.w` to those workers (the sender
//!   delivered to itself already, and is left out of `"all"`);
//! - primary to worker: `{"e":EVENT,"f":FROM,"p":PAYLOAD}`, `FROM` 0 for
//!   the primary, else the emitting worker's id.

use serde::{Deserialize, Serialize};

use crate::message::codec;

/// The longest event name, in bytes.
pub const MAX_EVENT: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Route {
    #[serde(default)]
    pub p: bool,
    #[serde(default)]
    pub w: Option<Workers>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Workers {
    All(AllTag),
    Ids(Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AllTag {
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Incoming<'a> {
    #[serde(borrow)]
    pub e: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub t: Option<Route>,
    #[serde(default)]
    pub f: Option<u32>,
    #[serde(borrow)]
    pub p: &'a serde_json::value::RawValue,
}

/// Writes `{"e":EVENT,` then `"t":ROUTE,` or `"f":FROM,`, then `"p":`.
fn head(buf: &mut Vec<u8>, event: &str, route: Option<&Route>, from: Option<u32>) {
    buf.extend_from_slice(b"{\"e\":");
    serde_json::to_writer(&mut *buf, event).expect("a string");
    if let Some(route) = route {
        buf.extend_from_slice(b",\"t\":");
        serde_json::to_writer(&mut *buf, route).expect("plain data");
    }
    if let Some(from) = from {
        buf.extend_from_slice(format!(",\"f\":{from}").as_bytes());
    }
    buf.extend_from_slice(b",\"p\":");
}

/// An emit's body with its payload serialized (through the codec).
pub(crate) fn encode<T: Serialize + ?Sized>(
    event: &str,
    route: Option<&Route>,
    from: Option<u32>,
    payload: &T,
) -> Result<(Vec<u8>, std::ops::Range<usize>), serde_json::Error> {
    let mut buf = Vec::with_capacity(64);
    head(&mut buf, event, route, from);
    let start = buf.len();
    codec::to_writer(&mut buf, payload)?;
    let end = buf.len();
    buf.push(b'}');
    Ok((buf, start..end))
}

/// An emit's body around a payload that is JSON already.
pub(crate) fn encode_raw(event: &str, from: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(payload.len() + event.len() + 24);
    head(&mut buf, event, None, Some(from));
    buf.extend_from_slice(payload);
    buf.push(b'}');
    buf
}

/// Opens a body; errors say what is wrong.
pub(crate) fn decode(body: &[u8]) -> Result<Incoming<'_>, String> {
    let bad = |why: String| {
        format!(
            "malformed emit ({why}): {:?}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        )
    };
    let inc: Incoming<'_> = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    check_event(&inc.e).map_err(bad)?;
    Ok(inc)
}

pub(crate) fn check_event(event: &str) -> Result<(), String> {
    if event.is_empty() || event.len() > MAX_EVENT {
        return Err(format!(
            "an event name has 1 to {MAX_EVENT} bytes; this one has {}",
            event.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_round_trip_and_garbage_is_refused() {
        let route = Route {
            p: true,
            w: Some(Workers::All(AllTag::All)),
        };
        let (body, range) = encode("tick", Some(&route), None, &[1, 2]).unwrap();
        assert_eq!(&body[range], b"[1,2]");
        let inc = decode(&body).unwrap();
        assert_eq!(
            (&*inc.e, inc.t, inc.p.get()),
            ("tick", Some(route), "[1,2]")
        );
        let ids = br#"{"e":"x","t":{"w":[2,3]},"p":null}"#;
        assert_eq!(
            decode(ids).unwrap().t.unwrap().w,
            Some(Workers::Ids(vec![2, 3]))
        );
        let raw = encode_raw("x\"y", 4, b"{\"a\":1}");
        let inc = decode(&raw).unwrap();
        assert_eq!(
            (&*inc.e, inc.f, inc.p.get()),
            ("x\"y", Some(4), "{\"a\":1}")
        );
        for bad in [
            &br#"{"e":"","p":1}"#[..],
            br#"{"e":"x"}"#,
            br#"{"e":"x","p":1,"z":0}"#,
            br#"{"e":"x","t":{"w":"some"},"p":1}"#,
            br#"[1]"#,
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(r#"{{"e":"{}","p":1}}"#, "x".repeat(MAX_EVENT + 1));
        assert!(decode(long.as_bytes()).unwrap_err().contains("1 to 256"));
    }
}
