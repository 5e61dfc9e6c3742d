//! The cluster-wide event emitter (cluster2's `emitter`): an event emitted
//! in any process reaches the processes it targets, where subscriptions
//! see its payload as a typed stream.
//!
//! Get one with [`Primary::emitter`](crate::Primary::emitter) or
//! [`Worker::emitter`](crate::Worker::emitter) (call it before forking, in
//! the primary, and early in each worker: an emit that reaches a process
//! whose emitter does not exist yet is dropped).
//!
//! - [`Emitter::emit`] reaches, from the primary, the primary itself and
//!   every worker; from a worker, the primary and that worker itself
//!   (cluster2's defaults).
//! - [`Emitter::emit_to`] and [`Emitter::to`] name the [`Targets`]: any of
//!   [`Target::Primary`], [`Target::Myself`], [`Target::AllWorkers`] and
//!   worker ids. A worker's emit to another worker is routed by the
//!   primary. Each process named gets one delivery per emit.
//! - [`Emitter::on`], [`Emitter::once`] and [`Emitter::off`] subscribe and
//!   unsubscribe, in both roles: a [`Subscription`] is an async stream of
//!   [`Emitted`] payloads of a serde type.
//!
//! Emits from one sender arrive in the order it made them, everywhere. An
//! emit to a worker that has died is dropped without disturbing the
//! others. Emits wait, as a `send` does, only for room on the channels
//! they travel (8 MiB queued per worker; a worker's emits routed by the
//! primary wait there under its `message_queue` bound). They never wait
//! for a subscription: each holds at most [`MAX_QUEUED`] unread emits and
//! misses the newest past that ([`Subscription::missed`] counts them), so a
//! subscription nobody reads blocks nothing. Drop those you do not read.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! use herd::services::Target;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Flush { table: String }
//!
//! match herd::role() {
//!     herd::Role::Primary => {
//!         let primary = herd::Primary::new()?;
//!         let emitter = primary.emitter()?;
//!         let mut flushes = emitter.on::<Flush>("flush");
//!         primary.fork()?;
//!         while let Some(flush) = flushes.next().await {
//!             println!("{:?} flushed {}", flush.from, flush.payload.table);
//!         }
//!     }
//!     herd::Role::Worker => {
//!         let worker = herd::Worker::connect().await?;
//!         let emitter = worker.emitter()?;
//!         let mut mine = emitter.once::<Flush>("flush");
//!         // The primary and this worker:
//!         emitter.emit("flush", &Flush { table: "users".into() }).await?;
//!         assert!(mine.next().await.is_some());
//!         // Every worker, the others through the primary:
//!         emitter.to(Target::AllWorkers).emit("reload", &()).await?;
//!         emitter.emit_to([Target::Worker(2), Target::Primary], "ping", &1).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod subs;
mod wire;

use std::sync::Arc;

use serde::Serialize;

use crate::services::{Inbox, PrimaryService, Pushed, ServiceEvent, WorkerService};
use crate::{Error, Message, Primary, Worker};
use subs::Subs;
pub use subs::{Subscription, MAX_QUEUED, MAX_QUEUED_BYTES};
pub use wire::MAX_EVENT;
use wire::{AllTag, Route, Workers};

/// The emitter's service name on the wire.
pub const SERVICE: &str = "herd.emitter";

/// Who emitted an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The primary.
    Primary,
    /// The worker of this id.
    Worker(u32),
}

/// One emit of an event, as a [`Subscription`] delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted<T> {
    /// Who emitted it.
    pub from: Origin,
    /// Its payload.
    pub payload: T,
}

/// Where an emit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The primary.
    Primary,
    /// The emitting process itself (the primary, or this worker).
    Myself,
    /// Every worker connected now (from a worker: itself included).
    AllWorkers,
    /// The worker of this id (nothing if there is none).
    Worker(u32),
}

/// A set of [`Target`]s: made from one target, an array or a `Vec` of
/// them, a worker id, or a slice of worker ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// The targets, as given.
    pub fn as_slice(&self) -> &[Target] {
        &self.0
    }
}

