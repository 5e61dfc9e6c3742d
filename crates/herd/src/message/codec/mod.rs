//! How the application's values travel: JSON (docs/protocol.md), with one
//! thing serde_json alone would get wrong on the way: **floats that JSON
//! cannot hold** (NaN, infinities), which serde_json writes as `null`, for
//! the receiver then to fail on. [`Ser`] refuses them where the message is
//! sent, naming the value; it wraps every nested value, so a float anywhere
//! in a message is seen, and passes everything else to serde_json
//! unchanged.
//!
//! Floats themselves round-trip exactly: serde_json's `float_roundtrip`
//! feature, enabled in Cargo.toml, parses each to the nearest double. Byte
//! strings that should travel as bytes are [`Binary`](crate::Binary)
//! values (message/binary.rs).

mod ser;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use ser::Ser;

/// Writes `msg` as JSON onto `out`, through [`Ser`].
pub(crate) fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    msg: &T,
) -> Result<(), serde_json::Error> {
    msg.serialize(Ser(&mut serde_json::Serializer::new(out)))
}

/// `msg` as JSON, through [`Ser`].
pub(crate) fn to_vec<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    to_writer(&mut out, msg)?;
    Ok(out)
}

/// Decodes `json` (all of it) into `T`.
pub(crate) fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(json)
}

/// As [`from_slice`], for JSON known to be UTF-8: its strings are not
/// checked again (a tenth of a cache hit's decoding, by perf).
pub(crate) fn from_str<T: DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Value {
        n: Option<f64>,
        tag: Tag,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tag {
        A(Vec<u32>),
        B { x: f32 },
        C,
    }

    fn encode<T: Serialize>(v: &T) -> Result<String, serde_json::Error> {
        let mut out = Vec::new();
        to_writer(&mut out, v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn non_finite_floats_are_refused_where_they_are_sent() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = encode(&Value {
                n: Some(v),
                tag: Tag::C,
            })
            .unwrap_err();
            assert!(e.to_string().contains("JSON cannot carry"), "{e}");
        }
        let e = encode(&vec![Tag::B { x: f32::NAN }]).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
        // Finite ones, and everything else, go through unchanged.
        let v = Value {
            n: Some(0.1),
            tag: Tag::A(vec![1, 2]),
        };
        let json = encode(&v).unwrap();
        assert_eq!(json, serde_json::to_string(&v).unwrap());
        assert_eq!(from_slice::<Value>(json.as_bytes()).unwrap(), v);
    }

    #[test]
    fn floats_round_trip_exactly() {
        for f in [
            123456789.12345679_f64,
            0.1,
            5e-324,
            2.2250738585072014e-308,
            f64::MAX,
            -1.7976931348623157e308,
            9007199254740993.0,
            0.30000000000000004,
        ] {
            let back: f64 = from_slice(encode(&f).unwrap().as_bytes()).unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f}");
        }
    }
}
