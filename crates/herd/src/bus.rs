//! A fan-out bus: every subscriber gets its own unbounded queue of every
//! item emitted after it subscribed, so a slow reader never makes another
//! miss one. Emitting never blocks and needs no runtime.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// The sending side, shared by whoever emits.
pub(crate) struct Bus<T> {
    /// The subscribers; `None` once the bus is closed.
    subs: Mutex<Option<Vec<mpsc::UnboundedSender<T>>>>,
}

impl<T> Default for Bus<T> {
    fn default() -> Self {
        Bus {
            subs: Mutex::new(Some(Vec::new())),
        }
    }
}

impl<T: Clone> Bus<T> {
    /// A new subscription: the items emitted from now on.
    /// (On a closed bus: a subscription that ends at once.)
    pub fn subscribe(&self) -> Subscription<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(subs) = self.subs.lock().unwrap().as_mut() {
            subs.push(tx);
        }
        Subscription { rx }
    }

    /// Whether anyone listens (so that an item costly to build can be
    /// skipped).
    pub fn has_subscribers(&self) -> bool {
        let mut subs = self.subs.lock().unwrap();
        let Some(subs) = subs.as_mut() else {
            return false;
        };
        subs.retain(|s| !s.is_closed());
        !subs.is_empty()
    }

    /// Sends `item` to every subscriber; forgets those that are gone.
    pub fn emit(&self, item: T) {
        if let Some(subs) = self.subs.lock().unwrap().as_mut() {
            subs.retain(|s| s.send(item.clone()).is_ok());
        }
    }

    /// Ends every subscription (after what was emitted); nothing more is
    /// sent.
    pub fn close(&self) {
        self.subs.lock().unwrap().take();
    }
}

/// One subscriber's queue.
pub(crate) struct Subscription<T> {
    rx: mpsc::UnboundedReceiver<T>,
}

impl<T> Subscription<T> {
    /// The next item; `None` once the bus is gone. Cancel safe.
    pub async fn next(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next item if one is already queued.
    pub fn try_next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next item, as a stream's `poll_next`.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> futures_core::Stream for Subscription<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_what_came_after_it_subscribed() {
        let bus = Bus::default();
        bus.emit(0);
        let mut a = bus.subscribe();
        bus.emit(1);
        let mut b = bus.subscribe();
        bus.emit(2);
        assert_eq!(
            (a.try_next(), a.try_next(), a.try_next()),
            (Some(1), Some(2), None)
        );
        assert_eq!((b.try_next(), b.try_next()), (Some(2), None));
        drop(a);
        bus.emit(3);
        assert!(bus.has_subscribers());
        assert_eq!(b.try_next(), Some(3));
        bus.close();
        bus.emit(4);
        assert_eq!(b.try_next(), None);
        assert!(!bus.has_subscribers());
        let mut late = bus.subscribe();
        assert_eq!(late.try_next(), None);
    }
}
