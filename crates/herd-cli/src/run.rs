//! `herd run`: the program as a cluster of foreign workers, under herd's
//! supervisor, with systemd's conventions both ways.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use herd::foreign::{Bound, Foreign};
use herd::supervise::{ClusterEvent, ClusterEvents, ReloadPhase};
use herd::systemd::{ListenFd, ServiceManager};
use herd::{Event, Primary, Settings, Supervision, Supervisor, SupervisorEvent};

use crate::cli::{LogFormat, Output, RunArgs};
use crate::config::{Listen, Run};
use crate::ctl;
use crate::output::{pump, Stream};

/// What the control socket serves: the supervisor, and how herd was
/// started.
pub struct Shared {
    pub sup: Supervisor,
    pub name: String,
    pub policy: String,
    pub ready_rule: String,
    pub grace: Duration,
    pub boot_timeout: Duration,
    pub bound: Vec<Bound>,
    /// The program and its arguments.
    pub program: Vec<String>,
    /// `herd ctl scale` beyond this needs force.
    pub max_workers: usize,
    /// Where `max_workers` came from, for the refusal.
    pub max_workers_from: String,
}

impl Shared {
    /// The status as `herd ctl status` shows it. Reads /proc: call it
    /// where blocking is fine.
    pub fn status(&self) -> ctl::Status {
        let s = self.sup.status();
        let workers = s
            .workers
            .iter()
            .map(|w| ctl::WorkerStatusOut::new(w, s.slot_of(w.id)))
            .collect();
        ctl::Status {
            name: self.name.clone(),
            pid: std::process::id(),
            policy: self.policy.clone(),
            ready_rule: self.ready_rule.clone(),
            wanted: s.wanted,
            ready: s.ready,
            reloading: s.reload.is_some(),
            stopping: s.stopping,
            uptime_secs: s.uptime_secs,
            listening: self
                .bound
                .iter()
                .map(|b| ctl::Listening {
                    name: b.name.clone(),
                    address: b.address.to_string(),
                    fd: b.fd,
                })
                .collect(),
            program: self.program.clone(),
            workers,
        }
    }
}

/// The sockets to serve: bound by herd, or passed by systemd.
enum Source {
    Bind(herd::ListenAddr),
    Passed(OwnedFd),
}

/// Pairs systemd's sockets with the -l options: by name when both have
/// names, else by order; without -l, all of them.
fn match_sockets(
    listens: &[Listen],
    passed: Vec<ListenFd>,
) -> Result<Vec<(Option<String>, Source)>> {
    if passed.is_empty() {
        return Ok(listens
            .iter()
            .map(|l| (l.name.clone(), Source::Bind(l.addr.clone())))
            .collect());
    }
    if listens.is_empty() {
        return Ok(passed
            .into_iter()
            .map(|p| (p.name, Source::Passed(p.fd)))
            .collect());
    }
    let by_name =
        listens.iter().any(|l| l.name.is_some()) && passed.iter().any(|p| p.name.is_some());
    if passed.len() != listens.len() && !by_name {
        bail!(
            "systemd passed {} socket(s) but -l gives {}: give one -l per socket (matched in order), name them (NAME=ADDR, as FileDescriptorName=), or drop -l to serve all passed sockets",
            passed.len(),
            listens.len()
        );
    }
    if by_name {
        let mut passed: Vec<Option<ListenFd>> = passed.into_iter().map(Some).collect();
        let mut out = Vec::new();
        for l in listens {
            let name = l.name.clone().ok_or_else(|| {
                anyhow!("-l {} has no name, but the sockets systemd passed are matched by name: write NAME=ADDR", l.text)
            })?;
            let i = passed
                .iter()
                .position(|p| p.as_ref().is_some_and(|p| p.name.as_deref() == Some(&name)))
                .ok_or_else(|| {
                    anyhow!(
                        "systemd passed no socket named {name:?} (LISTEN_FDNAMES) for -l {}",
                        l.text
                    )
                })?;
            let p = passed[i].take().unwrap();
            out.push((Some(name), Source::Passed(p.fd)));
        }
        return Ok(out);
    }
    Ok(listens
        .iter()
        .zip(passed)
        .map(|(l, p)| (l.name.clone().or(p.name), Source::Passed(p.fd)))
        .collect())
}

