//! The README's "Run it in production" is what the tests run: its `herd
//! run` line (on loopback ports) serves the routes its Kubernetes probes
//! and Prometheus scrape use, its HAProxy backends are the ones
//! tests/haproxy.rs runs, its Prometheus configuration passes `promtool
//! check config` and its systemd unit `systemd-analyze verify`, with the
//! same herd options as the command line.

mod balancer;
mod common;

use balancer::{backend, Backend, Check};
use common::*;

use std::process::Command;

/// The README's "Run it in production" section.
fn section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    let start = readme
        .find("\n## Run it in production")
        .expect("README has a \"Run it in production\" section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The section's fenced blocks: (info string, text).
fn blocks() -> Vec<(String, String)> {
    let text = section();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            out.push((info.to_string(), body.join("\n") + "\n"));
        }
    }
    out
}

fn block(info: &str, containing: &str) -> String {
    blocks()
        .into_iter()
        .find(|(i, b)| i == info && b.contains(containing))
        .unwrap_or_else(|| panic!("no ```{info} block with {containing:?} in the README"))
        .1
}

/// The README's `herd run` command line, as words (after `herd run`).
fn command_line() -> Vec<String> {
    let sh = block("sh", "herd run");
    let words: Vec<String> = sh
        .replace("\\\n", " ")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(&words[..2], ["herd", "run"], "{sh}");
    words[2..].to_vec()
}

/// The herd options of a `herd run` line: what stands before `--`.
fn options(words: &[String]) -> Vec<String> {
    words.iter().take_while(|w| *w != "--").cloned().collect()
}

fn option(words: &[String], name: &str) -> String {
    let i = words
        .iter()
        .position(|w| w == name)
        .unwrap_or_else(|| panic!("no {name}"));
    words[i + 1].clone()
}

/// The `httpGet` path and port of a Kubernetes probe.
fn probe(yaml: &str, kind: &str) -> (String, String) {
    let mut lines = yaml.lines().skip_while(|l| !l.contains(kind));
    let get = lines
        .find(|l| l.contains("httpGet"))
        .unwrap_or_else(|| panic!("no httpGet for {kind}"));
    let field = |name: &str| {
        get.split(name)
            .nth(1)
            .and_then(|v| v.split([',', '}']).next())
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {get:?}"))
    };
    (field("path:"), field("port:"))
}

