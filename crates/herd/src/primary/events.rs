//! Lifecycle events, as Node's `cluster.on(...)` and `worker.on(...)`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::message::Message;
use crate::primary::{ExitStatus, Settings};

/// Something that happened to the cluster or to one of its workers.
///
/// Events of one worker arrive in the order they happened: `Fork`, `Online`,
/// `Listening` (once per listen), `Disconnect`, `Exit`. `Disconnect` and
/// `Exit` come exactly once each, `Disconnect` first.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// `setup` was called; carries the merged settings.
    Setup(Settings),
    /// A worker process was started.
    Fork {
        /// The worker's id.
        worker: u32,
    },
    /// The worker's runtime connected back to the primary.
    Online {
        /// The worker's id.
        worker: u32,
    },
    /// The worker listens on `address` (`127.0.0.1:8080`, `[::]:80`,
    /// `unix:/run/app.sock`, `udp:0.0.0.0:53`; its [`kind`] is Node's
    /// `addressType`).
    ///
    /// [`kind`]: crate::ListenAddr::kind
    Listening {
        /// The worker's id.
        worker: u32,
        /// The shared address, as bound (the real port where 0 was asked).
        address: crate::ListenAddr,
    },
    /// The worker finished its warm-up (by default: its first listen) and
    /// gets connections.
    Ready {
        /// The worker's id.
        worker: u32,
    },
    /// The worker's channel closed.
    Disconnect {
        /// The worker's id.
        worker: u32,
    },
    /// The worker's process ended.
    Exit {
        /// The worker's id.
        worker: u32,
        /// The exit code or signal.
        status: ExitStatus,
        /// True when the exit was asked for (disconnect, kill), false for a
        /// crash.
        exited_after_disconnect: bool,
    },
    /// The worker sent a message.
    Message {
        /// The sender's id.
        worker: u32,
        /// The message; decode it with [`Message::decode`].
        message: Message,
    },
    /// Something went wrong with a worker (a protocol violation, a failed
    /// system call); the primary carries on.
    Error {
        /// The worker's id.
        worker: u32,
        /// What went wrong.
        error: Arc<crate::Error>,
    },
}

impl Event {
    /// The worker this event is about, if any.
    pub fn worker(&self) -> Option<u32> {
        match self {
            Event::Setup(_) => None,
            Event::Fork { worker }
            | Event::Online { worker }
            | Event::Listening { worker, .. }
            | Event::Ready { worker }
            | Event::Disconnect { worker }
            | Event::Exit { worker, .. }
            | Event::Message { worker, .. }
            | Event::Error { worker, .. } => Some(*worker),
        }
    }

    /// A short lowercase name: "fork", "online", "listening", ...
    pub fn name(&self) -> &'static str {
        match self {
            Event::Setup(_) => "setup",
            Event::Fork { .. } => "fork",
            Event::Online { .. } => "online",
            Event::Listening { .. } => "listening",
            Event::Ready { .. } => "ready",
            Event::Disconnect { .. } => "disconnect",
            Event::Exit { .. } => "exit",
            Event::Message { .. } => "message",
            Event::Error { .. } => "error",
        }
    }
}

struct Subscriber {
    worker: Option<u32>,
    tx: mpsc::UnboundedSender<Event>,
}

/// Fans events out to every subscriber. Each subscriber has its own
/// unbounded queue, so a slow reader never makes another miss an event.
#[derive(Default)]
pub(crate) struct Bus {
    subs: Mutex<Vec<Subscriber>>,
}

impl Bus {
    pub fn subscribe(&self, worker: Option<u32>) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subs.lock().unwrap().push(Subscriber { worker, tx });
        Events { rx }
    }

    pub fn emit(&self, event: Event) {
        let id = event.worker();
        let mut subs = self.subs.lock().unwrap();
        subs.retain(|s| {
            if s.worker.is_some() && s.worker != id {
                return !s.tx.is_closed();
            }
            s.tx.send(event.clone()).is_ok()
        });
    }
}

/// A stream of [`Event`]s, from [`Primary::events`](crate::Primary::events)
/// or [`WorkerHandle::events`](crate::WorkerHandle::events).
///
/// Use [`Events::next`] in a loop, or as a `futures_core::Stream`. A
/// subscription sees the events that happen after it was made.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event. Cancel safe.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