/// `herd run`: returns the exit code.
pub fn run(args: RunArgs, format: LogFormat) -> Result<i32> {
    let mut cfg =
        Run::resolve(args).map_err(|e| anyhow::Error::new(crate::Usage(format!("{e:#}"))))?;
    crate::output::set_timestamps(cfg.log_timestamps);
    if let Some(files) = cfg.log_files.clone() {
        crate::logfile::start(files)?;
    }
    // Taken, and removed from the environment, while single-threaded: the
    // workers get their own values of these.
    let passed = herd::systemd::listen_fds()
        .map_err(|e| anyhow!("cannot take the sockets systemd passed: {e}"))?;
    let manager = ServiceManager::from_env();
    for k in herd::systemd::MANAGER_VARIABLES {
        std::env::remove_var(k);
    }
    let sources = match_sockets(&cfg.listens, passed)?;
    if sources.is_empty() {
        // Not an error: some programs bind their own.
        tracing::warn!(
            "no -l and no sockets from systemd: the program gets no socket from herd (LISTEN_FDS unset); give -l ADDR unless it binds its own"
        );
    }
    if cfg.policy == herd::Policy::ReusePort && !cfg.policy_explicit {
        // The default policy, with a passed socket that cannot take
        // siblings: serve it shared rather than fail.
        use nix::sys::socket::{getsockopt, sockopt};
        let lacking = sources.iter().any(|(_, s)| {
            matches!(s, Source::Passed(fd) if !getsockopt(fd, sockopt::ReusePort).unwrap_or(false))
        });
        if lacking {
            tracing::info!(
                "a socket from systemd has no SO_REUSEPORT (ReusePort=yes): using the shared policy"
            );
            cfg.policy = herd::Policy::Shared;
        }
    }
    let runtime_dir = herd::foreign::runtime_dir()?;
    // The name first: of two herds of one name started together, exactly
    // one goes on to make its control socket.
    let _name = crate::name::take_name(&runtime_dir, &cfg.name)?;
    let ctl_path = ctl::socket_path(&runtime_dir, &cfg.name);
    ctl::check_free(&ctl_path, &cfg.name)?;
    if !cfg.takeover {
        for (_, s) in &sources {
            if let Source::Bind(addr) = s {
                crate::held::check(addr, &runtime_dir)?;
            }
        }
    }
    // Removed when this returns: a clean stop.
    let _pid_file = cfg
        .pid_file
        .as_deref()
        .map(crate::startup::PidFile::create)
        .transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, sources, manager, runtime_dir, ctl_path, format))
}

