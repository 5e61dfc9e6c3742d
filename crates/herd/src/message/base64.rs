//! Standard base64 (RFC 4648, with padding), for byte strings in messages.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Shows bytes as base64, written straight into the formatter's output.
pub(crate) struct Display<'a>(pub &'a [u8]);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A few kilobytes at a time: no copy of the whole encoding.
        let mut buf = [0u8; 4096];
        for chunk in self.0.chunks(3 * 1024) {
            let mut n = 0;
            for three in chunk.chunks(3) {
                let b = [
                    three[0],
                    *three.get(1).unwrap_or(&0),
                    *three.get(2).unwrap_or(&0),
                ];
                let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                buf[n] = ALPHABET[(v >> 18) as usize & 63];
                buf[n + 1] = ALPHABET[(v >> 12) as usize & 63];
                buf[n + 2] = if three.len() > 1 {
                    ALPHABET[(v >> 6) as usize & 63]
                } else {
                    b'='
                };
                buf[n + 3] = if three.len() > 2 {
                    ALPHABET[v as usize & 63]
                } else {
                    b'='
                };
                n += 4;
            }
            // Only ASCII was written.
            f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes padded base64; says what is wrong with text that is not.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    let b = text.as_bytes();
    if b.len() % 4 != 0 {
        return Err(format!(
            "its length, {}, is not a multiple of 4 (padded base64)",
            b.len()
        ));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, four) in b.chunks(4).enumerate() {
        let last = (i + 1) * 4 == b.len();
        let pad = match four {
            [_, _, b'=', b'='] if last => 2,
            [_, _, _, b'='] if last => 1,
            _ => 0,
        };
        let mut v = 0u32;
        for (j, &c) in four[..4 - pad].iter().enumerate() {
            let d = value(c).ok_or_else(|| {
                format!(
                    "{:?} at offset {} is not a base64 digit",
                    c as char,
                    i * 4 + j
                )
            })?;
            v |= d << (18 - 6 * j);
        }
        out.push((v >> 16) as u8);
        if pad < 2 {
            out.push((v >> 8) as u8);
        }
        if pad < 1 {
            out.push(v as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_and_refuses_garbage() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for len in (0..20).chain([3071, 3072, 3073, 10_000]) {
            let text = Display(&data[..len]).to_string();
            assert_eq!(text.len(), len.div_ceil(3) * 4);
            assert_eq!(decode(&text).unwrap(), &data[..len]);
        }
        assert_eq!(Display(b"foobar").to_string(), "Zm9vYmFy");
        assert_eq!(Display(b"fo").to_string(), "Zm8=");
        assert!(decode("abc").unwrap_err().contains("multiple of 4"));
        assert!(decode("ab=c").unwrap_err().contains("not a base64 digit"));
        assert!(decode("ab==abcd").is_err(), "padding only at the end");
        assert!(decode("a\u{e9}bc").is_err());
    }
}