#[test]
fn the_herd_run_line_serves_what_the_probes_and_the_scrape_ask_for() {
    let words = command_line();
    let monitor = option(&words, "--monitor");
    let monitor_port = monitor.rsplit(':').next().unwrap().to_string();
    let dir = TempDir::new("production");
    let token_file = dir.path().join("web.token");
    std::fs::write(&token_file, "production-test-token\n").unwrap();
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/server.js");
    // Loopback ports instead of the README's; the rest as written.
    let args: Vec<String> = words
        .iter()
        .map(|w| match w.as_str() {
            ":8080" => "127.0.0.1:0".into(),
            w if w == monitor => "127.0.0.1:0".into(),
            "/etc/herd/web.token" => token_file.to_string_lossy().into_owned(),
            "examples/server.js" => server.into(),
            w => w.into(),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut h = start_in(dir, &args, &[]);
    h.name = option(&words, "--name");
    let app = h.address();
    h.expect("cluster ready:");
    let line = h.wait_said("monitor on http://");
    let base = format!(
        "http://{}",
        line.split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    );
    assert!(curl(&app, "/").starts_with("hello from worker"));

    let (code, body) = http("GET", &format!("{base}/ecv"), None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("status=AVAILABLE&ServeTraffic=true&"),
        "{body}"
    );
    // Kubernetes' probes, on the monitor's port.
    let pod = block("yaml", "livenessProbe");
    for (kind, want) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let (path, port) = probe(&pod, kind);
        assert_eq!(
            (path.as_str(), port.as_str()),
            (want, monitor_port.as_str()),
            "{kind}"
        );
        assert_eq!(
            http("GET", &format!("{base}{path}"), None).0,
            200,
            "{kind} {path}"
        );
    }
    assert!(
        pod.contains(&format!("\"0.0.0.0:{monitor_port}\"")),
        "the pod's monitor port: {pod}"
    );
    // Prometheus scrapes the monitor.
    let prom = block("yaml", "scrape_configs");
    assert!(
        prom.contains(&format!("\"{monitor}\"")),
        "a target is the monitor: {prom}"
    );
    let path = prom
        .lines()
        .find_map(|l| l.trim().strip_prefix("metrics_path:"))
        .unwrap()
        .trim();
    let (code, metrics) = http("GET", &format!("{base}{path}"), None);
    assert_eq!(code, 200);
    assert!(metrics.contains("herd_workers{"), "{metrics}");

    // Maintenance: markDown with the token file's token.
    let token = Some("production-test-token");
    assert_eq!(http("POST", &format!("{base}/ecv/markDown"), None).0, 401);
    assert_eq!(http("POST", &format!("{base}/ecv/markDown"), token).0, 200);
    assert_eq!(http("GET", &format!("{base}/readyz"), None).0, 503);
    assert!(http("GET", &format!("{base}/ecv"), None)
        .1
        .starts_with("status=DISABLED"));
    assert_eq!(http("POST", &format!("{base}/ecv/markUp"), token).0, 200);
    assert_eq!(http("GET", &format!("{base}/readyz"), None).0, 200);
    // The reload through health, as `systemctl reload` asks it.
    h.signal(nix::sys::signal::Signal::SIGHUP);
    h.expect("reload: marking the host down");
    h.expect("reload finished");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    h.expect("health says draining");
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
}

#[test]
fn the_haproxy_backends_are_the_ones_the_load_balancer_tests_run() {
    let servers = |check: fn(u16) -> Check, port| {
        [("web1", "10.0.0.11:8080"), ("web2", "10.0.0.12:8080")].map(|(name, addr)| Backend {
            name: name.into(),
            addr: addr.into(),
            check: check(port),
        })
    };
    let ecv = backend(&servers(|port| Check::Ecv { port }, 9090));
    let agent = backend(&servers(|port| Check::Agent { port }, 9091));
    assert_eq!(block("haproxy", "httpchk"), ecv);
    assert_eq!(block("haproxy", "agent-check"), agent);
    assert!(section().contains("--agent-check 10.0.0.11:9091"));
    // The monitor line's port is the one HAProxy checks.
    assert_eq!(option(&command_line(), "--monitor"), "10.0.0.11:9090");
}

#[test]
#[cfg_attr(
    not(herd_promtool),
    ignore = "needs promtool (Debian's prometheus package; scripts/test.sh installs it)"
)]
fn the_prometheus_configuration_passes_promtool() {
    let dir = TempDir::new("promtool");
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, block("yaml", "scrape_configs")).unwrap();
    let out = Command::new(option_env!("HERD_TEST_PROMTOOL").unwrap_or("promtool"))
        .args(["check", "config"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(
    not(herd_systemd_analyze),
    ignore = "needs systemd-analyze (Debian's systemd package; scripts/test.sh installs it)"
)]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = block("ini", "[Service]");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line}");
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let words: Vec<String> = exec.split_whitespace().map(String::from).collect();
    assert_eq!(&words[..2], ["/usr/local/bin/herd", "run"]);
    assert_eq!(
        options(&words[2..]),
        options(&command_line()),
        "the unit runs the README's herd run line"
    );
    // Verified with a herd that exists here.
    let dir = TempDir::new("systemd");
    let file = dir.path().join("web.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/herd", herd_bin())).unwrap();
    let out = Command::new(option_env!("HERD_TEST_SYSTEMD_ANALYZE").unwrap_or("systemd-analyze"))
        .arg("verify")
        .arg(&file)
        .output()
        .expect("run systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // It reports a bad key or value as a warning, and exits 0.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
