//! RESP, the Redis serialization protocol, as a server reads and writes
//! it: commands in (arrays of bulk strings, as every client sends them, or
//! an inline line, as a person types into `nc`), replies out in RESP2 or,
//! after `HELLO 3`, RESP3.
//!
//! Hostile input is normal input: every length is bounded by [`Limits`],
//! and anything that is not RESP is a [`ProtocolError`], after which the
//! server closes that one connection (as redis-server does). Parsing is
//! incremental: [`parse_command`] takes what has arrived so far and either
//! returns a whole command, consuming it, or asks for more, consuming
//! nothing. A partial command is rescanned only by its headers, never by
//! its bulk bytes, so a large value arriving in many reads costs one pass.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest bulk string (a key or a value), in bytes.
    pub max_bulk: usize,
    /// The most arguments in one command (the command's name included).
    pub max_args: usize,
    /// The longest inline command or header line, in bytes.
    pub max_line: usize,
    /// The most bytes one command may take in all, headers included.
    pub max_command: usize,
    /// How long a write to the client may wait on a client that does not
    /// read, after which the connection is closed (redis-server's pub/sub
    /// output limit gives a slow subscriber 60 s).
    pub write_stall: std::time::Duration,
    /// How long one command may take to arrive, from its first byte to
    /// its last, after which the connection is closed: a client that sends
    /// half a command and then nothing would otherwise hold one of the
    /// socket's connections forever. A connection idle between commands,
    /// or subscribed and waiting for messages, is never closed for it.
    pub partial_command: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // The channel's default largest payload (16 MiB).
            max_bulk: 16 << 20,
            max_args: 1 << 16,
            max_line: 64 << 10,
            max_command: 32 << 20,
            write_stall: std::time::Duration::from_secs(60),
            partial_command: std::time::Duration::from_secs(30),
        }
    }
}

/// What made the input not RESP; the connection is closed after it, and the
/// text is sent first as an error reply (`-ERR Protocol error: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn bad(why: impl Into<String>) -> ProtocolError {
    ProtocolError(why.into())
}

/// The position just past the next CRLF-terminated line starting at
/// `from`, and the line without its CRLF; `None` if it has not all arrived.
fn line<'b>(
    buf: &'b [u8],
    from: usize,
    limits: &Limits,
) -> Result<Option<(usize, &'b [u8])>, ProtocolError> {
    let rest = &buf[from..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            if nl > limits.max_line {
                return Err(bad(format!("line longer than {} bytes", limits.max_line)));
            }
            let l = &rest[..nl];
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            Ok(Some((from + nl + 1, l)))
        }
        None if rest.len() > limits.max_line => {
            Err(bad(format!("line longer than {} bytes", limits.max_line)))
        }
        None => Ok(None),
    }
}

/// A header's decimal number (`*3`, `$5`): digits only, with an optional
/// leading `-` (the null forms, `-1`), and no more than 18 digits.
fn number(digits: &[u8], what: &str) -> Result<i64, ProtocolError> {
    let (neg, d) = match digits.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, digits),
    };
    if d.is_empty() || d.len() > 18 || !d.iter().all(u8::is_ascii_digit) {
        return Err(bad(format!(
            "invalid {what} length {:?}",
            String::from_utf8_lossy(digits)
        )));
    }
    let n = d.iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0'));
    Ok(if neg { -n } else { n })
}

/// Takes one whole command off the front of `buf`: `Ok(Some(args))` (the
/// command's name first), `Ok(None)` if it has not all arrived (nothing is
/// consumed), or the error that ends the connection. Empty lines and empty
/// inline commands are skipped, as redis-server skips them.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        match buf.first() {
            None => return Ok(None),
            Some(b'*') => return multibulk(buf, limits),
            Some(_) => {
                let Some((end, l)) = line(buf, 0, limits)? else {
                    return Ok(None);
                };
                let args = inline(l)?;
                buf.advance(end);
                if !args.is_empty() {
                    if args.len() > limits.max_args {
                        return Err(bad(format!("more than {} arguments", limits.max_args)));
                    }
                    return Ok(Some(args));
                }
            }
        }
    }
}

