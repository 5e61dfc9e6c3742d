//! Chaos, bounded: 4 supervised workers under steady load (three clients
//! with a new connection per request, one keep-alive client), and every 2 s for
//! 30 s a random ready worker is killed with SIGKILL. For each kill: the
//! requests that failed are no more than the connections the killed worker
//! held (what was queued for it is served by the others), 4 workers are
//! ready again within 200 ms of its exit, and nothing of the killed worker is left (no
//! zombie, no orphan). The figures are printed (`--no-capture`).

mod common;
mod supervised;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use supervised::supervised;

const WORKERS: usize = 4;
const KILLS: usize = 15;
const EVERY: Duration = Duration::from_secs(2);
const BACK_WITHIN: Duration = Duration::from_millis(200);

/// Clients until stopped; every failure with its time.
struct Chaos {
    stop: Arc<AtomicBool>,
    ok: Arc<Mutex<u64>>,
    failures: Arc<Mutex<Vec<(Instant, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Chaos {
    fn start(addr: &str) -> Chaos {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..4)
            .map(|i| {
                let keep_alive = i >= 3;
                let (addr, stop, ok, failures) =
                    (addr.to_string(), stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let mut conn: Option<KeepAlive<std::net::TcpStream>> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let r = if keep_alive {
                            if conn.is_none() {
                                conn = KeepAlive::connect(&addr).ok();
                            }
                            match conn.as_mut() {
                                Some(c) => c.get("/").map(|_| ()),
                                None => Err(std::io::Error::other("connect failed")),
                            }
                        } else {
                            http_get(&addr, "/").map(|_| ())
                        };
                        // Steady, not saturating: the cores stay for the
                        // workers (and a respawn) to run.
                        std::thread::sleep(Duration::from_micros(500));
                        match r {
                            Ok(()) => *ok.lock().unwrap() += 1,
                            Err(e) => {
                                conn = None;
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((Instant::now(), e.to_string()));
                            }
                        }
                    }
                })
            })
            .collect();
        Chaos {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn failed_since(&self, t: Instant) -> Vec<String> {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let ok = *self.ok.lock().unwrap();
        ok
    }
}

/// The TCP connections (not listening sockets) process `pid` holds on
/// `port`.
fn connections_held(pid: u32, port: u16) -> usize {
    let mine = socket_inodes(pid);
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port)
                && f.get(3) != Some(&"0A")
                && f.get(9)
                    .is_some_and(|i| mine.contains(&format!("socket:[{i}]")))
            {
                n += 1;
            }
        }
    }
    n
}

/// Whether every thread of `pid` is stopped (state `T`).
fn stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
        })
    })
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                let f: Vec<&str> = s
                    .rsplit_once(')')
                    .map_or(vec![], |(_, r)| r.split_whitespace().collect());
                f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str())
            })
        })
        .collect()
}

