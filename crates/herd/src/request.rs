//! Messages with a reply: a request from either side that the other side
//! answers, as the Cluster 2.0 proposal's echo callback.
//!
//! The side that asks calls [`Worker::request`](crate::Worker::request) or
//! [`WorkerHandle::request`](crate::WorkerHandle::request) and gets the
//! answer, decoded, or an error: never a hang. The side that is asked gets
//! a [`Request`] (in a worker from
//! [`Worker::recv_request`](crate::Worker::recv_request), in the primary as
//! [`Event::Request`](crate::Event::Request)) and answers it with
//! [`Request::reply`].
//!
//! ```no_run
//! # async fn demo(worker: herd::Worker) -> Result<(), herd::Error> {
//! // In a worker: ask the primary.
//! let sum: u64 = worker.request(&("add", 2, 3)).await?;
//! // And answer what the primary asks.
//! while let Some(req) = worker.recv_request().await {
//!     let (a, b): (u64, u64) = req.decode()?;
//!     req.reply(&(a * b)).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Requests and replies are frames of their own on the channel
//! (docs/protocol.md), so a plain `recv` or
//! [`Event::Message`](crate::Event::Message) never sees
//! one, and plain messages keep their order among themselves. A request
//! ends in one of these ways:
//!
//! - the answer: `Ok`, decoded as the caller asked;
//! - [`Error::Timeout`]: nothing came within the timeout
//!   ([`DEFAULT_TIMEOUT`] unless `request_with_timeout` says otherwise);
//!   a reply that comes later is dropped;
//! - [`Error::NoReply`]: the other side will not answer: the worker
//!   disconnected or died (as soon as the primary knows), or every copy of
//!   the [`Request`] was dropped unanswered, or the other side holds too
//!   many unanswered requests already;
//! - [`Error::TooManyRequests`]: this side has [`MAX_PENDING`] requests
//!   waiting for their replies on this channel already.

use foldhash::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::channel::Outbox;
use crate::message::Message;
use crate::Error;

/// How long a request waits for its reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most requests one side may have waiting for replies on one channel
/// (a worker to its primary, the primary to each worker); one more fails at
/// once with [`Error::TooManyRequests`]. It is also how many requests from
/// the other side may wait unanswered here: one past that is answered at
/// once with [`Error::NoReply`], and never delivered.
pub const MAX_PENDING: usize = 1024;

type Answer = Result<Message, Error>;

/// A request's or a reply's frame body opened: its id, and its value (a
/// slice of the body, not a copy) or the error text sent instead.
///
/// # Errors
/// [`Error::Protocol`] for a body that is no envelope.
pub(crate) fn open_envelope(
    kind: crate::channel::wire::Kind,
    body: Vec<u8>,
) -> Result<(u64, Result<Message, String>), Error> {
    let envelope = crate::channel::wire::Envelope::parse(kind, &body).map_err(Error::Protocol)?;
    let body = bytes::Bytes::from(body);
    Ok((
        envelope.id,
        envelope.msg.map(|range| Message::new(body.slice(range))),
    ))
}

/// The requests one side made on one channel and waits for answers to.
///
/// Their timeouts are kept here, not as one timer each: each request
/// notes its deadline, and one sweeper task per `Pending` sleeps until the
/// earliest and fails what is due (a timer registered and removed per
/// request was a measurable part of a cache get: docs/benchmarks.md,
/// "Cheaper gets (session 11)"). The sweeper runs on the runtime that
/// runs the channel (the herd-primary thread's, or the one a worker
/// connected on), whichever runtime a caller asks from, and ends when the
/// channel closes or this is dropped.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    sweeper: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// Whom they go to: a worker's id, or `None` for the primary.
    peer: Option<u32>,
    state: Mutex<State>,
    /// Wakes the sweeper: a deadline earlier than the one it sleeps to, or
    /// the end.
    sweep: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    waiting: HashMap<u64, Waiter>,
    /// Why no reply can come any more, once the channel is closed.
    closed: Option<String>,
    /// The deadline the sweeper sleeps to (or earlier: it may wake for
    /// nothing, never late), `None` while it waits for a request.
    sweep_at: Option<Instant>,
}

struct Waiter {
    tx: oneshot::Sender<Answer>,
    deadline: Instant,
    timeout: Duration,
}

impl Pending {
    /// The requests to `peer`, timed out by a sweeper on `rt`.
    pub fn new(peer: Option<u32>, rt: &tokio::runtime::Handle) -> Pending {
        let shared = Arc::new(Shared {
            peer,
            state: Mutex::new(State::default()),
            sweep: Notify::new(),
        });
        let sweeper = rt.spawn(sweep(Sweeper(shared.clone())));
        Pending { shared, sweeper }
    }

