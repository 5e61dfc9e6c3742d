//! The cache's messages between a worker and the primary's store: a
//! request per call, its reply, and the primary's pushes (a local copy's
//! invalidation, a watcher's change notice). docs/protocol.md describes
//! them for a worker in another language.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CacheError, CacheOptions, CacheStats, Change};

/// A worker's request.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged (`{"get": {...}}`): a RawValue cannot be read through
// serde's buffering of an internally tagged enum.
#[serde(rename_all = "snake_case")]
pub(crate) enum Req {
    Open {
        cache: String,
        options: CacheOptions,
    },
    Get {
        cache: String,
        key: String,
        /// Take the lease (or wait) on a miss.
        #[serde(default)]
        load: bool,
        #[serde(default)]
        wait_ms: u64,
        /// The worker keeps a local copy: tell it when the entry changes.
        #[serde(default)]
        track: bool,
    },
    Fill {
        cache: String,
        key: String,
        token: u64,
        #[serde(default)]
        value: Option<Box<RawValue>>,
        #[serde(default)]
        error: Option<String>,
    },
    Set {
        cache: String,
        key: String,
        value: Box<RawValue>,
        #[serde(default)]
        leave_if_not_null: bool,
    },
    Del {
        cache: String,
        key: String,
    },
    Keys {
        cache: String,
    },
    Watch {
        cache: String,
        id: u64,
        #[serde(default)]
        key: Option<String>,
    },
    Unwatch {
        cache: String,
        id: u64,
    },
    Stats {
        cache: String,
    },
}

/// The primary's reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rep {
    Hit {
        value: Box<RawValue>,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    Miss,
    Load {
        token: u64,
    },
    Done {
        yes: bool,
    },
    Keys {
        keys: Vec<String>,
    },
    Stats {
        stats: CacheStats,
    },
    Error {
        error: CacheError,
    },
}

/// What the primary pushes to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Push {
    /// The entry the worker copied changed: drop the copy.
    Invalidate { cache: String, key: String },
    /// A change notice for the worker's watch `id`.
    Change { id: u64, change: Change },
    /// The worker's watch `id` ended (it fell behind).
    Ended { id: u64 },
    /// The store was lost (a standalone store worker died): drop every
    /// local copy, and end every watch.
    Reset,
}

/// The first byte of a compact get (a request's value that is not JSON:
/// no JSON text starts with it), and of its compact replies.
pub(crate) const COMPACT_GET: u8 = 0x01;
/// A compact reply: a hit, then `ttl_ms` (u64 little-endian, `u64::MAX`
/// for none), then the value's JSON.
pub(crate) const COMPACT_HIT: u8 = 0x01;
/// A compact reply: a miss (this byte alone).
pub(crate) const COMPACT_MISS: u8 = 0x02;
const NO_TTL: u64 = u64::MAX;
/// A compact get's fixed part: tag, flags, `wait_ms`, the name's length.
const GET_HEAD: usize = 11;

/// A get as a herd worker sends it: the request the primary answers most,
/// in a form read without a parser and answered in kind (docs/protocol.md,
/// "Compact gets"):
///
/// | bytes      | field     |                                          |
/// |------------|-----------|------------------------------------------|
/// | 0          | tag       | [`COMPACT_GET`]                          |
/// | 1          | flags     | bit 0 `load`, bit 1 `track`; others zero |
/// | 2..10      | `wait_ms` | u64 little-endian                        |
/// | 10         | `n`       | the cache name's length, 1 to 64         |
/// | 11..11+n   | `cache`   |                                          |
/// | rest       | `key`     | UTF-8                                    |
///
/// A hit is answered [`COMPACT_HIT`], a miss [`COMPACT_MISS`]; anything
/// else (a lease, an error) as JSON, a [`Rep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Get<'a> {
    pub cache: &'a str,
    pub key: &'a str,
    pub load: bool,
    pub wait_ms: u64,
    pub track: bool,
}

