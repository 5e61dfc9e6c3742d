//! The shared cache in a dedicated store worker (issue 15, cluster2's
//! `standalone` mode): issue 15's scenarios again with the store in its
//! own worker, then the store worker SIGKILLed under waiting gets and
//! restarted, a persistent cache read back by its successor. Every wait is
//! bounded; dropping a `Host` SIGKILLs the fixture's primary, whose
//! workers (the store worker too) exit when their channel closes.

mod redis;

use std::time::{Duration, Instant};

use redis::Host;
use serde_json::{json, Value};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "herd-cache-standalone-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `scenario` with a standalone store (persisting in `dir`) to its end.
fn run(scenario: &str, workers: usize, dir: Option<&Dir>) -> Host {
    run_with(scenario, workers, dir, &[])
}

fn run_with(
    scenario: &str,
    workers: usize,
    dir: Option<&Dir>,
    more: &[(&'static str, &str)],
) -> Host {
    let mut env = vec![("CACHE_STANDALONE", "1".to_string())];
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    if let Some(d) = dir {
        env.push(("CACHE_DIR", d.0.display().to_string()));
    }
    let mut host = Host::start("standalone", scenario, workers, &env);
    host.finish();
    host
}

fn event<'a>(host: &'a Host, name: &str) -> Vec<&'a Value> {
    host.lines.iter().filter(|v| v["event"] == name).collect()
}

/// Whether process `pid` is gone (or a zombie no one waits for), within 10 s.
fn gone(pid: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The store worker at the end: its pid, and how many times it restarted.
fn store(host: &Host) -> (u64, u64) {
    let s = event(host, "store").pop().expect("the store event");
    (
        s["pid"].as_u64().expect("a store worker"),
        s["restarts"].as_u64().unwrap(),
    )
}

#[test]
fn standalone_four_workers_a_hundred_gets_each_one_load() {
    let host = run("single_flight", 4, None);
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
    let (pid, restarts) = store(&host);
    assert_eq!(restarts, 0);
    // The store worker was stopped at the end, and was no app worker.
    assert_eq!(event(&host, "exit").len(), 4);
    assert!(gone(pid), "the store worker {pid} is left");
}

#[test]
fn standalone_the_loading_worker_sigkilled_mid_load_passes_the_lease_on() {
    let host = run("kill_loader", 4, None);
    let exit = event(&host, "exit")
        .into_iter()
        .find(|v| v["worker"] == 1)
        .unwrap()
        .clone();
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    let all = host.outcomes();
    assert_eq!(all.len(), 300);
    let first = all[0]["ok"]
        .as_str()
        .expect("a value, as documented")
        .to_string();
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
fn standalone_the_store_worker_sigkilled_fails_its_waiters_at_once_and_comes_back() {
    let dir = Dir::new("kill");
    let host = run("store_kill", 3, Some(&dir));
    let killed = event(&host, "store_killed").pop().expect("killed").clone();
    let old = killed["pid"].as_u64().unwrap();
    let exit = event(&host, "other_exit")
        .into_iter()
        .find(|v| v["worker"] == killed["worker"])
        .expect("the store worker's exit")
        .clone();
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    // 200 gets waited for worker 1's lease (20 s) when the store died:
    // each failed at once, saying why, none hung to its 30 s wait.
    let all = host.outcomes();
    assert_eq!(all.len(), 200);
    for o in &all {
        let why = o["other"]
            .as_str()
            .unwrap_or_else(|| panic!("an error: {o}"));
        assert!(why.contains("store worker"), "{why}");
    }
    let killed_at = killed["at_ms"].as_u64().unwrap();
    for (w, m) in host.with("failed_at_ms") {
        let after = m["failed_at_ms"]
            .as_u64()
            .unwrap()
            .saturating_sub(killed_at);
        assert!(
            after < 2_000,
            "worker {w}'s gets failed {after} ms after the kill"
        );
    }
    // A new store worker serves again, with the caches opened before, the
    // persistent one read back from its file.
    for rank in 1..=3 {
        let (_, m) = host
            .with("back_ms")
            .into_iter()
            .find(|(w, _)| *w == rank)
            .unwrap_or_else(|| panic!("worker {rank} reported"));
        assert_eq!(m["back_error"], Value::Null, "worker {rank}: {m}");
        assert!(
            m["back_ms"].as_u64().unwrap() < 10_000,
            "worker {rank}: {m}"
        );
        assert_eq!(m["a"], 1, "worker {rank}: {m}");
        assert!(m["again"].as_str().unwrap().starts_with("by "), "{m}");
    }
    let (new, restarts) = store(&host);
    assert_eq!(restarts, 1);
    assert_ne!(new, old);
    assert!(
        gone(old) && gone(new),
        "a store worker is left: {old} {new}"
    );
}

#[test]
fn standalone_persist_survives_a_restart_of_the_whole_cluster() {
    let dir = Dir::new("persist");
    let first = run("persist_write", 1, Some(&dir));
    assert_eq!(first.with("wrote")[0].1["wrote"], json!(["a", "b"]));
    drop(first);
    let second = run("persist_read", 1, Some(&dir));
    let (_, m) = second.with("keys").pop().unwrap();
    assert_eq!(m["keys"], json!(["a", "b"]));
    assert_eq!(m["a"], 1);
    assert_eq!(m["b"], json!({"x": [1, 2]}));
    assert_eq!(m["corrupt_files"], 0);
}

#[test]
fn standalone_a_store_worker_that_keeps_crashing_is_restarted_with_a_growing_delay() {
    let host = run_with("crash_loop", 1, None, &[("CACHE_STORE_CRASH", "1")]);
    let (_, m) = host.with("errors").pop().unwrap();
    assert_eq!(m["ok"], 0, "{m}");
    assert!(m["errors"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["last"].as_str().unwrap().contains("store worker"), "{m}");
    // In 1.5 s, delays of 100, 200, 400, 800 ms: a handful of forks, not a spin.
    let exits = event(&host, "other_exit");
    assert!(
        (2..=6).contains(&exits.len()),
        "{} store workers: {exits:?}",
        exits.len()
    );
    assert!(exits.iter().all(|e| e["code"] == 3), "{exits:?}");
    let s = event(&host, "store").pop().unwrap().clone();
    let restarts = s["restarts"].as_u64().unwrap();
    assert!((1..=5).contains(&restarts), "{s}");
}
