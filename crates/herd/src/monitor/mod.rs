//! The monitor: an HTTP server in the primary, on a port of its own, for
//! load balancers, probes, people and Prometheus (cluster2's monitor app
//! and ECV). Feature `monitor` (on by default).
//!
//! | route | answers |
//! |---|---|
//! | `GET /ecv` (the root is configurable) | 200 `status=AVAILABLE&ServeTraffic=true&...` when the cluster is up; 503 with `status=WARNING` (not enough workers ready, or the probe failed) or `status=DISABLED` (marked down, stopping, reloading through health) |
//! | `POST /ecv/markDown`, `POST /ecv/markUp` | with the token: mark the host down (health answers draining while the workers keep serving) or up |
//! | `GET /livez` | 200 while the primary's dispatch thread answers |
//! | `GET /readyz` | the ECV verdict, for Kubernetes |
//! | `GET /status` | the cluster and every worker as JSON, each named cache's counters (`caches`), the status registry's names (`statuses`; names only: reading a value asks every worker that holds it) |
//! | `GET /statuses`, `GET /statuses/NAME?timeout_ms=N` | the registry's names; one status's value in every worker that holds it, collected within N ms (default 1000, at most 10000), with the workers that did not answer in `missing`; 404 naming an unregistered status, 400 for a malformed name (see `statuses.rs`) |
//! | `POST /statuses/NAME` | with the token, a JSON body: every holder's update called with it; who applied it, refused it, did not answer |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /deps` | what the program is built from |
//! | `POST /reload`, `POST /scale?workers=N` | with the token: a rolling restart (answered when it ends), a new worker count |
//! | `POST /workers/{id}/drain`, `/undrain`, `/replace` | with the token: take one worker out of rotation (it keeps serving its open connections), put it back, replace it successor first; 404 no such worker, 409 why not |
//! | `GET /workers/{id}/profile?seconds=N` | with the token: a flamegraph SVG of N seconds (1 to 60) of that worker's CPU, or 501 saying why none can be made (see [`crate::debug`]) |
//! | `GET /workers/{id}/dump` | with the token: every thread's backtrace in that worker, as text, or 501 |
//! | `GET /debug` | the live dashboard: one page, its CSS and JavaScript embedded (`/debug/style.css`, `/debug/render.js`, `/debug/app.js`); its buttons call the control routes with the token typed into it |
//! | `GET /debug/events` | server-sent events for the dashboard: a `snapshot` (the `/status` document, each worker's requests/s history, the recent events) every [tick](Monitor::dashboard_interval) and soon after each lifecycle event; at most 32 at once (then 503), a page that stops reading is dropped |
//!
//! Control routes need the token (`Authorization: Bearer TOKEN`), compared
//! in constant time; without a configured token they do not exist (404).
//! Put the monitor on loopback or a private interface.
//!
//! ```no_run
//! # async fn demo(sup: herd::Supervisor) -> Result<(), herd::Error> {
//! let monitor = herd::Monitor::new("127.0.0.1:9090".parse().unwrap())
//!     .token_from_env("HERD_MONITOR_TOKEN")?
//!     .start(&sup)?;
//! println!("monitor on http://{}/ecv", monitor.local_addr());
//! # Ok(()) }
//! ```

mod agent;
mod cache_metrics;
mod dashboard;
mod deps;
mod ecv;
mod metrics;
mod routes;
mod status;
mod statuses;
mod token;
mod workers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::{Error, Supervisor};
pub use deps::{Dep, Deps};
pub use ecv::Probe;
pub use status::status_json;
use token::Token;

/// Connections the monitor serves at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_HEAD: usize = 16 << 10;
/// Each connection's socket send buffer (the kernel doubles it).
const SEND_BUFFER: usize = 64 << 10;

/// The monitor's configuration (see the [module docs](self)).
#[derive(Clone)]
#[must_use]
pub struct Monitor {
    addr: SocketAddr,
    ecv_root: String,
    probe: Option<Probe>,
    token: Option<Token>,
    agent: Option<SocketAddr>,
    deps: Deps,
    dashboard_tick: Duration,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("addr", &self.addr)
            .field("ecv_root", &self.ecv_root)
            .field("probe", &self.probe.is_some())
            .field("token", &self.token.is_some())
            .field("agent", &self.agent)
            .field("dashboard_interval", &self.dashboard_tick)
            .finish()
    }
}

impl Monitor {
    /// A monitor on `addr` (port 0: any free port), ECV at `/ecv` in
    /// control mode, no token (so no control routes), no agent check.
    pub fn new(addr: SocketAddr) -> Monitor {
        Monitor {
            addr,
            ecv_root: "/ecv".into(),
            probe: None,
            token: None,
            agent: None,
            deps: Deps::of_herd(),
            dashboard_tick: Duration::from_secs(1),
        }
    }

    /// Where ECV answers (default `/ecv`); its control routes are
    /// `ROOT/markDown` and `ROOT/markUp`.
    pub fn ecv_root(mut self, root: &str) -> Self {
        let root = root.trim_end_matches('/');
        self.ecv_root = if root.starts_with('/') {
            root.to_string()
        } else {
            format!("/{root}")
        };
        self
    }