impl<'a> Get<'a> {
    /// Appends the compact form (`cache` is a checked name).
    pub fn write(&self, buf: &mut Vec<u8>) {
        debug_assert!(!self.cache.is_empty() && self.cache.len() <= super::MAX_NAME);
        buf.reserve(GET_HEAD + self.cache.len() + self.key.len());
        buf.push(COMPACT_GET);
        buf.push(u8::from(self.load) | (u8::from(self.track) << 1));
        buf.extend_from_slice(&self.wait_ms.to_le_bytes());
        buf.push(self.cache.len() as u8);
        buf.extend_from_slice(self.cache.as_bytes());
        buf.extend_from_slice(self.key.as_bytes());
    }

    /// Reads a compact get; the error says what is wrong with it.
    pub fn parse(b: &'a [u8]) -> Result<Get<'a>, String> {
        let bad = |why: &str| format!("malformed compact get ({why})");
        if b.len() < GET_HEAD || b[0] != COMPACT_GET {
            return Err(bad("shorter than its fixed part"));
        }
        let flags = b[1];
        if flags & !3 != 0 {
            return Err(bad(&format!("unknown flags {flags:#04x}")));
        }
        let wait_ms = u64::from_le_bytes(b[2..10].try_into().expect("8 bytes"));
        let n = b[10] as usize;
        if n == 0 || n > super::MAX_NAME {
            return Err(bad(&format!(
                "its cache name is {n} bytes long, not 1 to {}",
                super::MAX_NAME
            )));
        }
        let name = b
            .get(GET_HEAD..GET_HEAD + n)
            .ok_or_else(|| bad("cut in its cache name"))?;
        let text = |part: &'a [u8], what: &str| {
            std::str::from_utf8(part).map_err(|_| bad(&format!("its {what} is not UTF-8")))
        };
        Ok(Get {
            cache: text(name, "cache name")?,
            key: text(&b[GET_HEAD + n..], "key")?,
            load: flags & 1 != 0,
            wait_ms,
            track: flags & 2 != 0,
        })
    }

    /// The same get as a JSON request (for a store that takes only those).
    pub fn to_req(self) -> Req {
        Req::Get {
            cache: self.cache.into(),
            key: self.key.into(),
            load: self.load,
            wait_ms: self.wait_ms,
            track: self.track,
        }
    }
}

/// A request's value, a compact get or JSON, as a [`Req`] (for a store
/// that takes only those).
pub(crate) fn read_req(b: &[u8]) -> Result<Req, CacheError> {
    if b.first() == Some(&COMPACT_GET) {
        return Get::parse(b).map(Get::to_req).map_err(CacheError::Invalid);
    }
    serde_json::from_slice(b)
        .map_err(|e| CacheError::Invalid(format!("malformed cache request: {e}")))
}

/// Appends the compact reply to a hit on `json`.
pub(crate) fn write_compact_hit(buf: &mut Vec<u8>, json: &str, ttl_ms: Option<u64>) {
    buf.reserve(9 + json.len());
    buf.push(COMPACT_HIT);
    let ttl = ttl_ms.map_or(NO_TTL, |t| t.min(NO_TTL - 1));
    buf.extend_from_slice(&ttl.to_le_bytes());
    buf.extend_from_slice(json.as_bytes());
}

/// A reply to a compact get: a compact hit (its JSON and `ttl_ms`) or
/// miss, or else a JSON [`Rep`].
#[derive(Debug)]
pub(crate) enum GetReply<'a> {
    Hit(&'a str, Option<u64>),
    Miss,
    Rep(Rep),
}

/// Reads the reply to a compact get.
pub(crate) fn parse_get_reply(b: &[u8]) -> Result<GetReply<'_>, CacheError> {
    let bad = |why: &str| CacheError::Codec(format!("a get's reply {why}"));
    match b.first() {
        Some(&COMPACT_HIT) => {
            let ttl = b.get(1..9).ok_or_else(|| bad("is cut in its ttl"))?;
            let ttl = u64::from_le_bytes(ttl.try_into().expect("8 bytes"));
            let json = std::str::from_utf8(&b[9..]).map_err(|_| bad("is not UTF-8"))?;
            Ok(GetReply::Hit(json, (ttl != NO_TTL).then_some(ttl)))
        }
        Some(&COMPACT_MISS) if b.len() == 1 => Ok(GetReply::Miss),
        _ => serde_json::from_slice(b)
            .map(GetReply::Rep)
            .map_err(|e| bad(&format!("does not decode: {e}"))),
    }
}