/// An array of bulk strings: `*N\r\n` then N times `$LEN\r\nBYTES\r\n`.
fn multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some((mut at, head)) = line(buf, 0, limits)? else {
        return Ok(None);
    };
    let n = number(&head[1..], "multibulk")?;
    if n <= 0 {
        // `*0` and `*-1` are nothing to do; redis-server ignores them.
        buf.advance(at);
        return Ok(Some(Vec::new()));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > limits.max_args {
        return Err(bad(format!("more than {} arguments", limits.max_args)));
    }
    // First find where every argument ends, consuming nothing.
    let mut spans = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let Some((start, h)) = line(buf, at, limits)? else {
            return Ok(None);
        };
        if h.first() != Some(&b'$') {
            return Err(bad(format!(
                "expected '$', got {:?}",
                h.first().map(|&b| b as char).unwrap_or(' ')
            )));
        }
        let len = number(&h[1..], "bulk")?;
        let len = usize::try_from(len).map_err(|_| bad("invalid bulk length"))?;
        if len > limits.max_bulk {
            return Err(bad(format!(
                "bulk string of {len} bytes, more than the {} allowed",
                limits.max_bulk
            )));
        }
        let end = start + len;
        if end + 2 > limits.max_command {
            return Err(bad(format!(
                "command longer than {} bytes",
                limits.max_command
            )));
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(bad("bulk string not followed by CRLF"));
        }
        spans.push((start, end));
        at = end + 2;
    }
    let mut whole = buf.split_to(at).freeze();
    let mut args = Vec::with_capacity(n);
    let mut taken = 0;
    for (start, end) in spans {
        whole.advance(start - taken);
        args.push(whole.split_to(end - start));
        taken = end;
    }
    Ok(Some(args))
}

/// An inline command: words split on spaces and tabs, with redis-cli's
/// quoting ("double" with \n \r \t \" \\ \xHH escapes, 'single' as is).
fn inline(l: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < l.len() {
        while i < l.len() && (l[i] == b' ' || l[i] == b'\t') {
            i += 1;
        }
        if i == l.len() {
            break;
        }
        let mut word = Vec::new();
        match l[i] {
            b'"' => {
                i += 1;
                loop {
                    match l.get(i) {
                        None => return Err(bad("unbalanced quotes in request")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let (b, used) = escape(&l[i + 1..])?;
                            word.push(b);
                            i += 1 + used;
                            continue;
                        }
                        Some(&b) => word.push(b),
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                i += 1;
                let Some(close) = l[i..].iter().position(|&b| b == b'\'') else {
                    return Err(bad("unbalanced quotes in request"));
                };
                word.extend_from_slice(&l[i..i + close]);
                i += close + 1;
            }
            _ => {
                while i < l.len() && l[i] != b' ' && l[i] != b'\t' {
                    word.push(l[i]);
                    i += 1;
                }
            }
        }
        if i < l.len() && l[i] != b' ' && l[i] != b'\t' {
            return Err(bad("closing quote must be followed by a space"));
        }
        args.push(Bytes::from(word));
    }
    Ok(args)
}

/// One escape after a backslash in a double-quoted word: the byte and how
/// many bytes of `rest` it used.
fn escape(rest: &[u8]) -> Result<(u8, usize), ProtocolError> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    Ok(match rest {
        [b'x', h, l, ..] if hex(*h).is_some() && hex(*l).is_some() => {
            (hex(*h).unwrap_or(0) << 4 | hex(*l).unwrap_or(0), 3)
        }
        [b'n', ..] => (b'\n', 1),
        [b'r', ..] => (b'\r', 1),
        [b't', ..] => (b'\t', 1),
        [b'b', ..] => (8, 1),
        [b'a', ..] => (7, 1),
        [b, ..] => (*b, 1),
        [] => return Err(bad("unbalanced quotes in request")),
    })
}

/// The protocol a connection speaks: RESP2 until `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2, what every client speaks first.
    #[default]
    Resp2,
    /// RESP3: maps, nulls, booleans, doubles and push messages of their own.
    Resp3,
}

