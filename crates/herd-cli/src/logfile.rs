//! `--log-file`: herd's lines and the workers' output in files, written by
//! one thread so that the supervisor never waits for a disk.
//!
//! `--log-file PATH` puts everything in PATH (combined). A PATH containing
//! `{worker}` is per worker: worker N's output goes to PATH with `{worker}`
//! replaced by N, herd's own lines to PATH with `{worker}` replaced by
//! `herd`. Files are opened in append mode and written one whole line per
//! `write`. SIGUSR1 reopens them (logrotate's `create` mode: rename the
//! file, signal, the next line lands in a new file at PATH); a file that
//! cannot be reopened keeps its old descriptor, with a warning.
//! `--log-max-size SIZE` rotates a file before a line would make it
//! larger: PATH becomes PATH.1, PATH.1 becomes PATH.2 ... up to
//! `--log-keep N` (default 5), the oldest removed.
//!
//! Lines are handed to the writer through a bounded queue: when it is full
//! (a stalled disk), lines are dropped and counted, and the count is
//! written once the queue drains, rather than herd blocking.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// What `--log-file`, `--log-max-size` and `--log-keep` ask for.
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// The path, possibly with `{worker}`.
    pub path: String,
    /// Rotate beyond this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept.
    pub keep: usize,
}

impl LogFiles {
    fn per_worker(&self) -> bool {
        self.path.contains("{worker}")
    }

    /// The file for `worker` (None: herd's own lines).
    fn path_for(&self, worker: Option<u32>) -> PathBuf {
        if !self.per_worker() {
            return PathBuf::from(&self.path);
        }
        let w = worker.map_or_else(|| "herd".to_string(), |w| w.to_string());
        PathBuf::from(self.path.replace("{worker}", &w))
    }
}

/// `--log-file`, `--log-max-size`, `--log-keep`, checked.
pub fn resolve(
    path: Option<String>,
    max: Option<String>,
    keep: Option<usize>,
) -> Result<Option<LogFiles>> {
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        if max.is_some() || keep.is_some() {
            bail!("--log-max-size and --log-keep rotate the --log-file: give --log-file PATH too");
        }
        return Ok(None);
    };
    if path.contains('\0') {
        bail!("--log-file {path:?}: a path cannot contain a NUL byte");
    }
    let max_size = max
        .map(|s| {
            let n = crate::config::parse_size(&s).map_err(|e| anyhow!("--log-max-size: {e}"))?;
            crate::limits::number("log-max-size", n, crate::limits::LOG_MAX_SIZE)
                .map_err(|_| anyhow!("--log-max-size: {s:?} is out of range: use 4K to 1T"))
        })
        .transpose()?;
    if keep.is_some() && max_size.is_none() {
        bail!("--log-keep counts the files --log-max-size rotates: give --log-max-size SIZE too");
    }
    let keep = keep
        .map(|n| crate::limits::number("log-keep", n, crate::limits::LOG_KEEP))
        .transpose()?
        .unwrap_or(5);
    Ok(Some(LogFiles {
        path,
        max_size,
        keep,
    }))
}

enum Msg {
    Line(Option<u32>, Vec<u8>),
    Reopen,
    /// A worker's stream ended: its file may be closed.
    Close(u32),
    /// Answer once every line before this one is written.
    Flush(SyncSender<()>),
}

