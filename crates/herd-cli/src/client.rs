//! `herd ctl`'s client end: which herd it means, one request and its
//! answer, and how the answer is shown.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{CtlAction, CtlArgs};
use crate::ctl::{socket_path, Reply, Request, EXIT_NOT_RUNNING};

/// The longest answer line herd reads from a control socket.
const MAX_ANSWER: u64 = 64 << 20;
pub fn human_duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1}G", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1}M", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0}K", b / 1024.0)
    }
}

pub use crate::table::table;

/// Rows of cells as aligned columns, the last one unpadded.
pub fn columns<const N: usize>(rows: Vec<[String; N]>) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == N - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Sends `req` to the herd at `path` and reads its answer line (with
/// `timeout` on each read, if given); returns the answer and the
/// connection (which stays open after `stop` until herd exits).
pub fn ask(
    path: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Reply, std::io::BufReader<std::os::unix::net::UnixStream>)> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    stream.set_read_timeout(timeout)?;
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    (&mut reader).take(MAX_ANSWER).read_line(&mut line)?;
    if line.trim().is_empty() {
        anyhow::bail!(
            "the herd at {} closed the connection without answering",
            path.display()
        );
    }
    let reply: Reply = serde_json::from_str(&line).context("unreadable answer from herd")?;
    Ok((reply, reader))
}

/// Which herd a command means: `--socket`, else `--name` (or HERD_NAME),
/// else the only one running. `Err(code)` when there is none to talk to
/// (the message is printed).
fn target(args: &CtlArgs) -> Result<std::result::Result<(String, PathBuf), i32>> {
    if let Some(p) = &args.socket {
        let name = args.name.clone().unwrap_or_else(|| p.display().to_string());
        return Ok(Ok((name, p.clone())));
    }
    let dir = herd::foreign::runtime_dir()?;
    if let Some(n) = &args.name {
        crate::name::check(n).map_err(|e| crate::Usage(format!("{e:#}")))?;
        return Ok(Ok((n.clone(), socket_path(&dir, n))));
    }
    let running = crate::list::running(&dir)?;
    match running.as_slice() {
        [] => {
            eprintln!(
                "herd: no herd is running (runtime directory {}); start one with herd run",
                dir.display()
            );
            Ok(Err(EXIT_NOT_RUNNING))
        }
        [one] => Ok(Ok((one.clone(), socket_path(&dir, one)))),
        many => Err(anyhow::Error::new(crate::Usage(format!(
            "{} herds are running ({}): say which with --name NAME (see herd ctl list)",
            many.len(),
            many.join(", ")
        )))),
    }
}

/// `herd ctl ...`: returns the exit code.
pub fn client(args: CtlArgs) -> Result<i32> {
    if let CtlAction::List { json } = args.action {
        return crate::list::list(json);
    }
    // 0 goes to herd, which says how to stop instead.
    if let CtlAction::Scale { workers, .. } = &args.action {
        let (_, max) = crate::limits::WORKERS;
        if let Err(e) = crate::limits::number("workers", *workers, (0, max)) {
            return Err(anyhow::Error::new(crate::Usage(format!(
                "herd ctl scale: {e}"
            ))));
        }
    }
    let (name, path) = match target(&args)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    if let Err(e) = std::os::unix::net::UnixStream::connect(&path) {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no control socket".to_string(),
            std::io::ErrorKind::ConnectionRefused => "stale control socket".to_string(),
            _ => e.to_string(),
        };
        eprintln!(
            "herd: no herd named {name:?} is running ({why} at {}); start one with herd run, or give --name/--socket (see herd ctl list)",
            path.display()
        );
        return Ok(EXIT_NOT_RUNNING);
    }
    let req = match &args.action {
        CtlAction::Status { .. } => Request::Status,
        CtlAction::Reload => Request::Reload,
        CtlAction::Scale { workers, force } => Request::Scale {
            workers: *workers,
            force: *force,
        },
        CtlAction::Stop => Request::Stop,
        CtlAction::Drain { worker } => Request::Drain { worker: *worker },
        CtlAction::Undrain { worker } => Request::Undrain { worker: *worker },
        CtlAction::Replace { worker } => Request::Replace { worker: *worker },
        CtlAction::Profile { worker, seconds } => Request::Profile {
            worker: *worker,
            seconds: *seconds,
        },
        CtlAction::Dump { worker } => Request::Dump { worker: *worker },
        CtlAction::List { .. } => unreachable!("handled above"),
    };
    let (reply, mut reader) = match ask(&path, &req, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herd: {e:#}");
            return Ok(1);
        }
    };
    if !reply.ok {
        eprintln!("herd: {}", reply.message);
        return Ok(1);
    }
    match (&args.action, &reply.status) {
        (CtlAction::Status { json: true }, Some(s)) => {
            // The /status document, with this herd's own fields.
            let mut doc = reply.document.clone().unwrap_or(serde_json::Value::Null);
            if let Some(m) = doc.as_object_mut() {
                m.insert("name".into(), serde_json::json!(s.name));
                m.insert("ready_rule".into(), serde_json::json!(s.ready_rule));
                m.insert("reloading".into(), serde_json::json!(s.reloading));
                m.insert("listening".into(), serde_json::to_value(&s.listening)?);
                m.insert("program".into(), serde_json::json!(s.program));
            }
            println!("{}", serde_json::to_string_pretty(&doc)?)
        }
        (CtlAction::Status { .. }, Some(s)) => print!("{}", table(s)),
        (CtlAction::Stop, _) => {
            println!("{}", reply.message);
            // herd closes the connection when it exits.
            let mut rest = String::new();
            while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
                rest.clear();
            }
            println!("stopped");
        }
        // The SVG or the backtraces as they are: `> flame.svg`.
        (CtlAction::Profile { .. } | CtlAction::Dump { .. }, _) => print!("{}", reply.message),
        _ => println!("{}", reply.message),
    }
    Ok(0)
}
