//! The primary's memory stays small whatever one worker sends: a frame
//! announced big and never finished, a flood of messages nobody reads.
//! Meanwhile a healthy worker's requests keep their latency.

mod common;
mod supervised;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use supervised::supervised;

/// The bound the primary's resident memory must stay under.
const RSS_LIMIT: u64 = 20 << 20;
/// Messages the flooding worker sends. The issue measured 3 million; a
/// bounded queue makes the primary's memory independent of the number
/// (the worker is held back after about 400,000, in its own outbox), and
/// draining 3 million through the fixture's event printer takes 13 s in
/// this debug build on a loaded 2-core machine (230,000 a second), so a
/// million keeps the test near 8 s. Set 3_000_000 here to see the same.
const FLOOD: u64 = 1_000_000;

/// Samples process `pid`'s resident memory every 20 ms until stopped;
/// keeps the highest.
struct RssWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(vm_rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            most,
            thread: Some(thread),
        }
    }

    fn most(&self) -> u64 {
        self.most.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` GETs one after the other, each on a new connection; their
/// latencies, sorted.
fn latencies(addr: &str, n: usize) -> Vec<Duration> {
    let mut all: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            http_get(addr, "/").expect("the healthy worker answers");
            t.elapsed()
        })
        .collect();
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// The flooding worker's last progress line (`misbehave flood: N sent`).
fn flood_progress(c: &Cluster) -> u64 {
    c.stderr_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("misbehave flood: "))
        .filter_map(|l| l.strip_suffix(" sent"))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn the_primary_stays_small_while_workers_stall_frames_and_flood_messages() {
    let mut c = Cluster::start_with(Options::new().capture_stderr());
    // The stalled frames stay stalled for the whole test.
    c.cmd(json!({"cmd": "setup", "frame_timeout_ms": 60000}));
    let (good, addr) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let usual = latencies(&addr, 200);
    let start_rss = vm_rss(c.pid);
    let rss = RssWatch::start(c.pid);

    // One worker announces a 64 MiB frame, another 16 MiB; each sends 1 MiB
    // of it and stalls.
    let mib = (1u64 << 20).to_string();
    let staller_64 = c.fork_misbehaving(&[
        ("MISBEHAVE", "announce"),
        ("MISBEHAVE_LEN", &(64u64 << 20).to_string()),
        ("MISBEHAVE_SEND", &mib),
    ]);
    let staller_16 = c.fork_misbehaving(&[
        ("MISBEHAVE", "announce"),
        ("MISBEHAVE_LEN", &(16u64 << 20).to_string()),
        ("MISBEHAVE_SEND", &mib),
    ]);
    c.expect_event("online", staller_16);
    // A third floods messages while nobody reads the primary's events.
    c.cmd(json!({"cmd": "pause_events"}));
    let flooder =
        c.fork_misbehaving(&[("MISBEHAVE", "flood"), ("MISBEHAVE_N", &FLOOD.to_string())]);
    assert!(
        c.wait_stderr(TIMEOUT, |l| l.starts_with("misbehave flood:"))
            .is_some(),
        "the flood did not start"
    );

    // Until the flooder's `send` has waited for a second (or it has sent
    // everything, which is a failure below): the healthy worker's latency.
    let measured = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (addr, measured, stop) = (addr.clone(), measured.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                http_get(&addr, "/").expect("the healthy worker answers");
                measured.lock().unwrap().push(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let since = Instant::now();
    let (mut last, mut moved) = (flood_progress(&c), Instant::now());
    while since.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
        let now = flood_progress(&c);
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(1)
            && since.elapsed() > Duration::from_secs(2)
        {
            break;
        }
        assert!(
            rss.most() < RSS_LIMIT,
            "the primary reached {} KiB (from {} KiB) with {last} messages sent",
            rss.most() >> 10,
            start_rss >> 10
        );
    }
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    let paused_rss = rss.most();
    let mut during = measured.lock().unwrap().clone();
    during.sort();
    eprintln!(
        "primary RSS: {} KiB at start, at most {} KiB with the flood blocked at {last} sent; \
         healthy GET p99 {:?} (max {:?}) before, p99 {:?} (max {:?}) over {} requests during",
        start_rss >> 10,
        paused_rss >> 10,
        p99(&usual),
        usual.last().unwrap(),
        p99(&during),
        during.last().unwrap(),
        during.len()
    );
    assert!(
        last < FLOOD,
        "the flooder was never held back ({last} sent)"
    );
    assert!(paused_rss < RSS_LIMIT, "{} KiB", paused_rss >> 10);
    assert!(
        during.len() >= 20,
        "only {} requests measured",
        during.len()
    );
    assert!(
        p99(&during) < Duration::from_millis(50),
        "healthy p99 {:?} (before: {:?})",
        p99(&during),
        p99(&usual)
    );

    // Nothing was dropped: once read again, every message comes, in order.
    let resumed = Instant::now();
    c.cmd(json!({"cmd": "resume_events"}));
    let done = c
        .expect_within(Duration::from_secs(60), |v| {
            v["event"] == "message"
                && v["worker"] == flooder
                && v["message"].get("flood_done").is_some()
        })
        .unwrap_or_else(|| panic!("the flood did not finish; {} sent", flood_progress(&c)));
    assert_eq!(done["flood_seen"], FLOOD, "{done}");
    assert_eq!(done["flood_in_order"], true, "{done}");
    let most = rss.most();
    eprintln!(
        "primary RSS: at most {} KiB through the whole flood; the window took {:?}, the \
         {FLOOD} messages {:?} once read again",
        most >> 10,
        resumed - since,
        resumed.elapsed()
    );
    assert!(most < RSS_LIMIT, "{} KiB", most >> 10);
    // The frame over the limit cost its worker; the one under it is still
    // waited for; the healthy worker was never touched.
    assert!(c
        .events_of(staller_64)
        .iter()
        .any(|v| v["event"] == "error"));
    assert!(c
        .events_of(staller_16)
        .iter()
        .all(|v| v["event"] != "error"));
    assert!(c.events_of(good).iter().all(|v| v["event"] != "error"));
}

#[test]
fn a_worker_held_back_by_unread_messages_is_not_taken_for_hung() {
    let (mut c, _addr) = supervised(
        1,
        &[
            ("FIXTURE_HEARTBEAT_MS", "100"),
            ("FIXTURE_SUP_HEARTBEAT_TIMEOUT_MS", "1000"),
        ],
    );
    c.cmd(json!({"cmd": "pause_events"}));
    // More than may wait in the primary (1024) and than the socket holds
    // (about 10,000 of these): the worker's heartbeats queue behind them.
    const N: u64 = 30_000;
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "count", "n": N}}));
    // Three heartbeat timeouts with nobody reading events: the supervisor
    // must not replace the worker as hung (its silence is the primary's).
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        c.cmd(json!({"cmd": "workers"}));
        let workers = c.expect(|v| v["event"] == "workers");
        assert_eq!(workers["ids"], json!([1]), "after {:?}", since.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.cmd(json!({"cmd": "resume_events"}));
    // Each is printed and parsed: slow on a loaded machine.
    let last = c.expect_within(Duration::from_secs(60), |v| {
        v["event"] == "message" && v["worker"] == 1 && v["message"]["seq"] == N - 1
    });
    assert!(last.is_some(), "not every message arrived");
    assert!(
        c.seen
            .iter()
            .all(|v| !(v["event"] == "fork" && v["worker"] != 1) && v["event"] != "recycle"),
        "{}",
        c.dump()
    );
}
