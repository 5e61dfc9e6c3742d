//! Resolving `herd run`'s settings: flags, then `HERD_*` variables (both
//! read by clap), then the `--config` TOML file, then the defaults; and
//! checking every value, so that bad input is one clear line before
//! anything starts.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use herd::foreign::{parse_duration, ForeignReady};
use herd::{ListenAddr, Policy, Restart};
use serde::Deserialize;

use crate::cli::{Output, RunArgs};
use crate::limits;

/// The `--config` file: the long options with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub workers: Option<usize>,
    pub listen: Option<Vec<String>>,
    pub sched: Option<String>,
    pub no_tcp_nodelay: Option<bool>,
    pub takeover: Option<bool>,
    pub ready: Option<String>,
    pub grace: Option<String>,
    pub restart: Option<String>,
    pub backoff: Option<String>,
    pub crash_limit: Option<usize>,
    pub max_workers: Option<usize>,
    pub boot_timeout: Option<String>,
    pub max_age: Option<String>,
    pub max_requests: Option<u64>,
    pub max_memory: Option<String>,
    pub heartbeat_timeout: Option<String>,
    pub monitor: Option<String>,
    pub services: Option<String>,
    pub monitor_token_file: Option<PathBuf>,
    pub ecv_root: Option<String>,
    pub monitor_probe: Option<String>,
    pub monitor_probe_body: Option<String>,
    pub agent_check: Option<String>,
    pub drain_delay: Option<String>,
    pub reload_via_health: Option<bool>,
    pub silent: Option<bool>,
    pub output: Option<Output>,
    pub name: Option<String>,
    pub log_format: Option<String>,
    pub log_timestamps: Option<bool>,
    pub log_file: Option<String>,
    pub log_max_size: Option<String>,
    pub log_keep: Option<usize>,
    /// The program and its arguments.
    pub command: Option<Vec<String>>,
    /// Extra environment variables for the workers.
    pub env: Option<BTreeMap<String, String>>,
    /// See `startup.rs` for these.
    pub env_file: Option<Vec<PathBuf>>,
    pub chdir: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pid_file: Option<PathBuf>,
}

impl File {
    pub fn load(path: &Path) -> Result<File> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // toml's message spans several lines (a snippet); keep the gist.
            let msg = e.message().trim().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            anyhow!("config file {}{at}: {msg}", path.display())
        })
    }
}

/// One socket to listen on.
#[derive(Debug, Clone)]
pub struct Listen {
    pub name: Option<String>,
    pub addr: ListenAddr,
    /// As written, for messages.
    pub text: String,
}

/// Everything `herd run` needs, checked.
#[derive(Debug)]
pub struct Run {
    pub workers: usize,
    /// The most workers `herd ctl scale` may ask for without force, and
    /// where that number came from (for its message).
    pub max_workers: (usize, String),
    pub listens: Vec<Listen>,
    pub policy: Policy,
    /// Whether the policy was asked for (not the default).
    pub policy_explicit: bool,
    /// TCP_NODELAY on the TCP sockets herd binds.
    pub tcp_nodelay: bool,
    /// Start on an address another process already serves.
    pub takeover: bool,
    pub ready: ForeignReady,
    pub grace: Duration,
    pub restart: Restart,
    pub backoff: Option<Duration>,
    pub crash_limit: Option<usize>,
    pub boot_timeout: Option<Duration>,
    pub max_age: Option<Duration>,
    pub max_requests: Option<u64>,
    pub max_memory: Option<u64>,
    pub heartbeat_timeout: Option<Duration>,
    pub monitor: Option<MonitorOptions>,
    /// `--services`: the Redis URL the cache service runs on.
    pub services: Option<String>,
    pub drain_delay: Duration,
    pub reload_via_health: bool,
    pub output: Output,
    /// `--log-timestamps`.
    pub log_timestamps: bool,
    /// `--log-file` and its rotation.
    pub log_files: Option<crate::logfile::LogFiles>,
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Who the workers run as (`--user`, `--group`).
    pub credentials: crate::startup::Credentials,
    pub pid_file: Option<PathBuf>,
}