impl From<Target> for Targets {
    fn from(t: Target) -> Targets {
        Targets(vec![t])
    }
}
impl<const N: usize> From<[Target; N]> for Targets {
    fn from(t: [Target; N]) -> Targets {
        Targets(t.to_vec())
    }
}
impl From<Vec<Target>> for Targets {
    fn from(t: Vec<Target>) -> Targets {
        Targets(t)
    }
}
impl From<&[Target]> for Targets {
    fn from(t: &[Target]) -> Targets {
        Targets(t.to_vec())
    }
}
impl From<u32> for Targets {
    fn from(id: u32) -> Targets {
        Targets(vec![Target::Worker(id)])
    }
}
impl From<&[u32]> for Targets {
    fn from(ids: &[u32]) -> Targets {
        Targets(ids.iter().map(|id| Target::Worker(*id)).collect())
    }
}

#[derive(Clone)]
enum Side {
    Primary(PrimaryService),
    Worker { svc: WorkerService, id: u32 },
}

/// The cluster-wide event emitter of this process: see the
/// [module docs](self). Cheap to clone; every clone is the same emitter.
#[derive(Clone)]
pub struct Emitter {
    side: Side,
    subs: Arc<Subs>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match &self.side {
            Side::Primary(_) => "primary".to_string(),
            Side::Worker { id, .. } => format!("worker {id}"),
        };
        f.debug_struct("Emitter").field("side", &side).finish()
    }
}

/// An emit with its targets chosen, from [`Emitter::to`].
#[derive(Debug)]
pub struct To<'a> {
    emitter: &'a Emitter,
    targets: Targets,
}

impl To<'_> {
    /// Emits `event` to the chosen targets (see [`Emitter::emit_to`]).
    ///
    /// # Errors
    /// As [`Emitter::emit_to`].
    pub async fn emit<T: Serialize + ?Sized>(self, event: &str, payload: &T) -> Result<(), Error> {
        self.emitter.emit_to(self.targets, event, payload).await
    }
}

impl Primary {
    /// This primary's [`Emitter`], made (and its service registered) on
    /// the first call: call it before forking.
    ///
    /// # Errors
    /// [`Error::Service`] if the application registered the service name
    /// [`SERVICE`] itself.
    pub fn emitter(&self) -> Result<Emitter, Error> {
        let made = self.inner.slots.get_or_try_init(SERVICE, || {
            let (svc, inbox) = self.service(SERVICE)?;
            let subs = Arc::new(Subs::default());
            self.inner.rt.spawn(route(svc.clone(), inbox, subs.clone()));
            Ok(Emitter {
                side: Side::Primary(svc),
                subs,
            })
        })?;
        Ok((*made).clone())
    }
}

impl Worker {
    /// This worker's [`Emitter`], made (and its service registered) on the
    /// first call: call it early, as what reaches this worker before is
    /// dropped.
    ///
    /// # Errors
    /// [`Error::Service`] if the application registered the service name
    /// [`SERVICE`] itself.
    pub fn emitter(&self) -> Result<Emitter, Error> {
        let made = self.slots().get_or_try_init(SERVICE, || {
            let subs = Arc::new(Subs::default());
            let mine = subs.clone();
            let svc = self.service_with(SERVICE, move |pushed, _credit| match pushed {
                Pushed::Message(m) => deliver_pushed(&mine, &m),
                Pushed::Request(r) => {
                    let _ = r.reply_error("the emitter answers no requests");
                }
            })?;
            Ok(Emitter {
                side: Side::Worker { svc, id: self.id() },
                subs,
            })
        })?;
        Ok((*made).clone())
    }
}

impl Emitter {
    /// Emits `event` with `payload` to cluster2's default targets: from the
    /// primary, the primary and every worker; from a worker, the primary
    /// and this worker.
    ///
    /// # Errors
    /// As [`emit_to`](Self::emit_to).
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<(), Error> {
        let targets = match self.side {
            Side::Primary(_) => Targets::from([Target::Myself, Target::AllWorkers]),
            Side::Worker { .. } => Targets::from([Target::Primary, Target::Myself]),
        };
        self.emit_to(targets, event, payload).await
    }