pub(crate) fn raw(json: &str) -> Result<Box<RawValue>, CacheError> {
    RawValue::from_string(json.to_string()).map_err(|e| CacheError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_gets_and_their_replies_round_trip() {
        for (load, track, wait_ms, key) in [
            (false, false, 0, "k"),
            (true, true, u64::MAX, ""),
            (true, false, 7, "é/ü"),
        ] {
            let get = Get {
                cache: "pages",
                key,
                load,
                wait_ms,
                track,
            };
            let mut b = Vec::new();
            get.write(&mut b);
            assert_eq!(Get::parse(&b).unwrap(), get);
            assert_ne!(b[0], b'{');
        }
        for ttl in [None, Some(0), Some(5)] {
            let mut b = Vec::new();
            write_compact_hit(&mut b, r#"{"a":1}"#, ttl);
            assert!(
                matches!(parse_get_reply(&b).unwrap(), GetReply::Hit(j, t) if j == r#"{"a":1}"# && t == ttl)
            );
        }
        assert!(matches!(
            parse_get_reply(&[COMPACT_MISS]).unwrap(),
            GetReply::Miss
        ));
        assert!(matches!(
            parse_get_reply(br#"{"load":{"token":3}}"#).unwrap(),
            GetReply::Rep(Rep::Load { token: 3 })
        ));
        assert!(parse_get_reply(&[COMPACT_HIT, 1, 2]).is_err());
        assert!(parse_get_reply(b"").is_err());
    }

    #[test]
    fn a_compact_get_whose_cache_name_is_empty_or_too_long_is_refused_clearly() {
        let mut b = Vec::new();
        Get {
            cache: "c",
            key: "k",
            load: false,
            wait_ms: 0,
            track: false,
        }
        .write(&mut b);
        assert!(Get::parse(&b).is_ok());
        for n in [0u8, 65, 255] {
            let mut bad = b[..GET_HEAD].to_vec();
            bad[10] = n;
            bad.extend(vec![b'c'; n as usize]);
            bad.push(b'k');
            let e = Get::parse(&bad).unwrap_err();
            assert!(e.contains(&format!("{n} bytes long, not 1 to 64")), "{e}");
        }
    }

    #[test]
    fn requests_and_replies_with_raw_values_round_trip() {
        let req = Req::Set {
            cache: "c".into(),
            key: "k".into(),
            value: raw(r#"{"a":[1,2.5,"x"]}"#).unwrap(),
            leave_if_not_null: true,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"set":{"cache":"c","key":"k","value":{"a":[1,2.5,"x"]},"leave_if_not_null":true}}"#
        );
        match serde_json::from_str::<Req>(&text).unwrap() {
            Req::Set { value, .. } => assert_eq!(value.get(), r#"{"a":[1,2.5,"x"]}"#),
            other => panic!("{other:?}"),
        }
        let rep = Rep::Hit {
            value: raw("7").unwrap(),
            ttl_ms: Some(5),
        };
        let text = serde_json::to_string(&rep).unwrap();
        assert!(
            matches!(serde_json::from_str::<Rep>(&text).unwrap(), Rep::Hit { value, ttl_ms: Some(5) } if value.get() == "7")
        );
        let text = serde_json::to_string(&Rep::Error {
            error: CacheError::Timeout(std::time::Duration::from_millis(300)),
        })
        .unwrap();
        assert!(
            matches!(serde_json::from_str::<Rep>(&text).unwrap(), Rep::Error { error: CacheError::Timeout(d) } if d.as_millis() == 300)
        );
        // A hostile request is an error, not a panic.
        for b in [
            &b""[..],
            b"\x01",
            b"\x01\x04\0\0\0\0\0\0\0\0\x01c",
            b"\x01\0\0\0\0\0\0\0\0\0\x05c",
        ] {
            assert!(Get::parse(b).is_err(), "{b:?}");
        }
        assert!(serde_json::from_str::<Req>(r#"{"get":{"cache":1}}"#).is_err());
        assert!(serde_json::from_str::<Req>(r#"{"nope":{}}"#).is_err());
    }
}
