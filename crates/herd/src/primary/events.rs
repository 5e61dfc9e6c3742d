//! Lifecycle events, as Node's `cluster.on(...)` and `worker.on(...)`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, Notify};

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
    /// `setup` was called; carries the merged settings, with the defaults
    /// filled in as [`Primary::settings`](crate::Primary::settings) shows
    /// them.
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
    /// `unix:/run/app.sock`, `udp:0.0.0.0:53` as text). It is typed, with
    /// nothing to parse: its [`kind`] is Node's `addressType` (tcp4, tcp6,
    /// udp4, udp6, unix), [`ip`] and [`port`] are Node's `address` and
    /// `port`, [`path`] a Unix socket's path.
    ///
    /// [`kind`]: crate::ListenAddr::kind
    /// [`ip`]: crate::ListenAddr::ip
    /// [`port`]: crate::ListenAddr::port
    /// [`path`]: crate::ListenAddr::path
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
    /// The worker asks something (with [`Worker::request`]): answer it
    /// with [`Request::reply`]. Every subscriber gets the same request; the
    /// first reply is the answer, and once every copy is dropped unanswered
    /// the worker gets an error at once. Like messages, requests wait
    /// under the worker's `message_queue` bound until taken.
    ///
    /// [`Worker::request`]: crate::Worker::request
    /// [`Request::reply`]: crate::Request::reply
    Request {
        /// The asker's id.
        worker: u32,
        /// The request.
        request: crate::Request,
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
            | Event::Request { worker, .. }
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
            Event::Request { .. } => "request",
            Event::Error { .. } => "error",
        }
    }
}

struct Subscriber {
    worker: Option<u32>,
    tx: mpsc::UnboundedSender<Queued>,
}

/// An event in a subscriber's queue; a worker's message holds a share of
/// its [`Credit`] until this subscriber takes it.
struct Queued {
    event: Event,
    _credit: Option<Arc<Credit>>,
}

/// Fans events out to every subscriber. Each subscriber has its own
/// queue, so a slow reader never makes another miss an event.
///
/// The queues are unbounded, but what a worker can put in them is not:
/// its messages wait there under its [`Gate`] (the primary stops reading
/// its channel while they are over the bound), lifecycle events come a few
/// per worker's life, and a worker's `listening` counts once per listen.
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
        self.emit_with(event, None);
    }

    /// Emits a worker's message, whose `credit` is given back once every
    /// subscriber that gets it has taken it (or dropped its subscription).
    pub fn emit_message(&self, event: Event, credit: Credit) {
        self.emit_with(event, Some(Arc::new(credit)));
    }

    fn emit_with(&self, event: Event, credit: Option<Arc<Credit>>) {
        let id = event.worker();
        let mut subs = self.subs.lock().unwrap();
        subs.retain(|s| {
            if s.worker.is_some() && s.worker != id {
                return !s.tx.is_closed();
            }
            let queued = Queued {
                event: event.clone(),
                _credit: credit.clone(),
            };
            s.tx.send(queued).is_ok()
        });
    }
}

/// One worker's messages emitted and not yet taken by every subscriber
/// that gets them, against the bound of the settings' `message_queue`
/// and `message_queue_bytes`. The primary asks for room before it emits
/// each message, and reads nothing more from that worker until it has it:
/// the worker's `send` then waits on its channel. Other workers have
/// gates of their own, so nothing they send waits for this one's readers.
pub(crate) struct Gate {
    max_messages: usize,
    max_bytes: usize,
    state: Mutex<GateState>,
    freed: Notify,
}

#[derive(Default)]
struct GateState {
    messages: usize,
    bytes: usize,
    /// The reader waits for room.
    waiting: bool,
}

impl Gate {
    pub fn new(max_messages: usize, max_bytes: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max_messages: max_messages.max(1),
            max_bytes,
            state: Mutex::new(GateState::default()),
            freed: Notify::new(),
        })
    }

    /// Room for a message of `bytes`, if there is some now. A message
    /// always fits when none waits, however large.
    pub fn try_admit(self: &Arc<Self>, bytes: usize) -> Option<Credit> {
        let mut st = self.state.lock().unwrap();
        let fits = st.messages == 0
            || (st.messages < self.max_messages && st.bytes + bytes <= self.max_bytes);
        if !fits {
            st.waiting = true;
            return None;
        }
        st.messages += 1;
        st.bytes += bytes;
        Some(Credit {
            gate: self.clone(),
            bytes,
        })
    }

    /// Waits for room for a message of `bytes`. Cancel safe.
    pub async fn admit(self: &Arc<Self>, bytes: usize) -> Credit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(credit) = self.try_admit(bytes) {
                return credit;
            }
            freed.await;
        }
    }

    /// Messages and bytes waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.messages, st.bytes)
    }
}

