//! `herd run`: the program as a cluster of foreign workers, under herd's
//! supervisor, with systemd's conventions both ways.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use herd::foreign::{Bound, Foreign};
use herd::systemd::{ListenFd, Notifier};
use herd::{Event, Primary, ReloadPhase, Settings, Signal, Supervision};

use crate::cli::{LogFormat, Output, RunArgs};
use crate::config::{Listen, Run};
use crate::ctl;
use crate::output::{pump, Stream};

/// What the control socket, the signal handlers and the event loop share.
pub struct Shared {
    pub primary: Primary,
    pub name: String,
    pub policy: String,
    pub ready_rule: String,
    pub wanted: AtomicUsize,
    pub reloading: AtomicBool,
    pub stopping: AtomicBool,
    pub grace: Duration,
    pub boot_timeout: Duration,
    pub started: Instant,
    pub bound: Vec<Bound>,
    pub notifier: Option<Notifier>,
    /// The exit code herd ends with, when something other than the
    /// supervisor decides it (1: crash loop everywhere, forced stop).
    pub exit_code: AtomicI32,
}

impl Shared {
    pub fn ready_count(&self) -> usize {
        self.primary
            .workers()
            .iter()
            .filter(|w| w.is_ready() && !w.exited_after_disconnect())
            .count()
    }

    pub fn status(&self) -> ctl::Status {
        let workers = self.primary.status().into_iter().map(Into::into).collect();
        ctl::Status {
            name: self.name.clone(),
            pid: std::process::id(),
            policy: self.policy.clone(),
            ready_rule: self.ready_rule.clone(),
            wanted: self.wanted.load(Ordering::SeqCst),
            ready: self.ready_count(),
            reloading: self.reloading.load(Ordering::SeqCst),
            stopping: self.stopping.load(Ordering::SeqCst),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            listening: self
                .bound
                .iter()
                .map(|b| ctl::Listening {
                    name: b.name.clone(),
                    address: b.address.to_string(),
                    fd: b.fd,
                })
                .collect(),
            workers,
        }
    }

    /// Tells systemd (when herd runs under it).
    pub fn sd(&self, msg: &str) {
        if let Some(n) = &self.notifier {
            if let Err(e) = n.notify(msg) {
                tracing::debug!("sd_notify {msg:?}: {e}");
            }
        }
    }

    fn sd_status(&self) {
        let ready = self.ready_count();
        let wanted = self.wanted.load(Ordering::SeqCst);
        self.sd(&format!("STATUS={ready} of {wanted} workers ready"));
    }

