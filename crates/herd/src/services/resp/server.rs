//! One RESP connection: read commands, answer them in order, and push the
//! messages of the channels it subscribed to.
//!
//! A connection's state is its protocol (RESP2, or RESP3 after `HELLO 3`),
//! its subscriptions and its buffers, all bounded: a command by
//! [`Limits`], the replies waiting to be written by the socket's own
//! backpressure (a connection reads nothing while its replies wait), and
//! the pushed messages by [`PUSH_QUEUE`], past which a subscriber too slow
//! to read is disconnected, as redis-server's pub/sub output limit does.
//! Anything that is not RESP ends that one connection with an error reply,
//! and so does a command left half-sent for [`Limits::partial_command`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::codec::{parse_command, Limits, Proto, ProtocolError, Reply};
use super::commands::{self, name, Backend};

/// Messages pushed to one subscriber and not yet written, past which it is
/// disconnected.
pub const PUSH_QUEUE: usize = 4096;

/// Replies buffered before they are written in the middle of a pipeline.
const FLUSH_AT: usize = 1 << 20;

/// The most channels one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// The most bytes of pushed messages one subscriber may leave unwritten
/// (redis-server's pub/sub output limit is 32 MiB too).
pub const PUSH_BYTES: usize = 32 << 20;

/// Where a published message goes for one subscribed connection: a queue
/// bounded in messages ([`PUSH_QUEUE`]) and bytes ([`PUSH_BYTES`]); one
/// that is full means the subscriber is too slow, and it is dropped.
#[derive(Clone, Debug)]
pub struct PushSender {
    tx: mpsc::Sender<(Bytes, Bytes)>,
    bytes: Arc<AtomicUsize>,
}

impl PushSender {
    /// Queues `message` on `channel` for this subscriber; `false` when its
    /// queue is full (or it is gone): forget it, its connection closes.
    pub fn push(&self, channel: &Bytes, message: &Bytes) -> bool {
        let size = channel.len() + message.len();
        if self.bytes.fetch_add(size, Ordering::AcqRel) + size > PUSH_BYTES {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            self.bytes.store(usize::MAX / 2, Ordering::Release);
            return false;
        }
        if self
            .tx
            .try_send((channel.clone(), message.clone()))
            .is_err()
        {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn full(&self) -> bool {
        self.tx.capacity() == 0 || self.bytes.load(Ordering::Acquire) > PUSH_BYTES
    }
}

/// What the server needs from the hub beyond [`Backend`]: subscriptions,
/// kept per connection id.
pub trait Hub: Backend {
    /// Adds `conn`'s subscription to `channel`, delivering to `to`.
    fn subscribe(&self, conn: u64, channel: Bytes, to: PushSender);
    /// Removes it.
    fn unsubscribe(&self, conn: u64, channel: &[u8]);
}

/// Serves one connection until the client quits, closes, or sends what is
/// not RESP. Errors on the socket end it quietly (logged at debug).
pub async fn serve<S, H>(mut io: S, hub: Arc<H>, conn: u64, limits: Limits)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hub,
{
    let mut c = Conn {
        proto: Proto::Resp2,
        subs: BTreeSet::new(),
        conn,
        hub,
    };
    let (tx, mut rx) = mpsc::channel(PUSH_QUEUE);
    let tx = PushSender {
        tx,
        bytes: Arc::new(AtomicUsize::new(0)),
    };
    // Takes what is queued into `out` (bounded by FLUSH_AT a batch).
    let take = |rx: &mut mpsc::Receiver<(Bytes, Bytes)>,
                c: &Conn<H>,
                out: &mut BytesMut,
                first: Option<(Bytes, Bytes)>| {
        let mut next = first;
        while let Some((channel, msg)) = next {
            tx.bytes
                .fetch_sub(channel.len() + msg.len(), Ordering::AcqRel);
            c.message(channel, msg, out);
            if out.len() >= FLUSH_AT {
                break;
            }
            next = rx.try_recv().ok();
        }
    };
    let mut inbuf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    // When the command now arriving began, while one is half-read.
    let mut partial_since: Option<tokio::time::Instant> = None;
    let end = loop {
        let partial_deadline = partial_since.map(|t| t + limits.partial_command);
        let unfinished = async {
            match partial_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = unfinished => {
                let e = ProtocolError(format!(
                    "a command left unfinished for {:?}",
                    limits.partial_command
                ));
                Reply::err(&e).encode(c.proto, &mut out);
                let _ = write(&mut io, &out, &limits).await;
                tracing::debug!(conn, "services socket: {e}; closing that connection");
                return c.leave();
            }
            pushed = rx.recv() => {
                let Some(first) = pushed else { break None };
                take(&mut rx, &c, &mut out, Some(first));
            }
            read = io.read_buf(&mut inbuf) => match read {
                Ok(0) => break None,
                Ok(_) => loop {
                    match parse_command(&mut inbuf, &limits) {
                        Ok(Some(args)) if args.is_empty() => partial_since = None,
                        Ok(Some(args)) => {
                            partial_since = None;
                            // What was published before an (UN)SUBSCRIBE
                            // goes out before its answer, as in Redis.
                            let first = rx.try_recv().ok();
                            take(&mut rx, &c, &mut out, first);
                            if c.command(&args, &tx, &mut out).await == Flow::Quit {
                                let _ = write(&mut io, &out, &limits).await;
                                return c.leave();
                            }
                            // A long pipeline: write as it goes, so the
                            // replies waiting are bounded too.
                            if out.len() >= FLUSH_AT {
                                if let Err(e) = write(&mut io, &out, &limits).await {
                                    tracing::debug!(conn, "services socket: {e}");
                                    return c.leave();
                                }
                                out.clear();
                            }
                        }
                        Ok(None) => {
                            // What is left is the start of the next command.
                            if inbuf.is_empty() {
                                partial_since = None;
                            } else if partial_since.is_none() {
                                partial_since = Some(tokio::time::Instant::now());
                            }
                            break;
                        }
                        Err(e) => {
                            Reply::err(&e).encode(c.proto, &mut out);
                            let _ = write(&mut io, &out, &limits).await;
                            tracing::debug!(conn, "services socket: {e}; closing that connection");
                            return c.leave();
                        }
                    }
                },
                Err(e) => break Some(e),
            },
        }
        if !out.is_empty() {
            if let Err(e) = write(&mut io, &out, &limits).await {
                break Some(e);
            }
            out.clear();
        }
        if tx.full() {
            tracing::warn!(
                conn,
                "services socket: a subscriber left {PUSH_QUEUE} messages unread; disconnecting it"
            );
            break None;
        }
    };
    if let Some(e) = end {
        tracing::debug!(conn, "services socket: {e}");
    }
    c.leave();
}

/// Writes `out` whole, or fails once the client has read nothing for
/// [`Limits::write_stall`].
async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &[u8],
    limits: &Limits,
) -> std::io::Result<()> {
    match tokio::time::timeout(limits.write_stall, io.write_all(out)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the client read nothing for {:?}; closing the connection",
                limits.write_stall
            ),
        )),
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Quit,
}

