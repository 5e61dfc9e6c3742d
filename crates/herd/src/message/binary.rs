//! [`Binary`]: a byte string that travels in a message as base64, not as
//! JSON's array of numbers.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// The key of the one-entry object that carries a byte string.
const KEY: &str = "$bytes";

/// A byte string for messages: it travels as `{"$bytes":"BASE64"}` (4
/// characters for 3 bytes) where a `Vec<u8>`, or serde's bytes
/// (`serde_bytes`), travel as JSON's array of numbers (up to 4 characters a
/// byte). It decodes from either form, and works wherever a serde type may
/// be: in internally tagged, untagged and flattened types too (a
/// `serde_bytes` field there cannot carry base64 through JSON, because
/// serde buffers those values without the format's help).
///
/// ```
/// # fn main() -> Result<(), herd::Error> {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[serde(tag = "type")]
/// enum Upload { Chunk { data: herd::Binary } }
/// let json = serde_json::to_string(&Upload::Chunk { data: vec![0, 1, 2, 255].into() }).unwrap();
/// assert_eq!(json, r#"{"type":"Chunk","data":{"$bytes":"AAEC/w=="}}"#);
/// let Upload::Chunk { data } = herd::Message::from_json(json).decode()?;
/// assert_eq!(&data[..], &[0, 1, 2, 255]);
/// # Ok(()) }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl Binary {
    /// The bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Binary {
        Binary(v)
    }
}

impl From<&[u8]> for Binary {
    fn from(v: &[u8]) -> Binary {
        Binary(v.to_vec())
    }
}

impl From<Binary> for Vec<u8> {
    fn from(b: Binary) -> Vec<u8> {
        b.0
    }
}

impl std::ops::Deref for Binary {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binary({} bytes)", self.0.len())
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Text<'a>(&'a [u8]);
        impl Serialize for Text<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&base64::display::Base64Display::new(self.0, &STANDARD))
            }
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(KEY, &Text(&self.0))?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Binary, D::Error> {
        d.deserialize_any(BinaryVisitor)
    }
}

struct BinaryVisitor;

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = Binary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a byte string: {"$bytes":"BASE64"}, or an array of numbers 0-255"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Binary, A::Error> {
        let only = "an object with the one key \"$bytes\"";
        match a.next_key::<std::borrow::Cow<'de, str>>()? {
            Some(k) if k == KEY => {}
            _ => return Err(de::Error::invalid_value(de::Unexpected::Map, &only)),
        }
        let text: std::borrow::Cow<'de, str> = a.next_value()?;
        if a.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_value(de::Unexpected::Map, &only));
        }
        STANDARD.decode(text.as_bytes()).map(Binary).map_err(|e| {
            de::Error::custom(format_args!("a byte string's base64 is malformed: {e}"))
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Binary, A::Error> {
        // Bounded by what arrived: a frame is at most `max_frame`.
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = a.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Binary(out))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Binary, E> {
        Ok(Binary(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Binary, E> {
        Ok(Binary(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Tagged {
        Blob { data: Binary },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Blob { data: Binary },
        Text { text: String },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        id: u32,
        #[serde(flatten)]
        inner: Inner,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        data: Binary,
    }

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug>(v: T) {
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#"{"$bytes":""#), "{json}");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v, "{json}");
    }

    #[test]
    fn every_length_round_trips_in_every_shape_of_type() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3074).collect();
        for len in (0..8).chain([255, 256, 3072, 3073, 3074]) {
            let b = Binary(data[..len].to_vec());
            round_trip(b.clone());
            round_trip(Tagged::Blob { data: b.clone() });
            round_trip(Either::Blob { data: b.clone() });
            round_trip(Outer {
                id: 7,
                inner: Inner { data: b },
            });
        }
        assert_eq!(
            serde_json::to_string(&Binary(b"foobar".to_vec())).unwrap(),
            r#"{"$bytes":"Zm9vYmFy"}"#
        );
    }

    #[test]
    fn arrays_decode_and_anything_else_is_refused_by_name() {
        let b: Binary = serde_json::from_str("[1,2,255]").unwrap();
        assert_eq!(b.0, [1, 2, 255]);
        for (bad, says) in [
            (r#"{"$bytes":"!!"}"#, "base64"),
            (r#"{"x":"AA=="}"#, "$bytes"),
            (r#"{"$bytes":"AA==","x":1}"#, "$bytes"),
            ("[256]", "256"),
            (r#""AA==""#, "byte string"),
            ("3", "byte string"),
        ] {
            let e = serde_json::from_str::<Binary>(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