    /// Begins a graceful stop (once).
    pub fn stop(&self, why: &str) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("{why}: stopping (grace {:?})", self.grace);
        self.sd("STOPPING=1\nSTATUS=stopping");
        self.primary.shutdown();
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
    // Taken, and removed from the environment, while single-threaded: the
    // workers get their own values of these.
    let passed = herd::systemd::listen_fds()
        .map_err(|e| anyhow!("cannot take the sockets systemd passed: {e}"))?;
    let notifier = Notifier::from_env();
    let sd_watchdog = herd::systemd::watchdog_interval();
    for k in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        std::env::remove_var(k);
    }
    let sources = match_sockets(&cfg.listens, passed)?;
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
    let ctl_path = ctl::socket_path(&runtime_dir, &cfg.name);
    ctl::check_free(&ctl_path, &cfg.name)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(
        cfg,
        sources,
        notifier,
        sd_watchdog,
        runtime_dir,
        ctl_path,
        format,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: Run,
    sources: Vec<(Option<String>, Source)>,
    notifier: Option<Notifier>,
    sd_watchdog: Option<Duration>,
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
                spec.listen(name.as_deref(), addr)
            }
            Source::Passed(fd) => spec.listen_socket(name.as_deref(), fd),
        };
    }
    let mut settings = Settings::new()
        .policy(cfg.policy)
        .silent(cfg.output != Output::Raw)
        .foreign(spec);
    for (k, v) in &cfg.env {
        settings = settings.env(k, v);
    }
    let primary = Primary::with_settings(settings)?;
    let bound = primary.bind_foreign().map_err(|e| anyhow!("{e}"))?;
    for b in &bound {
        tracing::info!(
            "listening on {} (fd {}, name {}{})",
            b.address,
            b.fd,
            b.name,
            if b.inherited { ", from systemd" } else { "" }
        );
    }
    let listener = match ctl::bind(&ctl_path) {
        Ok(l) => l,
        Err(e) => {
            primary.remove_foreign_files();
            return Err(e);
        }
    };
    tracing::info!("control socket {}", ctl_path.display());

    let mut sup = Supervision::new(cfg.workers).grace(cfg.grace);
    sup.restart = cfg.restart;
    if let Some(b) = cfg.backoff {
        sup.backoff = b;
    }
    if let Some(n) = cfg.crash_limit {
        sup.crash_limit = n.max(1);
    }
    if let Some(t) = cfg.boot_timeout {
        sup.boot_timeout = t;
    }
    sup.heartbeat_timeout = cfg.heartbeat_timeout;
    sup.max_age = cfg.max_age;
    sup.max_requests = cfg.max_requests;
    sup.max_memory = cfg.max_memory;
    sup.handle_signals = false;

    let shared = Arc::new(Shared {
        primary: primary.clone(),
        name: cfg.name.clone(),
        policy: cfg.policy.to_string(),
        ready_rule: cfg.ready.to_string(),
        wanted: AtomicUsize::new(cfg.workers),
        reloading: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        grace: cfg.grace,
        boot_timeout: sup.boot_timeout,
        started: Instant::now(),
        bound,
        notifier,
        exit_code: AtomicI32::new(0),
    });
    tracing::info!(
        "starting {} worker{}: {} (policy {}, ready when {})",
        cfg.workers,
        if cfg.workers == 1 { "" } else { "s" },
        std::iter::once(cfg.program.display().to_string())
            .chain(cfg.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
        cfg.policy,
        cfg.ready
    );

    let output = match cfg.output {
        Output::Prefix => Some(Some(format)),
        Output::Silent => Some(None),
        Output::Raw => None,
    };
    tokio::spawn(events(shared.clone(), primary.events(), output));
    tokio::spawn(signals(shared.clone()));
    tokio::spawn(ctl::serve(listener, shared.clone()));
    if let Some(every) = sd_watchdog {
        let s = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                s.sd("WATCHDOG=1");
            }
        });
    }

    let code = primary.supervise(sup).await;

    let _ = std::fs::remove_file(&ctl_path);
    for p in unix_paths {
        let _ = std::fs::remove_file(p);
    }
    primary.remove_foreign_files();
    let code = code.max(shared.exit_code.load(Ordering::SeqCst));
    tracing::info!("stopped (exit code {code})");
    Ok(code)
}

