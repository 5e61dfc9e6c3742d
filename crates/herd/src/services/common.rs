//! What both sides of the services transport share: the table of services
//! by name, the inbox, the credit that bounds what waits, and a request to
//! answer.

use foldhash::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::frame::{self, Op};
use crate::channel::wire::Kind;
use crate::channel::Outbox;
use crate::message::{codec, Message};
use crate::request::MAX_PENDING;
use crate::Error;

/// A delivery's place under its sender's bound (the primary's
/// `message_queue` and `message_queue_bytes` settings per worker; 1024
/// deliveries or 8 MiB in a worker): while it is held, it counts.
///
/// An [`Inbox`] holds it until the delivery is taken. A handler given to
/// [`Primary::service_with`](crate::Primary::service_with) or
/// [`Worker::service_with`](crate::Worker::service_with) gets it with each
/// delivery: drop it when done, or keep it (it is cheap to clone) beside
/// whatever it queues, so that a consumer that does not keep up holds back
/// its sender instead of growing this process.
#[derive(Clone, Default)]
pub struct Credit(pub(crate) Option<Arc<crate::primary::events::Credit>>);

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credit(held)"
        } else {
            "Credit(none)"
        })
    }
}

pub(crate) type Handler<T> = Arc<dyn Fn(T, Credit) + Send + Sync>;

/// The services registered on one side, by name.
pub(crate) struct Router<T> {
    map: RwLock<HashMap<Box<str>, Handler<T>>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            map: RwLock::new(HashMap::default()),
        }
    }
}

impl<T> Router<T> {
    pub fn register(&self, name: &str, handler: Handler<T>) -> Result<(), Error> {
        frame::check_name(name)?;
        let mut map = self.map.write().unwrap();
        if map.contains_key(name) {
            return Err(Error::Service {
                name: name.into(),
                why: "registered already on this side (a name has one service)".into(),
            });
        }
        map.insert(name.into(), handler);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Handler<T>> {
        self.map.read().unwrap().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Handler<T>> {
        self.map.read().unwrap().values().cloned().collect()
    }

    /// Drops every handler (their inboxes end).
    pub fn clear(&self) {
        self.map.write().unwrap().clear();
    }
}

/// What a service receives, in arrival order per sender: from
/// [`recv`](Self::recv), or as a `futures_core::Stream`.
///
/// Its deliveries are bounded per sender (see [`Credit`]): read it, or the
/// sender is held back. It ends when its side's channel closes (in a
/// worker; a primary's inbox lasts as long as the primary).
pub struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<(T, Credit)>,
}

impl<T: Send + 'static> Inbox<T> {
    /// A handler that queues into a new inbox.
    pub(crate) fn new() -> (Handler<T>, Inbox<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handler: Handler<T> = Arc::new(move |item, credit| {
            let _ = tx.send((item, credit));
        });
        (handler, Inbox { rx })
    }
}

impl<T> Inbox<T> {
    /// The next delivery; `None` once the inbox has ended. Cancel safe.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _)| item)
    }

    /// How many deliveries wait in it now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok().map(|(item, _)| item)
    }

    /// The next delivery with its [`Credit`], to hold while it is being
    /// handled (the sender counts it until the credit is dropped).
    pub async fn recv_with_credit(&mut self) -> Option<(T, Credit)> {
        self.rx.recv().await
    }
}

impl<T> futures_core::Stream for Inbox<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx).map(|o| o.map(|(item, _)| item))
    }
}

impl<T> std::fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("queued", &self.rx.len())
            .finish()
    }
}

/// A service request from the other side, to answer with
/// [`reply`](Self::reply).
///
/// Cheap to clone: every clone is the same request, and the first reply
/// is the answer. When the last clone is dropped unanswered, the side that
/// asked is told at once ([`Error::NoReply`]).
#[derive(Clone)]
pub struct ServiceRequest {
    inner: Arc<ReqInner>,
}

struct ReqInner {
    id: u64,
    service: Arc<str>,
    message: Message,
    from: Option<u32>,
    outbox: Arc<Outbox>,
    answered: AtomicBool,
    open: Arc<AtomicUsize>,
}

