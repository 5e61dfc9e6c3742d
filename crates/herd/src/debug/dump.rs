//! Every thread's backtrace: `gdb -batch` on each process of a worker's
//! tree, each bounded by [`DUMP_TIMEOUT`](super::DUMP_TIMEOUT) (a hung gdb
//! is killed) and the whole by [`MAX_DUMP`](super::MAX_DUMP) bytes.

use std::fmt::Write as _;

use tokio::process::Command;

use super::{DUMP_TIMEOUT, MAX_DUMP};
use crate::Error;

pub(super) async fn dump(id: u32, pids: &[u32]) -> Result<String, Error> {
    let mut out = String::new();
    for (i, pid) in pids.iter().enumerate() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let _ = writeln!(
            out,
            "== worker {id}: process {pid} ({}){} ==",
            comm.trim(),
            if i == 0 { "" } else { ", below the worker" }
        );
        // gdb that attached while the process was busy changing may read
        // no frame at all: once more, then what it said.
        let began = std::time::Instant::now();
        let mut read = backtraces(*pid).await;
        let quick = began.elapsed() < DUMP_TIMEOUT / 4;
        if quick && read.as_ref().is_ok_and(|t| !t.contains("\n#0 ")) {
            read = backtraces(*pid).await;
        }
        match read {
            Ok(text) => out.push_str(&text),
            // The worker's own process: nothing to show without it.
            Err(e) if i == 0 => return Err(e),
            Err(e) => {
                let _ = writeln!(out, "({e})");
            }
        }
        out.push('\n');
        if out.len() > MAX_DUMP {
            break;
        }
    }
    if out.len() > MAX_DUMP {
        let mut cut = MAX_DUMP;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        let _ = writeln!(out, "\n... cut at {MAX_DUMP} bytes");
    }
    out.push_str(
        "tokio task dump: not available (it needs a runtime built with --cfg tokio_unstable and \
         the taskdump feature)\n",
    );
    Ok(out)
}

/// One process's threads, from gdb's `thread apply all bt`.
async fn backtraces(pid: u32) -> Result<String, Error> {
    let run = Command::new("gdb")
        .args(["-nx", "-batch"])
        // Never ask a debuginfod server (no network wait), load no
        // scripts: only the process's own symbols.
        .args(["-iex", "set debuginfod enabled off"])
        .args(["-iex", "set auto-load off"])
        .args(["-p", &pid.to_string()])
        .args(["-ex", "set pagination off"])
        .args(["-ex", "set print thread-events off"])
        .args(["-ex", "thread apply all bt"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(DUMP_TIMEOUT, run).await {
        Err(_) => {
            return Err(Error::NotAvailable(format!(
                "gdb did not finish within {}s on process {pid}; it was killed",
                DUMP_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotAvailable(
                "gdb is not installed (Debian: apt-get install gdb)".into(),
            ))
        }
        Ok(Err(e)) => return Err(Error::NotAvailable(format!("cannot run gdb: {e}"))),
        Ok(Ok(out)) => out,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // gdb's own chatter ("[New LWP ...]", symbol loading) is dropped: the
    // threads start at "Thread N".
    let threads: String = match text.find("\nThread ") {
        Some(at) => text[at + 1..].to_string(),
        None if text.starts_with("Thread ") => text.into_owned(),
        None => {
            return Err(Error::NotAvailable(format!(
                "gdb could not read process {pid}: {}{}",
                super::perf::last_lines(&out.stderr),
                " (attaching needs the same user and ptrace permission: root, CAP_SYS_PTRACE, \
                 or kernel.yama.ptrace_scope 0)"
            )))
        }
    };
    if !threads.contains("\n#0 ") {
        let said = super::perf::last_lines(&out.stderr);
        if !said.is_empty() {
            return Ok(format!("{threads}(gdb read no frame: {said})\n"));
        }
    }
    // "[Inferior 1 (process N) detached]" and the like, at the end.
    Ok(threads
        .lines()
        .filter(|l| !l.starts_with("[Inferior "))
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        }))
}
