//! Messages between the primary and its workers.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::Error;

/// A message received from the other side of the channel: a JSON value,
/// decoded on demand into whatever type the receiver expects.
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
    pub(crate) fn new(json: Vec<u8>) -> Message {
        Message {
            json: Bytes::from(json),
        }
    }

    /// A message from JSON text (handy in tests).
    pub fn from_json(json: impl Into<Bytes>) -> Message {
        Message { json: json.into() }
    }

    /// Decodes the message into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.json)?)
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
