//! What the benchmark servers share.

/// A benchmark server's command line: `[ADDR] [--workers N] [--plain]
/// [--monitor]`, with `HERD_WORKERS` as the default worker count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where to listen (default `127.0.0.1:0`).
    pub addr: String,
    /// How many workers.
    pub workers: usize,
    /// `--plain`: serve without herd (only where `allow_plain`).
    pub plain: bool,
    /// `--monitor`: supervise the workers, run the monitor in the primary
    /// and serve through `Worker::serve`, which counts requests (only
    /// where `allow_plain`: `hello`'s options).
    pub monitor: bool,
}

/// Parses the process's arguments; `default_workers` applies when neither
/// `--workers` nor `HERD_WORKERS` is given.
pub fn parse_args(default_workers: usize, allow_plain: bool) -> Result<Args, String> {
    let mut addr = None;
    let mut workers = std::env::var("HERD_WORKERS").ok();
    let mut plain = false;
    let mut monitor = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--plain" if allow_plain => plain = true,
            "--monitor" if allow_plain => monitor = true,
            "--workers" => workers = Some(args.next().ok_or("--workers needs a number")?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if addr.is_none() => addr = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    let workers = match workers {
        Some(w) => w
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("worker count {w:?} is not a positive number"))?,
        None => default_workers,
    };
    Ok(Args {
        addr: addr.unwrap_or_else(|| "127.0.0.1:0".into()),
        workers,
        plain,
        monitor,
    })
}
