//! A service frame's body (kind 4, docs/protocol.md "Service frames"):
//!
//! | bytes        | field   | meaning                                          |
//! |--------------|---------|--------------------------------------------------|
//! | 0            | `n`     | the service name's length, 1 to [`MAX_NAME`]      |
//! | 1..1+n       | `name`  | the service's name: ASCII letters, digits, `._:-` |
//! | 1+n          | `op`    | 0 message, 1 request, 2 reply, 3 error reply     |
//! | 2+n..10+n    | `id`    | requests and replies only: u64 little-endian      |
//! | rest         | `value` | JSON: the value, or (error reply) a JSON string   |
//!
//! A binary prefix rather than a JSON envelope: the name is matched and the
//! value handed on as a slice of the body, without parsing anything but
//! the value itself, where it is decoded.

use std::ops::Range;

use crate::Error;

/// The longest service name, in bytes.
pub const MAX_NAME: usize = 64;

/// What a service frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// One way.
    Message = 0,
    /// Asks for one reply of the same id.
    Request = 1,
    /// Answers the request of the same id.
    Reply = 2,
    /// Says why the request of the same id gets no answer (a JSON string).
    Error = 3,
}

/// A service frame's body, opened: where its parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub name: Range<usize>,
    pub op: Op,
    pub id: u64,
    pub value: Range<usize>,
}

/// Checks a service name: 1 to [`MAX_NAME`] bytes of ASCII letters,
/// digits and `._:-`.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::Service {
        name: name.chars().take(80).collect(),
        why: why.into(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad(&format!(
            "a service name has 1 to {MAX_NAME} bytes; this one has {}",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err(bad(
            "a service name holds ASCII letters, digits and `._:-` only",
        ));
    }
    Ok(())
}

/// Writes a body's prefix (the name, `op` and, but for a message, `id`)
/// into `buf`; the value follows.
pub(crate) fn write_prefix(buf: &mut Vec<u8>, name: &str, op: Op, id: u64) {
    debug_assert!(!name.is_empty() && name.len() <= MAX_NAME);
    buf.push(name.len() as u8);
    buf.extend_from_slice(name.as_bytes());
    buf.push(op as u8);
    if op != Op::Message {
        buf.extend_from_slice(&id.to_le_bytes());
    }
}

/// Opens a body. Errors name what is wrong (a protocol violation).
pub(crate) fn parse(body: &[u8]) -> Result<Parsed, String> {
    let bad = |why: &str| {
        format!(
            "malformed service frame ({why}): {:02x?}",
            &body[..body.len().min(40)]
        )
    };
    let n = *body.first().ok_or_else(|| bad("empty body"))? as usize;
    if n == 0 || n > MAX_NAME {
        return Err(bad(&format!("name length {n}, not 1 to {MAX_NAME}")));
    }
    let name = 1..1 + n;
    let op_at = 1 + n;
    let name_bytes = body
        .get(name.clone())
        .ok_or_else(|| bad("cut in its name"))?;
    if !name_bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(b))
    {
        return Err(bad(
            "a name with bytes other than ASCII letters, digits, `._:-`",
        ));
    }
    let op = match body.get(op_at) {
        Some(0) => Op::Message,
        Some(1) => Op::Request,
        Some(2) => Op::Reply,
        Some(3) => Op::Error,
        Some(k) => return Err(bad(&format!("unknown op {k}"))),
        None => return Err(bad("no op")),
    };
    let (id, value_at) = if op == Op::Message {
        (0, op_at + 1)
    } else {
        let raw = body
            .get(op_at + 1..op_at + 9)
            .ok_or_else(|| bad("cut in its id"))?;
        (
            u64::from_le_bytes(raw.try_into().expect("8 bytes")),
            op_at + 9,
        )
    };
    if value_at >= body.len() {
        return Err(bad("no value"));
    }
    Ok(Parsed {
        name,
        op,
        id,
        value: value_at..body.len(),
    })
}

/// An error reply's text, from its JSON string (cut at 1000 bytes).
pub(crate) fn error_text(value: &[u8]) -> String {
    let mut why: String = serde_json::from_slice(value)
        .unwrap_or_else(|_| String::from_utf8_lossy(value).into_owned());
    if why.len() > 1000 {
        let mut cut = 1000;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
        why.push_str("...");
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        for (op, id) in [(Op::Message, 0), (Op::Request, 7), (Op::Reply, u64::MAX)] {
            let mut b = Vec::new();
            write_prefix(&mut b, "herd.emitter", op, id);
            b.extend_from_slice(b"[1,2]");
            let p = parse(&b).unwrap();
            assert_eq!(&b[p.name.clone()], b"herd.emitter");
            assert_eq!((p.op, p.id), (op, id));
            assert_eq!(&b[p.value], b"[1,2]");
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "empty"),
            (b"\x00x", "name length 0"),
            (b"\x05ab", "cut in its name"),
            (b"\x02a b\x00", "bytes other"),
            (b"\x01a\x09{}", "unknown op 9"),
            (b"\x01a\x01\x01\x02", "cut in its id"),
            (b"\x01a\x00", "no value"),
        ];
        for (body, why) in cases {
            let e = parse(body).unwrap_err();
            assert!(e.contains(why), "{body:?}: {e}");
        }
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a b").is_err());
        check_name("herd.status:v1-x_y").unwrap();
    }
}