/// A message's place under its worker's [`Gate`], given back on drop.
pub(crate) struct Credit {
    gate: Arc<Gate>,
    bytes: usize,
}

impl Drop for Credit {
    /// Gives the place back; a reader held back is woken once half the
    /// bound is free (not at each message: that would cost a wake-up each).
    fn drop(&mut self) {
        let wake = {
            let mut st = self.gate.state.lock().unwrap();
            st.messages -= 1;
            st.bytes -= self.bytes;
            let low =
                st.messages <= self.gate.max_messages / 2 && st.bytes <= self.gate.max_bytes / 2;
            st.waiting && low && std::mem::take(&mut st.waiting)
        };
        if wake {
            self.gate.freed.notify_one();
        }
    }
}

/// A stream of [`Event`]s, from [`Primary::events`](crate::Primary::events)
/// or [`WorkerHandle::events`](crate::WorkerHandle::events).
///
/// Use [`Events::next`] in a loop, or as a `futures_core::Stream`. A
/// subscription sees the events that happen after it was made; the one
/// [`Primary::fork_with_events`](crate::Primary::fork_with_events) returns
/// was made before its worker started, and so sees its whole life.
///
/// Read it, or drop it: a worker's messages wait in every subscription
/// that gets them (a [`WorkerHandle::events`](crate::WorkerHandle::events)
/// gets one worker's), and once more than the settings' `message_queue`
/// wait, the primary reads no more from that worker until they are taken.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Queued>,
}

impl Events {
    /// The next event. Cancel safe.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await.map(|q| q.event)
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok().map(|q| q.event)
    }
}

impl futures_core::Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx).map(|q| q.map(|q| q.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(worker: u32) -> Event {
        Event::Message {
            worker,
            message: Message::from_json("1"),
        }
    }

    #[tokio::test]
    async fn a_workers_messages_wait_under_its_gate_until_every_subscriber_takes_them() {
        let bus = Bus::default();
        let mut all = bus.subscribe(None);
        let mut mine = bus.subscribe(Some(1));
        let gate = Gate::new(3, 1 << 20);
        for _ in 0..3 {
            bus.emit_message(message(1), gate.try_admit(1).unwrap());
        }
        assert!(gate.try_admit(1).is_none(), "the bound is reached");
        assert_eq!(gate.waiting(), (3, 3));
        // Taken by one subscriber only: still waiting in the other.
        all.next().await.unwrap();
        assert!(gate.try_admit(1).is_none());
        mine.next().await.unwrap();
        // Taken by both: room for one, and the reader waiting is woken.
        let admitted = tokio::time::timeout(std::time::Duration::from_secs(5), gate.admit(1));
        bus.emit_message(message(1), admitted.await.unwrap());
        // A dropped subscription gives back what waited in it.
        drop(mine);
        while all.try_next().is_some() {}
        assert_eq!(gate.waiting(), (0, 0));
    }

    #[tokio::test]
    async fn a_subscriber_not_reading_one_worker_holds_back_no_other() {
        let bus = Bus::default();
        let _stuck = bus.subscribe(Some(1));
        let mut all = bus.subscribe(None);
        let (one, two) = (Gate::new(2, 1 << 20), Gate::new(2, 1 << 20));
        for _ in 0..2 {
            bus.emit_message(message(1), one.try_admit(1).unwrap());
        }
        while all.try_next().is_some() {}
        assert!(one.try_admit(1).is_none(), "worker 1 waits for its reader");
        for _ in 0..100 {
            bus.emit_message(message(2), two.try_admit(1).unwrap());
            assert_eq!(all.try_next().unwrap().worker(), Some(2));
        }
        bus.emit(Event::Online { worker: 2 });
        assert_eq!(all.try_next().unwrap().name(), "online");
    }

    #[test]
    fn a_message_larger_than_the_byte_bound_passes_alone() {
        let gate = Gate::new(10, 100);
        let big = gate.try_admit(1000).expect("nothing waits: it passes");
        assert!(gate.try_admit(1).is_none());
        drop(big);
        let a = gate.try_admit(60).unwrap();
        assert!(gate.try_admit(60).is_none(), "over the bytes");
        drop(a);
    }
}
