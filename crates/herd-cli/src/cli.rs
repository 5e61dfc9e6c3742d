//! The command line, as clap sees it. Every `run` option is optional here:
//! a flag wins over its `HERD_*` environment variable (clap reads both),
//! which wins over the `--config` file, which wins over the defaults (see
//! `config.rs`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run any program (Node, Python, Go, Rust...) as a cluster of workers that
/// share its listening sockets, supervised: respawned when they crash,
/// replaced one at a time on reload, recycled by age, requests or memory.
///
/// Workers get their sockets the way systemd passes them (LISTEN_FDS,
/// descriptors from 3) and may report readiness and liveness by sd_notify
/// (READY=1, WATCHDOG=1, STATUS=) on their own NOTIFY_SOCKET.
#[derive(Debug, Parser)]
#[command(name = "herd", version)]
#[command(override_usage = "herd run [OPTIONS] -- PROGRAM [ARGS]...
       herd ctl [--name NAME] COMMAND")]
#[command(after_help = "Examples:
  herd run -w 2 -l 127.0.0.1:8080 -- node server.js
  herd run -w 4 -l web=:8080 --ready notify -- python3 app.py
  herd ctl list
  herd ctl status
  herd ctl --name web reload
  herd systemd-unit --socket-unit --name web -l :8080 -- /usr/bin/node /srv/server.js

Exit codes: 0 success; 1 failure (the cluster could not start, e.g. an
address already in use without --takeover; a reload was aborted; workers
had to be killed at shutdown); 2 bad usage; 3 no herd is running under
that name, or none at all (herd ctl).")]
pub struct Cli {
    /// How herd writes its own messages and (with --output prefix) the
    /// workers' lines: text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HERD_LOG_FORMAT",
        help_heading = "Global options"
    )]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM as a cluster: herd binds the sockets, starts the workers
    /// and keeps them up until it gets SIGTERM or SIGINT (graceful stop).
    /// SIGHUP replaces every worker one at a time, the new one first;
    /// SIGTTIN and SIGTTOU add or remove a worker.
    #[command(
        override_usage = "herd run [OPTIONS] -- PROGRAM [ARGS]...",
        after_help = "Addresses (-l): HOST:PORT, [V6]:PORT, :PORT (all interfaces), unix:PATH,
