//! The services socket's channels and the Rust emitter, bridged
//! (`herd::services::resp::serve_cache`, src/bin/services/resp_bridge.rs),
//! between real processes: this test is the foreign worker, a RESP client
//! on the socket; the primary and one Rust worker are herd's.
//!
//! What the bridge does (services/resp/cache_hub.rs): a PUBLISH is
//! emitted to every worker, as an emit from the primary, so Rust workers'
//! subscriptions hear it (the primary's own do not: the primary is where
//! the RESP subscribers are fed from); a SUBSCRIBEd RESP client hears
//! every emit of that name that reaches the primary: its own, and a
//! worker's. Payloads: a published message is a JSON string for the Rust
//! side; a Rust payload reads as its text (a string) or its JSON.

mod svc;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use svc::Svc;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A blocking RESP client: inline commands out, replies in as text.
struct Resp(BufReader<UnixStream>);

impl Resp {
    fn connect(path: &Path) -> Resp {
        let s = UnixStream::connect(path).expect("connect to the services socket");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Resp(BufReader::new(s))
    }

    fn send(&mut self, cmd: &str) {
        self.0
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap();
    }

    /// One reply, flattened: `:1`, `+OK`, a bulk's text, an array's items
    /// joined by `|`.
    fn read(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("a reply line");
        let line = line.trim_end().to_string();
        match line.split_at(1) {
            ("$", "-1") => "(nil)".into(),
            ("$", n) => {
                let mut b = vec![0; n.parse::<usize>().unwrap() + 2];
                self.0.read_exact(&mut b).unwrap();
                b.truncate(b.len() - 2);
                String::from_utf8(b).unwrap()
            }
            ("*", n) => (0..n.parse::<usize>().unwrap())
                .map(|_| self.read())
                .collect::<Vec<_>>()
                .join("|"),
            _ => line,
        }
    }
}

#[test]
fn publish_reaches_rust_workers_and_rust_emits_reach_subscribed_resp_clients() {
    let dir = std::env::temp_dir().join(format!("herd-resp-bridge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("services.sock");
    let mut s = Svc::start_with("resp-bridge", &[("SVC_SOCKET", path.to_str().unwrap())]);
    s.wait(TIMEOUT, |v| v["event"] == "ready");
    s.worker_line(1, "subscribed");

    let mut sub = Resp::connect(&path);
    sub.send("SUBSCRIBE to-foreign");
    assert_eq!(sub.read(), "subscribe|to-foreign|:1");
    let mut publisher = Resp::connect(&path);

    // RESP -> Rust: the worker's subscription hears the message, from the
    // primary, as a JSON string (whatever its text looks like).
    publisher.send("PUBLISH from-foreign hello");
    assert_eq!(publisher.read(), ":0", "no RESP client listens to it");
    let heard = s.worker_line(1, "worker-heard");
    assert_eq!(heard["payload"], "hello", "{heard}");
    assert_eq!(heard["from"], "primary", "{heard}");
    publisher.send(r#"PUBLISH from-foreign "{\"a\":1}""#);
    assert_eq!(publisher.read(), ":0");
    let heard = s.worker_line(1, "worker-heard");
    assert_eq!(heard["payload"], json!("{\"a\":1}"), "{heard}");
    // Not the primary's own subscription: its own emit, made after both
    // PUBLISHes were heard, is the first thing it hears (one sender's
    // emits arrive in order).
    s.tell("probe");
    let own = s.wait(TIMEOUT, |v| v["event"] == "primary-heard");
    assert_eq!(own["payload"], "probe", "{own}");

    // Rust -> RESP: the primary's emit and the worker's, both reaching
    // the primary, reach the subscribed client.
    s.tell("emit");
    let mut got = vec![sub.read(), sub.read()];
    got.sort();
    assert_eq!(
        got,
        [
            "message|to-foreign|from primary",
            r#"message|to-foreign|{"from":"worker"}"#,
        ]
    );
    sub.send("UNSUBSCRIBE to-foreign");
    assert_eq!(sub.read(), "unsubscribe|to-foreign|:0");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