struct Conn<H: Hub> {
    proto: Proto,
    subs: BTreeSet<Bytes>,
    conn: u64,
    hub: Arc<H>,
}

impl<H: Hub> Conn<H> {
    fn leave(mut self) {
        for ch in std::mem::take(&mut self.subs) {
            self.hub.unsubscribe(self.conn, &ch);
        }
    }

    fn message(&self, channel: Bytes, msg: Bytes, out: &mut BytesMut) {
        Reply::Push(vec![
            Reply::bulk("message"),
            Reply::Bulk(channel),
            Reply::Bulk(msg),
        ])
        .encode(self.proto, out);
    }

    async fn command(&mut self, args: &[Bytes], tx: &PushSender, out: &mut BytesMut) -> Flow {
        let cmd = name(&args[0]);
        // RESP2 allows only these while subscribed.
        let subscribed_ok = matches!(
            cmd.as_str(),
            "SUBSCRIBE" | "UNSUBSCRIBE" | "PSUBSCRIBE" | "PUNSUBSCRIBE" | "PING" | "QUIT" | "RESET"
        );
        if self.proto == Proto::Resp2 && !self.subs.is_empty() && !subscribed_ok {
            Reply::err(format!(
                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                cmd.to_ascii_lowercase()
            ))
            .encode(self.proto, out);
            return Flow::Go;
        }
        let reply = match cmd.as_str() {
            "PING" => match &args[1..] {
                [] if !self.subs.is_empty() && self.proto == Proto::Resp2 => {
                    Reply::Array(vec![Reply::bulk("pong"), Reply::bulk("")])
                }
                [] => Reply::Simple("PONG"),
                [m] if !self.subs.is_empty() && self.proto == Proto::Resp2 => {
                    Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(m.clone())])
                }
                [m] => Reply::Bulk(m.clone()),
                _ => wrong(&cmd),
            },
            "ECHO" => match &args[1..] {
                [m] => Reply::Bulk(m.clone()),
                _ => wrong(&cmd),
            },
            "QUIT" => {
                Reply::Simple("OK").encode(self.proto, out);
                return Flow::Quit;
            }
            "HELLO" => self.hello(&args[1..]),
            "SELECT" => match &args[1..] {
                [db] if &db[..] == b"0" => Reply::Simple("OK"),
                [_] => Reply::err("herd's services socket has database 0 only"),
                _ => wrong(&cmd),
            },
            "CLIENT" => client(&args[1..], self.conn),
            "INFO" => {
                Reply::bulk("# Server\r\nredis_version:7.0.0\r\nherd_services:1\r\nloading:0\r\n")
            }
            "COMMAND" => Reply::Array(Vec::new()),
            "SUBSCRIBE" => {
                if args.len() < 2 {
                    wrong(&cmd)
                } else {
                    for ch in &args[1..] {
                        if self.subs.len() >= MAX_SUBSCRIPTIONS && !self.subs.contains(ch) {
                            Reply::err(format!("more than {MAX_SUBSCRIPTIONS} subscriptions"))
                                .encode(self.proto, out);
                            continue;
                        }
                        if self.subs.insert(ch.clone()) {
                            self.hub.subscribe(self.conn, ch.clone(), tx.clone());
                        }
                        self.ack("subscribe", Some(ch.clone()), out);
                    }
                    return Flow::Go;
                }
            }
            "UNSUBSCRIBE" => {
                let chans: Vec<Bytes> = if args.len() > 1 {
                    args[1..].to_vec()
                } else {
                    self.subs.iter().cloned().collect()
                };
                if chans.is_empty() {
                    self.ack("unsubscribe", None, out);
                }
                for ch in chans {
                    if self.subs.remove(&ch) {
                        self.hub.unsubscribe(self.conn, &ch);
                    }
                    self.ack("unsubscribe", Some(ch), out);
                }
                return Flow::Go;
            }
            "PSUBSCRIBE" | "PUNSUBSCRIBE" | "SSUBSCRIBE" | "SUNSUBSCRIBE" => Reply::err(format!(
                "'{}' is not supported by herd's services socket: subscribe to channels by name",
                cmd.to_ascii_lowercase()
            )),
            _ => match commands::run(&*self.hub, &cmd, args).await {
                Some(r) => r,
                None => Reply::err(format!(
                    "unknown command '{}', with args beginning with: {}",
                    String::from_utf8_lossy(&args[0]),
                    args[1..]
                        .iter()
                        .take(3)
                        .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(64)])))
                        .collect::<String>()
                )),
            },
        };
        reply.encode(self.proto, out);
        Flow::Go
    }

    /// A (un)subscribe confirmation: `[kind, channel, count]`, a push in RESP3.
    fn ack(&self, kind: &'static str, ch: Option<Bytes>, out: &mut BytesMut) {
        Reply::Push(vec![
            Reply::bulk(kind),
            ch.map_or(Reply::Nil, Reply::Bulk),
            Reply::Int(self.subs.len() as i64),
        ])
        .encode(self.proto, out);
    }

    /// `HELLO [protover [AUTH u p] [SETNAME n]]`.
    fn hello(&mut self, a: &[Bytes]) -> Reply {
        if let Some(v) = a.first() {
            match &v[..] {
                b"2" => self.proto = Proto::Resp2,
                b"3" => self.proto = Proto::Resp3,
                _ => return Reply::Error("NOPROTO unsupported protocol version".into()),
            }
        }
        let s = |t: &'static str| Reply::bulk(t);
        Reply::Map(vec![
            (s("server"), s("herd")),
            (s("version"), s(env!("CARGO_PKG_VERSION"))),
            (
                s("proto"),
                Reply::Int(if self.proto == Proto::Resp3 { 3 } else { 2 }),
            ),
            (s("id"), Reply::Int(self.conn as i64)),
            (s("mode"), s("standalone")),
            (s("role"), s("master")),
            (s("modules"), Reply::Array(Vec::new())),
        ])
    }
}

fn wrong(cmd: &str) -> Reply {
    Reply::err(format!(
        "wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    ))
}

/// `CLIENT SETINFO|SETNAME|GETNAME|ID`, which client libraries send as
/// they connect; the rest is refused by name.
fn client(a: &[Bytes], conn: u64) -> Reply {
    match a.first().map(|s| name(s)).as_deref() {
        Some("SETINFO" | "SETNAME") => Reply::Simple("OK"),
        Some("GETNAME") => Reply::Nil,
        Some("ID") => Reply::Int(conn as i64),
        Some(other) => Reply::err(format!(
            "CLIENT {other} is not supported by herd's services socket"
        )),
        None => wrong("client"),
    }
}