impl ServiceRequest {
    /// Request `id` for `service`; `None` (and the asker answered with an
    /// error) when [`MAX_PENDING`] of that side's service requests wait
    /// unanswered here already.
    pub(crate) fn arrived(
        id: u64,
        service: Arc<str>,
        message: Message,
        from: Option<u32>,
        outbox: Arc<Outbox>,
        open: Arc<AtomicUsize>,
    ) -> Option<ServiceRequest> {
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(id, ?from, %service, "too many unanswered service requests");
            let _ = send_error(
                &outbox,
                from,
                &service,
                id,
                &format!(
                    "{MAX_PENDING} service requests from this side already wait for an \
                     answer there; wait for their replies before asking more"
                ),
            );
            return None;
        }
        Some(ServiceRequest {
            inner: Arc::new(ReqInner {
                id,
                service,
                message,
                from,
                outbox,
                answered: AtomicBool::new(false),
                open,
            }),
        })
    }

    /// Who asked: the worker's id in the primary, `None` in a worker.
    pub fn worker(&self) -> Option<u32> {
        self.inner.from
    }

    /// The service it was sent to.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The request's value.
    pub fn message(&self) -> &Message {
        &self.inner.message
    }

    /// Decodes the request's value into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.inner.message.decode()
    }

    /// Whether a reply was sent already.
    pub fn is_answered(&self) -> bool {
        self.inner.answered.load(Ordering::Acquire)
    }

    /// Answers with `value`, at once: it never waits, so a handler on the
    /// primary's dispatch thread may call it.
    ///
    /// # Errors
    /// [`Error::AlreadyAnswered`]; [`Error::WorkerGone`] (in the primary)
    /// or [`Error::ChannelClosed`] (in a worker) when the asker is gone;
    /// [`Error::Backlog`] when the asker reads nothing and more than 32 MiB
    /// wait for it already; [`Error::Codec`], [`Error::TooLarge`]. The
    /// request stays unanswered after the last three.
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let inner = &self.inner;
        self.claim()?;
        let sent = inner.outbox.framed_now(Kind::Service, inner.from, |buf| {
            frame::write_prefix(buf, &inner.service, Op::Reply, inner.id);
            codec::to_writer(buf, value)
        });
        self.sent(sent)
    }

    /// [`reply`](Self::reply) with a value that `write` writes as JSON
    /// (trusted: nothing checks it).
    pub(crate) fn reply_json(&self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        let inner = &self.inner;
        self.claim()?;
        let sent = inner.outbox.framed_now(Kind::Service, inner.from, |buf| {
            frame::write_prefix(buf, &inner.service, Op::Reply, inner.id);
            write(buf);
            Ok(())
        });
        self.sent(sent)
    }

    /// Answers with `value`, waiting (as a `send` does) while more than
    /// 8 MiB wait to be written to the asker: for large values.
    ///
    /// # Errors
    /// As [`reply`](Self::reply), without [`Error::Backlog`].
    pub async fn reply_when_room<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let inner = &self.inner;
        self.claim()?;
        let sent = inner
            .outbox
            .framed(Kind::Service, |buf| {
                frame::write_prefix(buf, &inner.service, Op::Reply, inner.id);
                codec::to_writer(buf, value)
            })
            .await;
        self.sent(sent)
    }

    /// Answers with an error: the asker's request fails with
    /// [`Error::NoReply`] carrying `why` (cut at 1000 bytes).
    ///
    /// # Errors
    /// As [`reply`](Self::reply).
    pub fn reply_error(&self, why: &str) -> Result<(), Error> {
        self.claim()?;
        let i = &self.inner;
        self.sent(send_error(&i.outbox, i.from, &i.service, i.id, why))
    }

    /// Claimed before sending: of two clones answering at once, one sends.
    fn claim(&self) -> Result<(), Error> {
        self.inner
            .answered
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|_| Error::AlreadyAnswered { id: self.inner.id })
    }

    fn sent(&self, sent: Result<(), Error>) -> Result<(), Error> {
        match sent {
            Ok(()) => Ok(()),
            Err(Error::ChannelClosed) => Err(match self.inner.from {
                Some(id) => Error::WorkerGone { id },
                None => Error::ChannelClosed,
            }),
            Err(e) => {
                self.inner.answered.store(false, Ordering::Release);
                Err(e)
            }
        }
    }
}

/// Queues an error reply (never waits).
pub(crate) fn send_error(
    outbox: &Outbox,
    to: Option<u32>,
    service: &str,
    id: u64,
    why: &str,
) -> Result<(), Error> {
    outbox.framed_now(Kind::Service, to, |buf| {
        frame::write_prefix(buf, service, Op::Error, id);
        serde_json::to_writer(buf, why)
    })
}

impl Drop for ReqInner {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if !self.answered.load(Ordering::Acquire) {
            let _ = send_error(
                &self.outbox,
                self.from,
                &self.service,
                self.id,
                "the service request was dropped there without a reply",
            );
        }
    }
}

impl std::fmt::Debug for ServiceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRequest")
            .field("service", &self.inner.service)
            .field("id", &self.inner.id)
            .field("worker", &self.inner.from)
            .field("message", &self.inner.message)
            .finish()
    }
}

/// A received body's value as a [`Message`] (a slice of the body, no copy).
pub(crate) fn value_of(body: &bytes::Bytes, p: &frame::Parsed) -> Message {
    Message::new(body.slice(p.value.clone()))
}

/// Queues a service frame on `outbox`: a message, or request `id`,
/// waiting while the outbox is full.
pub(crate) async fn send_frame<T: Serialize + ?Sized>(
    outbox: &Outbox,
    service: &str,
    op: Op,
    id: u64,
    value: &T,
) -> Result<(), Error> {
    outbox
        .framed(Kind::Service, |buf| {
            frame::write_prefix(buf, service, op, id);
            codec::to_writer(buf, value)
        })
        .await
}

/// [`send_frame`] without waiting ([`Error::Backlog`] past 32 MiB queued).
pub(crate) fn send_frame_now<T: Serialize + ?Sized>(
    outbox: &Outbox,
    to: Option<u32>,
    service: &str,
    op: Op,
    id: u64,
    value: &T,
) -> Result<(), Error> {
    outbox.framed_now(Kind::Service, to, |buf| {
        frame::write_prefix(buf, service, op, id);
        codec::to_writer(buf, value)
    })
}

/// The library's services made once per side (the emitter, the status
/// registry...), by key: each side holds one of these, and knows nothing
/// of what is in it.
#[derive(Default)]
pub(crate) struct Slots {
    map: std::sync::Mutex<HashMap<&'static str, Arc<dyn std::any::Any + Send + Sync>>>,
}

impl Slots {
    /// The value under `key`, made by `init` the first time.
    pub fn get_or_try_init<T: Send + Sync + 'static>(
        &self,
        key: &'static str,
        init: impl FnOnce() -> Result<T, Error>,
    ) -> Result<Arc<T>, Error> {
        let mut map = self.map.lock().unwrap();
        if let Some(v) = map.get(key) {
            return Ok(v.clone().downcast::<T>().expect("one type per key"));
        }
        let v = Arc::new(init()?);
        map.insert(key, v.clone());
        Ok(v)
    }
}