struct Sink {
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Opens herd's log file (the combined one, or herd's own of the per-worker
/// form) and starts the writer. Errors name the path.
pub fn start(cfg: LogFiles) -> Result<()> {
    let herd_path = cfg.path_for(None);
    let file = open(&herd_path)
        .map_err(|e| anyhow!("cannot open log file {}: {e}", herd_path.display()))?;
    let (tx, rx) = sync_channel(QUEUE);
    let mut w = Writer {
        files: HashMap::new(),
        cfg,
    };
    w.files.insert(None, Open::new(herd_path, file));
    std::thread::Builder::new()
        .name("herd-log".into())
        .spawn(move || w.run(rx))?;
    let _ = SINK.set(Sink {
        tx,
        dropped: AtomicU64::new(0),
    });
    Ok(())
}

/// Whether lines go to files (else to stdout and stderr).
pub fn active() -> bool {
    SINK.get().is_some()
}

/// Queues one whole line (with its newline); never blocks.
pub fn line(worker: Option<u32>, bytes: Vec<u8>) {
    let Some(s) = SINK.get() else { return };
    let dropped = s.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let note = format!(
            "herd: warning: {dropped} log lines dropped (the log file is not keeping up)\n"
        );
        if s.tx.try_send(Msg::Line(None, note.into_bytes())).is_err() {
            s.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
    match s.tx.try_send(Msg::Line(worker, bytes)) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Asks the writer to reopen every file (SIGUSR1).
pub fn reopen() {
    if let Some(s) = SINK.get() {
        let _ = s.tx.try_send(Msg::Reopen);
    }
}

/// Waits (at most `within`) until the lines queued so far are written:
/// before herd exits.
pub fn flush(within: std::time::Duration) {
    let Some(s) = SINK.get() else { return };
    let (tx, rx) = sync_channel(1);
    let deadline = std::time::Instant::now() + within;
    let mut msg = Msg::Flush(tx);
    // The queue may be full for a moment: retry until the deadline.
    loop {
        match s.tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// A worker's stream ended.
pub fn close(worker: u32) {
    if let Some(s) = SINK.get() {
        let _ = s.tx.try_send(Msg::Close(worker));
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Open {
    path: PathBuf,
    file: File,
    size: u64,
    /// Streams of the worker not yet ended (two: stdout and stderr).
    streams: u8,
}

impl Open {
    fn new(path: PathBuf, file: File) -> Open {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Open {
            path,
            file,
            size,
            streams: 2,
        }
    }
}

struct Writer {
    files: HashMap<Option<u32>, Open>,
    cfg: LogFiles,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        while let Ok(m) = rx.recv() {
            match m {
                Msg::Line(w, bytes) => self.write(w, &bytes),
                Msg::Reopen => self.reopen(),
                Msg::Flush(done) => {
                    let _ = done.try_send(());
                }
                Msg::Close(w) => {
                    if let Some(o) = self.files.get_mut(&Some(w)) {
                        o.streams = o.streams.saturating_sub(1);
                        if o.streams == 0 {
                            self.files.remove(&Some(w));
                        }
                    }
                }
            }
        }
    }

    /// A warning line of herd's own, written by the writer itself.
    fn warn(&mut self, text: String) {
        let line = format!("herd: warning: {text}\n");
        self.write(None, line.as_bytes());
    }

    fn write(&mut self, worker: Option<u32>, bytes: &[u8]) {
        let key = if self.cfg.per_worker() { worker } else { None };
        if !self.files.contains_key(&key) {
            let path = self.cfg.path_for(key);
            match open(&path) {
                Ok(f) => {
                    self.files.insert(key, Open::new(path, f));
                }
                Err(e) => {
                    let text = format!(
                        "cannot open log file {}: {e}; its lines go to herd's",
                        path.display()
                    );
                    if key.is_some() {
                        self.warn(text);
                        return self.write(None, bytes);
                    }
                    return;
                }
            }
        }
        let max = self.cfg.max_size;
        let keep = self.cfg.keep;
        let mut warning = None;
        if let Some(o) = self.files.get_mut(&key) {
            if let Some(max) = max {
                if o.size > 0 && o.size + bytes.len() as u64 > max {
                    if let Err(e) = rotate(o, keep) {
                        // Tried again after another max size, not at
                        // every line.
                        o.size = 0;
                        warning = Some(format!("cannot rotate log file {}: {e}", o.path.display()));
                    }
                }
            }
            if o.file.write_all(bytes).is_ok() {
                o.size += bytes.len() as u64;
            }
        }
        if let Some(w) = warning {
            if key.is_none() {
                // Written after the line, to the same file: never a loop.
                if let Some(o) = self.files.get_mut(&None) {
                    let _ = o.file.write_all(format!("herd: warning: {w}\n").as_bytes());
                }
            } else {
                self.warn(w);
            }
        }
    }

    fn reopen(&mut self) {
        let mut failed = Vec::new();
        for o in self.files.values_mut() {
            match open(&o.path) {
                Ok(f) => {
                    o.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    o.file = f;
                }
                Err(e) => failed.push(format!(
                    "cannot reopen log file {}: {e}; still writing to the old one",
                    o.path.display()
                )),
            }
        }
        for f in failed {
            self.warn(f);
        }
    }
}

/// PATH.(keep-1) to PATH.keep ... PATH to PATH.1, then a new PATH.
fn rotate(o: &mut Open, keep: usize) -> std::io::Result<()> {
    let numbered = |n: usize| {
        let mut p = o.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(&o.path, numbered(1))?;
    let f = open(&o.path)?;
    o.file = f;
    o.size = 0;
    Ok(())
}
