//! The server end to end over an in-memory pipe, with a small in-test
//! store and hub: what a client library sees on the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

#[derive(Default)]
struct Mem {
    kv: Mutex<HashMap<Bytes, Bytes>>,
    subs: Mutex<Vec<(u64, Bytes, PushSender)>>,
}

impl Backend for Mem {
    async fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.kv.lock().unwrap().get(key).cloned()
    }
    async fn set(
        &self,
        key: Bytes,
        value: Bytes,
        _ttl: Option<Duration>,
        cond: Condition,
    ) -> Result<bool, String> {
        let mut kv = self.kv.lock().unwrap();
        let there = kv.contains_key(&key);
        let ok = match cond {
            Condition::Always => true,
            Condition::IfAbsent => !there,
            Condition::IfPresent => there,
        };
        if ok {
            kv.insert(key, value);
        }
        Ok(ok)
    }
    async fn del(&self, key: &[u8]) -> bool {
        self.kv.lock().unwrap().remove(key).is_some()
    }
    async fn keys(&self, pattern: &[u8]) -> Vec<Bytes> {
        let mut k: Vec<Bytes> = self
            .kv
            .lock()
            .unwrap()
            .keys()
            .filter(|k| glob(pattern, k))
            .cloned()
            .collect();
        k.sort();
        k
    }
    async fn expire(&self, key: &[u8], _ttl: Duration) -> bool {
        self.kv.lock().unwrap().contains_key(key)
    }
    async fn ttl(&self, key: &[u8]) -> Ttl {
        if self.kv.lock().unwrap().contains_key(key) {
            Ttl::Forever
        } else {
            Ttl::Missing
        }
    }
    async fn publish(&self, channel: Bytes, message: Bytes) -> i64 {
        let subs = self.subs.lock().unwrap();
        let mut n = 0;
        for (_, ch, tx) in subs.iter() {
            if *ch == channel && tx.push(&channel, &message) {
                n += 1;
            }
        }
        n
    }
}

impl Hub for Mem {
    fn subscribe(&self, conn: u64, channel: Bytes, to: PushSender) {
        self.subs.lock().unwrap().push((conn, channel, to));
    }
    fn unsubscribe(&self, conn: u64, channel: &[u8]) {
        self.subs
            .lock()
            .unwrap()
            .retain(|(c, ch, _)| !(*c == conn && ch == channel));
    }
}

fn connect(hub: &Arc<Mem>, conn: u64) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(serve(server, hub.clone(), conn, Limits::default()));
    (client, task)
}