udp:HOST:PORT, each optionally NAME=ADDR. Port 0 picks a free port: herd
prints `listening on ADDRESS (fd N, name NAME)` for each socket. Workers get
them at descriptors 3, 4... in that order, with LISTEN_FDS, LISTEN_PID (the
worker's own pid), LISTEN_FDNAMES and HERD_WORKER_ID. Under systemd socket
activation herd serves the sockets it is given instead (matched to -l by
name, else by order; without -l all of them).

Durations: 500ms, 30s, 2m, 1h. Sizes: 512M, 2G (bytes without a unit).

Config file (TOML), keys as the long options with underscores:
  workers = 4
  listen = [\"web=:8080\"]
  sched = \"reuseport\"
  ready = \"notify\"
  grace = \"30s\"
  command = [\"node\", \"server.js\"]
  [env]
  NODE_ENV = \"production\"

rr and lc hand each connection to a worker through herd's own protocol
(a channel and a connection queue): only programs built with the herd Rust
library speak it. For any other program
use shared (one socket, the kernel wakes a worker) or reuseport (one socket
per worker; new connections go to the workers in turn when herd may load
its eBPF program, as root, or by the kernel's hash otherwise)."
    )]
    Run(Box<RunArgs>),
    /// Print a systemd .service unit (and with --socket-unit a .socket
    /// unit) that runs `herd run` with the same options and program.
    #[command(
        name = "systemd-unit",
        override_usage = "herd systemd-unit [--socket-unit] [RUN OPTIONS] -- PROGRAM [ARGS]..."
    )]
    SystemdUnit(Box<UnitArgs>),
    /// Talk to a running herd through its control socket (`herd ctl
    /// list` shows every herd of this user).
    #[command(override_usage = "herd ctl [--name NAME | --socket PATH] COMMAND")]
    Ctl(CtlArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Each line of a worker's stdout and stderr, prefixed with its id.
    Prefix,
    /// Workers write to herd's stdout and stderr directly.
    Raw,
    /// Worker output is discarded.
    Silent,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Number of workers [default: one per CPU].
    #[arg(short, long, value_name = "N", env = "HERD_WORKERS")]
    pub workers: Option<usize>,

    /// The most workers `herd ctl scale` may ask for without --force
    /// [default: 4 per CPU].
    #[arg(long, value_name = "N", env = "HERD_MAX_WORKERS")]
    pub max_workers: Option<usize>,

    /// Address to listen on, repeatable: HOST:PORT, [V6]:PORT, :PORT,
    /// unix:PATH, udp:HOST:PORT, optionally NAME=ADDR.
    #[arg(
        short,
        long,
        value_name = "[NAME=]ADDR",
        env = "HERD_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// How workers share a port: shared or reuseport (rr and lc need
    /// herd-aware workers) [default: reuseport; shared for sockets from
    /// systemd without ReusePort=yes].
    #[arg(long, value_name = "POLICY", env = "HERD_SCHED_POLICY")]
    pub sched: Option<String>,

    /// Leave TCP_NODELAY off on the TCP sockets herd binds. By default herd
    /// sets it on them, and the connections accepted on them inherit it,
    /// so that a program that never sets it (uvicorn given --fd 3, Python's
    /// socketserver) answers small requests on keep-alive connections
    /// without Nagle's delay. Sockets from systemd are left as they are
    /// (see its NoDelay=).
    #[arg(long, env = "HERD_NO_TCP_NODELAY")]
    pub no_tcp_nodelay: bool,

    /// Start even if another process already serves a TCP or UDP address
    /// given with -l (another herd, or an old one during an upgrade): the
    /// sockets then share it by SO_REUSEPORT, and new connections may go
    /// to this herd. Without it herd refuses such an address with an error
    /// naming who holds it, and exits with code 1.
    #[arg(long, env = "HERD_TAKEOVER")]
    pub takeover: bool,

    /// When a worker counts as ready: notify (it sends READY=1), listening
    /// (it, or a process it started, waits for connections on its socket,
    /// as /proc shows: in accept, epoll, or poll/select; or it sends
    /// READY=1 first) or delay:DURATION after it started [default:
    /// listening].
    #[arg(long, value_name = "RULE", env = "HERD_READY")]
    pub ready: Option<String>,

    /// How long a worker asked to stop (SIGTERM) may take before it is
    /// killed [default: 30s].
    #[arg(long, value_name = "DURATION", env = "HERD_GRACE")]
    pub grace: Option<String>,

    /// When to restart a worker that exited: always, on-failure or never
    /// [default: on-failure].
    #[arg(long, value_name = "POLICY", env = "HERD_RESTART")]
    pub restart: Option<String>,

    /// First delay before respawning a crashed worker; doubles at each
    /// crash up to 10s [default: 100ms].
    #[arg(long, value_name = "DURATION", env = "HERD_BACKOFF")]
    pub backoff: Option<String>,

    /// Crashes before ready, within a minute, after which a worker slot is
    /// left down [default: 5].
    #[arg(long, value_name = "N", env = "HERD_CRASH_LIMIT")]
    pub crash_limit: Option<usize>,

    /// How long a new worker may take to become ready [default: 30s].
    #[arg(long, value_name = "DURATION", env = "HERD_BOOT_TIMEOUT")]
    pub boot_timeout: Option<String>,

    /// Replace workers older than this.
    #[arg(long, value_name = "DURATION", env = "HERD_MAX_AGE")]
    pub max_age: Option<String>,

    /// Replace a worker after it handled this many connections (as it
    /// reports them with HERD_HANDLED=N on its NOTIFY_SOCKET).
    #[arg(long, value_name = "N", env = "HERD_MAX_REQUESTS")]
    pub max_requests: Option<u64>,

    /// Replace a worker whose resident memory exceeds this.
    #[arg(long, value_name = "SIZE", env = "HERD_MAX_MEMORY")]
    pub max_memory: Option<String>,

    /// Expect WATCHDOG=1 from each worker at least this often (sets its
    /// WATCHDOG_USEC); a worker that stops sending it is replaced. Off by
    /// default.
    #[arg(long, value_name = "DURATION", env = "HERD_HEARTBEAT_TIMEOUT")]
    pub heartbeat_timeout: Option<String>,

    /// Share the cluster's services (the cache) with every herd on the same
    /// Redis: redis://HOST:PORT[/DB], redis://:PASSWORD@HOST:PORT or
    /// unix:///PATH. Its keys are herd:NAME:* (--name). /status and
    /// /metrics say when Redis is away. Off by default (one host).
    #[arg(long, value_name = "URL", env = "HERD_SERVICES")]
    pub services: Option<String>,

    /// Serve the monitor (health for load balancers at /ecv, /livez,
    /// /readyz, /status, /metrics, /deps, and the live dashboard at
    /// /debug) on this address: loopback or a private interface. Off by
    /// default.
    #[arg(long, value_name = "ADDR", env = "HERD_MONITOR")]
    pub monitor: Option<String>,

    /// The monitor's token for its control routes (markDown, markUp,
    /// reload, scale), from the first line of FILE (or HERD_MONITOR_TOKEN);
    /// without one those routes are off.
    #[arg(long, value_name = "FILE", env = "HERD_MONITOR_TOKEN_FILE")]
    pub monitor_token_file: Option<PathBuf>,

    /// Where the monitor answers ECV [default: /ecv].
    #[arg(long, value_name = "PATH", env = "HERD_ECV_ROOT")]
    pub ecv_root: Option<String>,

    /// Monitor mode: each ECV request also fetches PATH from the program
    /// (through the workers) and reports the host down unless it answers
    /// 200 (and contains --monitor-probe-body, if given).
    #[arg(long, value_name = "PATH", env = "HERD_MONITOR_PROBE")]
    pub monitor_probe: Option<String>,

    /// Text the probe's answer must contain.
    #[arg(long, value_name = "TEXT", env = "HERD_MONITOR_PROBE_BODY")]
    pub monitor_probe_body: Option<String>,

    /// Answer HAProxy's agent-check on this address (ready up N%, drain,
    /// down).
    #[arg(long, value_name = "ADDR", env = "HERD_AGENT_CHECK")]
    pub agent_check: Option<String>,

    /// On stop, how long health says "draining" before the workers are
    /// asked to leave (they keep serving meanwhile) [default: 0s].
    #[arg(long, value_name = "DURATION", env = "HERD_DRAIN_DELAY")]
    pub drain_delay: Option<String>,

    /// A reload first marks the host down, waits the drain delay, replaces
    /// the workers, then marks it up (for programs that close idle
    /// keep-alive connections at once, behind a load balancer).
    #[arg(long, env = "HERD_RELOAD_VIA_HEALTH")]
    pub reload_via_health: bool,

    /// Discard the workers' output (same as --output silent).
    #[arg(long, env = "HERD_SILENT")]
    pub silent: bool,

    /// Worker output: prefix (each line with its worker id), raw or silent
    /// [default: prefix].
    #[arg(long, value_enum, env = "HERD_OUTPUT")]
    pub output: Option<Output>,

    /// Start each text line (herd's and the workers') with its time, in
    /// RFC 3339 UTC (JSON lines always carry a "timestamp").
    #[arg(long, env = "HERD_LOG_TIMESTAMPS")]
    pub log_timestamps: bool,

    /// Write herd's lines and the workers' output to PATH (appending)
    /// instead of stderr and stdout; with `{worker}` in PATH, one file per
    /// worker (`{worker}` replaced by its id) and herd's own lines in the
    /// one for `herd`. SIGUSR1 reopens the files (for logrotate).
    #[arg(long, value_name = "PATH", env = "HERD_LOG_FILE")]
    pub log_file: Option<String>,

    /// Rotate a log file before it grows beyond SIZE: PATH becomes PATH.1,
    /// PATH.1 becomes PATH.2... (4K to 1T).
    #[arg(long, value_name = "SIZE", env = "HERD_LOG_MAX_SIZE")]
    pub log_max_size: Option<String>,

    /// Rotated log files kept with --log-max-size, the oldest removed (1
    /// to 1000) [default: 5].
    #[arg(long, value_name = "N", env = "HERD_LOG_KEEP")]
    pub log_keep: Option<usize>,

    /// This cluster's name: its control socket is NAME.sock in the runtime
    /// directory ($HERD_RUNTIME_DIR, else $XDG_RUNTIME_DIR/herd, else
    /// /tmp/herd-UID) [default: herd].
    #[arg(long, env = "HERD_NAME")]
    pub name: Option<String>,

    /// Environment variables for the workers from a dotenv file (KEY=VALUE
    /// lines, # comments, optional quotes and `export `), repeatable; they
    /// win over the config file's [env], which wins over herd's own
    /// environment.
    #[arg(
        long,
        value_name = "FILE",
        env = "HERD_ENV_FILE",
        value_delimiter = ','
    )]
    pub env_file: Vec<PathBuf>,

    /// Change herd's directory to DIR after reading --config and
    /// --env-file, before anything else: the program, unix: paths and
    /// --pid-file are then relative to DIR, and the workers run in it.
    #[arg(long, value_name = "DIR", env = "HERD_CHDIR")]
    pub chdir: Option<PathBuf>,

    /// Run the workers as this user (name or id), after herd has bound the
    /// sockets as root (so a privileged port works). Needs root.
    #[arg(long, value_name = "USER", env = "HERD_USER")]
    pub user: Option<String>,

    /// Run the workers with this group (name or id) [default: the
    /// --user's primary group]. Needs root.
    #[arg(long, value_name = "GROUP", env = "HERD_GROUP")]
    pub group: Option<String>,

    /// Write herd's pid to FILE at start (refusing to start if it names a
    /// running process) and remove it at a clean stop.
    #[arg(long, value_name = "FILE", env = "HERD_PID_FILE")]
    pub pid_file: Option<PathBuf>,

    /// A TOML file with any of these options (flags and HERD_* variables
    /// win over it).
    #[arg(long, value_name = "FILE", env = "HERD_CONFIG")]
    pub config: Option<PathBuf>,

    /// The program to run and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct UnitArgs {
    /// Also print a .socket unit for the -l addresses (after the .service,
    /// each unit headed by a `# --- NAME.service ---` comment line): systemd
    /// then binds them and herd serves the sockets it is passed.
    #[arg(long)]
    pub socket_unit: bool,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// The cluster's name (as given to herd run --name) [default: the
    /// only herd running].
    #[arg(
        long,
        env = "HERD_NAME",
        global = true,
        help_heading = "Global options"
    )]
    pub name: Option<String>,

    /// The control socket's path, instead of finding it by name.
    #[arg(
        long,
        value_name = "PATH",
        global = true,
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CtlAction {
    /// A table of the workers: id, pid, state, uptime, memory,
    /// connections, restarts, status.
    Status {
        /// Print the status as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Replace every worker, one at a time, the new one first; waits until
    /// done.
    Reload,
    /// Set the number of workers; waits until they are all ready. Above
    /// the herd's --max-workers (4 per CPU by default) it needs --force.
    Scale {
        /// The number of workers wanted.
        #[arg(value_name = "N")]
        workers: usize,
        /// Scale beyond the herd's --max-workers.
        #[arg(long)]
        force: bool,
    },
    /// Stop the cluster gracefully; waits until herd has exited.
    Stop,
    /// Take one worker out of rotation and keep it alive for inspection:
    /// it gets no new connections and serves the ones it has (rr and lc,
    /// herd-aware workers only).
    Drain {
        /// The worker's id (herd ctl status).
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u32).range(1..))]
        worker: u32,
    },
    /// Put a drained worker back into rotation.
    Undrain {
        /// The worker's id (herd ctl status).
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u32).range(1..))]
        worker: u32,
    },
    /// Replace one worker, the new one first; waits until it took the slot.
    Replace {
        /// The worker's id (herd ctl status).
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u32).range(1..))]
        worker: u32,
    },
    /// Record a CPU profile of one worker and print it as a flamegraph
    /// SVG: herd ctl profile ID --seconds N > flame.svg
    Profile {
        /// The worker's id (herd ctl status).
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u32).range(1..))]
        worker: u32,
        /// How long to record, 1 to 60 seconds.
        #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
        seconds: u32,
    },
    /// Print every thread's backtrace in one worker (with gdb).
    Dump {
        /// The worker's id (herd ctl status).
        #[arg(value_name = "ID", value_parser = clap::value_parser!(u32).range(1..))]
        worker: u32,
    },
    /// Every herd of this user: name, pid, workers ready/wanted, uptime,
    /// listening addresses, program.
    List {
        /// Print the list as JSON instead.
        #[arg(long)]
        json: bool,
    },
}
