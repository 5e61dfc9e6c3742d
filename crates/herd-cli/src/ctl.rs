//! `herd ctl`: the control socket, its protocol and its server end.
//!
//! The socket is `NAME.sock` in herd's per-user runtime directory (mode
//! 0700), created with mode 0600 (bound under a temporary name, chmod'ed,
//! then renamed into place, so it is never reachable with looser bits), and
//! the server also checks each peer's uid (SO_PEERCRED): only the same user
//! (or root) is served.
//!
//! The protocol is one JSON request line (`{"cmd":"status"}`,
//! `{"cmd":"reload"}`, `{"cmd":"scale","workers":3}`, `{"cmd":"stop"}`,
//! and on one worker `{"cmd":"drain","worker":2}`, `undrain`, `replace`,
//! `{"cmd":"profile","worker":2,"seconds":10}`, `dump`: see ctl_worker.rs)
//! and one JSON reply line `{"ok":true,"message":"...","status":{...}}`.
//! A scale above the herd's `--max-workers` (and above the number it has)
//! is refused unless the request says `"force":true`: the herd checks it,
//! not the client, so no client of the socket gets past it by accident.
//! The client end is in `client.rs`; `list.rs` finds every herd.
//! After `stop` the server keeps the connection open until herd exits, so
//! the client knows when it is gone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use herd::supervise::{ReloadError, SlotStatus};
use herd::{ClusterStatus, WorkerStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::run::Shared;

/// Exit code: no herd runs under that name.
pub const EXIT_NOT_RUNNING: i32 = 3;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
    Scale {
        workers: usize,
        /// Beyond the herd's --max-workers.
        #[serde(default)]
        force: bool,
    },
    Stop,
    /// One worker: drain, undrain, replace, profile, dump (ctl_worker.rs).
    Drain {
        worker: u32,
    },
    Undrain {
        worker: u32,
    },
    Replace {
        worker: u32,
    },
    Profile {
        worker: u32,
        seconds: u32,
    },
    Dump {
        worker: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The monitor's `/status` document (with this herd's name), which
    /// `herd ctl status --json` prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listening {
    pub name: String,
    pub address: String,
    pub fd: i32,
}

/// The cluster as `herd ctl status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub pid: u32,
    pub policy: String,
    pub ready_rule: String,
    pub wanted: usize,
    pub ready: usize,
    pub reloading: bool,
    pub stopping: bool,
    pub uptime_secs: f64,
    pub listening: Vec<Listening>,
    /// The program and its arguments (none from an older herd).
    #[serde(default)]
    pub program: Vec<String>,
    pub workers: Vec<WorkerStatusOut>,
}

/// [`herd::WorkerStatus`] as it travels (the library type is not
/// deserializable, on purpose: it is a snapshot, not an input), with what
/// the supervisor knows of its slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatusOut {
    pub id: u32,
    pub pid: u32,
    /// Its slot; none for a worker on its way out.
    pub slot: Option<usize>,
    pub state: String,
    pub leaving: bool,
    pub uptime_secs: f64,
    /// Workers started in its slot after a crash or to recycle one (not
    /// for reloads: those are `reloads`).
    pub restarts: u32,
    /// Workers that replaced its slot's worker in reloads.
    #[serde(default)]
    pub reloads: u32,
    /// CPU time used (user plus system) by its whole process tree, in
    /// seconds.
    #[serde(default)]
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub connections: Option<u64>,
    pub handled: Option<u64>,
    pub heartbeat_age_secs: Option<f64>,
    pub status: Option<String>,
    #[serde(default)]
    pub requests_per_sec: Option<f64>,
    #[serde(default)]
    pub latency_p99_ms: Option<f64>,
    /// How its slot's last worker ended, and how long ago (seconds).
    #[serde(default)]
    pub last_exit: Option<(String, f64)>,
}

impl WorkerStatusOut {
    /// Worker `w`, of `slot` (by the supervisor's status).
    pub fn new(w: &WorkerStatus, slot: Option<&SlotStatus>) -> WorkerStatusOut {
        WorkerStatusOut {
            id: w.id,
            pid: w.pid,
            slot: slot.map(|s| s.slot),
            state: w.state.name().to_string(),
            leaving: w.leaving,
            uptime_secs: w.uptime_secs,
            restarts: slot.map_or(0, |s| s.restarts),
            reloads: slot.map_or(0, |s| s.reloads),
            cpu_secs: w.cpu_secs,
            rss_bytes: w.rss_bytes,
            connections: w.connections,
            handled: w.handled,
            heartbeat_age_secs: w.heartbeat_age_secs,
            status: w.status.clone(),
            requests_per_sec: w.requests_per_sec,
            latency_p99_ms: w.latency_p99_ms,
            last_exit: slot
                .and_then(|s| s.last_exit.as_ref())
                .map(|e| (format!("{} ({})", e.reason, e.status), e.ago_secs)),
        }
    }
}

/// The control socket's path for `name`.
pub fn socket_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir.join(format!("{name}.sock"))
}

/// Fails if a herd already answers on `path`; removes a stale file.
pub fn check_free(path: &Path, name: &str) -> Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "a herd named {name:?} is already running (control socket {}); stop it with `herd ctl --name {name} stop`, or give this one another --name",
            path.display()
        ),
        Err(_) => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
    }
}