/// A `--services` URL: Redis's, by TCP or a Unix socket (the `redis`
/// crate checks the rest when the service starts).
fn services_url(url: &str) -> Result<String> {
    let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if url.len() > 4096 || !schemes.iter().any(|s| url.starts_with(s)) {
        anyhow::bail!(
            "--services {:?}: give a Redis URL, redis://HOST:PORT[/DB] or unix:///PATH",
            url.chars().take(80).collect::<String>()
        );
    }
    Ok(url.to_string())
}

/// `--monitor` and the options that go with it.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub addr: std::net::SocketAddr,
    pub token_file: Option<PathBuf>,
    pub ecv_root: String,
    pub probe: Option<(String, Option<String>)>,
    pub agent: Option<std::net::SocketAddr>,
}

/// A URL path for the monitor (`--ecv-root`, `--monitor-probe`): printable
/// ASCII, at most 256 bytes, made absolute.
fn url_path(what: &str, v: &str) -> Result<String> {
    let p = v.trim();
    if p.is_empty() || p.len() > 256 || !p.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("--{what} {v:?}: give a URL path of at most 256 printable characters, e.g. /ecv");
    }
    Ok(if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    })
}

/// An `IP:PORT` for the monitor's options.
fn socket_addr(what: &str, v: &str) -> Result<std::net::SocketAddr> {
    v.trim()
        .parse()
        .map_err(|_| anyhow!("--{what} {v:?}: give an IP address and port, e.g. 127.0.0.1:9090"))
}

/// Parses a duration for `--what` and checks it is within `span`.
fn duration(what: &str, v: &str, span: &limits::Span) -> Result<Duration> {
    let d = parse_duration(v).map_err(|e| anyhow!("--{what}: {e}"))?;
    limits::duration(what, v, d, span)
}

/// Parses a size: bytes, or a number (a fraction too) with K, M, G, T
/// (powers of 1024; `KiB`, `MB`... are read as the same), by `parse-size`.
/// A value too large for 64 bits is an error, never a wrapped number.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("invalid size {s:?} ({e}): use e.g. 512M or 2G"))
}

/// Parses `[NAME=]ADDR`.
pub fn parse_listen(s: &str) -> Result<Listen> {
    let (name, addr) = match s.split_once('=') {
        Some((n, a)) if !n.contains(':') && !n.contains('/') => (Some(n.to_string()), a),
        _ => (None, s),
    };
    if let Some(n) = &name {
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            bail!("invalid socket name {n:?} in -l {s:?}: use letters, digits, '_', '-' or '.'");
        }
    }
    let addr = ListenAddr::resolve_blocking(addr).map_err(|e| anyhow!("{e}"))?;
    Ok(Listen {
        name,
        addr,
        text: s.to_string(),
    })
}

/// Finds `program` as exec would: a path if it has a slash, else in PATH.
pub fn find_program(program: &OsString) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = PathBuf::from(program);
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if p.to_string_lossy().contains('/') {
        if !p.exists() {
            bail!("program {} does not exist", p.display());
        }
        if !runnable(&p) {
            bail!(
                "program {} is not an executable file (chmod +x it, or run it through its interpreter)",
                p.display()
            );
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(&p);
        if runnable(&candidate) {
            return Ok(p);
        }
    }
    bail!(
        "program {:?} not found in PATH (install it, or give its full path)",
        p.to_string_lossy()
    )
}

