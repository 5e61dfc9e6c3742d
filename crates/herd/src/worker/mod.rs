//! The worker side: a worker process's own end of the cluster, as Node's
//! `cluster.worker` inside a worker.
//!
//! (Why this file runs past 500 lines: it is [`Worker`]'s whole public
//! face, every method a program calls, kept in one place so the API reads
//! as one page; what each method does lives in the submodules: read loop,
//! listeners, requests, heartbeats, serving.)
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = herd::Worker::connect().await?;
//! let listener = worker.listen("127.0.0.1:8080").await?;
//! worker.send(&format!("worker {} listening", worker.id())).await?;
//! # #[cfg(feature = "axum")]
//! axum::serve(listener, axum::Router::new())
//!     .with_graceful_shutdown(worker.disconnecting())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Graceful disconnect (asked by the primary or by [`Worker::disconnect`]):
//! every listener stops accepting (connections handed to this worker but not
//! taken go to another worker), open connections and [`Hold`]s are waited
//! for, and the channel is flushed and closed. Then, as in Node, the worker
//! leaves when its program does: [`Worker::serve`] (or your own server's
//! graceful shutdown) returns, [`Worker::recv`] returns `None`, `main` does
//! its own cleanup and returns or exits with its own code, and the primary
//! reports that code. A program that has not ended
//! [`exit_timeout`](crate::SettingsBuilder::exit_timeout) (30 s) after its
//! disconnect is done is ended by the library, with code
//! [`EXIT_TIMEOUT`](crate::EXIT_TIMEOUT) (124) and a warning.
//! If the primary goes away first, the worker exits at once.
//!
//! ```no_run
//! # async fn demo() -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
//! let worker = herd::Worker::connect().await?;
//! let listener = worker.listen("127.0.0.1:8080").await?;
//! # #[cfg(feature = "axum")]
//! worker.serve(listener, axum::Router::new()).await?; // returns after the disconnect
//! // ... flush logs, close the database ...
//! worker.send(&"bye").await?;
//! worker.flush().await; // so that "bye" is written before the process ends
//! Ok(std::process::ExitCode::from(3))
//! # }
//! ```
//!
//! One listener alone is closed with [`Listener::close`], by dropping it, or
//! (while `axum::serve` owns it) with its [`ListenerCloser`], as Node's
//! `server.close()`: the others go on, and listening on the same address
//! again shares the socket the other workers kept.

mod busy;
mod closer;
mod connection;
mod heartbeat;
mod indexes;
mod listener;
mod queue;
mod read;
mod requests;
#[cfg(feature = "axum")]
mod serve;
#[cfg(feature = "axum")]
mod serve_conn;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::addr::ListenOptions;
use crate::channel::wire::{Control, DEFAULT_MAX_BODY, MAX_BODY, MIN_BODY, VERSION};
use crate::channel::{Limits, Outbox, Reader};
use crate::message::Message;
use crate::request::{Pending, Request};
use crate::sched::ListenAddr;
use crate::{Error, ENV_CHANNEL_FD, ENV_WORKER_ID};
pub use busy::Hold;
pub(crate) use busy::{Accepting, Busy};
pub use closer::ListenerCloser;
pub use connection::{Connection, PeerAddr};
pub use listener::Listener;
use listener::ListenerShared;
pub use requests::{quantile_ms, LATENCY_BOUNDS_MS};
#[cfg(feature = "axum")]
pub use serve::{ServeOptions, LINGER};

/// A worker process's link to its primary. Cheap to clone; every clone is
/// the same link.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

type Reply = (Control, Vec<OwnedFd>);

struct Inner {
    id: u32,
    outbox: Arc<Outbox>,
    next_seq: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    messages: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    /// This worker's requests that wait for the primary's replies.
    calls: Pending,
    /// The primary's requests, delivered by `recv_request`.
    asked: tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>,
    /// The primary's requests that wait for an answer here.
    open: Arc<AtomicUsize>,
    listeners: Mutex<Vec<Arc<ListenerShared>>>,
    /// Which listen of each address each listen is (`indexes`).
    indexes: Arc<indexes::Indexes>,
    disconnecting: watch::Sender<bool>,
    busy: Arc<Busy>,
    /// Counted by `serve`, with the disconnect flag it reads.
    counting: &'static requests::Counting,
    /// Set once the disconnect is done and our end of the channel closed:
    /// the primary closing its end is then expected, not its death.
    left: std::sync::atomic::AtomicBool,
    /// How long the program may take to end once the disconnect is done.
    exit_timeout: Duration,
    status: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// Its services' traffic (`crate::services`).
    services: crate::services::Endpoint,
    /// The library's own services, made on first use.
    slots: crate::services::Slots,
}

