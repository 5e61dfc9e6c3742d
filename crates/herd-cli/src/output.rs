//! herd's own messages and the workers' output.
//!
//! herd logs through `tracing`: in text, one line `herd: message` per event
//! (`herd: warning: ...` for warnings); in JSON, one object per line. The
//! workers' lines (with `--output prefix`) are read from their pipes whole
//! and written with one `write` each under a lock, so lines of different
//! workers never interleave mid-line: `[w3] GET / 200` in text,
//! `{"timestamp":"...","worker":3,"pid":1234,"stream":"stdout","line":"GET / 200"}`
//! in JSON. A line longer than 64 KiB is cut into pieces of that size.
//! With `--log-timestamps`, text lines start with the time (RFC 3339, UTC,
//! as in JSON); with `--log-file` they go to files instead (`logfile.rs`).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

const MAX_LINE: usize = 64 * 1024;

/// Serialises writes to herd's stdout and stderr.
static STDOUT: Mutex<()> = Mutex::new(());
static STDERR: Mutex<()> = Mutex::new(());

/// Whether text lines start with an RFC 3339 timestamp
/// (`--log-timestamps`).
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Turns text-mode timestamps on.
pub fn set_timestamps(on: bool) {
    TIMESTAMPS.store(on, Ordering::Relaxed);
}

fn stamp() -> String {
    if TIMESTAMPS.load(Ordering::Relaxed) {
        format!("{} ", timestamp())
    } else {
        String::new()
    }
}

/// An event's message and its other fields; the `worker` field (which JSON
/// lines carry for every line about a worker) is in the message already.
#[derive(Default)]
struct Fields {
    message: String,
    worker: Option<u64>,
    rest: Vec<String>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "worker" => self.worker = Some(value),
            n => self.rest.push(format!("{n}: {value}")),
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "worker" => {}
            n => self.rest.push(format!("{n}: {value}")),
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "worker" => {}
            n => self.rest.push(format!("{n}: {value:?}")),
        }
    }
}

/// `herd: message`, as a person reads it (with `--log-timestamps`, after
/// the time).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "{}herd: ", stamp())?;
        match *event.metadata().level() {
            tracing::Level::ERROR => write!(w, "error: ")?,
            tracing::Level::WARN => write!(w, "warning: ")?,
            tracing::Level::DEBUG | tracing::Level::TRACE => write!(w, "debug: ")?,
            tracing::Level::INFO => {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(id) = f.worker {
            if !f.message.contains(&format!("worker {id}")) {
                f.rest.insert(0, format!("worker {id}"));
            }
        }
        write!(w, "{}", f.message)?;
        if !f.rest.is_empty() {
            write!(w, " ({})", f.rest.join(", "))?;
        }
        writeln!(w)
    }
}

/// A writer that takes the stderr lock for each line (or queues it for
/// the log file).
struct LockedStderr;

impl Write for LockedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if crate::logfile::active() {
            crate::logfile::line(None, buf.to_vec());
            return Ok(buf.len());
        }
        let _g = STDERR.lock().unwrap();
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs herd's logger: info and up, or as `HERD_LOG` says (`debug`
/// shows the library's view of every worker's life).
pub fn init_logging(format: LogFormat) {
    let filter = match std::env::var("HERD_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(format!("herd={v},herd_cli={v}")),
        _ => EnvFilter::new("herd=info,herd_cli=info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LockedStderr)
        // Its report of a failed write is an eprintln!, which panics when
        // stderr is a closed pipe: herd must outlive its log reader.
        .log_internal_errors(false)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.event_format(Plain).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Which of herd's streams a worker line goes to.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Now as RFC 3339 in UTC with microseconds, as herd's own JSON lines
/// (tracing-subscriber) write it: `2026-11-22T12:00:00.123456Z`.
pub fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Writes one worker line, whole.
fn emit(format: LogFormat, worker: u32, pid: u32, stream: Stream, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let out = match format {
        LogFormat::Text => format!("{}[w{worker}] {text}\n", stamp()),
        LogFormat::Json => {
            let v = serde_json::json!({
                "timestamp": timestamp(),
                "worker": worker,
                "pid": pid,
                "stream": stream.name(),
                "line": text,
            });
            format!("{v}\n")
        }
    };
    if crate::logfile::active() {
        return crate::logfile::line(Some(worker), out.into_bytes());
    }
    let r = match stream {
        Stream::Stdout => {
            let _g = STDOUT.lock().unwrap();
            let mut o = std::io::stdout().lock();
            o.write_all(out.as_bytes()).and_then(|_| o.flush())
        }
        Stream::Stderr => {
            let _g = STDERR.lock().unwrap();
            std::io::stderr().write_all(out.as_bytes())
        }
    };
    // herd's own stdout closed: nothing better to do than drop the line.
    let _ = r;
}

/// Copies a worker's stream to herd's, line by line; `format` None
/// discards it.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    format: Option<LogFormat>,
    worker: u32,
    pid: u32,
    stream: Stream,
) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut line: Vec<u8> = Vec::new();
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
                if let Some(f) = format {
                    emit(f, worker, pid, stream, &line);
                }
                line.clear();
            }
            None => {
                line.extend_from_slice(buf);
                reader.consume(n);
                if line.len() >= MAX_LINE {
                    if let Some(f) = format {
                        emit(f, worker, pid, stream, &line);
                    }
                    line.clear();
                }
            }
        }
    }
    if !line.is_empty() {
        if let Some(f) = format {
            emit(f, worker, pid, stream, &line);
        }
    }
    crate::logfile::close(worker);
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = super::timestamp();
        assert_eq!(t.len(), 27, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
