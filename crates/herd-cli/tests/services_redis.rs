//! `herd run --services redis://…` (issue 16): the cluster's cache service
//! runs on Redis; Redis killed and restarted under a running herd: herd
//! keeps serving requests, `/status` (here `herd ctl status --json`, the
//! same document) says Redis is away, and the link comes back without a
//! restart. A URL that is not Redis's is refused at once, naming the flag.

mod common;
use common::*;

use std::process::{Child, Command, Stdio};

/// A redis-server of the test's own on a Unix socket, killed on drop.
struct Redis {
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            dir: TempDir::new("redis"),
            child: None,
        };
        r.up();
        r
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn up(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(option_env!("HERD_TEST_REDIS_SERVER").unwrap_or("redis-server"))
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let sock = self.socket();
        wait_until("redis-server listens", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_status(h: &Herd) -> serde_json::Value {
    let o = h.ctl(&["status", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["redis"].clone()
}

#[test]
#[cfg_attr(not(herd_redis), ignore = "needs redis-server")]
fn redis_away_and_back_under_a_running_herd() {
    let mut redis = Redis::start();
    let url = format!("unix://{}", redis.socket().display());
    let p = program("server.py");
    let mut h = start(
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--services",
            &url,
            "--",
            "python3",
            &p,
        ],
        &[],
    );
    let addr = h.address();
    h.ready(2);
    wait_until("/status says Redis is up", || {
        redis_status(&h)["up"] == true
    });
    let s = redis_status(&h);
    assert_eq!(s["url"], url.as_str(), "{s}");
    redis.kill();
    wait_until("/status says Redis is away", || {
        redis_status(&h)["up"] == false
    });
    assert!(
        curl(&addr, "/").starts_with("hello from"),
        "herd keeps serving"
    );
    h.wait_said("is away");
    redis.up();
    wait_until("/status says Redis is back", || {
        redis_status(&h)["up"] == true
    });
    let s = redis_status(&h);
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert!(curl(&addr, "/").starts_with("hello from"));
}

#[test]
fn a_services_url_that_is_not_redis_is_refused() {
    let (code, stderr) = run_fails(
        &["run", "--services", "http://example.com", "--", "true"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--services") && stderr.contains("redis://"),
        "{stderr}"
    );
}
