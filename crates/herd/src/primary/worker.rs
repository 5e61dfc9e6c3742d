//! The primary's handle on one worker, as Node's `Worker` object.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::watch;

use crate::channel::wire::{Beat, Control};
use crate::primary::events::{Event, Events};
use crate::primary::link::Link;
use crate::primary::Heartbeat;
use crate::primary::{ExitStatus, Inner};
use crate::request::Pending;
use crate::{Error, Signal};

/// Where a worker is in its life, as Node's `worker.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WorkerState {
    /// Forked; its runtime has not connected back yet.
    None,
    /// Connected back to the primary.
    Online,
    /// Listening on at least one address.
    Listening,
    /// Past its warm-up: connections are routed to it.
    Ready,
    /// Its channel is closed.
    Disconnected,
    /// Its process has ended.
    Dead,
}

pub(crate) struct Life {
    pub state: WorkerState,
    pub connected: bool,
    pub dead: bool,
    pub exited_after_disconnect: bool,
    pub disconnect_sent: bool,
    /// Asked to stop by the primary's side: disconnect or kill.
    pub stop_asked: bool,
    pub ready: bool,
}

pub(crate) struct Shared {
    pub id: u32,
    pub pid: u32,
    pub link: Link,
    pub life: Mutex<Life>,
    pub primary: Weak<Inner>,
    pub exit: watch::Sender<Option<ExitStatus>>,
    pub stdout: Mutex<Option<ChildStdout>>,
    pub stderr: Mutex<Option<ChildStderr>>,
    pub started: Instant,
    pub beat: Mutex<Option<(Instant, Heartbeat)>>,
    /// When a foreign worker last said `HERD_HANDLED=`.
    pub handled_at: Mutex<Option<Instant>>,
    /// The last `STATUS=` a foreign worker sent.
    pub status_text: Mutex<Option<String>>,
    /// While a foreign worker is not ready: what its readiness rule has
    /// seen, and what to try (for the boot timeout's message).
    pub unready: Mutex<Option<String>>,
    /// The primary's requests to this worker that wait for replies.
    pub calls: Pending,
    /// This worker's requests that wait for the primary's answers.
    pub open: Arc<AtomicUsize>,
    /// Its service traffic (`crate::services`).
    pub services: crate::services::host::PerWorker,
}

/// The primary's handle on a worker: cheap to clone, valid after the worker
/// is gone (calls then report that it is gone).
#[derive(Clone)]
pub struct WorkerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.id())
            .field("pid", &self.pid())
            .field("state", &self.state())
            .finish()
    }
}

impl WorkerHandle {
    /// The worker's id: 1, 2, 3... in fork order, never reused by a primary.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// Where the worker is in its life.
    pub fn state(&self) -> WorkerState {
        self.shared.life.lock().unwrap().state
    }

    /// Whether the channel to the worker is open.
    pub fn is_connected(&self) -> bool {
        self.shared.life.lock().unwrap().connected
    }

    /// Whether the worker's process has ended.
    pub fn is_dead(&self) -> bool {
        self.shared.life.lock().unwrap().dead
    }

    /// True once the worker was asked to go (disconnect or kill, from either
    /// side): an exit that follows is deliberate, not a crash.
    pub fn exited_after_disconnect(&self) -> bool {
        self.shared.life.lock().unwrap().exited_after_disconnect
    }

