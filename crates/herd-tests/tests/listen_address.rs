//! The `listening` event carries a typed address: its kind (Node's
//! `addressType`: tcp4, tcp6, udp4, udp6, unix), IP and port, or path,
//! read from the event (the fixture prints them from `ListenAddr`'s
//! methods, not from its text).

mod common;

use common::*;
use serde_json::Value;

/// Forks a fixture worker with `env` and returns it with its `listening`
/// event.
fn listening(c: &mut Cluster, env: &[(&str, &str)]) -> (u32, Value) {
    let id = c.fork(env);
    (id, c.expect_event("listening", id))
}

#[test]
fn a_tcp4_listen_reports_kind_ip_and_port() {
    let mut c = Cluster::start(&[]);
    let (id, v) = listening(&mut c, &[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    assert_eq!(v["kind"], "tcp4", "{v}");
    assert_eq!(v["ip"], "127.0.0.1", "{v}");
    assert!(v["path"].is_null(), "{v}");
    let port = v["port"].as_u64().expect("a port");
    assert_ne!(port, 0, "the port as bound, not as asked");
    assert_eq!(
        worker_of(&http_get(&format!("127.0.0.1:{port}"), "/").unwrap()),
        id
    );
}

#[test]
#[cfg_attr(not(herd_ipv6), ignore = "needs an IPv6 loopback: [::1] did not bind")]
fn a_tcp6_listen_reports_kind_ip_and_port() {
    still_holds(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "[::1] binds",
    );
    let mut c = Cluster::start(&[]);
    let (id, v) = listening(&mut c, &[("FIXTURE_LISTEN", "[::1]:0")]);
    assert_eq!(v["kind"], "tcp6", "{v}");
    assert_eq!(v["ip"], "::1", "{v}");
    assert!(v["path"].is_null(), "{v}");
    let port = v["port"].as_u64().expect("a port");
    assert_ne!(port, 0);
    assert_eq!(
        worker_of(&http_get(&format!("[::1]:{port}"), "/").unwrap()),
        id
    );
}

#[test]
fn a_udp4_bind_reports_kind_ip_and_port() {
    let mut c = Cluster::start(&[]);
    let (id, v) = listening(&mut c, &[("FIXTURE_UDP", "127.0.0.1:0")]);
    assert_eq!(v["kind"], "udp4", "{v}");
    assert_eq!(v["ip"], "127.0.0.1", "{v}");
    assert!(v["path"].is_null(), "{v}");
    let port = v["port"].as_u64().expect("a port");
    assert_ne!(port, 0);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"hi", format!("127.0.0.1:{port}")).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).expect("an answer from the worker");
    assert_eq!(worker_of(std::str::from_utf8(&buf[..n]).unwrap()), id);
}

#[test]
fn a_unix_listen_reports_kind_and_path() {
    let dir = TempDir::new();
    let path = dir.path().join("app.sock");
    let mut c = Cluster::start(&[]);
    let listen = format!("unix:{}", path.display());
    let (id, v) = listening(&mut c, &[("FIXTURE_LISTEN", &listen)]);
    assert_eq!(v["kind"], "unix", "{v}");
    assert_eq!(v["path"], path.display().to_string(), "{v}");
    assert!(v["ip"].is_null() && v["port"].is_null(), "{v}");
    assert_eq!(worker_of(&unix_http_get(&path, "/").unwrap()), id);
}