/// A reply, written in the connection's protocol by [`Reply::encode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`: a short text without CR or LF.
    Simple(&'static str),
    /// `-ERR ...`: CR and LF in the text are written as spaces.
    Error(String),
    /// `:N`
    Int(i64),
    /// `$LEN` and the bytes.
    Bulk(Bytes),
    /// The null bulk string (RESP2 `$-1`, RESP3 `_`).
    Nil,
    /// The null array (RESP2 `*-1`, RESP3 `_`).
    NilArray,
    /// `*N` and each element.
    Array(Vec<Reply>),
    /// RESP3 `%N`; RESP2 a flat array of keys and values.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `>N` (out-of-band: pub/sub messages); RESP2 an array.
    Push(Vec<Reply>),
    /// RESP3 `#t`/`#f`; RESP2 `:1`/`:0`.
    Bool(bool),
}

impl Reply {
    /// An error reply with the conventional `ERR` prefix.
    pub fn err(text: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    /// A bulk string from anything that is bytes.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// Appends this reply to `out` in protocol `proto`.
    pub fn encode(&self, proto: Proto, out: &mut BytesMut) {
        let r3 = proto == Proto::Resp3;
        match self {
            Reply::Simple(s) => {
                out.put_u8(b'+');
                out.put_slice(s.as_bytes());
                out.put_slice(b"\r\n");
            }
            Reply::Error(e) => {
                out.put_u8(b'-');
                out.extend(
                    e.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.put_slice(b"\r\n");
            }
            Reply::Int(n) => header(out, b':', *n),
            Reply::Bulk(b) => {
                header(out, b'$', b.len() as i64);
                out.put_slice(b);
                out.put_slice(b"\r\n");
            }
            Reply::Nil if r3 => out.put_slice(b"_\r\n"),
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::NilArray if r3 => out.put_slice(b"_\r\n"),
            Reply::NilArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                header(out, b'*', items.len() as i64);
                items.iter().for_each(|i| i.encode(proto, out));
            }
            Reply::Map(pairs) => {
                if r3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Push(items) => {
                header(out, if r3 { b'>' } else { b'*' }, items.len() as i64);
                items.iter().for_each(|i| i.encode(proto, out));
            }
            Reply::Bool(b) if r3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Bool(b) => header(out, b':', i64::from(*b)),
        }
    }
}

fn header(out: &mut BytesMut, tag: u8, n: i64) {
    out.put_u8(tag);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(c) = parse_command(&mut buf, &Limits::default())? {
            out.push(c);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn words(c: &[Bytes]) -> Vec<&[u8]> {
        c.iter().map(|b| &b[..]).collect()
    }

    #[test]
    fn multibulk_commands_parse_whole() {
        let got =
            parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n")
                .unwrap();
        assert_eq!(words(&got[0]), [&b"GET"[..], b"k"]);
        assert_eq!(words(&got[1]), [&b"SET"[..], b"k", b""]);
    }

    #[test]
    fn binary_values_keep_their_bytes() {
        let got = parse_all(b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\0\xff\r\n").unwrap();
        assert_eq!(&got[0][1][..], b"\r\n\0\xff");
    }

    #[test]
    fn a_command_split_anywhere_waits_then_parses_once() {
        let whole = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(
                parse_command(&mut buf, &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
            buf.extend_from_slice(&whole[cut..]);
            let c = parse_command(&mut buf, &Limits::default())
                .unwrap()
                .unwrap();
            assert_eq!(words(&c), [&b"SET"[..], b"key", b"value"]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn inline_commands_split_and_unquote() {
        let got = parse_all(b"PING\r\n\r\nset k \"a b\\n\\x41\" 'c d'\n").unwrap();
        assert_eq!(words(&got[0]), [&b"PING"[..]]);
        assert_eq!(words(&got[1]), [&b"set"[..], b"k", b"a b\nA", b"c d"]);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for input in [
            &b"*x\r\n"[..],
            b"*1\r\n:3\r\n",
            b"*1\r\n$-5\r\nabc\r\n",
            b"*1\r\n$3\r\nabcde\r\n",
            b"*1\r\n$99999999999999999999\r\n",
            b"get \"unclosed\r\n",
            b"get \"a\"b\r\n",
        ] {
            assert!(
                parse_all(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bounds_are_errors_not_allocations() {
        let small = Limits {
            max_bulk: 8,
            max_args: 2,
            max_line: 16,
            max_command: 24,
            ..Limits::default()
        };
        let mut b = BytesMut::from(&b"*1\r\n$9\r\n"[..]);
        assert!(parse_command(&mut b, &small)
            .unwrap_err()
            .0
            .contains("bulk string of 9 bytes"));
        let mut b = BytesMut::from(&b"*3\r\n"[..]);
        assert!(parse_command(&mut b, &small)
            .unwrap_err()
            .0
            .contains("more than 2"));
        // A line that never ends is refused once it passes the bound.
        let mut b = BytesMut::from(&[b'a'; 17][..]);
        assert!(parse_command(&mut b, &small).is_err());
        let mut b = BytesMut::from(&b"*1\r\n$1"[..]);
        b.extend_from_slice(&[b'0'; 20]);
        assert!(parse_command(&mut b, &small).is_err());
        // Two bulks each within their bound, together beyond the command's.
        let mut b = BytesMut::from(&b"*2\r\n$8\r\n12345678\r\n$8\r\n"[..]);
        assert!(parse_command(&mut b, &small)
            .unwrap_err()
            .0
            .contains("command longer"));
    }

    #[test]
    fn empty_multibulk_is_nothing_to_do() {
        let mut b = BytesMut::from(&b"*0\r\n*-1\r\n"[..]);
        assert_eq!(parse_command(&mut b, &Limits::default()), Ok(Some(vec![])));
        assert_eq!(parse_command(&mut b, &Limits::default()), Ok(Some(vec![])));
        assert!(b.is_empty());
    }

    fn enc(r: &Reply, p: Proto) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        out.to_vec()
    }

    #[test]
    fn replies_encode_in_both_protocols() {
        use Proto::*;
        assert_eq!(enc(&Reply::Simple("OK"), Resp2), b"+OK\r\n");
        assert_eq!(
            enc(&Reply::err("bad\r\nthing"), Resp2),
            b"-ERR bad  thing\r\n"
        );
        assert_eq!(enc(&Reply::Int(-7), Resp2), b":-7\r\n");
        assert_eq!(enc(&Reply::bulk(&b"hi"[..]), Resp3), b"$2\r\nhi\r\n");
        assert_eq!(enc(&Reply::Nil, Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::Nil, Resp3), b"_\r\n");
        assert_eq!(enc(&Reply::NilArray, Resp2), b"*-1\r\n");
        let m = Reply::Map(vec![(Reply::bulk(&b"a"[..]), Reply::Int(1))]);
        assert_eq!(enc(&m, Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        let p = Reply::Push(vec![Reply::bulk(&b"message"[..])]);
        assert_eq!(enc(&p, Resp2), b"*1\r\n$7\r\nmessage\r\n");
        assert_eq!(enc(&p, Resp3), b">1\r\n$7\r\nmessage\r\n");
        assert_eq!(enc(&Reply::Bool(true), Resp2), b":1\r\n");
        assert_eq!(enc(&Reply::Bool(false), Resp3), b"#f\r\n");
    }
}
