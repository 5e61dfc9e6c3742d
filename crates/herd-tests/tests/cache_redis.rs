//! The shared cache on Redis (issue 16, points 1 and 3): issue 15's cache
//! scenarios run again with the cache service on a real `redis-server` (one
//! per test, on a Unix socket), then two herd instances sharing one Redis
//! as two hosts would, and Redis killed and restarted under a running
//! instance. Every wait is bounded; the guards kill what the test started.

mod redis;

use redis::{on, Host, Redis};
use serde_json::{json, Value};

/// Runs an issue 15 scenario on Redis to its end.
fn run(scenario: &str, workers: usize) -> (Host, Redis) {
    let redis = Redis::start();
    let mut host = Host::start("a", scenario, workers, &on(&redis, "one"));
    host.finish();
    (host, redis)
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_four_workers_a_hundred_gets_each_one_load() {
    let (host, _redis) = run("single_flight", 4);
    let loaders = host.with("loader_ran");
    assert_eq!(loaders.len(), 1, "the loader ran once: {loaders:?}");
    let all = host.outcomes();
    assert_eq!(all.len(), 400);
    let want = json!({ "ok": format!("value from worker {}", loaders[0].0) });
    assert!(
        all.iter().all(|o| *o == want),
        "every caller got the value: {all:?}"
    );
    assert_eq!(host.stats("sf")["loads"], 1);
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_a_failing_loader_wakes_every_waiter_at_once() {
    let (host, _redis) = run("failing_loader", 4);
    let all = host.outcomes();
    assert_eq!(all.len(), 400);
    assert!(
        all.iter().all(|o| *o == json!({"load_error": "boom"})),
        "{all:?}"
    );
    for (w, m) in host.with("max_ms") {
        assert!(m["max_ms"].as_u64().unwrap() < 3000, "worker {w}: {m}");
    }
    let loads = host.stats("sf")["loads"].as_u64().unwrap();
    assert_eq!(host.with("loader_ran").len() as u64, loads);
    assert!(loads < 8, "{loads} loads");
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_the_loading_worker_sigkilled_mid_load_passes_the_lease_on() {
    let (host, _redis) = run("kill_loader", 4);
    let exit = host
        .lines
        .iter()
        .find(|v| v["event"] == "exit" && v["worker"] == 1)
        .unwrap();
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    let all = host.outcomes();
    assert_eq!(all.len(), 300);
    let first = all[0]["ok"].as_str().expect("a value").to_string();
    assert!(all.iter().all(|o| o["ok"] == first.as_str()), "{all:?}");
    let stats = host.stats("kl");
    assert_eq!(stats["loads"], 2, "{stats}");
    assert_eq!(stats["load_failures"], 1, "{stats}");
    assert_eq!(
        stats["lease_timeouts"], 0,
        "the death was seen, not the lease: {stats}"
    );
    for (w, m) in host.with("max_ms") {
        assert!(m["max_ms"].as_u64().unwrap() < 10_000, "worker {w}: {m}");
    }
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_watch_sees_every_change_in_order() {
    let (host, _redis) = run("watch", 2);
    let (_, seen) = host.with("one").pop().unwrap();
    let one = seen["one"].as_array().unwrap();
    assert_eq!(one.len(), 101);
    for (i, c) in one[..100].iter().enumerate() {
        assert_eq!(*c, json!(["k", false, i]), "change {i}");
    }
    assert_eq!(one[100], json!(["k", true, null]));
    let all = seen["all"].as_array().unwrap();
    assert_eq!(
        all[51], "other",
        "watch_all sees the other key in its place"
    );
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_expire_removes_entries_on_time() {
    let (host, _redis) = run("expire", 1);
    let (_, m) = host.with("after_ms").pop().unwrap();
    assert_eq!(m["before"], 1);
    assert_eq!(
        (m["first"].as_str(), m["second"].as_str()),
        (Some("Set"), Some("Expired"))
    );
    let after = m["after_ms"].as_u64().unwrap();
    assert!((300..1500).contains(&after), "expired after {after} ms");
    assert_eq!(m["after"], Value::Null);
    assert_eq!(m["keys"], json!([]));
    assert_eq!(host.stats("ex")["expirations"], 1);
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_leave_if_not_null_keys_and_del() {
    let (host, _redis) = run("basics", 1);
    let (_, m) = host.with("first").pop().unwrap();
    assert_eq!(
        (m["first"].clone(), m["second"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(m["n"], 1);
    assert_eq!(m["over_null"], true);
    assert_eq!(m["keys"], json!(["a", "n", "z"]));
    assert_eq!(
        (m["deleted"].clone(), m["deleted_again"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(m["missing"], Value::Null);
    assert_eq!(m["keys_after"], json!(["n", "z"]));
    assert!(
        m["other_options"]
            .as_str()
            .unwrap()
            .contains("other options"),
        "{m}"
    );
    assert!(
        m["bad_name"].as_str().unwrap().contains("cache name"),
        "{m}"
    );
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn on_redis_the_local_copy_serves_hits_and_hears_another_workers_set() {
    let (host, _redis) = run("local_copy", 2);
    let (_, m) = host.with("seen").pop().unwrap();
    assert_eq!((m["a"].clone(), m["b"].clone()), (json!(1), json!(1)));
    assert!(
        m["hits_before"].as_u64().unwrap() >= 1,
        "a hit without a message: {m}"
    );
    assert_eq!(m["seen"], 2, "the copy was invalidated: {m}");
    assert_eq!(m["own"], 3, "a worker reads its own write: {m}");
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn two_instances_on_one_redis_load_once_for_all() {
    let redis = Redis::start();
    let go = redis.dir.join("go");
    let mut env = on(&redis, "pair");
    env.push(("CACHE_GO_FILE", go.display().to_string()));
    let mut a = Host::start("a", "wait_load", 4, &env);
    let mut b = Host::start("b", "wait_load", 4, &env);
    a.event("all_ready");
    b.event("all_ready");
    std::fs::write(&go, b"go").unwrap();
    a.finish();
    b.finish();
    let loaders: Vec<_> = a
        .with("loader_ran")
        .into_iter()
        .chain(b.with("loader_ran"))
        .collect();
    assert_eq!(loaders.len(), 1, "one load in both instances: {loaders:?}");
    let all: Vec<Value> = a.outcomes().into_iter().chain(b.outcomes()).collect();
    assert_eq!(all.len(), 800);
    let first = all[0]["ok"].as_str().expect("a value").to_string();
    assert!(
        all.iter().all(|o| o["ok"] == first.as_str()),
        "every caller got the one value: {all:?}"
    );
    let loads = a.stats("hl")["loads"].as_u64().unwrap() + b.stats("hl")["loads"].as_u64().unwrap();
    assert_eq!(loads, 1);
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn an_instance_sigkilled_mid_load_leaves_its_lease_to_expire_and_the_other_loads() {
    let redis = Redis::start();
    let env = on(&redis, "dead");
    let mut a = Host::start("a", "hold_lease", 1, &env);
    a.report("loader_ran");
    let mut b = Host::start("b", "wait_load", 2, &env);
    // Both of b's workers wait on a's lease (they missed), then a dies whole.
    b.health_until(|_| true);
    let deadline = std::time::Instant::now() + redis::TIMEOUT;
    loop {
        let h = b.health_until(|_| true);
        if h["stats"]["hl"]["misses"].as_u64().unwrap_or(0) >= 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b's gets never waited: {h}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    a.kill();
    b.finish();
    let all = b.outcomes();
    assert_eq!(all.len(), 200);
    assert!(
        all.iter()
            .all(|o| o["ok"].as_str().is_some_and(|v| v.starts_with("from b "))),
        "{all:?}"
    );
    assert_eq!(b.with("loader_ran").len(), 1, "one load in b");
    for (w, m) in b.with("max_ms") {
        // The 1.5 s lease expired in Redis; b checks again at least every 200 ms.
        assert!(
            m["max_ms"].as_u64().unwrap() < 5000,
            "worker {w} waited too long: {m}"
        );
    }
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn redis_killed_and_restarted_herd_keeps_serving_and_recovers() {
    let mut redis = Redis::start();
    let mut host = Host::start("a", "redis_away", 1, &on(&redis, "away"));
    host.report("phase");
    host.health_until(|h| h["up"] == true);
    redis.kill();
    let h = host.health_until(|h| h["up"] == false);
    assert!(
        h["health"]["url"].as_str().unwrap().starts_with("unix://"),
        "{h}"
    );
    host.command(json!({"tell": 1, "msg": "down"}));
    let m = host.wait_for("the down phase", |v| v["msg"]["phase"] == "down")["msg"].clone();
    assert_eq!(
        m["got"],
        json!({"ok": "loaded while away"}),
        "a get with a loader works: {m}"
    );
    assert!(
        m["set"].as_str().unwrap().contains("Redis"),
        "a set says Redis is away: {m}"
    );
    let h = host.health_until(|h| h["up"] == false);
    assert!(
        h["health"]["away_loads"].as_u64().unwrap() >= 1,
        "the load is counted: {h}"
    );
    let stderr = host.stderr.lock().unwrap().clone();
    assert!(stderr.contains("is away"), "a log line says so: {stderr}");
    redis.up();
    let h = host.health_until(|h| h["up"] == true);
    assert!(h["health"]["reconnects"].as_u64().unwrap() >= 1, "{h}");
    host.command(json!({"tell": 1, "msg": "back"}));
    host.finish();
    let (_, m) = host
        .with("phase")
        .into_iter()
        .find(|(_, m)| m["phase"] == "back")
        .unwrap();
    assert_eq!(m["got"], json!({"ok": "loaded when back"}), "{m}");
    assert_eq!(m["again"], "loaded when back", "stored in Redis again: {m}");
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn an_emit_on_one_instance_reaches_the_other_instances_workers() {
    let redis = Redis::start();
    let go = redis.dir.join("go");
    let mut env = on(&redis, "emit");
    env.push(("CACHE_GO_FILE", go.display().to_string()));
    env.push(("CACHE_EMIT", "1".into()));
    let mut a = Host::start("a", "emit_across", 2, &env);
    let mut b = Host::start("b", "emit_across", 2, &env);
    a.event("all_ready");
    b.event("all_ready");
    // Both hosts subscribed on Redis before a emits.
    a.health_until(|h| h["up"] == true);
    b.health_until(|h| h["up"] == true);
    std::fs::write(&go, b"go").unwrap();
    a.finish();
    b.finish();
    for host in [&a, &b] {
        let heard = host.with("heard");
        assert_eq!(heard.len(), 2, "{heard:?}");
        for (w, m) in heard {
            assert_eq!(
                m["heard"], "from a worker 1",
                "worker {w} of {}: {m}",
                m["host"]
            );
        }
    }
}
