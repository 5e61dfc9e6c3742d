//! The channel's wire format, version 3. docs/protocol.md is its prose twin:
//! change both together and bump [`VERSION`] on any incompatible change.
//!
//! A frame is an 8-byte header followed by a body:
//!
//! | bytes | field    | meaning                                             |
//! |-------|----------|-----------------------------------------------------|
//! | 0..4  | `len`    | body length, u32 little-endian, at most the limit   |
//! | 4     | `kind`   | 0 = control (herd's own), 1 = user message, 2 = request, 3 = reply, 4 = service |
//! | 5     | `nfds`   | descriptors sent with this frame, at most [`MAX_FDS`] |
//! | 6..8  | reserved | zero                                                |
//!
//! Bodies are JSON: a user message is any JSON value; a control frame is a
//! [`Control`] object tagged by `"type"`; a request or a reply is an
//! [`Envelope`] (`{"id":N,"msg":VALUE}`, or `{"id":N,"error":TEXT}` for a
//! reply that says why there is none). A service frame's body starts with a
//! short binary prefix naming the service (`services::frame`), then JSON.
//! Descriptors travel as SCM_RIGHTS
//! ancillary data on the `sendmsg` that carries the frame's first byte.

use serde::{Deserialize, Serialize};

use crate::addr::{ListenAddr, ListenOptions};

/// The protocol version a worker announces in its `hello`.
pub const VERSION: u32 = 3;
/// Header length in bytes.
pub const HEADER_LEN: usize = 8;
/// The largest body limit a primary may set (64 MiB): its `max_frame`
/// setting is kept under it.
pub const MAX_BODY: usize = 64 << 20;
/// The smallest body limit a primary may set (64 KiB): every control
/// message fits.
pub const MIN_BODY: usize = 64 << 10;
/// The body limit unless the primary's settings say otherwise (17 MiB):
/// a 16 MiB payload, as DESIGN.md promises, with room for its JSON.
pub const DEFAULT_MAX_BODY: usize = 17 << 20;
/// The most descriptors one frame may carry.
pub const MAX_FDS: usize = 64;

/// What a frame's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// herd's own control message: a [`Control`] as JSON.
    Control = 0,
    /// The application's message: any JSON value.
    User = 1,
    /// The application's request, which the other side answers with a
    /// [`Kind::Reply`]: an [`Envelope`] with `msg`.
    Request = 2,
    /// The answer to a [`Kind::Request`] of the same `id`: an [`Envelope`]
    /// with `msg`, or with `error`.
    Reply = 3,
    /// A library service's traffic (emitter, status registry, cache...):
    /// the service's name and what it carries (`crate::services`).
    Service = 4,
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub kind: Kind,
    pub nfds: usize,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&(self.len as u32).to_le_bytes());
        h[4] = self.kind as u8;
        h[5] = self.nfds as u8;
        h
    }

    /// Parses and validates a header: every field is checked, so a peer
    /// writing garbage is caught at its first frame. A body over
    /// `max_body` is refused here, before any of it is read.
    pub fn decode(b: &[u8; HEADER_LEN], max_body: usize) -> Result<Header, String> {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = match b[4] {
            0 => Kind::Control,
            1 => Kind::User,
            2 => Kind::Request,
            3 => Kind::Reply,
            4 => Kind::Service,
            k => return Err(format!("unknown frame kind {k} (header bytes {b:02x?})")),
        };
        let nfds = b[5] as usize;
        if b[6] != 0 || b[7] != 0 {
            return Err(format!(
                "reserved header bytes are not zero (header bytes {b:02x?})"
            ));
        }
        if len > max_body {
            return Err(format!(
                "a frame announces a body of {len} bytes, over the {max_body}-byte limit \
                 (the primary's `max_frame` setting)"
            ));
        }
        if nfds > MAX_FDS {
            return Err(format!(
                "frame carries {nfds} descriptors, more than the {MAX_FDS} allowed"
            ));
        }
        Ok(Header { len, kind, nfds })
    }
}

