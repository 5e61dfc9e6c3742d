//! The Redis protocol for foreign workers (issue 16, point 2): `herd run`
//! serves the cluster's cache and channels on the Unix socket named in
//! each worker's HERD_SERVICES_SOCKET, and a Node worker with ioredis or
//! node-redis (in RESP2, and in RESP3 after its HELLO 3) and a Python
//! worker with redis-py use it as they would use Redis: GET, SET
//! (NX, PX), DEL, EXISTS, KEYS, EXPIRE, TTL, and PUBLISH/SUBSCRIBE between
//! two workers (programs/services/). A garbage byte stream on the socket
//! closes that one connection; the workers keep working.
//!
//! The test reads what the workers wrote over the same socket, with a
//! minimal RESP client of its own (below).

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use std::time::Instant;

/// A blocking RESP client: inline commands out, one reply in.
struct Resp(BufReader<UnixStream>);

#[derive(Debug, PartialEq)]
enum Reply {
    Ok(String),
    Err(String),
    Int(i64),
    Bulk(Option<String>),
    Array(usize),
}

impl Resp {
    fn connect(path: &Path) -> Resp {
        let s = UnixStream::connect(path).expect("connect to the services socket");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Resp(BufReader::new(s))
    }

    fn ask(&mut self, cmd: &str) -> Reply {
        self.0
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .unwrap();
        self.read()
    }

    fn read(&mut self) -> Reply {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("a reply line");
        let line = line.trim_end();
        let (tag, rest) = line.split_at(1);
        match tag {
            "+" => Reply::Ok(rest.into()),
            "-" => Reply::Err(rest.into()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "*" => Reply::Array(rest.parse().unwrap()),
            "$" if rest == "-1" => Reply::Bulk(None),
            "$" => {
                let mut b = vec![0; rest.parse::<usize>().unwrap() + 2];
                self.0.read_exact(&mut b).unwrap();
                b.truncate(b.len() - 2);
                Reply::Bulk(Some(String::from_utf8(b).unwrap()))
            }
            _ => panic!("not a RESP reply: {line:?}"),
        }
    }

    fn get(&mut self, key: &str) -> Option<String> {
        match self.ask(&format!("GET {key}")) {
            Reply::Bulk(v) => v,
            other => panic!("GET {key}: {other:?}"),
        }
    }
}

/// The herd's services socket: `NAME.services` in its runtime directory,
/// or, with `--user`, `services-PID` in the directory its workers can
/// search (beside their NOTIFY_SOCKET).
fn socket_of(h: &Herd, user: bool) -> PathBuf {
    let path = if user {
        let uid = nix::unistd::geteuid();
        std::env::temp_dir()
            .join(format!("herd-notify-{uid}"))
            .join(format!("services-{}", h.pid))
    } else {
        h.dir.path().join("herd.services")
    };
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no services socket {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    path
}

/// Waits until `key` holds a value, failing early with a worker's `fail:ID`.
fn wait_for(c: &mut Resp, key: &str, h: &Herd) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = c.get(key) {
            return v;
        }
        for id in 1..=2 {
            if let Some(why) = c.get(&format!("fail:{id}")) {
                panic!("worker {id} failed: {why}\n{}", h.dump());
            }
        }
        assert!(Instant::now() < deadline, "{key} never set\n{}", h.dump());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn two_workers_talk(program: &[&str], env: &[(&str, &str)]) {
    two_workers_talk_as(None, program, env)
}

fn two_workers_talk_as(user: Option<&str>, program: &[&str], env: &[(&str, &str)]) {
    let mut args = vec!["-w", "2", "--ready", "delay:0s"];
    if let Some(u) = user {
        args.extend_from_slice(&["--user", u]);
    }
    args.push("--");
    args.extend_from_slice(program);
    let mut h = start(&args, env);
    h.ready(2);
    let path = socket_of(&h, user.is_some());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the services socket is one user's alone"
    );
    if let Some(u) = user {
        let want = nix::unistd::User::from_name(u)
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            want,
            "given to the workers' user"
        );
    }
    let mut c = Resp::connect(&path);
    for id in 1..=2 {
        assert_eq!(wait_for(&mut c, &format!("ok:{id}"), &h), "1");
    }
    assert_eq!(wait_for(&mut c, "heard:1", &h), "hello from 2");
    assert_eq!(wait_for(&mut c, "heard:2", &h), "hello from 1");