    /// Chooses the targets of an emit: `emitter.to(3).emit("x", &v)`.
    pub fn to(&self, targets: impl Into<Targets>) -> To<'_> {
        To {
            emitter: self,
            targets: targets.into(),
        }
    }

    /// Emits `event` with `payload` to `targets`. The payload is encoded
    /// once; this process's own subscriptions get it at once, the others
    /// as their channels carry it (waiting, as a `send` does, while one is
    /// full). A worker that is gone is skipped.
    ///
    /// # Errors
    /// [`Error::Service`] for an event name of 0 or more than
    /// [`MAX_EVENT`] bytes; [`Error::Codec`] (nothing is emitted);
    /// [`Error::TooLarge`]; in a worker, [`Error::ChannelClosed`] once its
    /// channel is closed (its own subscriptions got the emit).
    pub async fn emit_to<T: Serialize + ?Sized>(
        &self,
        targets: impl Into<Targets>,
        event: &str,
        payload: &T,
    ) -> Result<(), Error> {
        wire::check_event(event).map_err(|why| Error::Service {
            name: SERVICE.into(),
            why,
        })?;
        let targets = targets.into();
        let has = |t: Target| targets.0.contains(&t);
        match &self.side {
            Side::Primary(svc) => {
                let local = has(Target::Primary) || has(Target::Myself);
                let workers = if has(Target::AllWorkers) {
                    Some(None)
                } else {
                    let mut ids: Vec<u32> = targets.0.iter().filter_map(worker_id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    (!ids.is_empty()).then_some(Some(ids))
                };
                let (body, range) = wire::encode(event, None, Some(0), payload)?;
                if local {
                    let m = Message::new(body.clone()).slice(range.clone());
                    self.subs.dispatch(event, Origin::Primary, &m);
                }
                if has(Target::AllWorkers) {
                    elsewhere(event, &body[range.clone()]);
                }
                if let Some(ids) = workers {
                    svc.broadcast_json(ids.as_deref(), &body).await;
                }
                Ok(())
            }
            Side::Worker { svc, id } => {
                let me = *id;
                let local =
                    has(Target::Myself) || has(Target::AllWorkers) || has(Target::Worker(me));
                let others = if has(Target::AllWorkers) {
                    Some(Workers::All(AllTag::All))
                } else {
                    let mut ids: Vec<u32> = targets.0.iter().filter_map(worker_id).collect();
                    ids.retain(|w| *w != me);
                    ids.sort_unstable();
                    ids.dedup();
                    (!ids.is_empty()).then_some(Workers::Ids(ids))
                };
                let route = Route {
                    p: has(Target::Primary),
                    w: others,
                };
                let remote = route.p || route.w.is_some();
                let (body, range) = wire::encode(event, remote.then_some(&route), None, payload)?;
                if local {
                    let m = Message::new(body.clone()).slice(range);
                    self.subs.dispatch(event, Origin::Worker(me), &m);
                }
                if remote {
                    svc.send_json(&body).await?;
                }
                Ok(())
            }
        }
    }

    /// Subscribes to `event` here: every emit of it that targets this
    /// process, from now on, decoded as `T`.
    pub fn on<T>(&self, event: &str) -> Subscription<T> {
        self.subs.add(event, false)
    }

    /// Subscribes to the next emit of `event` only: the subscription ends
    /// after it.
    pub fn once<T>(&self, event: &str) -> Subscription<T> {
        self.subs.add(event, true)
    }

    /// Ends every subscription to `event` in this process (their streams
    /// return `None`); returns how many there were.
    pub fn off(&self, event: &str) -> usize {
        self.subs.off(event)
    }
}

