//! # herd
//!
//! Run a network server on every core and keep it up: Node.js's `cluster`
//! module for Rust. One executable is both the **primary**, which forks
//! workers, shares listening ports with them and reports their lives as
//! [`Event`]s, and the **worker**, which serves. [`role`] says which this
//! process is; the primary sets `HERD_CHANNEL_FD` for its children.
//!
//! ```no_run
//! use herd::{Event, Primary, Role, Worker};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     match herd::role() {
//!         Role::Primary => {
//!             let primary = Primary::new()?;
//!             let mut events = primary.events();
//!             for _ in 0..herd::available_cpus() {
//!                 primary.fork()?;
//!             }
//!             while let Some(event) = events.next().await {
//!                 if let Event::Listening { worker, address } = event {
//!                     println!("worker {worker} listening on {address}");
//!                 }
//!             }
//!         }
//!         Role::Worker => {
//!             let worker = Worker::connect().await?;
//!             let listener = worker.listen("127.0.0.1:8080").await?;
//!             let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello world" }));
//!             axum::serve(listener, app)
//!                 .with_graceful_shutdown(worker.disconnecting())
//!                 .await?;
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! To keep a number of workers up, replace them without dropping a
//! request and handle signals, put a [`Supervisor`] on the primary (see
//! [`supervise`]).
//!
//! The modules, in layers (docs/architecture.md). The core, Node's
//! cluster: [`primary`] (fork, registry, events), [`worker`] (the worker's
//! side, listeners), `channel` (the wire between them, documented in
//! docs/protocol.md), [`sched`] (how a port is shared: `rr`, `lc`,
//! `shared`, `reuseport`), [`foreign`] (any program as a worker, by
//! systemd's conventions). On top, the policy: [`supervise`] (the
//! [`Supervisor`]: respawn, rolling restarts, recycling, signals) and
//! [`systemd`] (those conventions, for the primary itself too).

#![warn(missing_docs)]
// Every `unsafe` block lives in `sys`, each with a SAFETY note; the
// compiler refuses one anywhere else.
#![deny(unsafe_code)]

mod addr;
mod bus;
pub(crate) mod channel;
#[cfg(feature = "axum")]
mod cluster;
pub mod debug;
mod error;
pub mod foreign;
mod logging;
mod message;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod primary;
mod procfs;
pub mod request;
pub mod sched;
pub mod services;
mod signal;
pub mod supervise;
#[allow(unsafe_code)]
mod sys;
pub mod systemd;
pub mod worker;

pub use addr::{AddrKind, ListenAddr, ListenOptions};
pub use channel::doorbell::WatchStats;
#[cfg(feature = "axum")]
pub use cluster::{Cluster, Listening, Running, Serving, WarmUp};
pub use error::{Error, Result};
pub use message::{Binary, Message};
#[cfg(feature = "monitor")]
pub use monitor::{Deps, Monitor, MonitorServer};
pub use primary::{
    Event, Events, ExitStatus, Heartbeat, Primary, Readiness, Settings, SettingsBuilder,
    WorkerHandle, WorkerState, WorkerStatus,
};
pub use request::Request;
pub use sched::Policy;
#[cfg(feature = "redis")]
pub use services::cache::RedisHealth;
pub use services::cache::{
    Cache, CacheError, CacheOptions, CacheService, CacheStats, Change, ChangeKind, StoreWorker,
    Watch,
};
pub use services::{Emitter, Target};
pub use signal::Signal;
pub use supervise::{
    ClusterStatus, ReloadPhase, Restart, Supervision, Supervisor, SupervisorEvent, EXIT_CANNOT_BOOT,
};
#[cfg(feature = "axum")]
pub use worker::ServeOptions;
pub use worker::{Connection, Hold, Listener, ListenerCloser, PeerAddr, Worker};

/// The environment variable that carries a worker's id (1, 2, 3...).
pub const ENV_WORKER_ID: &str = "HERD_WORKER_ID";
/// The environment variable that carries the channel's descriptor number;
/// its presence makes a process a worker.
pub const ENV_CHANNEL_FD: &str = "HERD_CHANNEL_FD";

/// The environment variable that carries the descriptor of the page of
/// doorbells a worker rings after each write to its channel, so that the
/// primary's thread can watch for its next frame instead of sleeping (see
/// docs/architecture.md, "Doorbells"). Optional: a worker without it works
/// the same, the primary only sleeps sooner.
pub const ENV_DOORBELL_FD: &str = "HERD_DOORBELL_FD";
/// The environment variable that carries the worker's slot (0 to 63) in
/// the page of doorbells ([`ENV_DOORBELL_FD`]).
pub const ENV_DOORBELL_SLOT: &str = "HERD_DOORBELL_SLOT";

/// The environment variable that carries the heartbeat interval in
/// milliseconds.
pub const ENV_HEARTBEAT_MS: &str = "HERD_HEARTBEAT_MS";

/// The environment variable that carries the largest frame body, in bytes,
/// that the primary accepts and sends (its `max_frame` setting).
pub const ENV_MAX_FRAME: &str = "HERD_MAX_FRAME";

/// The environment variable that carries, in milliseconds, how long a
/// worker's program may take to return from `main` once its graceful
/// disconnect is done (the primary's `exit_timeout` setting).
pub const ENV_EXIT_TIMEOUT_MS: &str = "HERD_EXIT_TIMEOUT_MS";

/// The code a worker exits with when its program has not ended
/// [`exit_timeout`](SettingsBuilder::exit_timeout) after its graceful
/// disconnect was done: 124, as `timeout(1)` uses.
pub const EXIT_TIMEOUT: i32 = 124;

/// Which side of the cluster this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started by a person or a service manager: forks the workers.
    Primary,
    /// Started by a herd primary.
    Worker,
}

/// This process's role: [`Role::Worker`] when started by a herd primary
/// (`HERD_CHANNEL_FD` is set), [`Role::Primary`] otherwise.
pub fn role() -> Role {
    if std::env::var_os(ENV_CHANNEL_FD).is_some() {
        Role::Worker
    } else {
        Role::Primary
    }
}

/// Whether this process is the primary.
pub fn is_primary() -> bool {
    role() == Role::Primary
}

/// The number of CPUs this process may run on (at least 1).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