    // Garbage closes that connection only.
    let mut bad = UnixStream::connect(&path).unwrap();
    bad.set_read_timeout(Some(TIMEOUT)).unwrap();
    bad.write_all(b"*2\r\n$3\r\nGET\r\n$zz\r\n\x00\xff garbage")
        .unwrap();
    let mut answer = Vec::new();
    bad.read_to_end(&mut answer)
        .expect("the server closes the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("-ERR Protocol error"), "{answer:?}");
    // Everyone else goes on: this client, and both workers' heartbeats.
    assert_eq!(c.ask("PING"), Reply::Ok("PONG".into()));
    for id in 1..=2 {
        let before: u64 = c.get(&format!("beat:{id}")).unwrap().parse().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while c
            .get(&format!("beat:{id}"))
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= before
        {
            assert!(
                Instant::now() < deadline,
                "worker {id} stopped\n{}",
                h.dump()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    // An unknown command is an error that names it, not a disconnect.
    match c.ask("FLUSHALL") {
        Reply::Err(e) => assert!(e.contains("unknown command 'FLUSHALL'"), "{e}"),
        other => panic!("FLUSHALL: {other:?}"),
    }
    assert_eq!(c.ask("PING"), Reply::Ok("PONG".into()));
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs ioredis: run scripts/deps.sh")]
fn node_workers_use_ioredis_against_the_services_socket() {
    two_workers_talk(
        &["node", &program("services/worker.js")],
        &[(
            "NODE_PATH",
            option_env!("HERD_TEST_NODE_PATH").unwrap_or(""),
        )],
    );
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs redis-py: run scripts/deps.sh")]
fn python_workers_use_redis_py_against_the_services_socket() {
    two_workers_talk(
        &["python3", &program("services/worker.py")],
        &[(
            "PYTHONPATH",
            option_env!("HERD_TEST_PYTHONPATH").unwrap_or(""),
        )],
    );
}

#[test]
#[cfg_attr(
    not(all(herd_root, herd_test_deps)),
    ignore = "needs root (herd run --user) and scripts/deps.sh"
)]
fn workers_run_as_nobody_reach_the_services_socket() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "built as root (cfg herd_root) but run as another user: rebuild"
    );
    two_workers_talk_as(
        Some("nobody"),
        &["python3", &program("services/worker.py")],
        &[(
            "PYTHONPATH",
            option_env!("HERD_TEST_PYTHONPATH").unwrap_or(""),
        )],
    );
}

/// node-redis (the `redis` npm package, v5) in its default RESP2.
#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs node-redis: run scripts/deps.sh")]
fn node_workers_use_node_redis_with_resp2_against_the_services_socket() {
    two_workers_talk(
        &["node", &program("services/worker_node_redis.js")],
        &[
            (
                "NODE_PATH",
                option_env!("HERD_TEST_NODE_PATH").unwrap_or(""),
            ),
            ("HERD_TEST_RESP", "2"),
        ],
    );
}

/// node-redis with `RESP: 3`: it opens with HELLO 3, and its replies and
/// subscription messages come back in RESP3 (pushes).
#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs node-redis: run scripts/deps.sh")]
fn node_workers_use_node_redis_with_resp3_against_the_services_socket() {
    two_workers_talk(
        &["node", &program("services/worker_node_redis.js")],
        &[
            (
                "NODE_PATH",
                option_env!("HERD_TEST_NODE_PATH").unwrap_or(""),
            ),
            ("HERD_TEST_RESP", "3"),
        ],
    );
}
