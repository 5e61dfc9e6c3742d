//! Behind a real load balancer: HAProxy (Debian's package) in front of two
//! herd hosts on loopback ports, each `herd run -w 2 --monitor ...
//! --drain-delay 2s --reload-via-health -- node examples/server.js`, with
//! `option httpchk GET /ecv` on each host's monitor port (or herd's agent
//! check). Under wrk through HAProxy (keep-alive), marking a host down, a
//! rolling reload of a host and SIGTERM to a host each fail no request: the
//! host's health goes down first, HAProxy stops sending, and only then do
//! its workers leave. Each example server names its host in its answers
//! (`hello from worker 3 on a`), so the answers show where traffic went.

mod balancer;
mod common;

use balancer::*;
use common::*;

use std::process::Command;
use std::time::Instant;

const TOKEN: &str = "haproxy-test-token";
/// Longer than HAProxy takes to see a host down (fall 2 × inter 100ms).
const DRAIN_DELAY: &str = "2s";

/// One herd host: its cluster, the address it serves and its monitor.
struct Host {
    herd: Herd,
    tag: &'static str,
    addr: String,
    monitor: String,
    agent: Option<String>,
}

fn example_server() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/server.js")
        .to_string_lossy()
        .into_owned()
}

/// Starts a host; [`Host::wait`] then reads its addresses.
fn host(tag: &'static str, agent: bool) -> Host {
    let dir = TempDir::new("lb");
    let token = dir.path().join("monitor.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token = token.to_string_lossy().into_owned();
    let name = format!("lb-{tag}-{}", std::process::id());
    let server = example_server();
    let mut args = vec![
        "--name",
        &name,
        "-w",
        "2",
        "-l",
        "127.0.0.1:0",
        "--monitor",
        "127.0.0.1:0",
        "--monitor-token-file",
        &token,
        "--drain-delay",
        DRAIN_DELAY,
        "--reload-via-health",
    ];
    if agent {
        args.extend(["--agent-check", "127.0.0.1:0"]);
    }
    args.extend(["--", "node", &server]);
    let mut herd = start_in(dir, &args, &[("INSTANCE", tag)]);
    herd.name = name;
    Host {
        herd,
        tag,
        addr: String::new(),
        monitor: String::new(),
        agent: agent.then(String::new),
    }
}

impl Host {
    /// Waits until its workers are ready, reading its addresses.
    fn wait(&mut self) {
        self.addr = self.herd.address();
        let after = |needle: &str, line: String| {
            line.split(needle)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        self.monitor = after(
            "monitor on http://",
            self.herd.wait_said("monitor on http://"),
        );
        if self.agent.is_some() {
            self.agent = Some(after(
                "agent check on ",
                self.herd.wait_said("agent check on "),
            ));
        }
        self.herd.ready(2);
    }

    fn port(addr: &str) -> u16 {
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn backend(&self) -> Backend {
        let check = match &self.agent {
            Some(a) => Check::Agent {
                port: Host::port(a),
            },
            None => Check::Ecv {
                port: Host::port(&self.monitor),
            },
        };
        Backend {
            name: self.tag.into(),
            addr: self.addr.clone(),
            check,
        }
    }

    /// `POST /ecv/markDown` or `/ecv/markUp` with the token.
    fn mark(&self, route: &str) {
        let (code, body) = http(
            "POST",
            &format!("http://{}/ecv/{route}", self.monitor),
            Some(TOKEN),
        );
        assert_eq!(code, 200, "{route}: {body}");
    }

    fn ecv(&self) -> (u16, String) {
        http("GET", &format!("http://{}/ecv", self.monitor), None)
    }
}

/// Hosts a and b, ready, behind HAProxy, which sees both up.
fn two_hosts(agent: bool) -> (Host, Host, Haproxy) {
    let (mut a, mut b) = (host("a", agent), host("b", agent));
    a.wait();
    b.wait();
    let lb = Haproxy::start(&[a.backend(), b.backend()]);
    lb.wait_status("a", "UP");
    lb.wait_status("b", "UP");
    (a, b, lb)
}

fn assert_no_failure(what: &str, r: &Report, lb: &Haproxy) {
    assert_eq!(
        r.failed(),
        0,
        "{what}: {r}\n{}\nhaproxy:\n{}",
        r.text,
        lb.log()
    );
}

/// Asserts that the host's state changed while wrk was still measuring.
fn assert_within_run(wrk: &mut Wrk, what: &str) {
    assert!(wrk.running(), "{what} only after the measurement ended");
}

/// Marks a host down, through health (`check` on ECV) or the agent
/// check, and back up; returns (answers during the change, after it).
fn mark_down_and_up(agent: bool, out_of_rotation: &str) {
    let (a, _b, lb) = two_hosts(agent);
    let mut wrk = Wrk::start(&lb.url(), 3);
    lb.wait_traffic(&["a", "b"], 200);
    let t0 = Instant::now();
    a.mark("markDown");
    let (code, body) = a.ecv();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("status=DISABLED&ServeTraffic=false"),
        "{body}"
    );
    lb.wait_status("a", out_of_rotation);
    let took = t0.elapsed();
    assert_within_run(&mut wrk, "HAProxy took a out of the rotation");
    let during = wrk.finish();
    assert_no_failure("while a was marked down", &during, &lb);
    assert!(
        during.from(" on a") > 0 && during.from(" on b") > 0,
        "{during:?}"
    );

    // Every request goes to b now, while a's workers still serve.
    let after = Wrk::start(&lb.url(), 2).finish();
    assert_no_failure("with a marked down", &after, &lb);
    assert_eq!(after.from(" on a"), 0, "a still got traffic: {after:?}");
    assert!(after.from(" on b") > 0, "{after:?}");
    assert!(
        curl(&a.addr, "/").ends_with(" on a\n"),
        "a's workers keep serving"
    );

    a.mark("markUp");
    lb.wait_status("a", "UP");
    let mut through = Client::new(&lb.addr(), false);
    let answers: Vec<String> = (0..4).map(|_| through.get("/").unwrap()).collect();
    assert!(
        answers.iter().any(|s| s.ends_with(" on a\n"))
            && answers.iter().any(|s| s.ends_with(" on b\n")),
        "after markUp both hosts serve: {answers:?}"
    );
    println!(
        "markDown ({}): HAProxy took a out {took:.2?} after markDown; during: {during}, a {} b {}; after: {after}, all on b",
        if agent { "agent check" } else { "httpchk /ecv" },
        during.from(" on a"),
        during.from(" on b"),
    );
}

#[test]
#[cfg_attr(
    not(herd_haproxy),
    ignore = "needs haproxy and wrk (Debian's packages; scripts/test.sh installs them)"
)]
fn mark_down_moves_all_traffic_to_the_other_host_without_a_failed_request() {
    mark_down_and_up(false, "DOWN");
}