    /// Sends `msg` as a request on `outbox` and waits, at most `timeout`
    /// in all (waiting to send included), for its reply.
    pub async fn ask<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        outbox: &Outbox,
        msg: &T,
        timeout: Duration,
    ) -> Result<R, Error> {
        self.ask_with(|id| outbox.request(id, msg), timeout).await
    }

    /// As [`ask`](Self::ask), with `send` queueing the request `id`
    /// however its frame is written (a service's request).
    pub async fn ask_with<R, F, Fut>(&self, send: F, timeout: Duration) -> Result<R, Error>
    where
        R: DeserializeOwned,
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        self.ask_raw(send, timeout).await?.decode()
    }

    /// As [`ask_with`](Self::ask_with), the reply left undecoded.
    pub async fn ask_raw<F, Fut>(&self, send: F, timeout: Duration) -> Result<Message, Error>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let (id, mut rx) = self.shared.register(timeout)?;
        let shared = &*self.shared;
        // Cancelled (dropped) or not, the entry goes.
        let _forget = Forget { shared, id };
        let mut sending = std::pin::pin!(send(id));
        // While it waits to be sent, the timeout may come (the sweeper
        // answers for it).
        let sent = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = sending.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            Pin::new(&mut rx).poll(cx).map(Err)
        })
        .await;
        match sent {
            Ok(r) => r.map_err(|e| shared.gone_or(e))?,
            Err(early) => return early.unwrap_or_else(|_| Err(shared.closed_error())),
        }
        rx.await.unwrap_or_else(|_| Err(shared.closed_error()))
    }

    /// A reply arrived: the answer, or why there is none. A reply to no
    /// request (never made, timed out, answered already) is dropped.
    pub fn answer(&self, id: u64, answer: Result<Message, String>) {
        let shared = &*self.shared;
        let waiter = shared.state.lock().unwrap().waiting.remove(&id);
        let Some(waiter) = waiter else {
            tracing::debug!(id, peer = ?shared.peer, "a reply to no waiting request; dropped");
            return;
        };
        let _ = waiter.tx.send(answer.map_err(|why| Error::NoReply {
            worker: shared.peer,
            why,
        }));
    }

    /// No reply can come any more (`why` says why): every request waiting
    /// fails now, and later ones at once.
    pub fn close(&self, why: &str) {
        self.shared.close(why);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

impl Shared {
    /// See [`Pending::close`]; a second close changes nothing.
    fn close(&self, why: &str) {
        let waiting = {
            let mut st = self.state.lock().unwrap();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(why.to_string());
            std::mem::take(&mut st.waiting)
        };
        // The sweeper sees `closed` and ends.
        self.sweep.notify_one();
        for (_, w) in waiting {
            let _ = w.tx.send(Err(self.closed_error()));
        }
    }

    fn register(&self, timeout: Duration) -> Result<(u64, oneshot::Receiver<Answer>), Error> {
        let mut st = self.state.lock().unwrap();
        if st.closed.is_some() {
            return Err(self.gone_or(Error::ChannelClosed));
        }
        if st.waiting.len() >= MAX_PENDING {
            return Err(Error::TooManyRequests {
                worker: self.peer,
                max: MAX_PENDING,
            });
        }
        // A timeout past what an instant can hold: a century.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        st.next += 1;
        let id = st.next;
        let (tx, rx) = oneshot::channel();
        st.waiting.insert(
            id,
            Waiter {
                tx,
                deadline,
                timeout,
            },
        );
        if st.sweep_at.map_or(true, |at| deadline < at) {
            st.sweep_at = Some(deadline);
            self.sweep.notify_one();
        }
        Ok((id, rx))
    }

    /// Fails the requests due at `now` with [`Error::Timeout`]; the
    /// earliest deadline left, or `Err` once the channel is closed.
    fn expire(&self, now: Instant) -> Result<Option<Instant>, ()> {
        let (due, next) = {
            let mut st = self.state.lock().unwrap();
            if st.closed.is_some() {
                return Err(());
            }
            let due: Vec<u64> = (st.waiting.iter())
                .filter(|(_, w)| w.deadline <= now)
                .map(|(&id, _)| id)
                .collect();
            let due: Vec<Waiter> = due.iter().filter_map(|id| st.waiting.remove(id)).collect();
            let next = st.waiting.values().map(|w| w.deadline).min();
            st.sweep_at = next;
            (due, next)
        };
        for w in due {
            let _ = w.tx.send(Err(Error::Timeout {
                worker: self.peer,
                after: w.timeout,
            }));
        }
        Ok(next)
    }

    fn closed_error(&self) -> Error {
        let why = self.state.lock().unwrap().closed.clone();
        Error::NoReply {
            worker: self.peer,
            why: why.unwrap_or_else(|| "the channel closed before the reply came".into()),
        }
    }

    /// The error for a channel found closed: in the primary, the worker
    /// is gone.
    fn gone_or(&self, e: Error) -> Error {
        match (e, self.peer) {
            (Error::ChannelClosed, Some(id)) => Error::WorkerGone { id },
            (e, _) => e,
        }
    }
}

/// The sweeper's hold on its table. Dropped with the sweeper (aborted
/// with its `Pending`, or ended with its runtime, polled or not), it
/// closes the table: with no sweeper, no deadline would be kept, and a
/// request with no reader left to answer it would wait for ever.
struct Sweeper(Arc<Shared>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0
            .close("the runtime that ran this channel shut down, so no reply can come");
    }
}

