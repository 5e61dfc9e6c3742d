//! One call for both roles, as cluster2's `listen`: [`Cluster::listen`].
//!
//! In the primary it forks and supervises the workers (and starts the
//! monitor, if one is given) and returns once every initial worker is
//! ready, which is when health turns up. In a worker it builds the
//! application (cluster2's `configureApp`), warms it up before any
//! traffic (cluster2's `warmUp`: the application is exercised in-process,
//! through tower, before the worker listens), then listens on the real
//! address and serves until told to stop; it hands back the worker and its
//! address once it serves.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use herd::{Cluster, Listening, Supervision};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), herd::Error> {
//!     let cluster = Cluster::new("127.0.0.1:8080")
//!         .supervision(Supervision::new(4))
//!         .app(|_worker| Router::new().route("/", get(|| async { "hello" })))
//!         .warm_up(|app| async move {
//!             // Every route the first user will hit, once, in-process.
//!             app.get("/").await.map(drop)
//!         });
//!     match cluster.listen().await? {
//!         Listening::Primary(running) => std::process::exit(running.wait().await),
//!         Listening::Worker(serving) => {
//!             println!("worker {} serving {}", serving.worker.id(), serving.address);
//!             serving.wait().await?;
//!         }
//!     }
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;

use crate::supervise::SupervisorEvent;
use crate::{Error, ListenAddr, Primary, Role, Settings, Supervision, Supervisor, Worker};

type Configure = Arc<dyn Fn(&Worker) -> Router + Send + Sync>;
type WarmUpFn =
    Arc<dyn Fn(WarmUp) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A cluster described once for both roles (see the [module docs](self)).
#[must_use]
pub struct Cluster {
    addr: String,
    settings: Settings,
    supervision: Supervision,
    #[cfg(feature = "monitor")]
    monitor: Option<crate::Monitor>,
    configure: Option<Configure>,
    warm_up: Option<WarmUpFn>,
}

/// What [`Cluster::listen`] hands back.
#[derive(Debug)]
pub enum Listening {
    /// In the primary: every initial worker is ready.
    Primary(Running),
    /// In a worker: it is warm and serves (until told to stop).
    Worker(Serving),
}

/// The primary's side of a running cluster.
#[derive(Debug)]
pub struct Running {
    /// The supervisor: reload, scale, shutdown, status, events.
    pub supervisor: Supervisor,
    /// The monitor, if one was given.
    #[cfg(feature = "monitor")]
    pub monitor: Option<crate::MonitorServer>,
    run: tokio::task::JoinHandle<i32>,
}

impl Running {
    /// Waits until the cluster is shut down (a signal, or
    /// [`Supervisor::shutdown`]) and returns the exit code for the process.
    pub async fn wait(self) -> i32 {
        self.run.await.unwrap_or(1)
    }
}

/// A worker's side: warm, listening, serving.
#[derive(Debug)]
#[non_exhaustive]
pub struct Serving {
    /// The worker's link to the primary.
    pub worker: Worker,
    /// The address it serves (the real port where 0 was asked).
    pub address: ListenAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Waits until the worker has stopped serving (after a graceful
    /// disconnect, once its connections are done).
    ///
    /// # Errors
    /// What serving failed with.
    pub async fn wait(self) -> Result<(), Error> {
        match self.task.await {
            Ok(r) => r.map_err(|e| Error::io("serve", e)),
            Err(e) => Err(Error::io("serve", std::io::Error::other(e))),
        }
    }
}

/// The application, for the warm-up to exercise in-process.
#[derive(Clone)]
pub struct WarmUp {
    app: Router,
}

impl WarmUp {
    /// `GET path` through the application, in this process; the status
    /// and body.
    ///
    /// # Errors
    /// A message when the request cannot be built or the application
    /// fails, or when it answers with a server error.
    pub async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), String> {
        let req = Request::get(path)
            .body(Body::empty())
            .map_err(|e| format!("warm-up request {path}: {e}"))?;
        self.request(req).await
    }

