//! One process's subscriptions to the emitter's events, and the typed
//! stream each one is.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{Emitted, Origin};
use crate::Message;

/// The most emits one subscription holds unread; past it (or past
/// [`MAX_QUEUED_BYTES`]) it misses the newest ones, and counts them.
pub const MAX_QUEUED: usize = 16_384;
/// The most bytes of payloads one subscription holds unread.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

type Item = (Origin, Message);

/// What one subscription holds unread, and what it missed.
#[derive(Default)]
struct Queued {
    n: AtomicUsize,
    bytes: AtomicUsize,
    missed: AtomicU64,
}

struct Sub {
    tx: mpsc::UnboundedSender<Item>,
    once: bool,
    queued: Arc<Queued>,
}

impl Sub {
    /// Queues `item` unless the subscription is full (then counted as
    /// missed); false once the subscription is gone.
    fn offer(&self, event: &str, from: Origin, message: &Message) -> bool {
        let q = &self.queued;
        let len = message.len();
        if q.n.load(Ordering::Acquire) >= MAX_QUEUED
            || q.bytes.load(Ordering::Acquire) + len > MAX_QUEUED_BYTES
        {
            if q.missed.fetch_add(1, Ordering::AcqRel) == 0 {
                tracing::warn!(event, "a subscription is not read: it misses emits from now on                     (past {MAX_QUEUED} events or {MAX_QUEUED_BYTES} bytes unread; see Subscription::missed)");
            }
            return !self.tx.is_closed();
        }
        q.n.fetch_add(1, Ordering::AcqRel);
        q.bytes.fetch_add(len, Ordering::AcqRel);
        self.tx.send((from, message.clone())).is_ok()
    }
}

/// The subscriptions by event name.
#[derive(Default)]
pub(crate) struct Subs {
    map: Mutex<HashMap<Box<str>, Vec<Sub>>>,
}

impl Subs {
    pub fn add<T>(&self, event: &str, once: bool) -> Subscription<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Queued::default());
        let mut map = self.map.lock().unwrap();
        map.entry(event.into()).or_default().push(Sub {
            tx,
            once,
            queued: queued.clone(),
        });
        Subscription {
            event: event.into(),
            rx,
            queued,
            _t: PhantomData,
        }
    }

    /// Ends every subscription to `event`; how many there were.
    pub fn off(&self, event: &str) -> usize {
        self.map
            .lock()
            .unwrap()
            .remove(event)
            .map_or(0, |subs| subs.len())
    }

    /// Delivers to every subscription of `event` (a `once` one is ended
    /// after it, a dropped one forgotten).
    pub fn dispatch(&self, event: &str, from: Origin, message: &Message) {
        let mut map = self.map.lock().unwrap();
        let Some(subs) = map.get_mut(event) else {
            return;
        };
        subs.retain(|s| s.offer(event, from, message) && !s.once);
        if subs.is_empty() {
            map.remove(event);
        }
    }

    /// Whether anything listens to `event` here.
    pub fn has(&self, event: &str) -> bool {
        self.map.lock().unwrap().contains_key(event)
    }
}

/// A subscription to one event: an async stream of its payloads, decoded
/// as `T`, from [`Emitter::on`](super::Emitter::on) or
/// [`Emitter::once`](super::Emitter::once).
///
/// Read it or drop it: it holds at most [`MAX_QUEUED`] emits (and
/// [`MAX_QUEUED_BYTES`]) unread, and misses the newest past that, counting
/// them in [`missed`](Self::missed) (a warning is logged the first time).
/// Emits never wait for a subscription, so one that is not read holds up
/// nothing else: not its senders, not this process's other subscriptions.
/// It ends after
/// [`Emitter::off`](super::Emitter::off) of its event, after its one event
/// for `once`, and when the worker's channel closes.
pub struct Subscription<T> {
    event: Box<str>,
    rx: mpsc::UnboundedReceiver<Item>,
    queued: Arc<Queued>,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next emit of the event; `None` once the subscription ended. A
    /// payload that does not decode as `T` is skipped with a warning that
    /// names the event and its sender. Cancel safe.
    pub async fn next(&mut self) -> Option<Emitted<T>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next emit if one is queued.
    pub fn try_next(&mut self) -> Option<Emitted<T>> {
        while let Ok(item) = self.rx.try_recv() {
            if let Some(e) = self.decode(item) {
                return Some(e);
            }
        }
        None
    }

    /// The event's name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// How many emits this subscription missed because it held
    /// [`MAX_QUEUED`] (or [`MAX_QUEUED_BYTES`]) unread.
    pub fn missed(&self) -> u64 {
        self.queued.missed.load(Ordering::Acquire)
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Emitted<T>>> {
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(e) = self.decode(item) {
                        return Poll::Ready(Some(e));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn decode(&self, (from, message): Item) -> Option<Emitted<T>> {
        self.queued.n.fetch_sub(1, Ordering::AcqRel);
        self.queued.bytes.fetch_sub(message.len(), Ordering::AcqRel);
        match message.decode::<T>() {
            Ok(payload) => Some(Emitted { from, payload }),
            Err(e) => {
                tracing::warn!(event = %self.event, ?from, error = %e,
                    "an emitted payload does not decode as this subscription's type; skipped");
                None
            }
        }
    }
}

impl<T: DeserializeOwned> futures_core::Stream for Subscription<T> {
    type Item = Emitted<T>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Emitted<T>>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> Unpin for Subscription<T> {}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("event", &self.event)
            .finish()
    }
}