/// Where this host's emits to every worker also go (the Redis bridge of
/// issue 16: to the other hosts' workers), with their event and payload
/// JSON. Set once, by `CacheService::share_emitter`.
pub(crate) static ELSEWHERE: std::sync::OnceLock<Elsewhere> = std::sync::OnceLock::new();

/// The hook of [`ELSEWHERE`]: an emit's event and payload JSON.
pub(crate) type Elsewhere = Box<dyn Fn(&str, &[u8]) + Send + Sync>;

fn elsewhere(event: &str, payload: &[u8]) {
    if let Some(f) = ELSEWHERE.get() {
        f(event, payload);
    }
}

impl Emitter {
    /// An emit from another host (its primary's or a worker's, to every
    /// worker): to this primary's subscriptions and every worker here, as
    /// from the primary.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) async fn deliver_from_elsewhere(&self, event: &str, payload: &[u8]) {
        let Side::Primary(svc) = &self.side else {
            return;
        };
        let body = wire::encode_raw(event, 0, payload);
        if self.subs.has(event) {
            let m = Message::new(body.clone());
            if let Ok(inc) = wire::decode(m.as_json()) {
                let range = range_in(m.as_json(), inc.p.get().as_bytes());
                self.subs.dispatch(event, Origin::Primary, &m.slice(range));
            }
        }
        svc.broadcast_json(None, &body).await;
    }
}

fn worker_id(t: &Target) -> Option<u32> {
    match t {
        Target::Worker(id) => Some(*id),
        _ => None,
    }
}

/// A push from the primary, in a worker: to its subscriptions.
fn deliver_pushed(subs: &Subs, m: &Message) {
    let inc = match wire::decode(m.as_json()) {
        Ok(inc) => inc,
        Err(e) => {
            tracing::warn!(error = %e, "bad emit from the primary; dropped");
            return;
        }
    };
    let from = match inc.f {
        Some(0) | None => Origin::Primary,
        Some(id) => Origin::Worker(id),
    };
    if !subs.has(&inc.e) {
        return;
    }
    let payload = m.slice(range_in(m.as_json(), inc.p.get().as_bytes()));
    subs.dispatch(&inc.e, from, &payload);
}

/// Where `part` (a slice of `whole`) lies in it.
fn range_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// The primary's routing task (on its dispatch thread): each worker's
/// emits, in order, to the primary's subscriptions and to the workers
/// they name. A worker's emits wait in the inbox under its bound while
/// the routing waits for room on the channels they go to: a flood is held
/// back in its worker.
async fn route(svc: PrimaryService, mut inbox: Inbox<ServiceEvent>, subs: Arc<Subs>) {
    while let Some(event) = inbox.recv().await {
        match event {
            ServiceEvent::Message { worker, message } => {
                route_one(&svc, &subs, worker, &message).await
            }
            ServiceEvent::Request { request, .. } => {
                let _ = request.reply_error("the emitter answers no requests");
            }
            _ => {}
        }
    }
}

async fn route_one(svc: &PrimaryService, subs: &Subs, worker: u32, m: &Message) {
    let inc = match wire::decode(m.as_json()) {
        Ok(inc) => inc,
        Err(e) => {
            tracing::warn!(worker, error = %e, "bad emit from a worker; dropped");
            return;
        }
    };
    let route = inc.t.clone().unwrap_or(Route { p: true, w: None });
    if route.p && subs.has(&inc.e) {
        let payload = m.slice(range_in(m.as_json(), inc.p.get().as_bytes()));
        subs.dispatch(&inc.e, Origin::Worker(worker), &payload);
    }
    let ids = match route.w {
        None => return,
        Some(Workers::All(_)) => {
            elsewhere(&inc.e, inc.p.get().as_bytes());
            let mut all = svc.workers();
            all.retain(|w| *w != worker);
            all
        }
        Some(Workers::Ids(ids)) => ids,
    };
    if ids.is_empty() {
        return;
    }
    let body = wire::encode_raw(&inc.e, worker, inc.p.get().as_bytes());
    svc.broadcast_json(Some(&ids), &body).await;
}
