//! The recipes of docs/recipes.md, run with the real third-party servers
//! (the pinned packages scripts/deps.sh installs into .deps/): uvicorn,
//! gunicorn (default `--ready` and `--ready notify`), gunicorn with
//! UvicornWorker, Express, fastify and aiohttp, and the Rust (axum) and Go
//! (where `go` is installed, cfg `herd_go`) servers, each the exact command
//! and app file (tests/programs/recipes/) the page shows, under
//! `herd run -w 2`:
//!
//! - both workers answer (each answer's pid is a herd worker or, for
//!   gunicorn, a child of one; both herd workers are seen);
//! - two reloads under load (keep-alive clients and clients opening a new
//!   connection per request) fail no request of either kind: each recipe
//!   stops the way the page says, without closing an idle keep-alive
//!   connection while a client may be reusing it;
//! - SIGTERM to herd stops everything: herd exits 0 and no process of the
//!   server (workers, their children, every pid that answered) is left.
//!
//! The stock command line the page warns about (`uvicorn --fd 3`) is
//! measured by a `stock_` test, which prints how many requests it drops
//! (its idle keep-alive connections are closed at once on SIGTERM) and
//! checks the rest.

mod common;
mod recipe;
use common::*;
use recipe::{Load, Tree};

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn uvicorn_drops_nothing() {
    Recipe::python(&["asgi.py"]).check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn stock_uvicorn_reloads_and_stops_dropping_what_it_drops() {
    Recipe::python(&["-m", "uvicorn", "--fd", "3", "asgi:app"]).check(Expect::Measure);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn gunicorn_with_ready_notify_drops_nothing() {
    Recipe::python(&["-m", "gunicorn", "wsgi:app"])
        .herd_args(&["--ready", "notify"])
        .check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn gunicorn_with_the_default_ready_becomes_ready_and_drops_nothing() {
    Recipe::python(&["-m", "gunicorn", "wsgi:app"]).check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn gunicorn_with_uvicorn_worker_drops_nothing() {
    Recipe::python(&["-m", "gunicorn", "-k", "uvicorn_worker.Worker", "asgi:app"])
        .herd_args(&["--ready", "notify"])
        .check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn aiohttp_drops_nothing() {
    Recipe::python(&["aiohttp_app.py"]).check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn express_drops_nothing() {
    Recipe::node("express.js").check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs scripts/deps.sh")]
fn fastify_drops_nothing() {
    Recipe::node("fastify.js").check(Expect::NoDrop);
}

#[test]
#[cfg_attr(not(herd_go), ignore = "needs go")]
fn go_net_http_drops_nothing() {
    let dir = TempDir::new("go");
    let server = dir.path().join("server");
    let out = std::process::Command::new(option_env!("HERD_TEST_GO").unwrap_or("go"))
        .args(["build", "-o"])
        .arg(&server)
        .arg("main.go")
        .current_dir(recipes_dir())
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build main.go: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Recipe {
        program: vec![server.to_string_lossy().into_owned()],
        shown: "./server".into(),
        herd_args: Vec::new(),
    }
    .check(Expect::NoDrop);
}

/// The Rust recipe (programs/recipes/axum.rs, herd-tests' `recipe_axum`
/// binary), built by cargo into the target directory this test runs from
/// (at once when it is up to date, as after a workspace build).
#[test]
fn rust_axum_drops_nothing() {
    let herd = Path::new(herd_bin());
    let out_dir = herd.parent().unwrap();
    let profile = match out_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    let mut build = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "herd-tests",
            "--bin",
            "recipe_axum",
            "--profile",
        ])
        .arg(&profile)
        .arg("--target-dir")
        .arg(out_dir.parent().unwrap())
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
        .spawn()
        .expect("run cargo build");
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    let status = loop {
        if let Some(s) = build.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = build.kill();
            panic!("cargo build -p herd-tests --bin recipe_axum took over 10 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "cargo build -p herd-tests --bin recipe_axum failed"
    );
    Recipe {
        program: vec![out_dir.join("recipe_axum").to_string_lossy().into_owned()],
        shown: "target/release/recipe_axum".into(),
        herd_args: Vec::new(),
    }
    .check(Expect::NoDrop);
}

/// docs/recipes.md shows every app file verbatim, and every command line
/// these tests run (checked by each test) is on it.
#[test]
fn the_page_shows_every_app_file_verbatim() {
    let page = recipes_page();
    let mut files: Vec<_> = std::fs::read_dir(recipes_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            page.contains(&format!("{name}:\n\n```")) && page.contains(&text),
            "docs/recipes.md does not show {name} as it is (run scripts/recipes-doc.sh)"
        );
    }
}

fn recipes_page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes.md"))
        .unwrap()
}

/// What a recipe must show under reloads.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// No failed request, keep-alive or not.
    NoDrop,
    /// Failures only counted and printed (the stock command lines
    /// docs/recipes.md warns about); the rest is checked as for `NoDrop`.
    Measure,
}

/// One recipe: `herd run -w 2 --chdir tests/programs/recipes [ARGS] --
/// PROGRAM...`, with the pinned packages on PYTHONPATH / NODE_PATH.
struct Recipe {
    program: Vec<String>,
    /// The program as docs/recipes.md shows it (`gunicorn` for
    /// `python3 -m gunicorn`).
    shown: String,
    herd_args: Vec<String>,
}

fn recipes_dir() -> String {
    program("recipes")
}

impl Recipe {
    fn python(args: &[&str]) -> Recipe {
        let mut program = vec!["python3".to_string()];
        program.extend(args.iter().map(|a| a.to_string()));
        let shown = match args {
            ["-m", rest @ ..] => rest.join(" "),
            _ => format!("python3 {}", args.join(" ")),
        };
        Recipe {
            program,
            shown,
            herd_args: Vec::new(),
        }
    }

    fn node(file: &str) -> Recipe {
        Recipe {
            program: vec!["node".into(), file.into()],
            shown: format!("node {file}"),
            herd_args: Vec::new(),
        }
    }

    fn herd_args(mut self, args: &[&str]) -> Recipe {
        self.herd_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn start(&self) -> Tree {
        let dir = recipes_dir();
        let mut args: Vec<&str> = vec![
            "-w",
            "2",
            "--grace",
            "10s",
            "--chdir",
            &dir,
            "-l",
            "127.0.0.1:0",
        ];
        args.extend(self.herd_args.iter().map(String::as_str));
        args.push("--");
        args.extend(self.program.iter().map(String::as_str));
        Tree::new(start(
            &args,
            &[
                ("PYTHONPATH", env!("HERD_TEST_PYTHONPATH")),
                ("NODE_PATH", env!("HERD_TEST_NODE_PATH")),
            ],
        ))
    }

    /// The command line as docs/recipes.md shows it.
    fn command(&self) -> String {
        let mut c = "herd run -w 2 -l :8000 ".to_string();
        for a in &self.herd_args {
            c += a;
            c += " ";
        }
        c + "-- " + &self.shown
    }

    fn check(&self, expect: Expect) {
        let command = self.command();
        assert!(
            recipes_page().contains(&format!("{command}\n")),
            "docs/recipes.md does not show `{command}`"
        );
        let mut t = self.start();
        let addr = t.herd.address();
        t.herd.ready(2);
        let first = t.herd.worker_pids();
        assert_eq!(first.len(), 2, "{}", t.herd.dump());
        both_workers_answer(&mut t, &addr, &first);

        let load = Load::start(&addr);
        for round in 1..=2 {
            let out = t.herd.ctl(&["reload"]);
            assert!(
                out.status.success(),
                "reload {round}: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                t.herd.dump()
            );
            t.snapshot();
        }
        for pid in &first {
            wait_until("the first workers exit", || !alive(*pid));
        }
        let r = load.finish();
        for pid in &r.pids {
            if t.worker_of(*pid).is_some() {
                t.record(*pid);
            }
        }
        println!(
            "{}: {} requests over two reloads; failed: {} of {} keep-alive, {} of {} new-connection{}",
            self.program.join(" "),
            r.keep_alive.0 + r.new_conn.0,
            r.keep_alive.1.len(),
            r.keep_alive.0 + r.keep_alive.1.len() as u64,
            r.new_conn.1.len(),
            r.new_conn.0 + r.new_conn.1.len() as u64,
            match r.keep_alive.1.first() {
                Some(e) => format!(" (first keep-alive failure: {e})"),
                None => String::new(),
            }
        );
        if expect == Expect::NoDrop {
            assert!(
                r.new_conn.1.is_empty(),
                "new connections failed: {:?}\n{}",
                &r.new_conn.1[..r.new_conn.1.len().min(10)],
                t.herd.dump()
            );
            assert!(
                r.keep_alive.1.is_empty(),
                "keep-alive requests failed: {:?}\n{}",
                &r.keep_alive.1[..r.keep_alive.1.len().min(10)],
                t.herd.dump()
            );
        }
        assert!(
            r.keep_alive.0 > 50 && r.new_conn.0 > 50,
            "too few requests served: {} keep-alive, {} new-connection",
            r.keep_alive.0,
            r.new_conn.0
        );
        // Old and new workers answered (each answering process is a
        // worker or a gunicorn child: three generations of two).
        assert!(r.pids.len() >= 4, "answers came from {:?}", r.pids);
        t.stop();
    }
}

/// Requests on new connections until both first workers (or their
/// children) have answered.
fn both_workers_answer(t: &mut Tree, addr: &str, first: &[u32]) {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} of workers {first:?} answered"
        );
        let pid: u32 = Client::new(addr, false)
            .get("/pid")
            .unwrap_or_else(|e| panic!("GET /pid: {e}\n{}", t.herd.dump()))
            .trim()
            .parse()
            .expect("a pid");
        let worker = t
            .worker_of(pid)
            .unwrap_or_else(|| panic!("pid {pid} answered: not below a herd worker"));
        assert!(first.contains(&worker), "{worker} is not a first worker");
        t.record(pid);
        seen.insert(worker);
    }
    t.snapshot();
}