/// A request's or a reply's body, as it arrives: `msg` is the
/// application's value, still JSON, as a range of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The request's number, chosen by the side that asks.
    pub id: u64,
    /// The value (where in the body its JSON is), or why there is none.
    pub msg: Result<std::ops::Range<usize>, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson<'a> {
    id: u64,
    #[serde(borrow, default, deserialize_with = "present")]
    msg: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    error: Option<String>,
}

/// A `msg` that is there, even as `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    Deserialize::deserialize(d).map(Some)
}

/// The longest `error` text of a reply that is kept (the rest is cut).
const MAX_ERROR_TEXT: usize = 1000;

impl Envelope {
    /// Parses a request's (`kind` [`Kind::Request`]: `msg` only) or a
    /// reply's (`msg` or `error`) body.
    pub fn parse(kind: Kind, body: &[u8]) -> Result<Envelope, String> {
        let bad = |why: String| {
            format!(
                "malformed {} frame ({why}): {:?}",
                if kind == Kind::Request {
                    "request"
                } else {
                    "reply"
                },
                String::from_utf8_lossy(&body[..body.len().min(120)])
            )
        };
        // An object: serde would take `[id, msg]` for the struct too.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(bad("not a JSON object".into()));
        }
        let e: EnvelopeJson<'_> = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let msg = match (e.msg, e.error) {
            (Some(raw), None) => {
                let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
                Ok(start..start + raw.get().len())
            }
            (None, Some(mut why)) if kind == Kind::Reply => {
                if why.len() > MAX_ERROR_TEXT {
                    let mut cut = MAX_ERROR_TEXT;
                    while !why.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    why.truncate(cut);
                    why.push_str("...");
                }
                Err(why)
            }
            _ if kind == Kind::Request => return Err(bad("a request has `msg` only".into())),
            _ => return Err(bad("a reply has `msg` or `error`, one of them".into())),
        };
        Ok(Envelope { id: e.id, msg })
    }
}

/// herd's control messages, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    // ---- worker -> primary ----
    /// First frame of every worker: the worker is online.
    Hello { version: u32, pid: u32 },
    /// Ask for a listening socket (or a connection queue) for `addr`
    /// (`{"tcp":"IP:PORT"}`, `{"udp":"IP:PORT"}` or `{"unix":"/ABSOLUTE/PATH"}`:
    /// addresses only, a host name is refused); `index` counts this
    /// worker's earlier listens on the same `addr`.
    Listen {
        seq: u64,
        addr: ListenAddr,
        index: u32,
        #[serde(default)]
        options: ListenOptions,
    },
    /// The worker's listener for `handle` is set up and accepting.
    Listening { handle: u32 },
    /// The worker closed its listener for `handle`: route nothing more to it,
    /// and give what is left in its connection queue to another worker.
    Unlisten { handle: u32 },
    /// `n` handed-off connections were closed (least-connections accounting).
    Closed { handle: u32, n: u32 },
    /// The worker is disconnecting (or exiting) on purpose.
    Disconnecting,
    /// The worker finished its warm-up (explicit readiness).
    Ready,
    /// The worker is alive: sent every heartbeat interval.
    Heartbeat(Beat),

    // ---- primary -> worker ----
    /// Answer to `Listen`. `mode` is "handoff" (the worker's connection
    /// queue, see `channel::conns`, is attached) or "socket" (a listening
    /// socket is attached, then for TCP maybe a connection queue too).
    Listened {
        seq: u64,
        handle: u32,
        mode: ListenMode,
        /// The address as bound (the real port where 0 was asked).
        address: ListenAddr,
        /// Whether the worker should report closed connections.
        count_closes: bool,
    },
    /// Answer to `Listen` when binding failed.
    ListenFailed {
        seq: u64,
        errno: i32,
        message: String,
    },
    /// Disconnect gracefully: stop accepting, finish, close the channel, exit.
    Disconnect,
}

