//! UDP: never round-robin. Workers binding the same address share one
//! socket (`reuseport`: one socket each on the same port), and datagrams
//! spread over them.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

fn udp_datagrams_spread_over_workers_sharing_one_port(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let mut ids = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..3 {
        let id = c.fork(&[("FIXTURE_UDP", "127.0.0.1:0")]);
        addresses.push(c.address_of(id));
        ids.push(id);
    }
    let address = addresses[0].clone();
    assert!(address.starts_with("udp:127.0.0.1:"), "{address}");
    assert!(addresses.iter().all(|a| *a == address), "{addresses:?}");
    let target = address.strip_prefix("udp:").unwrap().to_string();

    // Bursts of datagrams from many client ports, until every worker has
    // answered some.
    let mut answers: BTreeMap<u32, usize> = BTreeMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while answers.len() < ids.len() && Instant::now() < deadline {
        let clients: Vec<UdpSocket> = (0..32)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect();
        for s in &clients {
            s.send_to(b"hello", &target).unwrap();
        }
        for s in &clients {
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).expect("every datagram is answered");
            assert_eq!(from.to_string(), target);
            let id = worker_of(std::str::from_utf8(&buf[..n]).unwrap());
            *answers.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        answers.keys().copied().collect::<Vec<_>>(),
        ids,
        "{answers:?}"
    );
}
per_policy!(udp_datagrams_spread_over_workers_sharing_one_port: rr, lc, shared, reuseport);