    /// Monitor mode: each health request also probes the application
    /// through the workers, and the probe's validator decides.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The token control routes need.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token.into()));
        self
    }

    /// The token, from the first line of a file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, or [`Error::Unsupported`] when it
    /// holds no token.
    pub fn token_file(self, path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("monitor token file {}", path.display()), e))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(Error::Unsupported(format!(
                "the monitor token file {} is empty: put the token on its first line",
                path.display()
            )));
        }
        Ok(self.token(token))
    }

    /// The token, from an environment variable, if it is set (and not
    /// empty).
    ///
    /// # Errors
    /// Never for a missing variable; [`Error::Unsupported`] for one that
    /// is not UTF-8.
    pub fn token_from_env(self, var: &str) -> Result<Self, Error> {
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(self.token(t.trim())),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(self),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::Unsupported(format!("{var} is not valid UTF-8")))
            }
        }
    }

    /// Also answer HAProxy's agent-check on `addr` (TCP): `ready up 75%`
    /// (the share of wanted workers ready), `drain` or `down`.
    pub fn agent_check(mut self, addr: SocketAddr) -> Self {
        self.agent = Some(addr);
        self
    }

    /// What `/deps` reports (default: herd itself; see [`deps!`](crate::deps)).
    pub fn deps(mut self, deps: Deps) -> Self {
        self.deps = deps;
        self
    }

    /// How often the dashboard's pages get a new snapshot (besides one
    /// soon after each lifecycle event); default one second, kept within
    /// 10 ms and 60 s. Each worker's sparkline keeps 180 of them.
    pub fn dashboard_interval(mut self, every: Duration) -> Self {
        self.dashboard_tick = every.clamp(Duration::from_millis(10), Duration::from_secs(60));
        self
    }

    /// Binds the monitor (and the agent check) and serves it on the
    /// current tokio runtime until the returned server is dropped.
    ///
    /// # Errors
    /// [`Error::Listen`] naming the address when it cannot be bound.
    pub fn start(self, sup: &Supervisor) -> Result<MonitorServer, Error> {
        let listener = bind(self.addr)?;
        let local = listener.local_addr().map_err(|e| Error::io("monitor", e))?;
        let agent = self.agent.map(bind).transpose()?;
        let agent_addr = agent.as_ref().and_then(|l| l.local_addr().ok());
        tracing::info!("monitor on http://{local} (ECV at {})", self.ecv_root);
        tracing::info!("dashboard on http://{local}/debug");
        if let Some(a) = agent_addr {
            tracing::info!("agent check on {a}");
        }
        let ecv_root = self.ecv_root.clone();
        let ctx = Arc::new(routes::Ctx {
            sup: sup.clone(),
            ecv_root: self.ecv_root,
            probe: self.probe,
            token: self.token,
            deps: self.deps,
            started: std::time::SystemTime::now(),
        });
        let hub = dashboard::Hub::new();
        let mut tasks = vec![
            tokio::spawn(serve(listener, ctx.clone(), hub.clone())),
            tokio::spawn(dashboard::hub::run(
                hub,
                sup.clone(),
                self.dashboard_tick,
                ecv_root,
            )),
        ];
        if let Some(agent) = agent {
            tasks.push(tokio::spawn(agent::serve(agent, sup.clone())));
        }
        Ok(MonitorServer {
            local,
            agent: agent_addr,
            tasks,
        })
    }
}

/// A running monitor; dropping it stops it.
#[derive(Debug)]
pub struct MonitorServer {
    local: SocketAddr,
    agent: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MonitorServer {
    /// The address it answers on (the real port where 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The agent check's address, if one was asked for.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent
    }
}

impl Drop for MonitorServer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let listen = |source| Error::Listen {
        address: addr.to_string(),
        source,
    };
    let std = std::net::TcpListener::bind(addr).map_err(listen)?;
    std.set_nonblocking(true).map_err(listen)?;
    tokio::net::TcpListener::from_std(std).map_err(listen)
}

async fn serve(listener: tokio::net::TcpListener, ctx: Arc<routes::Ctx>, hub: Arc<dashboard::Hub>) {
    use http_body_util::BodyExt;
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off rather than spin.
                tracing::warn!(error = %e, "monitor: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let local = stream.local_addr().ok();
        // A fixed send buffer (no autotuning up to megabytes): what a page
        // that stops reading can hold up is bounded, and it is found out.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let (ctx, hub) = (ctx.clone(), hub.clone());
        // Thrown by the dashboard's hub when this connection's page falls
        // behind: the connection ends instead of buffering for it.
        let kill = Arc::new(tokio::sync::Notify::new());
        let switch = kill.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (ctx, hub, kill) = (ctx.clone(), hub.clone(), kill.clone());
                async move {
                    let path = req.uri().path().to_string();
                    if let Some(r) = dashboard::handle(&hub, req.method(), &path, &kill) {
                        return Ok::<_, std::convert::Infallible>(r);
                    }
                    let r = routes::handle(&ctx, req, local).await;
                    Ok(r.map(BodyExt::boxed_unsync))
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "monitor connection");
                },
                _ = switch.notified() => tracing::debug!(%peer, "monitor: dropped a slow dashboard page"),
            }
            drop(permit);
        });
    }
}