/// A small xorshift: which worker dies is random, and printed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_sigkills_under_load_cost_only_the_killed_workers_connections() {
    let (mut c, addr) = supervised(WORKERS, &[]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    // Live workers: id -> pid, and which are ready.
    let mut pids: BTreeMap<u32, u32> = BTreeMap::new();
    let mut ready: BTreeSet<u32> = BTreeSet::new();
    let take = |v: &Value, pids: &mut BTreeMap<u32, u32>, ready: &mut BTreeSet<u32>| {
        let Some(id) = v["worker"].as_u64().map(|w| w as u32) else {
            return;
        };
        match v["event"].as_str() {
            Some("fork") => {
                if let Some(pid) = v["pid"].as_u64() {
                    pids.insert(id, pid as u32);
                }
            }
            Some("ready") => {
                ready.insert(id);
            }
            Some("exit") => {
                pids.remove(&id);
                ready.remove(&id);
            }
            _ => {}
        }
    };
    for v in c.seen.clone() {
        take(&v, &mut pids, &mut ready);
    }
    assert_eq!(ready.len(), WORKERS, "{}", c.dump());

    let load = Chaos::start(&addr);
    // Requests flow before the first kill.
    let warm = Instant::now();
    while *load.ok.lock().unwrap() < 200 {
        assert!(warm.elapsed() < TIMEOUT, "the load does not get answers");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        load.failed_since(warm).is_empty(),
        "{:?}",
        load.failed_since(warm)
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut killed_pids = Vec::new();
    let mut report = Vec::new();
    let mut next = Instant::now();
    for k in 0..KILLS {
        while Instant::now() < next {
            // Between kills: events keep the picture of the cluster.
            if let Some(v) = c.expect_within(next - Instant::now(), |_| true) {
                take(&v, &mut pids, &mut ready);
            }
        }
        next += EVERY;
        let choices: Vec<u32> = ready.iter().copied().collect();
        assert_eq!(
            choices.len(),
            WORKERS,
            "before kill {k}: {:?}\n{}",
            ready,
            c.dump()
        );
        let victim = choices[(next_random(&mut seed) % choices.len() as u64) as usize];
        let pid = pids[&victim];
        // Frozen, it takes no more connections: what it holds is counted.
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        // A signal is delivered when each thread next runs: wait until all
        // of them are stopped.
        assert!(
            wait_until(Duration::from_secs(1), || stopped(pid)),
            "kill {k}: worker {victim} does not stop"
        );
        let held = connections_held(pid, port);
        let at = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        killed_pids.push(pid);
        // Back to WORKERS ready: from its exit to a new worker's ready, by
        // the primary's own clock (`t_ms`), which the test's scheduling
        // does not skew.
        let mut exit_ms = None;
        let mut back = None;
        while back.is_none() {
            let left = (at + TIMEOUT).saturating_duration_since(Instant::now());
            let v = c
                .expect_within(left, |_| true)
                .unwrap_or_else(|| panic!("kill {k}: no respawn\n{}", c.dump()));
            take(&v, &mut pids, &mut ready);
            if v["event"] == "exit" && v["worker"] == victim {
                exit_ms = v["t_ms"].as_u64();
            }
            if let Some(e) = exit_ms.filter(|_| ready.len() == WORKERS) {
                back = Some(Duration::from_millis(v["t_ms"].as_u64().unwrap_or(e) - e));
            }
        }
        let back = back.unwrap();
        // Nothing of it left: not running, not a zombie.
        let gone = wait_until(Duration::from_secs(1), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        assert!(gone, "kill {k}: worker {victim} (pid {pid}) is still there");
        assert!(
            wait_until(Duration::from_secs(1), || zombies_of(c.pid).is_empty()),
            "kill {k}: zombies {:?}",
            zombies_of(c.pid)
        );
        report.push((k, victim, held, at, back));
    }
    // The last kill's failures show within its period too.
    let end = next;
    while Instant::now() < end {
        if let Some(v) = c.expect_within(end - Instant::now(), |_| true) {
            take(&v, &mut pids, &mut ready);
        }
    }
    let failures = load.failures.lock().unwrap().clone();
    let served = load.stop();
    let mut problems = Vec::new();
    let first = report[0].3;
    let early = failures.iter().filter(|(t, _)| *t < first).count();
    if early > 0 {
        problems.push(format!("{early} requests failed before the first kill"));
    }
    let mut total = 0;
    for (i, (k, victim, held, at, back)) in report.iter().enumerate() {
        let until = report.get(i + 1).map_or(end, |r| r.3);
        let failed: Vec<&String> = failures
            .iter()
            .filter(|(t, _)| t >= at && *t < until)
            .map(|(_, e)| e)
            .collect();
        total += failed.len();
        eprintln!(
            "kill {k}: worker {victim} held {held} connections; {} requests failed; {WORKERS} ready again after {back:?}",
            failed.len()
        );
        if failed.len() > *held {
            problems.push(format!(
                "kill {k}: {} failed but worker {victim} held {held}: {failed:?}",
                failed.len()
            ));
        }
        if *back > BACK_WITHIN {
            problems.push(format!(
                "kill {k}: {WORKERS} ready again only after {back:?}"
            ));
        }
    }
    eprintln!(
        "chaos: {KILLS} kills, {served} requests served, {total} failed ({:.2} per kill)",
        total as f64 / KILLS as f64
    );
    c.cmd(serde_json::json!({"cmd": "shutdown"}));
    c.expect(|v| v["event"] == "supervise_done");
    assert!(c.wait_exit(TIMEOUT).is_some(), "the primary did not exit");
    for pid in killed_pids.iter().chain(pids.values()) {
        assert!(!alive(*pid), "worker pid {pid} left behind");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