/// Binds the control socket with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .with_context(|| format!("cannot create the control socket {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves the control socket until herd exits.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    let me = nix::unistd::getuid().as_raw();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            other => {
                match other {
                    Ok(c) => tracing::warn!(
                        "control socket: refused a connection from uid {} (only this user and root may control herd)",
                        c.uid()
                    ),
                    Err(e) => tracing::warn!(
                        "control socket: refused a connection whose user is unknown ({e})"
                    ),
                }
                continue;
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, shared).await {
                tracing::debug!("control connection: {e:#}");
            }
        });
    }
}

async fn handle(stream: UnixStream, shared: Arc<Shared>) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            ok: false,
            message: format!("bad request: {e}"),
            status: None,
            document: None,
        },
        Ok(Request::Status) => {
            let s = shared.clone();
            let (status, document) = tokio::task::spawn_blocking(move || {
                (s.status(), herd::monitor::status_json(&s.sup))
            })
            .await?;
            Reply {
                ok: true,
                message: String::new(),
                status: Some(status),
                document: Some(document),
            }
        }
        Ok(Request::Reload) => reload(&shared).await,
        Ok(Request::Scale { workers, force }) => scale(&shared, workers, force).await,
        Ok(Request::Drain { worker }) => crate::ctl_worker::drain(&shared, worker).await,
        Ok(Request::Undrain { worker }) => crate::ctl_worker::undrain(&shared, worker).await,
        Ok(Request::Replace { worker }) => crate::ctl_worker::replace(&shared, worker).await,
        Ok(Request::Profile { worker, seconds }) => {
            crate::ctl_worker::profile(&shared, worker, seconds).await
        }
        Ok(Request::Dump { worker }) => crate::ctl_worker::dump(&shared, worker).await,
        Ok(Request::Stop) => {
            let n = shared.sup.primary().workers().len();
            tracing::info!(
                "herd ctl stop: stopping (grace {})",
                crate::limits::Human(shared.grace)
            );
            shared.sup.shutdown();
            let mut text = serde_json::to_string(&Reply {
                ok: true,
                message: format!(
                    "stopping {n} worker{} (grace {})",
                    if n == 1 { "" } else { "s" },
                    crate::limits::Human(shared.grace)
                ),
                status: None,
                document: None,
            })?;
            text.push('\n');
            w.write_all(text.as_bytes()).await?;
            // Held open until herd exits: the client waits for that.
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    let mut text = serde_json::to_string(&reply)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.shutdown().await?;
    Ok(())
}

pub(crate) fn fail(message: String) -> Reply {
    Reply {
        ok: false,
        message,
        status: None,
        document: None,
    }
}

pub(crate) fn done(message: String) -> Reply {
    Reply {
        ok: true,
        message,
        status: None,
        document: None,
    }
}

async fn reload(shared: &Shared) -> Reply {
    match shared.sup.reload().await {
        Ok(r) => done(format!(
            "reloaded: {} worker{} replaced in {:.1}s",
            r.replaced,
            if r.replaced == 1 { "" } else { "s" },
            r.took.as_secs_f64()
        )),
        Err(ReloadError::Aborted { reason }) => fail(format!(
            "reload aborted: {reason}; the old workers keep serving"
        )),
        Err(ReloadError::Stopping) => fail("herd is stopping".into()),
        Err(e) => fail(e.to_string()),
    }
}

/// The supervisor's status, read where blocking is fine.
async fn cluster_status(shared: &Arc<Shared>) -> Option<ClusterStatus> {
    let sup = shared.sup.clone();
    tokio::task::spawn_blocking(move || sup.status()).await.ok()
}

async fn scale(shared: &Arc<Shared>, n: usize, force: bool) -> Reply {
    if n == 0 {
        return fail("cannot scale to 0 workers: use herd ctl stop".into());
    }
    if let Err(e) = crate::limits::number("workers", n, crate::limits::WORKERS) {
        return fail(format!("scale: {e}"));
    }
    let Some(before) = cluster_status(shared).await else {
        return fail("herd is stopping".into());
    };
    if before.stopping {
        return fail("herd is stopping".into());
    }
    // Scaling down is never refused; up past the limit needs force.
    if n > shared.max_workers && n > before.wanted && !force {
        return fail(format!(
            "scale to {n}: above this herd's limit of {} workers ({}); pass --force to scale anyway",
            shared.max_workers, shared.max_workers_from
        ));
    }
    shared.sup.scale(n);
    let limit = shared.boot_timeout + shared.grace + Duration::from_secs(5);
    let start = Instant::now();
    loop {
        let Some(s) = cluster_status(shared).await else {
            return fail("herd is stopping".into());
        };
        let staying = s.workers.iter().filter(|w| !w.leaving).count();
        if s.wanted == n && s.ready == n && staying == n && s.workers.len() == n {
            return done(format!(
                "scaled from {} to {n} workers ({} ready)",
                before.wanted, s.ready
            ));
        }
        if s.stopping {
            return fail("herd is stopping".into());
        }
        if start.elapsed() > limit {
            return fail(format!(
                "scale to {n}: {} of {n} workers ready, {} running, after {:.0}s",
                s.ready,
                s.workers.len(),
                limit.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
