//! Messages between the primary and its workers.

mod binary;
pub(crate) mod codec;

pub use binary::Binary;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::Error;

/// A message received from the other side of the channel: a JSON value,
/// decoded on demand into whatever type the receiver expects.
///
/// What is sent arrives exactly: every float as the same double (serde_json
/// parses each to the nearest one). Bytes meant to travel as bytes are a
/// [`Binary`], which goes as `{"$bytes":"BASE64"}` rather than as JSON's
/// array of numbers (as a `Vec<u8>` or `serde_bytes` do). A float JSON
/// cannot hold (NaN, an infinity) is refused where it is sent, with
/// [`Error::Codec`] naming it, never at the receiver.
///
/// ```
/// # fn main() -> Result<(), herd::Error> {
/// #[derive(serde::Deserialize)]
/// struct Hits { n: u64 }
/// let msg = herd::Message::from_json(r#"{"n": 3}"#);
/// assert_eq!(msg.decode::<Hits>()?.n, 3);
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    json: Bytes,
}

impl Message {
    pub(crate) fn new(json: impl Into<Bytes>) -> Message {
        Message { json: json.into() }
    }

    /// The part of this message's JSON in `range` (no copy).
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Message {
        Message {
            json: self.json.slice(range),
        }
    }

    /// A message from JSON text (handy in tests).
    pub fn from_json(json: impl Into<Bytes>) -> Message {
        Message { json: json.into() }
    }

    /// Decodes the message into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(codec::from_slice(&self.json)?)
    }

    /// The message's raw JSON.
    pub fn as_json(&self) -> &[u8] {
        &self.json
    }

    /// Length of the JSON encoding in bytes.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// Whether the JSON encoding is empty (never, for a received message).
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 200;
        let text = String::from_utf8_lossy(&self.json[..self.json.len().min(SHOW)]);
        if self.json.len() > SHOW {
            write!(f, "Message({text}... {} bytes)", self.json.len())
        } else {
            write!(f, "Message({text})")
        }
    }
}
