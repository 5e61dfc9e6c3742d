//! Profiling from outside: `perf record -g` of a worker's process tree,
//! then `perf script`, folded and drawn by `inferno` (feature `perf`).
//! Every run of perf is bounded in time and killed with its handle.

use std::time::Duration;

use crate::Error;

/// Samples per second.
#[cfg_attr(not(feature = "perf"), allow(dead_code))]
const FREQUENCY: u32 = 99;

/// The most `perf script` text read (the rest is not drawn).
#[cfg_attr(not(feature = "perf"), allow(dead_code))]
const MAX_SCRIPT: u64 = 256 << 20;

#[cfg(not(feature = "perf"))]
pub(super) async fn profile(_pids: &[u32], _length: Duration) -> Result<String, Error> {
    Err(Error::NotAvailable(
        "this program was built without herd's `perf` feature, which profiles a worker from outside"
            .into(),
    ))
}

#[cfg(feature = "perf")]
pub(super) async fn profile(pids: &[u32], length: Duration) -> Result<String, Error> {
    use tokio::io::AsyncReadExt;
    use tokio::process::Command;

    let file = tempfile_path();
    let _cleanup = Remove(file.clone());
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let record = Command::new("perf")
        .args([
            "record",
            "-q",
            "-g",
            "-F",
            &FREQUENCY.to_string(),
            "-p",
            &list,
            "-o",
        ])
        .arg(&file)
        .arg("--")
        .args(["sleep", &length.as_secs().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(length + Duration::from_secs(20), record).await {
        Err(_) => {
            return Err(Error::NotAvailable(
                "perf record did not finish in time".into(),
            ))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotAvailable(
                "perf is not installed (Debian: apt-get install linux-perf)".into(),
            ))
        }
        Ok(Err(e)) => return Err(Error::NotAvailable(format!("cannot run perf: {e}"))),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() || !file.exists() {
        return Err(Error::NotAvailable(format!(
            "perf record failed ({}): {}{}",
            out.status,
            last_lines(&out.stderr),
            paranoid_hint()
        )));
    }
    let mut script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::NotAvailable(format!("cannot run perf script: {e}")))?;
    let mut text = Vec::new();
    let mut stdout = script.stdout.take().expect("piped").take(MAX_SCRIPT);
    let read = stdout.read_to_end(&mut text);
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Error::NotAvailable(format!("perf script: {e}"))),
        Err(_) => {
            return Err(Error::NotAvailable(
                "perf script did not finish in time".into(),
            ))
        }
    }
    let _ = script.kill().await;
    tokio::task::spawn_blocking(move || draw(&text))
        .await
        .map_err(|e| Error::NotAvailable(format!("cannot draw the flamegraph: {e}")))?
}

/// `perf script` text to a flamegraph SVG.
#[cfg(feature = "perf")]
fn draw(script: &[u8]) -> Result<String, Error> {
    use inferno::collapse::Collapse;
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::default()
        .collapse(script, &mut folded)
        .map_err(|e| Error::NotAvailable(format!("cannot fold perf's stacks: {e}")))?;
    if folded.is_empty() {
        return Err(Error::NotAvailable(
            "perf recorded no samples: the worker used no CPU meanwhile (profile it under load)"
                .into(),
        ));
    }
    let folded = String::from_utf8_lossy(&folded);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "herd worker (perf)".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut svg)
        .map_err(|e| Error::NotAvailable(format!("cannot draw the flamegraph: {e}")))?;
    if svg.len() > super::MAX_SVG {
        return Err(Error::NotAvailable(format!(
            "the flamegraph is {} bytes, over the {}-byte bound: profile for fewer seconds",
            svg.len(),
            super::MAX_SVG
        )));
    }
    String::from_utf8(svg).map_err(|e| Error::NotAvailable(format!("flamegraph not UTF-8: {e}")))
}

#[cfg(feature = "perf")]
fn tempfile_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "herd-perf-{}-{}.data",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes perf's data file (and its `.old`) when dropped.
#[cfg(feature = "perf")]
struct Remove(std::path::PathBuf);

#[cfg(feature = "perf")]
impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("data.old"));
    }
}

/// The last lines of a tool's error output, on one line.
#[cfg_attr(not(feature = "perf"), allow(dead_code))]
pub(super) fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    let mut s = tail.join(" / ");
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// What kernel.perf_event_paranoid allows, when it may be why.
#[cfg(feature = "perf")]
fn paranoid_hint() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid") {
        Ok(v) if v.trim().parse::<i32>().is_ok_and(|n| n > 1) => format!(
            " (kernel.perf_event_paranoid is {}: run herd as root, give it CAP_PERFMON, or lower it)",
            v.trim()
        ),
        _ => String::new(),
    }
}