/// What a worker reports at each heartbeat, as it travels (the public
/// [`crate::Heartbeat`] is what the primary makes of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Beat {
    /// Milliseconds since the worker connected.
    pub uptime_ms: u64,
    /// Resident memory in bytes (0 where unknown).
    pub rss: u64,
    /// CPU time used, user plus system, in milliseconds (0 where unknown).
    pub cpu_ms: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted since the worker started.
    pub handled: u64,
    /// Requests served since the worker started (counted by `serve`).
    pub requests: u64,
    /// Requests under way now.
    pub in_flight: u64,
    /// The sum of the requests' durations, in microseconds.
    pub latency_sum_us: u64,
    /// Requests per latency bucket since the start (not cumulative; the
    /// bounds are `worker::LATENCY_BOUNDS_MS`, then one for slower ones).
    pub latency_buckets: Vec<u64>,
    /// Fields the application adds.
    pub app: serde_json::Map<String, serde_json::Value>,
}

/// How a worker gets its connections for one listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenMode {
    /// The primary accepts and hands connections over (rr, lc).
    Handoff,
    /// The worker accepts on the attached socket (shared, reuseport, udp).
    Socket,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            len: 1234,
            kind: Kind::User,
            nfds: 3,
        };
        assert_eq!(Header::decode(&h.encode(), MAX_BODY).unwrap(), h);
    }

    #[test]
    fn header_rejects_garbage() {
        let decode = |b: &[u8; HEADER_LEN]| Header::decode(b, MAX_BODY);
        assert!(decode(b"\xff\xff\xff\xff\x00\x00\x00\x00")
            .unwrap_err()
            .contains("over the 67108864-byte limit"));
        assert!(decode(b"\x01\x00\x00\x00\x07\x00\x00\x00")
            .unwrap_err()
            .contains("kind 7"));
        assert!(decode(b"\x01\x00\x00\x00\x00\x00\x01\x00")
            .unwrap_err()
            .contains("reserved"));
        assert!(decode(b"\x01\x00\x00\x00\x00\xff\x00\x00")
            .unwrap_err()
            .contains("descriptors"));
    }

    #[test]
    fn envelopes_parse_and_refuse_what_is_not_one() {
        let body = br#"{"id":7,"msg":{"a":[1,null]}}"#;
        let e = Envelope::parse(Kind::Request, body).unwrap();
        assert_eq!(e.id, 7);
        assert_eq!(&body[e.msg.unwrap()], br#"{"a":[1,null]}"#);
        let e = Envelope::parse(Kind::Reply, br#"{"id":1,"msg":null}"#).unwrap();
        assert_eq!(e.msg, Ok(14..18));
        let e = Envelope::parse(Kind::Reply, br#"{"id":2,"error":"no"}"#).unwrap();
        assert_eq!(e.msg, Err("no".into()));
        let long = format!(r#"{{"id":2,"error":"{}"}}"#, "\u{e9}".repeat(2000));
        let e = Envelope::parse(Kind::Reply, long.as_bytes()).unwrap();
        assert!(e.msg.unwrap_err().len() <= MAX_ERROR_TEXT + 3);
        for (kind, bad) in [
            (Kind::Request, &br#"{"id":1,"error":"x"}"#[..]),
            (Kind::Request, br#"{"id":1}"#),
            (Kind::Reply, br#"{"id":1,"msg":1,"error":"x"}"#),
            (Kind::Reply, br#"{"id":-1,"msg":1}"#),
            (Kind::Reply, br#"{"id":1,"msg":1,"x":2}"#),
            (Kind::Reply, br#"[1,2]"#),
            (Kind::Reply, b"\xff"),
        ] {
            assert!(Envelope::parse(kind, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn control_is_tagged_json() {
        let c = Control::Closed { handle: 2, n: 5 };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"type":"closed","handle":2,"n":5}"#);
        assert_eq!(serde_json::from_str::<Control>(&s).unwrap(), c);
        assert!(serde_json::from_str::<Control>(r#"{"type":"nope"}"#).is_err());
    }
}