async fn serve(
    cfg: Run,
    sources: Vec<(Option<String>, Source)>,
    manager: Option<ServiceManager>,
    runtime_dir: PathBuf,
    ctl_path: PathBuf,
    format: LogFormat,
) -> Result<i32> {
    let mut spec = Foreign::new(cfg.program.clone(), cfg.args.clone())
        .ready(cfg.ready)
        .watchdog(cfg.heartbeat_timeout)
        .runtime_dir(&runtime_dir);
    let mut unix_paths = Vec::new();
    for (name, source) in sources {
        spec = match source {
            Source::Bind(addr) => {
                if let herd::ListenAddr::Unix(p) = &addr {
                    unix_paths.push(p.clone());
                }
                let options = herd::ListenOptions::new().nodelay(cfg.tcp_nodelay);
                spec.listen_with(name.as_deref(), addr, options)
            }
            Source::Passed(fd) => spec.listen_socket(name.as_deref(), fd),
        };
    }
    let mut settings = Settings::builder()
        .policy(cfg.policy)
        .silent(cfg.output != Output::Raw)
        .foreign(spec);
    for (k, v) in &cfg.env {
        settings = settings.env(k, v);
    }
    // The cluster's cache and channels, over RESP, for the workers' own
    // Redis clients (herd::services::resp).
    // Workers run as another user (--user) cannot search the runtime
    // directory: theirs is in the directory their NOTIFY_SOCKET is in.
    let services_path = match cfg.credentials.uid {
        None => runtime_dir.join(format!("{}.services", cfg.name)),
        Some(_) => herd::foreign::reachable_dir()
            .map_err(|e| anyhow!("{e}"))?
            .join(format!("services-{}", std::process::id())),
    };
    // On Redis (--services), foreign workers use that Redis themselves.
    if cfg.services.is_none() {
        settings = settings.env(herd::services::resp::ENV, &services_path);
    }
    if let Some(uid) = cfg.credentials.uid {
        settings = settings.uid(uid);
    }
    if let Some(gid) = cfg.credentials.gid {
        settings = settings.gid(gid);
    }
    let primary = Primary::with_settings(settings)?;
    let bound = primary.bind_foreign().map_err(|e| anyhow!("{e}"))?;
    for b in &bound {
        // systemd's name for a socket without one is "unknown": not news.
        let name = if b.name == "unknown" {
            String::new()
        } else {
            format!(", name {}", b.name)
        };
        tracing::info!(
            "listening on {} (fd {}{name}{})",
            b.address,
            b.fd,
            if b.inherited { ", from systemd" } else { "" }
        );
    }
    // The cluster's cache (kept for the primary's life): on Redis, shared
    // with every herd of this name on it, or in this primary and served
    // to the workers' own Redis clients on the services socket.
    let services = match &cfg.services {
        Some(url) => herd::CacheService::with_redis(&primary, url, &cfg.name)
            .map(|cache| (cache, None))
            .map_err(|e| anyhow!("--services: {e}")),
        None => herd::CacheService::new(&primary)
            .and_then(|cache| {
                let socket = herd::services::resp::serve_cache(
                    &primary,
                    &cache,
                    &services_path,
                    cfg.credentials.uid,
                )?;
                Ok((cache, Some(socket)))
            })
            .map_err(|e| anyhow!("{e}")),
    };
    let services = match services {
        Ok(s) => s,
        Err(e) => {
            primary.remove_foreign_files();
            return Err(e);
        }
    };
    if let Some(socket) = &services.1 {
        tracing::debug!("services socket {}", socket.path().display());
    }
    let listener = match ctl::bind(&ctl_path) {
        Ok(l) => l,
        Err(e) => {
            primary.remove_foreign_files();
            return Err(e);
        }
    };
    tracing::info!("control socket {}", ctl_path.display());

    let mut supervision = Supervision::new(cfg.workers)
        .grace(cfg.grace)
        .restart(cfg.restart)
        .heartbeat_timeout(cfg.heartbeat_timeout)
        .max_age(cfg.max_age)
        .max_requests(cfg.max_requests)
        .max_memory(cfg.max_memory)
        .drain_delay(cfg.drain_delay)
        .reload_via_health(cfg.reload_via_health)
        .systemd(manager);
    if let Some(b) = cfg.backoff {
        supervision = supervision.backoff(b);
    }
    if let Some(n) = cfg.crash_limit {
        supervision = supervision.crash_limit(n);
    }
    if let Some(t) = cfg.boot_timeout {
        supervision = supervision.boot_timeout(t);
    }
    let boot_timeout = cfg
        .boot_timeout
        .unwrap_or(Supervision::DEFAULT_BOOT_TIMEOUT);
    let sup = Supervisor::new(primary.clone(), supervision);
    let shared = Arc::new(Shared {
        sup: sup.clone(),
        name: cfg.name.clone(),
        policy: cfg.policy.to_string(),
        ready_rule: cfg.ready.to_string(),
        grace: cfg.grace,
        boot_timeout,
        bound,
        program: std::iter::once(cfg.program.display().to_string())
            .chain(cfg.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect(),
        max_workers: cfg.max_workers.0,
        max_workers_from: cfg.max_workers.1.clone(),
    });
    tracing::info!(
        "starting {} worker{}: {} (policy {}, {})",
        cfg.workers,
        if cfg.workers == 1 { "" } else { "s" },
        std::iter::once(cfg.program.display().to_string())
            .chain(cfg.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
        cfg.policy,
        crate::logwords::ready(&cfg.ready)
    );

    let output = match cfg.output {
        Output::Prefix => Some(Some(format)),
        Output::Silent => Some(None),
        Output::Raw => None,
    };
    let logger = tokio::spawn(log(primary.clone(), sup.cluster_events(), output));
    let _monitor = match &cfg.monitor {
        Some(m) => Some(start_monitor(m, &cfg, &sup)?),
        None => None,
    };
    tokio::spawn(ctl::serve(listener, shared));
    crate::logwords::reopen_on_sigusr1()?;

    let code = sup.run().await;
    // The last events (the last workers' exits) are logged before herd
    // says it stopped: `run` closed the stream, so the logger ends.
    let _ = tokio::time::timeout(Duration::from_secs(2), logger).await;

    let _ = std::fs::remove_file(&ctl_path);
    for p in unix_paths {
        let _ = std::fs::remove_file(p);
    }
    primary.remove_foreign_files();
    tracing::info!("stopped (exit code {code})");
    Ok(code)
}

/// Logs the cluster's life (what the library does not log itself), and
/// pumps worker output.
async fn log(primary: Primary, mut events: ClusterEvents, output: Option<Option<LogFormat>>) {
    while let Some(ev) = events.next().await {
        match ev {
            ClusterEvent::Core(ev) => match ev {
                Event::Fork { worker } => {
                    if let Some(w) = primary.worker(worker) {
                        tracing::info!(worker, "worker {worker} started (pid {})", w.pid());
                        if let Some(fmt) = output {
                            if let Some(out) = w.take_stdout() {
                                tokio::spawn(pump(out, fmt, worker, w.pid(), Stream::Stdout));
                            }
                            if let Some(err) = w.take_stderr() {
                                tokio::spawn(pump(err, fmt, worker, w.pid(), Stream::Stderr));
                            }
                        }
                    }
                }
                Event::Ready { worker } => tracing::info!(worker, "worker {worker} ready"),
                Event::Exit {
                    worker,
                    status,
                    exited_after_disconnect: true,
                } => tracing::info!(worker, "worker {worker} exited ({status})"),
                // The supervisor says it with what comes next (respawn,
                // breaker, restart policy): one line for one death.
                Event::Exit { worker, status, .. } => {
                    tracing::debug!(worker, "worker {worker} died ({status})")
                }
                Event::Error { worker, error } => {
                    tracing::warn!(worker, "worker {worker}: {error}")
                }
                _ => {}
            },
            // Breaker trips, respawns, recycling, replacements, reload
            // ends and giving up are in the library's own log.
            ClusterEvent::Supervisor(ev) => match &ev {
                SupervisorEvent::ClusterReady { .. } => tracing::info!("{ev}"),
                SupervisorEvent::Reload(ReloadPhase::Started { workers }) => {
                    tracing::info!("reload: replacing {workers} workers, one at a time")
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// `--monitor`: the library's monitor, with what `herd run` knows of the
/// program for `/deps`.
fn start_monitor(
    m: &crate::config::MonitorOptions,
    cfg: &Run,
    sup: &Supervisor,
) -> Result<herd::MonitorServer> {
    let command = std::iter::once(cfg.program.display().to_string())
        .chain(cfg.args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let mut monitor = herd::Monitor::new(m.addr)
        .ecv_root(&m.ecv_root)
        .deps(herd::deps!(lock = "../../Cargo.lock").command(command))
        .token_from_env("HERD_MONITOR_TOKEN")?;
    if let Some(file) = &m.token_file {
        monitor = monitor.token_file(file)?;
    }
    if let Some((path, body)) = &m.probe {
        monitor = monitor.probe(herd::monitor::Probe::expect(
            path.clone(),
            200,
            body.clone(),
        ));
    }
    if let Some(agent) = m.agent {
        monitor = monitor.agent_check(agent);
    }
    Ok(monitor.start(sup)?)
}
