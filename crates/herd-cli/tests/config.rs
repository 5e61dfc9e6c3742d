//! Where settings come from: flags win over HERD_* variables, which win
//! over the --config file, which wins over the defaults.

mod common;
use common::*;

fn workers_started(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut h = start(args, env);
    let line = h.expect("starting ");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    h.wait_exit();
    line
}

#[test]
fn flags_then_environment_then_file_then_defaults() {
    let dir = TempDir::new("cfg");
    let cfg = dir.path().join("herd.toml");
    let p = program("server.js");
    std::fs::write(
        &cfg,
        format!(
            "workers = 3\nlisten = [\"127.0.0.1:0\"]\nsched = \"shared\"\ncommand = [\"node\", {p:?}]\n[env]\nGREETING = \"from the file\"\n"
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let l = workers_started(&["--config", c, "-w", "1"], &[("HERD_WORKERS", "2")]);
    assert!(l.contains("starting 1 worker:"), "{l}");
    let l = workers_started(&["--config", c], &[("HERD_WORKERS", "2")]);
    assert!(l.contains("starting 2 workers:"), "{l}");
    let l = workers_started(&["--config", c], &[]);
    assert!(
        l.contains("starting 3 workers:") && l.contains("policy shared"),
        "{l}"
    );
    // The file's command runs when none is given after --.
    assert!(l.contains("server.js"), "{l}");
    let l = workers_started(
        &["--config", c, "--sched", "reuseport"],
        &[("HERD_SCHED_POLICY", "shared")],
    );
    assert!(l.contains("policy reuseport"), "{l}");
    let l = workers_started(&["--config", c], &[("HERD_SCHED_POLICY", "reuseport")]);
    assert!(l.contains("policy reuseport"), "{l}");
}

/// TTIN and TTOU add and remove a worker.
#[test]
fn ttin_and_ttou_scale() {
    let p = program("server.js");
    let mut h = start(&["-w", "1", "-l", "127.0.0.1:0", "--", "node", &p], &[]);
    h.ready(1);
    h.signal(nix::sys::signal::Signal::SIGTTIN);
    h.ready(2);
    h.signal(nix::sys::signal::Signal::SIGTTOU);
    h.expect("SIGTTOU: scaling to 1 workers");
    h.expect("worker 2 exited");
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["wanted"], 1, "{s}");
    assert_eq!(s["workers"].as_array().unwrap().len(), 1, "{s}");
}