/// Logs the cluster's life, pumps worker output, tells systemd.
async fn events(shared: Arc<Shared>, mut events: herd::Events, output: Option<Option<LogFormat>>) {
    let mut was_ready = false;
    let broken: Mutex<std::collections::BTreeSet<usize>> = Mutex::default();
    while let Some(ev) = events.next().await {
        match &ev {
            Event::Fork { worker } => {
                if let Some(w) = shared.primary.worker(*worker) {
                    tracing::info!("worker {worker} started (pid {})", w.pid());
                    if let Some(fmt) = output {
                        if let Some(out) = w.take_stdout() {
                            tokio::spawn(pump(out, fmt, *worker, w.pid(), Stream::Stdout));
                        }
                        if let Some(err) = w.take_stderr() {
                            tokio::spawn(pump(err, fmt, *worker, w.pid(), Stream::Stderr));
                        }
                    }
                }
            }
            Event::Ready { worker } => tracing::info!("worker {worker} ready"),
            Event::Exit {
                worker,
                status,
                exited_after_disconnect,
            } => {
                if *exited_after_disconnect {
                    tracing::info!("worker {worker} exited ({status})");
                } else {
                    tracing::warn!("worker {worker} died ({status})");
                }
            }
            Event::Critical { slot, reason } => {
                tracing::error!("{reason}");
                let mut b = broken.lock().unwrap();
                b.insert(*slot);
                if b.len() >= shared.wanted.load(Ordering::SeqCst)
                    && !shared.primary.workers().iter().any(|w| w.is_ready())
                {
                    tracing::error!("every worker slot is down; giving up");
                    shared.exit_code.store(1, Ordering::SeqCst);
                    shared.stop("no worker can run");
                }
            }
            Event::Recycle { worker, reason } => {
                tracing::info!("recycling worker {worker}: {reason}")
            }
            Event::Error { worker, error } => tracing::warn!("worker {worker}: {error}"),
            Event::Reload(phase) => match phase {
                ReloadPhase::Started { workers } => {
                    shared.reloading.store(true, Ordering::SeqCst);
                    tracing::info!("reload: replacing {workers} workers, one at a time");
                    shared.sd(&format!(
                        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                        herd::systemd::monotonic_usec()
                    ));
                }
                ReloadPhase::Replaced { old, new } => {
                    tracing::info!("reload: worker {old} replaced by worker {new}")
                }
                ReloadPhase::Finished { replaced, took } => {
                    shared.reloading.store(false, Ordering::SeqCst);
                    tracing::info!(
                        "reload finished: {replaced} workers replaced in {:.1}s",
                        took.as_secs_f64()
                    );
                    shared.sd("READY=1");
                    shared.sd_status();
                }
                ReloadPhase::Aborted { reason } => {
                    shared.reloading.store(false, Ordering::SeqCst);
                    tracing::warn!("reload aborted: {reason}; the old workers keep serving");
                    shared.sd("READY=1");
                    shared.sd_status();
                }
                _ => {}
            },
            _ => {}
        }
        if matches!(ev, Event::Ready { .. }) {
            broken.lock().unwrap().clear();
        }
        if matches!(
            ev,
            Event::Fork { .. } | Event::Ready { .. } | Event::Exit { .. }
        ) {
            let ready = shared.ready_count();
            let wanted = shared.wanted.load(Ordering::SeqCst);
            let now_ready = ready >= wanted;
            if now_ready && !was_ready && !shared.stopping.load(Ordering::SeqCst) {
                tracing::info!("cluster ready: {ready} of {wanted} workers");
                shared.sd("READY=1");
            }
            was_ready = now_ready;
            if !shared.stopping.load(Ordering::SeqCst) {
                shared.sd_status();
            }
        }
    }
}

/// TERM/INT stop gracefully (a second one kills), HUP reloads, TTIN/TTOU
/// add or remove a worker.
async fn signals(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut ttin), Ok(mut ttou)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::from_raw(Signal::SIGTTIN.as_raw())),
        signal(SignalKind::from_raw(Signal::SIGTTOU.as_raw())),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                if shared.stopping.load(Ordering::SeqCst) { continue; }
                tracing::info!("SIGHUP: rolling restart");
                shared.primary.reload();
                continue;
            }
            _ = ttin.recv() => {
                let n = shared.wanted.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!("SIGTTIN: scaling to {n} workers");
                shared.primary.scale(n);
                continue;
            }
            _ = ttou.recv() => {
                let n = shared.wanted.load(Ordering::SeqCst).saturating_sub(1).max(1);
                shared.wanted.store(n, Ordering::SeqCst);
                tracing::info!("SIGTTOU: scaling to {n} workers");
                shared.primary.scale(n);
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            tracing::warn!("{name} again: killing the workers now");
            shared.exit_code.store(1, Ordering::SeqCst);
            shared.primary.kill_all(Signal::SIGKILL).await;
        } else {
            shared.stop(name);
        }
    }
}