/// The sweeper: sleeps to the earliest deadline (or until a request
/// comes), fails what is due, and again; ends when the channel closes (or
/// is aborted when its `Pending` is dropped).
async fn sweep(hold: Sweeper) {
    let shared = &hold.0;
    while let Ok(next) = shared.expire(Instant::now()) {
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.sweep.notified() => {}
                }
            }
            None => shared.sweep.notified().await,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().waiting.remove(&self.id);
    }
}

/// A request from the other side, to answer with [`reply`](Self::reply).
///
/// Cheap to clone: every clone is the same request (the primary gives one
/// to each subscriber of its events), and the first reply is the answer.
/// When the last clone is dropped unanswered, the side that asked is told
/// at once ([`Error::NoReply`]) rather than at its timeout.
#[derive(Clone)]
pub struct Request {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    message: Message,
    /// Who asked: a worker's id, or `None` for the primary.
    from: Option<u32>,
    outbox: Arc<Outbox>,
    answered: AtomicBool,
    /// The requests from that side waiting for an answer here.
    open: Arc<AtomicUsize>,
}

impl Request {
    /// A request `id` that arrived on `outbox`'s channel; `None` (and the
    /// asker told why) when `open` requests from that side wait unanswered
    /// here already.
    pub(crate) fn arrived(
        id: u64,
        message: Message,
        from: Option<u32>,
        outbox: Arc<Outbox>,
        open: Arc<AtomicUsize>,
    ) -> Option<Request> {
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(id, ?from, "too many unanswered requests; refusing one");
            let _ = outbox.reply_error(
                id,
                &format!(
                    "{MAX_PENDING} requests from this side already wait for an answer \
                     there; wait for their replies before asking more"
                ),
            );
            return None;
        }
        Some(Request {
            inner: Arc::new(Inner {
                id,
                message,
                from,
                outbox,
                answered: AtomicBool::new(false),
                open,
            }),
        })
    }

    /// Who asked: the worker's id in the primary, `None` in a worker (the
    /// primary asked).
    pub fn worker(&self) -> Option<u32> {
        self.inner.from
    }

    /// The request's value.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// Decodes the request's value into `T` (see [`Message::decode`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.inner.message.decode()
    }

    /// Whether a reply was sent already.
    pub fn is_answered(&self) -> bool {
        self.inner.answered.load(Ordering::Acquire)
    }

    /// Answers the request with `value`. Waits, as `send` does, while the
    /// channel is full.
    ///
    /// # Errors
    /// [`Error::AlreadyAnswered`] when a reply was sent already (by this
    /// clone or another); [`Error::WorkerGone`] (in the primary) or
    /// [`Error::ChannelClosed`] (in a worker) when the side that asked is
    /// gone; [`Error::Codec`] or [`Error::TooLarge`] if `value` cannot be
    /// sent, and then the request is still unanswered.
    pub async fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let inner = &self.inner;
        // Claimed before sending: of two clones answering at once, one
        // sends and the other is told it was answered.
        if inner
            .answered
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::AlreadyAnswered { id: inner.id });
        }
        match inner.outbox.reply(inner.id, value).await {
            Ok(()) => Ok(()),
            Err(Error::ChannelClosed) => Err(match inner.from {
                Some(id) => Error::WorkerGone { id },
                None => Error::ChannelClosed,
            }),
            Err(e) => {
                // Not sent (the value could not be encoded, or is too
                // large): still unanswered, for another try.
                inner.answered.store(false, Ordering::Release);
                Err(e)
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if !self.answered.load(Ordering::Acquire) {
            let _ = self
                .outbox
                .reply_error(self.id, "the request was dropped there without a reply");
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.inner.id)
            .field("worker", &self.inner.from)
            .field("message", &self.inner.message)
            .field("answered", &self.is_answered())
            .finish()
    }
}

#[cfg(test)]
mod tests;
