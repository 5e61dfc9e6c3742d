//! `axum::serve(listener, app)` works unchanged on a herd listener, in
//! every policy: keep-alive requests on one connection all reach the worker
//! that holds it.

mod common;

use common::*;

fn axum_serves_keep_alive_requests_over_one_connection(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let (ids, addr) = c.serve(2, "127.0.0.1:0");
    let mut conns: Vec<_> = (0..4).map(|_| KeepAlive::connect(&addr).unwrap()).collect();
    for conn in &mut conns {
        let first = worker_of(&conn.get("/").unwrap());
        assert!(ids.contains(&first));
        for i in 0..20 {
            let body = if i % 5 == 4 {
                conn.get("/slow?ms=5").unwrap()
            } else {
                conn.get("/").unwrap()
            };
            let expected = if i % 5 == 4 {
                format!("slow done by {first}\n")
            } else {
                format!("worker {first}\n")
            };
            assert_eq!(body, expected);
        }
    }
}
per_policy!(axum_serves_keep_alive_requests_over_one_connection: rr, lc, shared, reuseport);