impl Run {
    pub fn resolve(args: RunArgs) -> Result<Run> {
        let file = match &args.config {
            Some(p) => File::load(p)?,
            None => File::default(),
        };
        // Read where herd started, then --chdir (see startup.rs).
        let env_files = if !args.env_file.is_empty() {
            args.env_file.clone()
        } else {
            file.env_file.clone().unwrap_or_default()
        };
        let mut env: Vec<(String, String)> =
            file.env.clone().unwrap_or_default().into_iter().collect();
        for f in &env_files {
            env.extend(crate::startup::read_env_file(f)?);
        }
        if let Some(dir) = args.chdir.as_ref().or(file.chdir.as_ref()) {
            crate::startup::chdir(dir)?;
        }
        let credentials = crate::startup::credentials(
            args.user.as_deref().or(file.user.as_deref()),
            args.group.as_deref().or(file.group.as_deref()),
        )?;
        let pid_file = args.pid_file.clone().or(file.pid_file.clone());
        let workers = match args.workers.or(file.workers) {
            Some(n) => limits::number("workers", n, limits::WORKERS)?,
            None => herd::available_cpus().clamp(limits::WORKERS.0, limits::WORKERS.1),
        };
        let max_workers = match args.max_workers.or(file.max_workers) {
            Some(n) => (
                limits::number("max-workers", n, limits::WORKERS)?,
                format!("--max-workers {n}"),
            ),
            None => {
                let cpus = herd::available_cpus();
                (
                    cpus.saturating_mul(4)
                        .clamp(limits::WORKERS.0, limits::WORKERS.1),
                    format!("4 per CPU, {cpus} CPUs; set with --max-workers"),
                )
            }
        };
        let listen_texts = if !args.listen.is_empty() {
            args.listen.clone()
        } else {
            file.listen.clone().unwrap_or_default()
        };
        let listens = listen_texts
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_listen(s.trim()))
            .collect::<Result<Vec<_>>>()?;
        if listens.len() > limits::LISTENS {
            bail!(
                "--listen: {} sockets is too many: use at most {}",
                listens.len(),
                limits::LISTENS
            );
        }
        let policy_explicit = args.sched.is_some() || file.sched.is_some();
        let policy: Policy = match args.sched.as_deref().or(file.sched.as_deref()) {
            Some(s) => s.parse().map_err(|e: String| anyhow!("--sched: {e}"))?,
            None => Policy::ReusePort,
        };
        if matches!(policy, Policy::RoundRobin | Policy::LeastConnections) {
            bail!(
                "--sched {policy} needs herd-aware workers (programs built with the herd Rust library, which run their own primary); for any other program use --sched shared or --sched reuseport"
            );
        }
        let ready = match args.ready.as_deref().or(file.ready.as_deref()) {
            Some(s) => {
                let r: ForeignReady = s.parse().map_err(|e: String| anyhow!("--ready: {e}"))?;
                if let ForeignReady::Delay(d) = r {
                    limits::duration("ready", s, d, &limits::READY_DELAY)?;
                }
                r
            }
            None => ForeignReady::Listening,
        };
        let opt_dur = |what: &str,
                       a: &Option<String>,
                       f: &Option<String>,
                       span: &limits::Span|
         -> Result<Option<Duration>> {
            a.as_deref()
                .or(f.as_deref())
                .map(|v| duration(what, v, span))
                .transpose()
        };
        let grace = opt_dur("grace", &args.grace, &file.grace, &limits::GRACE)?
            .unwrap_or(Duration::from_secs(30));
        let restart = match args.restart.as_deref().or(file.restart.as_deref()) {
            Some(s) => s.parse().map_err(|e: String| anyhow!("--restart: {e}"))?,
            None => Restart::OnFailure,
        };
        let backoff = opt_dur("backoff", &args.backoff, &file.backoff, &limits::BACKOFF)?;
        let boot_timeout = opt_dur(
            "boot-timeout",
            &args.boot_timeout,
            &file.boot_timeout,
            &limits::BOOT_TIMEOUT,
        )?;
        let max_age = opt_dur("max-age", &args.max_age, &file.max_age, &limits::MAX_AGE)?;
        let heartbeat_timeout = opt_dur(
            "heartbeat-timeout",
            &args.heartbeat_timeout,
            &file.heartbeat_timeout,
            &limits::HEARTBEAT_TIMEOUT,
        )?;
        let max_memory = args
            .max_memory
            .as_deref()
            .or(file.max_memory.as_deref())
            .map(|s| {
                let n = parse_size(s).map_err(|e| anyhow!("--max-memory: {e}"))?;
                limits::number("max-memory", n, limits::MAX_MEMORY)
                    .map_err(|_| anyhow!("--max-memory: {s:?} is out of range: use 1M to 1T"))
            })
            .transpose()?;
        let crash_limit = args
            .crash_limit
            .or(file.crash_limit)
            .map(|n| limits::number("crash-limit", n, limits::CRASH_LIMIT))
            .transpose()?;
        let max_requests = args
            .max_requests
            .or(file.max_requests)
            .map(|n| limits::number("max-requests", n, limits::MAX_REQUESTS))
            .transpose()?;
        let pick = |a: &Option<String>, f: &Option<String>| a.clone().or(f.clone());
        let services = pick(&args.services, &file.services)
            .map(|url| services_url(&url))
            .transpose()?;
        let monitor = match pick(&args.monitor, &file.monitor) {
            None => None,
            Some(addr) => Some(MonitorOptions {
                addr: socket_addr("monitor", &addr)?,
                token_file: args
                    .monitor_token_file
                    .clone()
                    .or(file.monitor_token_file.clone()),
                ecv_root: match pick(&args.ecv_root, &file.ecv_root) {
                    Some(r) => url_path("ecv-root", &r)?,
                    None => "/ecv".into(),
                },
                probe: match pick(&args.monitor_probe, &file.monitor_probe) {
                    Some(p) => Some((
                        url_path("monitor-probe", &p)?,
                        pick(&args.monitor_probe_body, &file.monitor_probe_body),
                    )),
                    None => None,
                },
                agent: pick(&args.agent_check, &file.agent_check)
                    .map(|a| socket_addr("agent-check", &a))
                    .transpose()?,
            }),
        };
        let drain_delay = opt_dur(
            "drain-delay",
            &args.drain_delay,
            &file.drain_delay,
            &limits::DRAIN_DELAY,
        )?
        .unwrap_or_default();
        let reload_via_health = args.reload_via_health || file.reload_via_health == Some(true);
        let tcp_nodelay = !(args.no_tcp_nodelay || file.no_tcp_nodelay == Some(true));
        let takeover = args.takeover || file.takeover == Some(true);
        let output = if args.silent {
            Output::Silent
        } else if let Some(o) = args.output {
            o
        } else if file.silent == Some(true) {
            Output::Silent
        } else {
            file.output.unwrap_or(Output::Prefix)
        };
        let log_timestamps = args.log_timestamps || file.log_timestamps == Some(true);
        let log_files = crate::logfile::resolve(
            args.log_file.clone().or(file.log_file.clone()),
            args.log_max_size.clone().or(file.log_max_size.clone()),
            args.log_keep.or(file.log_keep),
        )?;
        let name = args
            .name
            .clone()
            .or(file.name.clone())
            .unwrap_or_else(|| "herd".to_string());
        crate::name::check(&name)?;
        let mut command = args.command.clone();
        if command.is_empty() {
            command = file
                .command
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(OsString::from)
                .collect();
        }
        if command.is_empty() {
            bail!(
                "no program to run: put it after --, e.g. herd run -w 2 -l :8080 -- node server.js"
            );
        }
        let program = find_program(&command[0])?;
        Ok(Run {
            workers,
            max_workers,
            listens,
            policy,
            policy_explicit,
            tcp_nodelay,
            takeover,
            ready,
            grace,
            restart,
            backoff,
            crash_limit,
            boot_timeout,
            max_age,
            max_requests,
            max_memory,
            heartbeat_timeout,
            monitor,
            services,
            drain_delay,
            reload_via_health,
            output,
            log_timestamps,
            log_files,
            name,
            program,
            args: command[1..].to_vec(),
            env,
            credentials,
            pid_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_parse_with_and_without_names() {
        let l = parse_listen("web=127.0.0.1:80").unwrap();
        assert_eq!(l.name.as_deref(), Some("web"));
        assert_eq!(l.addr.to_string(), "127.0.0.1:80");
        let l = parse_listen("[::1]:9").unwrap();
        assert!(l.name.is_none());
        let l = parse_listen("unix:/tmp/a=b.sock").unwrap();
        assert!(l.name.is_none());
        assert!(parse_listen("nope").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("17179869184G").is_err(), "wraps");
    }

    #[test]
    fn config_files_reject_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("herd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "workers = 2\nwrokers = 3\n").unwrap();
        let e = File::load(&p).unwrap_err().to_string();
        assert!(e.contains("wrokers") && e.contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