static WORKER: OnceLock<Worker> = OnceLock::new();

static CONNECTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id()).finish()
    }
}

impl Worker {
    /// Sends a control frame to the primary (the debug module's answers).
    pub(crate) fn control(&self, msg: &Control) -> Result<(), Error> {
        self.inner.outbox.control(msg, Vec::new())
    }

    /// Connects to the primary (once per process; later calls return the
    /// same link) and announces the worker online. The link runs on the
    /// runtime this is called on, which must outlive it: when that runtime
    /// shuts down, the link's requests fail and nothing more is read.
    ///
    /// # Errors
    /// [`Error::WrongRole`] when this process was not started by a herd
    /// primary; [`Error::Environment`] when the variables the primary sets
    /// are malformed, or the channel was already taken by an earlier call
    /// that failed half-way (it is not taken twice); [`Error::Io`] when the
    /// channel cannot be set up.
    pub async fn connect() -> Result<Worker, Error> {
        let _guard = CONNECTING.lock().await;
        if let Some(w) = WORKER.get() {
            return Ok(w.clone());
        }
        crate::logging::init();
        let fd_text = std::env::var(ENV_CHANNEL_FD).map_err(|_| {
            Error::WrongRole(format!("not a herd worker: {ENV_CHANNEL_FD} is not set (start this program from a herd primary)"))
        })?;
        let id: u32 = std::env::var(ENV_WORKER_ID)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Environment {
                var: ENV_WORKER_ID,
                why: "missing or not a number".into(),
            })?;
        let raw: i32 = fd_text.parse().map_err(|_| Error::Environment {
            var: ENV_CHANNEL_FD,
            why: format!("{fd_text:?} is not a descriptor number"),
        })?;
        // Taken once per process: a connect that fails below (and so
        // closes the descriptor) is never retried on the same number.
        let fd = crate::sys::take_inherited_fd(raw).map_err(|e| Error::Environment {
            var: ENV_CHANNEL_FD,
            why: format!("descriptor {raw}: {e}"),
        })?;
        // Our children must not inherit the channel.
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| Error::io("channel descriptor", e))?;
        let bell = crate::channel::doorbell::Doorbell::from_env();
        let stream =
            crate::channel::ringing(fd, bell).map_err(|e| Error::io("channel descriptor", e))?;
        // What the primary accepts, we send; and accept as much from it.
        let max_body = std::env::var(crate::ENV_MAX_FRAME)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(DEFAULT_MAX_BODY, |n| n.clamp(MIN_BODY, MAX_BODY));
        let outbox = Outbox::start(stream.clone(), max_body);
        let (msg_tx, msg_rx) = mpsc::unbounded_channel();
        let (ask_tx, ask_rx) = mpsc::unbounded_channel();
        let worker = Worker {
            inner: Arc::new(Inner {
                id,
                outbox,
                next_seq: AtomicU64::new(1),
                pending: Mutex::new(HashMap::new()),
                messages: tokio::sync::Mutex::new(msg_rx),
                calls: Pending::new(None, &tokio::runtime::Handle::current()),
                asked: tokio::sync::Mutex::new(ask_rx),
                open: Arc::default(),
                listeners: Mutex::new(Vec::new()),
                indexes: Arc::default(),
                disconnecting: watch::channel(false).0,
                busy: Arc::new(Busy::default()),
                counting: requests::Counting::leak(),
                left: std::sync::atomic::AtomicBool::new(false),
                exit_timeout: std::env::var(crate::ENV_EXIT_TIMEOUT_MS)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(crate::primary::limits::EXIT_TIMEOUT, Duration::from_millis),
                status: Mutex::new(serde_json::Map::new()),
                services: crate::services::Endpoint::new(&tokio::runtime::Handle::current()),
                slots: Default::default(),
            }),
        };
        worker.inner.outbox.control(
            &Control::Hello {
                version: VERSION,
                pid: std::process::id(),
            },
            Vec::new(),
        )?;
        let limits = Limits {
            max_body,
            frame_timeout: None,
        };
        let reader = Reader::with_limits(stream, limits);
        let inbox = read::Inbox {
            messages: msg_tx,
            requests: ask_tx,
        };
        tokio::spawn(read::read_loop(worker.clone(), reader, inbox));
        let every = std::env::var(crate::ENV_HEARTBEAT_MS)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(Duration::from_secs(1), Duration::from_millis);
        tokio::spawn(heartbeat::run(worker.clone(), every));
        let _ = WORKER.set(worker.clone());
        tracing::debug!(worker = id, "connected to the primary");
        Ok(worker)
    }

    /// The sending half of the channel (for `crate::services`).
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.inner.outbox
    }

    /// The library's own services (`crate::services`).
    pub(crate) fn slots(&self) -> &crate::services::Slots {
        &self.inner.slots
    }

    /// The services' side of the channel.
    pub(crate) fn services(&self) -> &crate::services::Endpoint {
        &self.inner.services
    }

    /// This worker's id, as the primary numbered it.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// Sends a message to the primary. Messages arrive in order.
    ///
    /// Waits while more than 8 MiB wait to be written, which is also what
    /// happens while the primary holds this worker back because its
    /// messages are not being consumed there (the primary's
    /// `Settings::message_queue`): nothing is dropped.
    ///
    /// # Errors
    /// [`Error::ChannelClosed`] once the channel is closed;
    /// [`Error::Codec`] if `msg` cannot be encoded; [`Error::TooLarge`] if
    /// it is larger than the primary accepts (its `max_frame`, 17 MiB by
    /// default).
    pub async fn send<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        self.inner.outbox.user(msg).await
    }

    /// The next message from the primary; `None` once the channel is closed
    /// (after a graceful disconnect, once it is done). Cancel safe.
    pub async fn recv(&self) -> Option<Message> {
        self.inner.messages.lock().await.recv().await
    }

    /// Asks the primary something and waits for its answer (which the
    /// primary gives through [`Event::Request`](crate::Event::Request) and
    /// [`Request::reply`]), at most [`DEFAULT_TIMEOUT`] (30 s). Apart from
    /// [`send`](Self::send)'s messages: the primary's `Event::Message` and
    /// this worker's [`recv`](Self::recv) never see a request or a reply.
    ///
    /// ```no_run
    /// # async fn demo(worker: herd::Worker) -> Result<(), herd::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Config { greeting: String }
    /// let config: Config = worker.request(&"config").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::NoReply`] when the primary drops the
    /// request unanswered; [`Error::TooManyRequests`] with
    /// [`MAX_PENDING`] requests waiting already; [`Error::ChannelClosed`];
    /// [`Error::Codec`] if `msg` cannot be sent or the answer does not
    /// decode as `R`; [`Error::TooLarge`].
    ///
    /// [`DEFAULT_TIMEOUT`]: crate::request::DEFAULT_TIMEOUT
    /// [`MAX_PENDING`]: crate::request::MAX_PENDING
    pub async fn request<T, R>(&self, msg: &T) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        self.request_with_timeout(msg, crate::request::DEFAULT_TIMEOUT)
            .await
    }

    /// [`request`](Self::request), waiting at most `timeout` for the answer.
    pub async fn request_with_timeout<T, R>(&self, msg: &T, timeout: Duration) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        self.inner.calls.ask(&self.inner.outbox, msg, timeout).await
    }

    /// The next request from the primary (made with
    /// [`WorkerHandle::request`](crate::WorkerHandle::request)), to answer
    /// with [`Request::reply`]; `None` once the channel is closed. Cancel
    /// safe. Requests come in the order they were made, apart from
    /// [`recv`](Self::recv)'s messages.
    pub async fn recv_request(&self) -> Option<Request> {
        self.inner.asked.lock().await.recv().await
    }

    /// Listens on `addr` (`HOST:PORT`, `[V6]:PORT`, `:PORT`, `unix:PATH`),
    /// sharing the socket with the other workers as the primary's policy
    /// says. The returned [`Listener`] works with `axum::serve` unchanged.
    /// A relative Unix path is taken from this process's working
    /// directory; a path of any length works, though the file name itself
    /// must fit in a socket address (docs/protocol.md, "Long Unix paths").
    ///
    /// # Errors
    /// The bind error, with its [`io::ErrorKind`] (`AddrInUse`,
    /// `PermissionDenied`...) and a message naming the address.
    pub async fn listen(&self, addr: &str) -> io::Result<Listener> {
        self.listen_with(addr, ListenOptions::default()).await
    }

    /// [`listen`](Self::listen) with options (backlog, IPv6-only, Unix
    /// socket permissions).
    pub async fn listen_with(&self, addr: &str, options: ListenOptions) -> io::Result<Listener> {
        let parsed = resolve(addr).await?;
        if matches!(parsed, ListenAddr::Udp(_)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is a UDP address: use bind_udp"),
            ));
        }
        let (handle, mode, address, count_closes, fds, index) =
            self.request_socket(&parsed, options).await?;
        let shared = Arc::new(ListenerShared::new(
            handle,
            self.inner.outbox.clone(),
            count_closes,
            index,
        ));
        let mut fds = fds.into_iter();
        let missing = || io::Error::other("the primary sent no descriptor with its answer");
        let busy = self.inner.busy.clone();
        let listener = match mode {
            // Every connection comes through our queue.
            crate::channel::wire::ListenMode::Handoff => {
                let queue = fds.next().ok_or_else(missing)?;
                Listener::handoff(shared.clone(), queue, &parsed, address, busy)?
            }
            // Our socket, and for TCP under `reuseport` a queue for what the
            // primary accepts on a departed worker's socket.
            crate::channel::wire::ListenMode::Socket => {
                let fd = fds.next().ok_or_else(missing)?;
                Listener::socket(shared.clone(), fd, fds.next(), &parsed, address, busy)?
            }
        };
        {
            let mut listeners = self.inner.listeners.lock().unwrap();
            // Closed ones need no closing at disconnect.
            listeners.retain(|l| !l.is_closed());
            listeners.push(shared.clone());
        }
        if *self.inner.disconnecting.borrow() {
            shared.close();
        } else {
            self.inner
                .outbox
                .control(&Control::Listening { handle }, Vec::new())
                .map_err(io::Error::other)?;
        }
        Ok(listener)
    }

    /// Binds a UDP socket shared with the other workers (never round-robin:
    /// all workers receive on one socket, or on reuseport sockets).
    pub async fn bind_udp(&self, addr: &str) -> io::Result<tokio::net::UdpSocket> {
        let spec = if addr.starts_with("udp:") {
            addr.to_string()
        } else {
            format!("udp:{addr}")
        };
        let parsed = resolve(&spec).await?;
        let (handle, _, _, _, fds, index) = self
            .request_socket(&parsed, ListenOptions::default())
            .await?;
        // A UDP socket says nothing when it closes: the primary keeps this
        // worker in the listen, and so the index stays taken.
        index.keep();
        let fd = fds
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::other("the primary sent no socket with its answer"))?;
        let sock = std::net::UdpSocket::from(fd);
        sock.set_nonblocking(true)?;
        let _ = self
            .inner
            .outbox
            .control(&Control::Listening { handle }, Vec::new());
        tokio::net::UdpSocket::from_std(sock)
    }

    async fn request_socket(
        &self,
        addr: &ListenAddr,
        options: ListenOptions,
    ) -> io::Result<(
        u32,
        crate::channel::wire::ListenMode,
        ListenAddr,
        bool,
        Vec<OwnedFd>,
        indexes::Index,
    )> {
        let key = addr.clone();
        // Given back if this fails (or is cancelled), so a retry gets the
        // same index; else by the listener's close.
        let index = self.inner.indexes.take(&key);
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap().insert(seq, tx);
        let sent = self.inner.outbox.control(
            &Control::Listen {
                seq,
                addr: key.clone(),
                index: index.get(),
                options,
            },
            Vec::new(),
        );
        if let Err(e) = sent {
            self.inner.pending.lock().unwrap().remove(&seq);
            return Err(io::Error::other(e));
        }
        let (reply, fds) = rx
            .await
            .map_err(|_| io::Error::other(Error::ChannelClosed))?;
        match reply {
            Control::Listened {
                handle,
                mode,
                address,
                count_closes,
                ..
            } => Ok((handle, mode, address, count_closes, fds, index)),
            Control::ListenFailed { errno, message, .. } => {
                let kind = io::Error::from_raw_os_error(errno).kind();
                Err(io::Error::new(kind, message))
            }
            other => Err(io::Error::other(format!(
                "unexpected answer to listen: {other:?}"
            ))),
        }
    }

    /// Says the warm-up is done. With `Readiness::Explicit` in the primary's
    /// settings, connections are routed to this worker only after this call
    /// (cluster2's warmUp). Harmless otherwise, and when repeated.
    pub fn ready(&self) {
        let _ = self.inner.outbox.control(&Control::Ready, Vec::new());
    }

    /// Disconnects gracefully: stop accepting, let open connections finish,
    /// close the channel; the process then ends when the program does (see
    /// the [module docs](self)). Returns at once; repeated calls are
    /// harmless.
    pub fn disconnect(&self) {
        self.begin_disconnect(true);
    }

    /// Exits at once (code 0), telling the primary the exit is deliberate.
    pub async fn kill(&self) -> ! {
        let _ = self
            .inner
            .outbox
            .control(&Control::Disconnecting, Vec::new());
        self.inner.outbox.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.outbox.flushed()).await;
        std::process::exit(0)
    }

    /// Resolves when a graceful disconnect begins, from either side: hand it
    /// to your server's graceful shutdown, e.g.
    /// `axum::serve(l, app).with_graceful_shutdown(worker.disconnecting())`.
    pub fn disconnecting(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.disconnecting.subscribe();
        async move {
            let _ = rx.wait_for(|d| *d).await;
        }
    }

    /// Waits until every message sent so far is written to the channel (or
    /// the channel has failed). Call it before `main` returns if your last
    /// messages must reach the primary; [`Worker::serve`] does before it
    /// returns. (On a `current_thread` runtime a message sent waits for the
    /// channel's writer task until the sender yields, so one sent right
    /// before `main` returns is lost without it.)
    pub async fn flush(&self) {
        self.inner.outbox.flushed().await;
    }

    /// Whether a graceful disconnect has begun.
    pub fn is_disconnecting(&self) -> bool {
        *self.inner.disconnecting.borrow()
    }

    /// Keeps the process alive through a graceful disconnect until the
    /// returned guard is dropped (for work that is not a connection).
    pub fn hold(&self) -> Hold {
        Hold::new(self.inner.busy.clone())
    }

    /// Sets a field the worker reports with each heartbeat (shown by the
    /// primary's status).
    pub fn set_status(&self, key: &str, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.inner.status.lock().unwrap().insert(key.to_string(), v);
        }
    }

    fn begin_disconnect(&self, self_initiated: bool) {
        self.inner
            .counting
            .disconnecting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.inner.disconnecting.send_replace(true) {
            return;
        }
        tracing::debug!(worker = self.id(), self_initiated, "disconnecting");
        if self_initiated {
            let _ = self
                .inner
                .outbox
                .control(&Control::Disconnecting, Vec::new());
        }
        for l in self.inner.listeners.lock().unwrap().iter() {
            l.close();
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            inner.busy.idle().await;
            inner.left.store(true, Ordering::SeqCst);
            inner.outbox.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), inner.outbox.flushed()).await;
            tracing::debug!(
                worker = inner.id,
                "disconnected; the program ends when it returns"
            );
            // The backstop, for a program that never ends by itself: on
            // its own thread, so that it outlives the runtime (a runtime
            // being dropped waits for its blocking tasks, maybe for ever).
            let (id, timeout) = (inner.id, inner.exit_timeout);
            let started = std::thread::Builder::new()
                .name("herd-exit-timeout".into())
                .spawn(move || {
                    std::thread::sleep(timeout);
                    tracing::warn!(
                        worker = id,
                        ?timeout,
                        "disconnected, but the program has not ended within its exit \
                         timeout (the primary's exit_timeout setting): exiting with code {}",
                        crate::EXIT_TIMEOUT
                    );
                    std::process::exit(crate::EXIT_TIMEOUT);
                });
            if let Err(e) = started {
                tracing::warn!(worker = id, error = %e, "cannot start the exit timeout's thread");
            }
        });
    }
}

/// Resolves what a worker asked to listen on, here in the worker (a host
/// name through tokio's resolver; a relative Unix path against this
/// process's working directory), so the primary is sent an address only.
async fn resolve(addr: &str) -> io::Result<ListenAddr> {
    Ok(match ListenAddr::resolve(addr).await? {
        ListenAddr::Unix(p) if p.is_relative() => {
            ListenAddr::Unix(std::env::current_dir()?.join(p))
        }
        other => other,
    })
}