#[test]
#[cfg_attr(
    not(herd_haproxy),
    ignore = "needs haproxy and wrk (Debian's packages; scripts/test.sh installs them)"
)]
fn agent_check_drains_a_marked_down_host_without_a_failed_request() {
    mark_down_and_up(true, "DRAIN (agent)");
}

#[test]
#[cfg_attr(
    not(herd_haproxy),
    ignore = "needs haproxy and wrk (Debian's packages; scripts/test.sh installs them)"
)]
fn rolling_reload_through_health_fails_no_request() {
    let (a, _b, lb) = two_hosts(false);
    let mut wrk = Wrk::start(&lb.url(), 7);
    lb.wait_traffic(&["a", "b"], 200);
    let t0 = Instant::now();
    let reload = {
        let mut ctl = Command::new(herd_bin());
        ctl.args(["ctl", "reload"])
            .env("HERD_RUNTIME_DIR", a.herd.dir.path())
            .env("HERD_NAME", &a.herd.name);
        std::thread::spawn(move || ctl.output().expect("run herd ctl reload"))
    };
    lb.wait_status("a", "DOWN");
    let down = t0.elapsed();
    assert!(
        !a.herd.said("reload: replacing"),
        "HAProxy saw a down only after herd began replacing its workers:\n{}",
        a.herd.dump()
    );
    let out = reload.join().unwrap();
    assert!(
        out.status.success(),
        "herd ctl reload: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.herd.dump()
    );
    lb.wait_status("a", "UP");
    let up = t0.elapsed();
    assert_within_run(&mut wrk, "a came back after the reload");
    let r = wrk.finish();
    assert_no_failure("through a rolling reload of a", &r, &lb);
    let (old, new) = (
        r.from("worker 1 on a") + r.from("worker 2 on a"),
        r.from("worker 3 on a") + r.from("worker 4 on a"),
    );
    assert!(
        old > 0 && new > 0,
        "a's old and new workers both served: {r:?}"
    );
    println!(
        "reload: a down in HAProxy {down:.2?} after the reload was asked, back up at {up:.2?} ({}); {r}: a old workers {old}, a new workers {new}, b {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        r.from(" on b")
    );
}

#[test]
#[cfg_attr(
    not(herd_haproxy),
    ignore = "needs haproxy and wrk (Debian's packages; scripts/test.sh installs them)"
)]
fn sigterm_to_a_host_fails_no_request() {
    let (_a, mut b, lb) = two_hosts(false);
    let mut wrk = Wrk::start(&lb.url(), 7);
    lb.wait_traffic(&["a", "b"], 200);
    let t0 = Instant::now();
    b.herd.signal(nix::sys::signal::Signal::SIGTERM);
    lb.wait_status("b", "DOWN");
    let down = t0.elapsed();
    assert!(
        !b.herd.said("disconnecting all workers"),
        "HAProxy saw b down only after its workers were asked to leave:\n{}",
        b.herd.dump()
    );
    assert_eq!(b.herd.wait_exit(), 0, "{}", b.herd.dump());
    let stopped = t0.elapsed();
    b.herd.assert_no_workers_left();
    assert_within_run(&mut wrk, "b stopped");
    let r = wrk.finish();
    assert_no_failure("through SIGTERM to b", &r, &lb);
    assert!(r.from(" on a") > 0 && r.from(" on b") > 0, "{r:?}");
    println!(
        "SIGTERM: b down in HAProxy {down:.2?} after the signal, herd b exited at {stopped:.2?}; {r}: a {} b {}",
        r.from(" on a"),
        r.from(" on b")
    );
}