    /// Any request through the application, in this process.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn request(&self, req: Request<Body>) -> Result<(StatusCode, Bytes), String> {
        use tower::ServiceExt;
        let path = req.uri().to_string();
        let res = self
            .app
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| format!("warm-up {path}: {e}"))?;
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 16 << 20)
            .await
            .map_err(|e| format!("warm-up {path}: body: {e}"))?;
        if status.is_server_error() {
            return Err(format!("warm-up {path} answered {status}"));
        }
        Ok((status, body))
    }
}

impl Cluster {
    /// A cluster serving on `addr`, one worker per CPU, default settings.
    pub fn new(addr: &str) -> Cluster {
        Cluster {
            addr: addr.to_string(),
            settings: Settings::default(),
            supervision: Supervision::new(crate::available_cpus()),
            #[cfg(feature = "monitor")]
            monitor: None,
            configure: None,
            warm_up: None,
        }
    }

    /// The primary's settings (policy, heartbeat...).
    pub fn settings(mut self, settings: impl Into<Settings>) -> Self {
        self.settings = settings.into();
        self
    }

    /// How the workers are supervised (how many, restarts, recycling...).
    pub fn supervision(mut self, supervision: Supervision) -> Self {
        self.supervision = supervision;
        self
    }

    /// The monitor the primary serves.
    #[cfg(feature = "monitor")]
    pub fn monitor(mut self, monitor: crate::Monitor) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Builds the application in each worker (cluster2's `configureApp`).
    pub fn app(mut self, configure: impl Fn(&Worker) -> Router + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// Warms the application up before the worker listens (cluster2's
    /// `warmUp`): fill caches, open pools, exercise routes in-process. An
    /// error stops the worker before it takes any traffic.
    pub fn warm_up<F, Fut>(mut self, warm_up: F) -> Self
    where
        F: Fn(WarmUp) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.warm_up = Some(Arc::new(move |w| Box::pin(warm_up(w))));
        self
    }

    /// Runs this process's role (see the [module docs](self)).
    ///
    /// # Errors
    /// In the primary: when the primary or the monitor cannot start, or
    /// when the cluster gives up before every initial worker is ready. In
    /// a worker: when it cannot connect, the warm-up fails, or the address
    /// cannot be listened on.
    pub async fn listen(self) -> Result<Listening, Error> {
        match crate::role() {
            Role::Primary => self.primary().await.map(Listening::Primary),
            Role::Worker => self.worker().await.map(Listening::Worker),
        }
    }

    async fn primary(self) -> Result<Running, Error> {
        let primary = Primary::with_settings(self.settings)?;
        let supervisor = Supervisor::new(primary, self.supervision);
        #[cfg(feature = "monitor")]
        let monitor = self.monitor.map(|m| m.start(&supervisor)).transpose()?;
        let mut events = supervisor.events();
        let mut run = tokio::spawn(supervisor.clone().run());
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(SupervisorEvent::ClusterReady { .. }) => break,
                    Some(SupervisorEvent::GaveUp { reason }) => {
                        return Err(Error::Unsupported(format!("the cluster gave up before it was ready: {reason}")));
                    }
                    Some(_) => {}
                    None => return Err(Error::Unsupported("the cluster stopped before it was ready".into())),
                },
                code = &mut run => {
                    return Err(Error::Unsupported(format!(
                        "the cluster stopped before it was ready (exit code {})",
                        code.unwrap_or(1)
                    )));
                }
            }
        }
        Ok(Running {
            supervisor,
            #[cfg(feature = "monitor")]
            monitor,
            run,
        })
    }

    async fn worker(self) -> Result<Serving, Error> {
        let worker = Worker::connect().await?;
        let app = match &self.configure {
            Some(configure) => configure(&worker),
            None => Router::new(),
        };
        if let Some(warm_up) = &self.warm_up {
            warm_up(WarmUp { app: app.clone() })
                .await
                .map_err(Error::WarmUp)?;
        }
        let listener = worker
            .listen(&self.addr)
            .await
            .map_err(|source| Error::Listen {
                address: self.addr.clone(),
                source,
            })?;
        let address = listener.local_addr();
        let w = worker.clone();
        let task = tokio::spawn(async move { w.serve(listener, app).await });
        Ok(Serving {
            worker,
            address,
            task,
        })
    }
}