    /// Sends a message to the worker. Messages arrive in order.
    ///
    /// # Errors
    /// [`Error::WorkerGone`] if the worker has disconnected;
    /// [`Error::Codec`] or [`Error::TooLarge`] if `msg` cannot be sent.
    pub async fn send<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        let Link::Channel(outbox) = &self.shared.link else {
            return Err(Error::NoChannel { id: self.id() });
        };
        if !self.is_connected() {
            return Err(Error::WorkerGone { id: self.id() });
        }
        outbox.user(msg).await.map_err(|e| match e {
            Error::ChannelClosed => Error::WorkerGone { id: self.id() },
            e => e,
        })
    }

    /// Asks the worker something and waits for its answer (which the
    /// worker gives through [`Worker::recv_request`] and
    /// [`Request::reply`]), at most [`DEFAULT_TIMEOUT`] (30 s).
    ///
    /// ```no_run
    /// # async fn demo(w: herd::WorkerHandle) -> Result<(), herd::Error> {
    /// let open: u64 = w.request(&"open connections?").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// A worker answers only what its program takes with
    /// [`Worker::recv_request`]: one that never calls it leaves the request
    /// unanswered until the timeout.
    ///
    /// # Errors
    /// [`Error::NoReply`] as soon as the worker disconnects or dies
    /// without answering, or drops the request; [`Error::Timeout`];
    /// [`Error::TooManyRequests`] with [`MAX_PENDING`] requests to this
    /// worker waiting already; [`Error::WorkerGone`] if it is gone already;
    /// [`Error::Codec`] if `msg` cannot be sent or the answer does not
    /// decode as `R`; [`Error::NoChannel`] for a foreign worker.
    ///
    /// [`Worker::recv_request`]: crate::Worker::recv_request
    /// [`Request::reply`]: crate::Request::reply
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
        let Link::Channel(outbox) = &self.shared.link else {
            return Err(Error::NoChannel { id: self.id() });
        };
        self.shared.calls.ask(outbox, msg, timeout).await
    }

    /// This worker's events only, from now on: its `Fork` is past (and, as
    /// the worker runs meanwhile, maybe more).
    /// [`Primary::fork_with_events`](crate::Primary::fork_with_events)
    /// returns a subscription that sees every one.
    pub fn events(&self) -> Events {
        match self.shared.primary.upgrade() {
            Some(p) => p.bus.subscribe(Some(self.id())),
            None => crate::primary::events::Bus::default().subscribe(Some(self.id())),
        }
    }

    /// Asks the worker to disconnect gracefully: it stops accepting, lets
    /// open connections finish and closes its channel; it then exits when
    /// its program ends, with the program's code. Returns at once; watch for `Exit` or call [`wait`](Self::wait). Repeated calls
    /// are harmless. A foreign worker is sent its stop signal (SIGTERM).
    pub fn disconnect(&self) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if !life.connected || life.disconnect_sent {
                return;
            }
            life.disconnect_sent = true;
            life.stop_asked = true;
            life.exited_after_disconnect = true;
        }
        tracing::debug!(worker = self.id(), "asking worker to disconnect");
        if let Some(p) = self.shared.primary.upgrade() {
            p.table.stop_routing(self.id());
        }
        match &self.shared.link {
            Link::Foreign { stop } => self.signal(*stop),
            Link::Channel(_) => self.control(&Control::Disconnect, Vec::new()),
        }
    }

    /// Sends a control frame (with descriptors) on the worker's channel;
    /// nothing for a foreign worker, or once the channel is closed.
    pub(crate) fn control(&self, msg: &Control, fds: Vec<std::os::fd::OwnedFd>) {
        if let Link::Channel(outbox) = &self.shared.link {
            let _ = outbox.control(msg, fds);
        }
    }

    /// Whether the worker is a foreign program (see [`crate::foreign`]).
    pub fn is_foreign(&self) -> bool {
        matches!(self.shared.link, Link::Foreign { .. })
    }

    /// Kills the worker with SIGTERM at once (Node's default signal).
    pub fn kill(&self) {
        self.kill_with(Signal::SIGTERM)
    }

    /// Kills the worker with `signal` at once. Harmless on a dead worker.
    pub fn kill_with(&self, signal: Signal) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if life.dead {
                return;
            }
            life.exited_after_disconnect = true;
            life.stop_asked = true;
        }
        tracing::debug!(worker = self.id(), ?signal, "killing worker");
        if let Some(p) = self.shared.primary.upgrade() {
            p.table.stop_routing(self.id());
        }
        self.signal(signal);
    }

    /// Sends `signal` to the worker's process group (its whole tree)
    /// without marking the exit as deliberate.
    pub(crate) fn signal(&self, signal: Signal) {
        if !self.is_dead() {
            super::tree::signal_group(self.shared.pid, signal);
        }
    }

    /// Whether the worker was asked to stop (disconnect or kill) by the
    /// primary's side, rather than leaving by itself.
    pub(crate) fn stop_asked(&self) -> bool {
        self.shared.life.lock().unwrap().stop_asked
    }

    /// Waits until the worker's process has ended and returns how.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.shared.exit.subscribe();
        loop {
            if let Some(status) = *rx.borrow_and_update() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `shared`, which we hold: unreachable,
                // but never hang.
                return ExitStatus::default();
            }
        }
    }

    /// The worker's stdout, when the settings say `silent` (once).
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.shared.stdout.lock().unwrap().take()
    }

    /// The worker's stderr, when the settings say `silent` (once).
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.shared.stderr.lock().unwrap().take()
    }

    // ---- lifecycle, driven by the primary's tasks ----

    pub(crate) fn online(&self, p: &Inner) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if life.state == WorkerState::None {
                life.state = WorkerState::Online;
            }
        }
        tracing::debug!(worker = self.id(), pid = self.pid(), "worker online");
        p.bus.emit(Event::Online { worker: self.id() });
    }

    pub(crate) fn listening(&self, p: &Inner, address: crate::ListenAddr) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if matches!(life.state, WorkerState::None | WorkerState::Online) {
                life.state = WorkerState::Listening;
            }
        }
        tracing::debug!(worker = self.id(), %address, "worker listening");
        p.bus.emit(Event::Listening {
            worker: self.id(),
            address,
        });
    }

    /// The worker finished its warm-up: exactly once.
    pub(crate) fn ready(&self, p: &Inner) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if life.ready || !life.connected {
                return;
            }
            life.ready = true;
            life.state = WorkerState::Ready;
        }
        p.table.set_ready(self.id());
        tracing::debug!(worker = self.id(), "worker ready");
        p.bus.emit(Event::Ready { worker: self.id() });
    }

    /// While it is not ready: what its readiness rule has seen of it, and
    /// what to try (foreign workers only).
    pub(crate) fn unready_hint(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        self.shared.unready.lock().unwrap().clone()
    }

    /// The worker's last heartbeat and when it came, if any came.
    pub fn last_heartbeat(&self) -> Option<(Instant, Heartbeat)> {
        self.shared.beat.lock().unwrap().clone()
    }

    /// When the worker was forked.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    pub(crate) fn heartbeat(&self, beat: Beat) {
        let now = Instant::now();
        let prev = self.shared.beat.lock().unwrap().clone();
        let next = Heartbeat::from_beat(beat, prev.as_ref(), now);
        *self.shared.beat.lock().unwrap() = Some((now, next));
    }

    /// A foreign worker's heartbeat: the time moves, the contents stay.
    pub(crate) fn touch(&self) {
        let mut b = self.shared.beat.lock().unwrap();
        let beat = b.take().map(|(_, h)| h).unwrap_or_default();
        *b = Some((Instant::now(), beat));
    }

    /// A foreign worker's count of handled connections (`HERD_HANDLED=`).
    pub(crate) fn set_handled(&self, handled: u64) {
        let now = Instant::now();
        let mut last = self.shared.handled_at.lock().unwrap();
        let mut b = self.shared.beat.lock().unwrap();
        let (at, beat) = b
            .take()
            .unwrap_or((self.shared.started, Heartbeat::default()));
        *b = Some((at, beat.with_handled(handled, *last, now)));
        *last = Some(now);
    }

    /// Whether the worker has finished its warm-up.
    pub fn is_ready(&self) -> bool {
        self.shared.life.lock().unwrap().ready
    }

    pub(crate) fn mark_leaving(&self) {
        self.shared.life.lock().unwrap().exited_after_disconnect = true;
    }

    /// The channel closed: exactly once.
    pub(crate) fn disconnected(&self, p: &Inner) {
        {
            let mut life = self.shared.life.lock().unwrap();
            if !life.connected {
                return;
            }
            life.connected = false;
            if !life.dead {
                life.state = WorkerState::Disconnected;
            }
        }
        if let Link::Channel(outbox) = &self.shared.link {
            outbox.close();
        }
        self.shared
            .calls
            .close("it disconnected (or died) before replying");
        crate::services::host::worker_gone(&p.services, self);
        p.table.remove_worker(self.id());
        tracing::debug!(worker = self.id(), "worker disconnected");
        p.bus.emit(Event::Disconnect { worker: self.id() });
    }

    /// The process ended: exactly once, after `disconnected`.
    pub(crate) fn exited(&self, p: &Inner, status: ExitStatus) {
        let deliberate = {
            let mut life = self.shared.life.lock().unwrap();
            life.dead = true;
            life.state = WorkerState::Dead;
            life.exited_after_disconnect
        };
        // Kept even with no receiver now (`send` would drop it): a `wait`
        // called after the exit must see it.
        self.shared.exit.send_replace(Some(status));
        tracing::debug!(worker = self.id(), %status, deliberate, "worker exited");
        // Out of the registry first (whoever takes the event sees it
        // gone), and the event sent before those waiting for the registry
        // to empty wake: a shutdown that ends when the last worker leaves
        // still has that worker's exit to report.
        p.workers.lock().unwrap().remove(&self.id());
        p.bus.emit(Event::Exit {
            worker: self.id(),
            status,
            exited_after_disconnect: deliberate,
        });
        p.registry_changed.notify_waiters();
    }
}

impl WorkerState {
    /// The lowercase name: `none`, `online`, `listening`, `ready`,
    /// `disconnected`, `dead`.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::None => "none",
            WorkerState::Online => "online",
            WorkerState::Listening => "listening",
            WorkerState::Ready => "ready",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Dead => "dead",
        }
    }
}
