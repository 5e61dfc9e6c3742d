//! Port semantics, as in Node: `listen(0)` shares one port per k-th listen,
//! IPv6 and dual-stack, bind errors reaching the worker's `listen` (and a
//! retry working), listening again after the last worker left.

mod common;

use common::*;
use serde_json::{json, Value};

/// Waits for worker `id`'s `listen_error` message.
fn expect_listen_error(c: &mut Cluster, id: u32) -> Value {
    let v = c.expect(|v| {
        v["event"] == "message" && v["worker"] == id && v["message"]["listen_error"].is_string()
    });
    v["message"].clone()
}

fn every_workers_kth_listen_0_gets_the_same_port(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0,127.0.0.1:0")]);
        firsts.push(c.address_of(id));
        seconds.push(c.address_of(id));
        c.expect_event("ready", id);
        ids.push(id);
    }
    assert!(firsts.iter().all(|a| *a == firsts[0]), "{firsts:?}");
    assert!(seconds.iter().all(|a| *a == seconds[0]), "{seconds:?}");
    assert_ne!(
        firsts[0], seconds[0],
        "two listen(0)s of a worker share a port"
    );
    assert!(!firsts[0].ends_with(":0"));
    for addr in [&firsts[0], &seconds[0]] {
        for _ in 0..3 {
            let id = worker_of(&http_get(addr, "/").unwrap());
            assert!(ids.contains(&id), "{id}");
        }
    }
}
per_policy!(every_workers_kth_listen_0_gets_the_same_port: rr, lc, shared, reuseport);

fn eaddrinuse_reaches_the_worker_and_a_retry_after_the_port_is_freed_works(policy: &str) {
    // Other tests bind ports too: one may take the port in the moment it
    // is free, which says nothing about herd. Then try with another.
    for _ in 0..5 {
        if eaddrinuse_then_retry(policy) {
            return;
        }
        eprintln!("another process took the freed port before the retry; again");
    }
    panic!("another process took the freed port every time");
}

/// False when another process took the port between its release and the
/// worker's retry.
fn eaddrinuse_then_retry(policy: &str) -> bool {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut c = Cluster::with_policy(policy);
    let id = c.fork(&[("FIXTURE_LISTEN", &addr)]);
    let err = expect_listen_error(&mut c, id);
    assert_eq!(err["kind"], "AddrInUse", "{err}");
    let message = err["listen_error"].as_str().unwrap();
    assert!(message.contains(&addr), "{message}");

    // The primary forgot the failed listen: once the port is free the same
    // worker's retry binds it.
    drop(taken);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "listen", "addr": addr}}));
    let v = c.expect(|v| {
        v["worker"] == id
            && (v["event"] == "listening"
                || v["event"] == "message" && v["message"]["listen_error"].is_string())
    });
    if v["event"] == "message" {
        if std::net::TcpListener::bind(&addr).is_err() {
            return false;
        }
        panic!("the retry failed though the port is free: {v}");
    }
    assert_eq!(v["address"], addr.as_str());
    assert!(
        wait_until(TIMEOUT, || http_get(&addr, "/")
            .is_ok_and(|b| worker_of(&b) == id)),
        "the retried listen does not serve"
    );
    true
}
per_policy!(eaddrinuse_reaches_the_worker_and_a_retry_after_the_port_is_freed_works:
    rr, lc, shared, reuseport);

fn eacces_reaches_the_worker_of_an_unprivileged_cluster(policy: &str) {
    still_holds(unprivileged_port_start() > 80, "port 80 is privileged");
    let mut options = Options::new().env("FIXTURE_POLICY", policy);
    if is_root() {
        // As nobody, the primary may not bind port 80.
        options = options.user(65534, 65534);
    } else {
        eprintln!(
            "not root: running the cluster as this user, assumed to lack CAP_NET_BIND_SERVICE"
        );
    }
    let mut c = Cluster::start_with(options);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:80")]);
    let err = expect_listen_error(&mut c, id);
    assert_eq!(err["kind"], "PermissionDenied", "{err}");
    let message = err["listen_error"].as_str().unwrap();
    assert!(message.contains("127.0.0.1:80"), "{message}");
}
per_policy!(
    #[cfg_attr(
        not(herd_privileged_port_80),
        ignore = "needs port 80 privileged: net.ipv4.ip_unprivileged_port_start is 80 or less, \
                  so anyone may bind it"
    )]
    eacces_reaches_the_worker_of_an_unprivileged_cluster: rr, lc, shared, reuseport
);

/// Panics (see [`still_holds`]) if there is no IPv6 loopback.
fn still_have_ipv6() {
    let bound = std::net::TcpListener::bind("[::1]:0");
    still_holds(bound.is_ok(), &format!("[::1] binds (now: {bound:?})"));
}

fn a_dual_stack_listen_accepts_ipv4_and_ipv6_clients(policy: &str) {
    still_have_ipv6();
    let mut c = Cluster::with_policy(policy);
    let (ids, address) = c.serve(2, "[::]:0");
    let port = address.strip_prefix("[::]:").expect("an IPv6 any address");
    for client in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let id = worker_of(&http_get(&client, "/").unwrap());
        assert!(ids.contains(&id), "{client}: {id}");
    }
}
per_policy!(
    #[cfg_attr(not(herd_ipv6), ignore = "needs an IPv6 loopback: [::1] did not bind")]
    a_dual_stack_listen_accepts_ipv4_and_ipv6_clients: rr, lc, shared, reuseport
);

fn an_ipv6_only_listen_leaves_the_ipv4_port_to_others(policy: &str) {
    still_have_ipv6();
    // Another program holds the port on IPv4: a dual-stack listen would
    // fail with EADDRINUSE, an IPv6-only one does not.
    let ipv4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ipv4.local_addr().unwrap().port();
    let mut c = Cluster::start(&[
        ("FIXTURE_POLICY", policy),
        ("FIXTURE_LISTEN_OPTIONS", r#"{"ipv6_only": true}"#),
    ]);
    let (ids, address) = c.serve(2, &format!("[::]:{port}"));
    assert_eq!(address, format!("[::]:{port}"));
    let id = worker_of(&http_get(&format!("[::1]:{port}"), "/").unwrap());
    assert!(ids.contains(&id));
    // An IPv4 client reaches the other program.
    let client = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let (accepted, _) = ipv4.accept().unwrap();
    assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
}
per_policy!(
    #[cfg_attr(not(herd_ipv6), ignore = "needs an IPv6 loopback: [::1] did not bind")]
    an_ipv6_only_listen_leaves_the_ipv4_port_to_others: rr, lc, shared, reuseport
);

fn a_port_is_listened_on_again_after_its_last_worker_left(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let (ids, addr) = c.serve(1, "127.0.0.1:0");
    assert_eq!(worker_of(&http_get(&addr, "/").unwrap()), ids[0]);
    c.cmd(json!({"cmd": "disconnect", "worker": ids[0]}));
    c.expect_event("exit", ids[0]);
    // The primary closed the port with its last worker...
    assert!(
        wait_until(TIMEOUT, || std::net::TcpStream::connect(&addr).is_err()),
        "{addr} still accepts"
    );
    // ...and binds it again for the next.
    let (again, _) = c.serve(1, &addr);
    assert_eq!(worker_of(&http_get(&addr, "/").unwrap()), again[0]);
}
per_policy!(a_port_is_listened_on_again_after_its_last_worker_left: rr, lc, shared, reuseport);
