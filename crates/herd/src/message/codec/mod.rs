//! How the application's values travel: JSON (docs/protocol.md), with two
//! things serde_json alone would get wrong on the way.
//!
//! - **Floats that JSON cannot hold** (NaN, infinities): serde_json writes
//!   them as `null`, which the receiver then fails to decode as a number.
//!   [`Ser`] refuses them where the message is sent, naming the value.
//! - **Byte strings** (serde's bytes: `serde_bytes::ByteBuf`,
//!   `#[serde(with = "serde_bytes")]`): serde_json writes an array of
//!   numbers, up to four characters a byte. [`Ser`] writes
//!   `{"$bytes":"BASE64"}` instead, and [`De`] turns that back into bytes
//!   wherever the receiving type asks for bytes (an array of numbers, or
//!   a string, still decode as before).
//!
//! Floats themselves round-trip exactly: serde_json's `float_roundtrip`
//! feature, enabled in Cargo.toml, parses each to the nearest double.
//!
//! Both adapters wrap every nested value, so a value anywhere in a message
//! is seen; everything else is passed on to serde_json unchanged.

mod de;
mod ser;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use de::De;
pub(crate) use ser::Ser;

/// The key of the one-entry object that carries a byte string.
pub(crate) const BYTES_KEY: &str = "$bytes";

/// Writes `msg` as JSON onto `out`, through [`Ser`].
pub(crate) fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    msg: &T,
) -> Result<(), serde_json::Error> {
    msg.serialize(Ser(&mut serde_json::Serializer::new(out)))
}

/// Decodes `json` (all of it) into `T`, through [`De`].
pub(crate) fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(json);
    let v = T::deserialize(De(&mut d))?;
    d.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Bytes {
        #[serde(with = "bytes_as_bytes")]
        data: Vec<u8>,
        n: Option<f64>,
        tag: Tag,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tag {
        A(Vec<u32>),
        B { x: f32 },
        C,
    }

    /// `serde_bytes`'s `with` module, written out (the library does not
    /// depend on serde_bytes).
    mod bytes_as_bytes {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    fn encode<T: Serialize>(v: &T) -> Result<String, serde_json::Error> {
        let mut out = Vec::new();
        to_writer(&mut out, v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn bytes_travel_as_base64_and_come_back_as_bytes() {
        let v = Bytes {
            data: (0..=255).collect(),
            n: Some(0.1),
            tag: Tag::B { x: 1.5 },
        };
        let json = encode(&v).unwrap();
        assert!(json.starts_with(r#"{"data":{"$bytes":"AAECAw"#), "{json}");
        assert_eq!(from_slice::<Bytes>(json.as_bytes()).unwrap(), v);
        for tag in [Tag::A(vec![1, 2]), Tag::C] {
            let v = Bytes {
                data: vec![],
                n: None,
                tag,
            };
            assert_eq!(
                from_slice::<Bytes>(encode(&v).unwrap().as_bytes()).unwrap(),
                v
            );
        }
        // Other objects where bytes are asked for are refused, by name.
        let e = from_slice::<Bytes>(br#"{"data":{"x":1},"n":null,"tag":"C"}"#).unwrap_err();
        assert!(e.to_string().contains("byte string"), "{e}");
        let e = from_slice::<Bytes>(br#"{"data":{"$bytes":"!!"},"n":null,"tag":"C"}"#);
        assert!(e.unwrap_err().to_string().contains("base64"));
    }

    #[test]
    fn non_finite_floats_are_refused_where_they_are_sent() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = encode(&Bytes {
                data: vec![],
                n: Some(v),
                tag: Tag::C,
            })
            .unwrap_err();
            assert!(e.to_string().contains("JSON cannot carry"), "{e}");
        }
        let e = encode(&vec![Tag::B { x: f32::NAN }]).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
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
