//! The shared cache with real processes (issue 15, points 3 and 4): the
//! `cache` fixture runs one scenario per test, a primary with a
//! `CacheService` and its workers, and prints what happened as JSON lines.
//! Every wait is bounded; dropping a [`Run`] SIGKILLs the primary, whose
//! guard then kills its workers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Run {
    child: Child,
    lines: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Run {
    /// Runs `scenario` with `workers` workers (and `CACHE_DIR`) to its end.
    fn new(scenario: &str, workers: usize, dir: Option<&std::path::Path>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cache"));
        cmd.env("CACHE_SCENARIO", scenario)
            .env("CACHE_WORKERS", workers.to_string())
            .env_remove("HERD_CHANNEL_FD")
            .env_remove("HERD_PRIMARY_SPIN_US")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = dir {
            cmd.env("CACHE_DIR", d);
        }
        let mut child = cmd.spawn().expect("start the cache fixture");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str::<Value>(&line).unwrap_or(json!({"raw": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut run = Run {
            child,
            lines: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) => {
                    let done = v["event"] == "done";
                    run.lines.push(v);
                    if done {
                        break;
                    }
                }
                Err(_) => panic!(
                    "scenario {scenario} did not finish within {TIMEOUT:?}; saw {:#?}\nstderr: {}",
                    run.lines,
                    run.stderr.lock().unwrap()
                ),
            }
        }
        let status = run.child.wait().expect("wait for the fixture");
        assert!(
            status.success(),
            "fixture failed: {status:?}; {:#?}",
            run.lines
        );
        run
    }

    /// What workers reported, with their id.
    fn reports(&self) -> Vec<(u64, Value)> {
        self.lines
            .iter()
            .filter(|v| v["event"] == "msg")
            .map(|v| (v["worker"].as_u64().unwrap(), v["msg"].clone()))
            .collect()
    }

    /// The reports that carry `field`.
    fn with(&self, field: &str) -> Vec<(u64, Value)> {
        self.reports()
            .into_iter()
            .filter(|(_, m)| m.get(field).is_some())
            .collect()
    }

    fn stats(&self, cache: &str) -> Value {
        let s = self.lines.iter().find(|v| v["event"] == "stats").unwrap();
        s["stats"][cache].clone()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn outcomes(run: &Run) -> Vec<Value> {
    run.with("outcomes")
        .into_iter()
        .flat_map(|(_, m)| m["outcomes"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn four_workers_a_hundred_gets_each_one_load() {
    let run = Run::new("single_flight", 4, None);
    let loaders = run.with("loader_ran");
    assert_eq!(loaders.len(), 1, "the loader ran once: {loaders:?}");
    let loader = loaders[0].0;
    let all = outcomes(&run);
    assert_eq!(all.len(), 400);
    let want = json!({ "ok": format!("value from worker {loader}") });
    assert!(
        all.iter().all(|o| *o == want),
        "every caller got the value: {all:?}"
    );
    let stats = run.stats("sf");
    assert_eq!(stats["loads"], 1, "{stats}");
    assert!(stats["misses"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn a_failing_loader_wakes_every_waiter_at_once() {
    let run = Run::new("failing_loader", 4, None);
    let all = outcomes(&run);
    assert_eq!(all.len(), 400);
    assert!(
        all.iter().all(|o| *o == json!({"load_error": "boom"})),
        "every caller got the loader's error: {all:?}"
    );
    // The loader takes 200 ms; its waiters hear at once, far from their
    // 30 s wait (a leaked lease would hold them that long).
    for (w, m) in run.with("max_ms") {
        assert!(m["max_ms"].as_u64().unwrap() < 3000, "worker {w}: {m}");
    }
    // A caller that missed after the failure loads anew (and fails too),
    // but one failure never ran a loader per waiter.
    let loads = run.stats("sf")["loads"].as_u64().unwrap();
    assert_eq!(run.with("loader_ran").len() as u64, loads);
    assert!(loads < 8, "{loads} loads");
}

#[test]
fn the_loading_worker_sigkilled_mid_load_passes_the_lease_on() {
    let run = Run::new("kill_loader", 4, None);
    let killed = run.lines.iter().find(|v| v["event"] == "killed").unwrap();
    assert_eq!(killed["worker"], 1);
    let exit = run
        .lines
        .iter()
        .find(|v| v["event"] == "exit" && v["worker"] == 1)
        .unwrap();
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    let all = outcomes(&run);
    assert_eq!(all.len(), 300);
    // One waiter took the lease at once and loaded; all got its value.
    let first = all[0]["ok"]
        .as_str()
        .expect("a value, as documented")
        .to_string();
    assert!(all.iter().all(|o| o["ok"] == first.as_str()), "{all:?}");
    let stats = run.stats("kl");
    assert_eq!(stats["loads"], 2, "{stats}");
    assert_eq!(stats["load_failures"], 1, "{stats}");
    assert_eq!(
        stats["lease_timeouts"], 0,
        "the death was seen, not the lease: {stats}"
    );
    for (w, m) in run.with("max_ms") {
        assert!(
            m["max_ms"].as_u64().unwrap() < 10_000,
            "worker {w} waited past half the lease: {m}"
        );
    }
}

#[test]
fn watch_sees_every_change_in_order() {
    let run = Run::new("watch", 2, None);
    let (_, seen) = run.with("one").pop().unwrap();
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
    assert_eq!(all.iter().filter(|k| *k == "k").count(), 101);
}

#[test]
fn expire_removes_entries_on_time() {
    let run = Run::new("expire", 1, None);
    let (_, m) = run.with("after_ms").pop().unwrap();
    assert_eq!(m["before"], 1);
    assert_eq!(
        (m["first"].as_str(), m["second"].as_str()),
        (Some("Set"), Some("Expired"))
    );
    let after = m["after_ms"].as_u64().unwrap();
    assert!((300..1500).contains(&after), "expired after {after} ms");
    assert_eq!(m["after"], Value::Null);
    assert_eq!(m["keys"], json!([]));
    assert_eq!(run.stats("ex")["expirations"], 1);
}

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("herd-cache-test-{tag}-{}", std::process::id()));
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

#[test]
fn persist_survives_a_restart_of_the_whole_cluster() {
    let dir = Dir::new("persist");
    let first = Run::new("persist_write", 1, Some(&dir.0));
    assert_eq!(first.with("wrote")[0].1["wrote"], json!(["a", "b"]));
    drop(first);
    let second = Run::new("persist_read", 1, Some(&dir.0));
    let (_, m) = second.with("keys").pop().unwrap();
    assert_eq!(m["keys"], json!(["a", "b"]));
    assert_eq!(m["a"], 1);
    assert_eq!(m["b"], json!({"x": [1, 2]}));
    assert_eq!(m["corrupt_files"], 0);
}

#[test]
fn a_truncated_persistence_file_is_reported_and_does_not_stop_the_start() {
    let dir = Dir::new("truncated");
    drop(Run::new("persist_write", 1, Some(&dir.0)));
    let file = dir.0.join("p.cache.json");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 7]).unwrap();
    let run = Run::new("persist_read", 1, Some(&dir.0));
    let (_, m) = run.with("keys").pop().unwrap();
    assert_eq!(m["keys"], json!([]), "the cache started empty");
    assert_eq!(m["corrupt_files"], 1);
    let stderr = run.stderr.lock().unwrap().clone();
    assert!(stderr.contains("is corrupt"), "reported: {stderr}");
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("p.cache.json.corrupt-")),
        "set aside: {names:?}"
    );
}

#[test]
fn the_memory_bound_evicts_the_least_recently_used() {
    let run = Run::new("evict", 1, None);
    let (_, m) = run.with("count_keys").pop().unwrap();
    let want: Vec<String> = (10..20).map(|i| format!("k{i:02}")).collect();
    assert_eq!(m["count_keys"], json!(want));
    assert_eq!(m["count_stats"]["evictions"], 10);
    assert!(m["bytes_stats"]["bytes"].as_u64().unwrap() <= 4096, "{m}");
    assert!(m["bytes_stats"]["evictions"].as_u64().unwrap() >= 13, "{m}");
    assert!(m["too_big"].as_str().unwrap().contains("max_bytes"), "{m}");
}

#[test]
fn leave_if_not_null_keys_and_del() {
    let run = Run::new("basics", 1, None);
    let (_, m) = run.with("first").pop().unwrap();
    assert_eq!(m["first"], true);
    assert_eq!(m["second"], false);
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
fn the_local_copy_serves_hits_and_hears_another_workers_set() {
    let run = Run::new("local_copy", 2, None);
    let (_, m) = run.with("seen").pop().unwrap();
    assert_eq!((m["a"].clone(), m["b"].clone()), (json!(1), json!(1)));
    assert!(
        m["hits_before"].as_u64().unwrap() >= 1,
        "a hit without a message: {m}"
    );
    assert_eq!(m["seen"], 2, "the copy was invalidated: {m}");
    assert_eq!(m["own"], 3, "a worker reads its own write: {m}");
}

#[test]
fn a_wait_ends_at_its_timeout_and_a_dead_loader_frees_the_key() {
    let run = Run::new("wait_timeout", 2, None);
    let (_, m) = run.with("waited_ms").pop().unwrap();
    assert_eq!(m["r"], json!({"timeout_ms": 300}));
    let waited = m["waited_ms"].as_u64().unwrap();
    assert!((300..3000).contains(&waited), "{waited} ms");
    assert_eq!(m["loads"], 1);
    // Its registration went with its timeout: worker 1's death passed the
    // lease to no one.
    let stats = run.stats("wt");
    assert_eq!(stats["loads"], 1, "{stats}");
}

#[test]
fn concurrent_gets_of_one_key_share_requests_and_never_read_behind_a_set() {
    let run = Run::new("hot_key", 1, None);
    let (_, m) = run.with("stale").pop().unwrap();
    assert_eq!(
        m["stale"],
        json!([]),
        "a read after a set saw an older value: {m}"
    );
    let (gets, hits) = (
        m["gets"].as_u64().unwrap(),
        m["store_hits"].as_u64().unwrap(),
    );
    assert!(gets > 300, "{m}");
    // Each store hit is one request (the set's reads included): fewer
    // requests than gets, as concurrent gets joined unsent ones.
    assert!(hits < gets, "no get shared a request: {m}");
}

#[test]
fn the_primary_watches_for_a_workers_next_get_within_its_limit() {
    // hot_key: a worker's callers read one key through the primary; the
    // primary watches for the next request before some of its sleeps
    // (channel/doorbell.rs has the tests of what ends a watch).
    let run = Run::new("hot_key", 1, None);
    let stats = run.lines.iter().find(|v| v["event"] == "stats").unwrap();
    let w = &stats["watch"];
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("no {k}: {stats}"));
    assert_eq!(n("limit_us"), 50, "the default limit: {w}");
    let watches = n("rang") + n("timed_out") + n("gave_way");
    assert!(watches > 0, "no sleep after a request was watched: {w}");
    let stderr = run.stderr.lock().unwrap();
    assert!(
        !stderr.contains("HERD_DOORBELL_FD ignored"),
        "the worker went without its doorbell: {stderr}"
    );
    // Each watch spins its limit at most (and a little more: this machine
    // is shared, and a look at the page may be slow).
    let seconds = w["seconds"].as_f64().unwrap();
    assert!(
        seconds <= watches as f64 * 3.0 * 50e-6 + 0.05,
        "{seconds} s in {watches} watches: {w}"
    );
}