/// Sends `send` and reads until `done` holds of what came back (bounded
/// by 5 s); returns all of it.
async fn read_until(c: &mut DuplexStream, send: &[u8], done: impl Fn(&[u8]) -> bool) -> String {
    c.write_all(send).await.unwrap();
    let mut got = Vec::new();
    let read = async {
        while !done(&got) {
            let mut b = [0u8; 4096];
            let n = c.read(&mut b).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no reply in 5 s");
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `send`; what comes back starts with `want`.
async fn expect(c: &mut DuplexStream, send: &[u8], want: &[u8]) {
    let got = read_until(c, send, |g| g.len() >= want.len()).await;
    let want = String::from_utf8_lossy(want);
    assert!(got.starts_with(&*want), "got {got:?}, want {want:?}");
}

/// Sends `send` and reads until what came back ends with `end`.
async fn until(c: &mut DuplexStream, send: &[u8], end: &[u8]) -> String {
    read_until(c, send, |g| g.ends_with(end)).await
}

#[tokio::test]
async fn commands_answer_in_order_even_pipelined() {
    let hub = Arc::new(Mem::default());
    let (mut c, _t) = connect(&hub, 1);
    expect(
        &mut c,
        b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nSET k w NX\r\nGET k\r\nGET nope\r\nEXISTS k nope\r\nKEYS *\r\nDEL k k\r\n",
        b"+PONG\r\n+OK\r\n$-1\r\n$1\r\nv\r\n$-1\r\n:1\r\n*1\r\n$1\r\nk\r\n:1\r\n",
    )
    .await;
}

#[tokio::test]
async fn unknown_commands_and_bad_arguments_are_errors_not_disconnects() {
    let hub = Arc::new(Mem::default());
    let (mut c, _t) = connect(&hub, 1);
    expect(
        &mut c,
        b"FLUSHALL\r\nGET\r\nSET k v EX 0\r\nPING\r\n",
        b"-ERR unknown command 'FLUSHALL', with args beginning with: \r\n-ERR wrong number of arguments for 'get' command\r\n-ERR invalid expire time in 'set' command\r\n+PONG\r\n",
    )
    .await;
}

#[tokio::test]
async fn expire_of_zero_deletes_and_ping_while_subscribed_echoes_as_redis_does() {
    let hub = Arc::new(Mem::default());
    let (mut c, _t) = connect(&hub, 1);
    expect(
        &mut c,
        b"SET k v\r\nEXPIRE k 0\r\nGET k\r\nEXPIRE k -1\r\n",
        b"+OK\r\n:1\r\n$-1\r\n:0\r\n",
    )
    .await;
    let acked = until(&mut c, b"SUBSCRIBE c\r\n", b":1\r\n").await;
    assert!(acked.contains("subscribe"), "{acked}");
    expect(&mut c, b"PING hi\r\n", b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n").await;
}

#[tokio::test]
async fn garbage_closes_that_connection_only() {
    let hub = Arc::new(Mem::default());
    let (mut bad, t) = connect(&hub, 1);
    let (mut good, _t) = connect(&hub, 2);
    bad.write_all(b"*1\r\n$zz\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR Protocol error: invalid bulk length"));
    tokio::time::timeout(Duration::from_secs(5), t)
        .await
        .unwrap()
        .unwrap();
    expect(&mut good, b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn subscribers_get_published_messages_in_both_protocols() {
    let hub = Arc::new(Mem::default());
    let (mut s2, _a) = connect(&hub, 1);
    let (mut s3, _b) = connect(&hub, 2);
    let (mut p, _c) = connect(&hub, 3);
    expect(
        &mut s2,
        b"SUBSCRIBE news\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    let hello = until(&mut s3, b"HELLO 3\r\nPING\r\n", b"+PONG\r\n").await;
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$4\r\nherd\r\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    expect(
        &mut s3,
        b"SUBSCRIBE news\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    // RESP2 subscribers may not run other commands; RESP3 ones may.
    let refused = until(&mut s2, b"GET k\r\n", b"\r\n").await;
    assert!(refused.starts_with("-ERR Can't execute 'get'"), "{refused}");
    expect(&mut p, b"PUBLISH news hi\r\n", b":2\r\n").await;
    expect(
        &mut s2,
        b"",
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
    )
    .await;
    expect(
        &mut s3,
        b"",
        b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
    )
    .await;
    expect(
        &mut s2,
        b"UNSUBSCRIBE\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n",
    )
    .await;
    expect(&mut p, b"PUBLISH news again\r\n", b":1\r\n").await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_dropped_not_buffered() {
    let hub = Arc::new(Mem::default());
    // A tiny pipe: the subscriber's socket fills at once.
    let (mut client, server) = tokio::io::duplex(64);
    let limits = Limits {
        write_stall: Duration::from_millis(300),
        ..Limits::default()
    };
    let t = tokio::spawn(serve(server, hub.clone(), 1, limits));
    expect(
        &mut client,
        b"SUBSCRIBE c\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    )
    .await;
    let (mut p, _c) = connect(&hub, 2);
    let mut reached = 0;
    for _ in 0..(PUSH_QUEUE * 3) {
        p.write_all(b"PUBLISH c 0123456789\r\n").await.unwrap();
        let mut b = [0u8; 4];
        p.read_exact(&mut b).await.unwrap();
        if &b == b":1\r\n" {
            reached += 1;
        } else {
            // ":0" and its CRLF: nobody is subscribed any more.
            assert_eq!(&b[..2], b":0");
            break;
        }
    }
    // At most a queue's worth waiting, and one drained batch being written.
    assert!(
        reached <= 2 * PUSH_QUEUE + 1,
        "queued {reached} for a reader that never reads"
    );
    // The server gives up on it by itself, and the hub forgets it.
    tokio::time::timeout(Duration::from_secs(5), t)
        .await
        .unwrap()
        .unwrap();
    drop(client);
    assert!(hub.subs.lock().unwrap().is_empty());
}

/// Sends `send` on a socket; the answer is exactly `want` (within 5 s).
async fn ack(c: &mut tokio::net::UnixStream, send: &[u8], want: &[u8]) {
    c.write_all(send).await.unwrap();
    let mut got = vec![0; want.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Over a real socket pair: a command left half-sent closes its
/// connection once `partial_command` has passed since its first byte, even
/// when it trickles in a byte at a time; connections idle between
/// commands, or subscribed, stay however long they are silent.
#[tokio::test]
async fn a_half_sent_command_is_bounded_in_time_idle_and_subscribed_connections_are_not() {
    use tokio::net::UnixStream;
    let hub = Arc::new(Mem::default());
    let bound = Duration::from_millis(300);
    let limits = Limits {
        partial_command: bound,
        ..Limits::default()
    };
    let open = |conn| {
        let (client, server) = UnixStream::pair().unwrap();
        (
            client,
            tokio::spawn(serve(server, hub.clone(), conn, limits)),
        )
    };
    let (mut idle, _a) = open(1);
    let (mut sub, _b) = open(2);
    let (mut half, t_half) = open(3);
    let (mut trickle, t_trickle) = open(4);
    let (mut slow_ok, _e) = open(5);
    ack(&mut idle, b"PING\r\n", b"+PONG\r\n").await;
    ack(
        &mut sub,
        b"SUBSCRIBE c\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    )
    .await;
    // A command sent in pieces that ends within the bound is served.
    slow_ok.write_all(b"*2\r\n$3\r\nGET\r\n").await.unwrap();
    tokio::time::sleep(bound / 3).await;
    ack(&mut slow_ok, b"$1\r\nk\r\n", b"$-1\r\n").await;

    let start = tokio::time::Instant::now();
    half.write_all(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
        .await
        .unwrap();
    // One byte every 50 ms: 60 bytes would take 3 s to arrive whole.
    let writer = tokio::spawn(async move {
        let cmd = format!("*2\r\n$3\r\nGET\r\n$40\r\n{}\r\n", "k".repeat(40));
        for b in cmd.as_bytes() {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        trickle
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut out))
        .await
        .expect("the half-sent command's connection closed within 5 s")
        .unwrap();
    let took = start.elapsed();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("-ERR Protocol error: a command left unfinished for 300ms"),
        "{out:?}"
    );
    assert!(took >= bound, "closed after {took:?}, before the bound");
    tokio::time::timeout(Duration::from_secs(5), t_half)
        .await
        .unwrap()
        .unwrap();
    // The trickle is closed too, long before its command could end.
    tokio::time::timeout(Duration::from_secs(5), t_trickle)
        .await
        .expect("the trickling connection closed")
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    let mut trickle = writer.await.unwrap();
    let mut out = Vec::new();
    let _ = trickle.read_to_end(&mut out).await;
    assert!(
        String::from_utf8_lossy(&out).contains("left unfinished"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // Silent past the bound, the others still work.
    ack(&mut idle, b"PING\r\n", b"+PONG\r\n").await;
    ack(&mut idle, b"PUBLISH c hi\r\n", b":1\r\n").await;
    let mut got = vec![0; b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n".len()];
    tokio::time::timeout(Duration::from_secs(5), sub.read_exact(&mut got))
        .await
        .expect("the subscriber's message")
        .unwrap();
    assert_eq!(&got[..], b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n");
}
