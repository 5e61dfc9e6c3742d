//! Every herd of this user: `herd ctl list`, and the herd a `herd ctl`
//! command means when it names none.
//!
//! A herd is found by its name's lock file (`NAME.lock`, kept for the
//! herd's life and left behind after) and counts as running when its
//! control socket (`NAME.sock`) accepts a connection. The runtime
//! directory is private to the user, so what is found there is the user's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::ctl::{self, Listening, Request, Status};

/// At most this many names are looked at in the runtime directory.
pub const MAX_HERDS: usize = 1000;

/// How long one herd may take to answer `herd ctl list`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The names that have a lock file in `dir`, sorted; at most
/// [`MAX_HERDS`].
fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => bail!(
            "cannot read herd's runtime directory {}: {e}",
            dir.display()
        ),
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let name = file.strip_suffix(".lock")?;
            crate::name::valid(name).then(|| name.to_string())
        })
        .take(MAX_HERDS)
        .collect();
    out.sort();
    Ok(out)
}

/// The names of the herds running in `dir` (their control socket accepts
/// a connection), sorted.
pub fn running(dir: &Path) -> Result<Vec<String>> {
    Ok(names(dir)?
        .into_iter()
        .filter(|n| std::os::unix::net::UnixStream::connect(ctl::socket_path(dir, n)).is_ok())
        .collect())
}

/// One row of `herd ctl list` (and one object of its `--json`).
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    socket: PathBuf,
    /// None when the herd did not answer.
    pid: Option<u32>,
    program: Vec<String>,
    listening: Vec<Listening>,
    ready: usize,
    wanted: usize,
    uptime_secs: f64,
    reloading: bool,
    stopping: bool,
    /// Why the herd gave no status, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Row {
    fn new(name: String, socket: PathBuf, answer: Result<Status>) -> Row {
        match answer {
            Ok(s) => Row {
                name,
                socket,
                pid: Some(s.pid),
                program: s.program,
                listening: s.listening,
                ready: s.ready,
                wanted: s.wanted,
                uptime_secs: s.uptime_secs,
                reloading: s.reloading,
                stopping: s.stopping,
                error: None,
            },
            Err(e) => Row {
                name,
                socket,
                pid: None,
                program: Vec::new(),
                listening: Vec::new(),
                ready: 0,
                wanted: 0,
                uptime_secs: 0.0,
                reloading: false,
                stopping: false,
                error: Some(format!("{e:#}")),
            },
        }
    }
}

/// `herd ctl list`: returns the exit code (3 when no herd runs).
pub fn list(json: bool) -> Result<i32> {
    let dir = herd::foreign::runtime_dir()?;
    let rows: Vec<Row> = running(&dir)?
        .into_iter()
        .map(|name| {
            let socket = ctl::socket_path(&dir, &name);
            let answer = crate::client::ask(&socket, &Request::Status, Some(ANSWER_TIMEOUT))
                .and_then(|(reply, _)| match reply.status {
                    Some(s) if reply.ok => Ok(s),
                    _ => bail!("no status: {}", reply.message),
                });
            Row::new(name, socket, answer)
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    if rows.is_empty() {
        eprintln!(
            "herd: no herd is running (runtime directory {}); start one with herd run",
            dir.display()
        );
        return Ok(ctl::EXIT_NOT_RUNNING);
    }
    if !json {
        print!("{}", table(&rows));
    }
    Ok(0)
}

fn table(rows: &[Row]) -> String {
    let mut cells = vec![[
        "NAME".to_string(),
        "PID".into(),
        "READY".into(),
        "UPTIME".into(),
        "LISTENING".into(),
        "PROGRAM".into(),
    ]];
    for r in rows {
        let state = if r.stopping {
            " stopping"
        } else if r.reloading {
            " reloading"
        } else {
            ""
        };
        cells.push(match &r.error {
            Some(e) => [
                r.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("(not answering: {e})"),
            ],
            None => [
                r.name.clone(),
                r.pid.map_or("-".into(), |p| p.to_string()),
                format!("{}/{}{state}", r.ready, r.wanted),
                crate::client::human_duration(r.uptime_secs),
                if r.listening.is_empty() {
                    "-".into()
                } else {
                    r.listening
                        .iter()
                        .map(|l| l.address.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
                r.program.join(" "),
            ],
        });
    }
    crate::client::columns(cells)
}
