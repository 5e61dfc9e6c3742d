//! The primary's side of the services transport: services registered by
//! name, what workers send them, and what they send to workers.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::common::{self, send_frame, send_frame_now, Credit, Handler, Inbox, Router};
use super::frame::{self, Op};
use super::ServiceRequest;
use crate::channel::wire::Kind;
use crate::channel::Outbox;
use crate::message::{codec, Message};
use crate::primary::link::Link;
use crate::request::Pending;
use crate::{Error, Primary, WorkerHandle};

/// What a service in the primary receives, in order per worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// A worker sent a one-way message.
    Message {
        /// The sender.
        worker: u32,
        /// The value; decode it with [`Message::decode`].
        message: Message,
    },
    /// A worker asks: answer with [`ServiceRequest::reply`].
    Request {
        /// The asker.
        worker: u32,
        /// The request.
        request: ServiceRequest,
    },
    /// The worker's channel closed (it disconnected or died): nothing more
    /// comes from it, and whatever it held (leases, subscriptions) may go.
    /// It comes after everything the worker sent.
    WorkerGone {
        /// The worker.
        worker: u32,
    },
}

impl ServiceEvent {
    /// The worker this is from.
    pub fn worker(&self) -> u32 {
        match self {
            ServiceEvent::Message { worker, .. }
            | ServiceEvent::Request { worker, .. }
            | ServiceEvent::WorkerGone { worker } => *worker,
        }
    }
}

/// One worker's service traffic as the primary keeps it.
pub(crate) struct PerWorker {
    /// The primary's service requests to this worker.
    pub calls: Pending,
    /// This worker's service requests that wait for an answer here.
    pub open: Arc<AtomicUsize>,
}

impl PerWorker {
    /// `rt` runs the worker's channel (the herd-primary runtime).
    pub fn new(id: u32, rt: &tokio::runtime::Handle) -> PerWorker {
        PerWorker {
            calls: Pending::new(Some(id), rt),
            open: Arc::default(),
        }
    }
}

pub(crate) type Registry = Router<ServiceEvent>;

/// A worker's service frame, read by its watcher on the herd-primary
/// thread: delivered to its service (whose handler runs right here),
/// answered with an error for a request to no service, dropped (debug log)
/// for a message to none. `admit` waits for room under the worker's bound
/// and is called only for what is delivered.
pub(crate) async fn on_frame<F, Fut>(
    registry: &Registry,
    w: &WorkerHandle,
    body: Vec<u8>,
    admit: F,
) -> Result<(), Error>
where
    F: FnOnce(usize) -> Fut,
    Fut: std::future::Future<Output = crate::primary::events::Credit>,
{
    let p = frame::parse(&body).map_err(Error::Protocol)?;
    let Link::Channel(outbox) = &w.shared.link else {
        return Ok(());
    };
    let len = body.len();
    let body = bytes::Bytes::from(body);
    let name = std::str::from_utf8(&body[p.name.clone()]).expect("checked ASCII");
    let calls = &w.shared.services.calls;
    match p.op {
        Op::Reply => calls.answer(p.id, Ok(common::value_of(&body, &p))),
        Op::Error => calls.answer(p.id, Err(frame::error_text(&body[p.value.clone()]))),
        Op::Message | Op::Request => {
            let Some(handler) = registry.get(name) else {
                tracing::debug!(
                    worker = w.id(),
                    service = name,
                    "frame for no service; dropped"
                );
                if p.op == Op::Request {
                    let why = format!("no service {name:?} in the primary");
                    let _ = common::send_error(outbox, Some(w.id()), name, p.id, &why);
                }
                return Ok(());
            };
            let message = common::value_of(&body, &p);
            let event = if p.op == Op::Message {
                ServiceEvent::Message {
                    worker: w.id(),
                    message,
                }
            } else {
                let open = w.shared.services.open.clone();
                let Some(request) = ServiceRequest::arrived(
                    p.id,
                    name.into(),
                    message,
                    Some(w.id()),
                    outbox.clone(),
                    open,
                ) else {
                    return Ok(());
                };
                ServiceEvent::Request {
                    worker: w.id(),
                    request,
                }
            };
            let credit = Credit(Some(Arc::new(admit(len).await)));
            handler(event, credit);
        }
    }
    Ok(())
}

/// The worker's channel closed: its requests fail, and every service
/// hears of it.
pub(crate) fn worker_gone(registry: &Registry, w: &WorkerHandle) {
    if !matches!(w.shared.link, Link::Channel(_)) {
        return;
    }
    w.shared
        .services
        .calls
        .close("it disconnected (or died) before replying");
    for handler in registry.all() {
        handler(
            ServiceEvent::WorkerGone { worker: w.id() },
            Credit::default(),
        );
    }
}

/// A service's sending handle in the primary: to one worker, to every
/// worker, or a request with a reply. Cheap to clone.
#[derive(Clone)]
pub struct PrimaryService {
    name: Arc<str>,
    primary: Primary,
}

impl std::fmt::Debug for PrimaryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryService")
            .field("name", &self.name)
            .finish()
    }
}

impl Primary {
    /// Registers the service `name` (1 to 64 ASCII letters, digits and
    /// `._:-`; names starting `herd.` are the library's own) and returns
    /// its sending handle and its [`Inbox`]. Register it before forking
    /// the workers that use it: what they send a service not registered
    /// yet is dropped (a request is answered with an error).
    ///
    /// ```no_run
    /// # async fn demo(primary: herd::Primary) -> Result<(), herd::Error> {
    /// use herd::services::ServiceEvent;
    /// let (counter, mut inbox) = primary.service("counter")?;
    /// let mut n = 0u64;
    /// while let Some(event) = inbox.recv().await {
    ///     match event {
    ///         ServiceEvent::Request { request, .. } => {
    ///             n += request.decode::<u64>()?;
    ///             request.reply(&n)?;
    ///         }
    ///         ServiceEvent::Message { worker, .. } => counter.send(worker, &n).await?,
    ///         ServiceEvent::WorkerGone { worker } => println!("worker {worker} left"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Service`] for a malformed name or one registered already.
    pub fn service(&self, name: &str) -> Result<(PrimaryService, Inbox<ServiceEvent>), Error> {
        let (handler, inbox) = Inbox::new();
        Ok((self.register_service(name, handler)?, inbox))
    }

    /// Registers the service `name` with a handler that runs on the
    /// primary's dispatch thread (herd-primary) as each delivery is read:
    /// no queue and no thread hop, for services whose answers are quick
    /// (a cache hit). It must not block, and can answer only with what
    /// does not wait ([`ServiceRequest::reply`],
    /// [`PrimaryService::send_now`]). See [`Credit`] for what to do with
    /// the second argument.
    ///
    /// # Errors
    /// As [`service`](Self::service).
    pub fn service_with(
        &self,
        name: &str,
        handler: impl Fn(ServiceEvent, Credit) + Send + Sync + 'static,
    ) -> Result<PrimaryService, Error> {
        self.register_service(name, Arc::new(handler))
    }

    fn register_service(
        &self,
        name: &str,
        handler: Handler<ServiceEvent>,
    ) -> Result<PrimaryService, Error> {
        self.inner.services.register(name, handler)?;
        Ok(PrimaryService {
            name: name.into(),
            primary: self.clone(),
        })
    }
}

impl PrimaryService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary this service lives in.
    pub fn primary(&self) -> &Primary {
        &self.primary
    }

    /// The workers it can reach now: herd-aware (not foreign) and
    /// connected, by id.
    pub fn workers(&self) -> Vec<u32> {
        let workers = self.primary.inner.workers.lock().unwrap();
        workers
            .values()
            .filter(|w| matches!(w.shared.link, Link::Channel(_)) && w.is_connected())
            .map(|w| w.id())
            .collect()
    }

    fn outbox(&self, worker: u32) -> Result<(WorkerHandle, Arc<Outbox>), Error> {
        let w = self
            .primary
            .worker(worker)
            .ok_or(Error::WorkerGone { id: worker })?;
        let Link::Channel(outbox) = &w.shared.link else {
            return Err(Error::NoChannel { id: worker });
        };
        let outbox = outbox.clone();
        Ok((w, outbox))
    }

    /// Sends `msg` to the service of the same name in `worker`, waiting
    /// while more than 8 MiB wait to be written to it. In order with this
    /// service's other sends to that worker.
    ///
    /// # Errors
    /// [`Error::WorkerGone`], [`Error::NoChannel`] (a foreign worker),
    /// [`Error::Codec`], [`Error::TooLarge`].
    pub async fn send<T: Serialize + ?Sized>(&self, worker: u32, msg: &T) -> Result<(), Error> {
        let (_, outbox) = self.outbox(worker)?;
        send_frame(&outbox, &self.name, Op::Message, 0, msg)
            .await
            .map_err(|e| gone(e, worker))
    }

    /// [`send`](Self::send) without waiting: for handlers that cannot.
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::Backlog`] when the worker
    /// reads nothing and more than 32 MiB wait for it already.
    pub fn send_now<T: Serialize + ?Sized>(&self, worker: u32, msg: &T) -> Result<(), Error> {
        let (_, outbox) = self.outbox(worker)?;
        send_frame_now(&outbox, Some(worker), &self.name, Op::Message, 0, msg)
            .map_err(|e| gone(e, worker))
    }

    /// Sends `msg` to every worker of `to` (every reachable worker for
    /// `None`), encoding it once. Waits, per worker, as `send` does; a
    /// worker gone meanwhile is skipped. Returns the workers it was
    /// queued for.
    ///
    /// # Errors
    /// [`Error::Codec`] (nothing is sent then), [`Error::TooLarge`].
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        to: Option<&[u32]>,
        msg: &T,
    ) -> Result<Vec<u32>, Error> {
        let json = codec::to_vec(msg)?;
        let targets = match to {
            Some(ids) => ids.to_vec(),
            None => self.workers(),
        };
        let mut sent = Vec::with_capacity(targets.len());
        for id in targets {
            let Ok((_, outbox)) = self.outbox(id) else {
                continue;
            };
            let queued = outbox
                .framed(Kind::Service, |buf| {
                    frame::write_prefix(buf, &self.name, Op::Message, 0);
                    buf.extend_from_slice(&json);
                    Ok(())
                })
                .await;
            match queued {
                Ok(()) => sent.push(id),
                Err(Error::ChannelClosed) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// [`broadcast`](Self::broadcast) of a value encoded already (`json`).
    /// To several workers, the frames are left to each channel's writer
    /// (see `Outbox::framed_deferred`).
    pub(crate) async fn broadcast_json(&self, to: Option<&[u32]>, json: &[u8]) -> Vec<u32> {
        let targets = match to {
            Some(ids) => ids.to_vec(),
            None => self.workers(),
        };
        let deferred = targets.len() > 1;
        let mut sent = Vec::with_capacity(targets.len());
        for id in targets {
            let Ok((_, outbox)) = self.outbox(id) else {
                continue;
            };
            let body = |buf: &mut Vec<u8>| {
                frame::write_prefix(buf, &self.name, Op::Message, 0);
                buf.extend_from_slice(json);
                Ok(())
            };
            let queued = if deferred {
                outbox.framed_deferred(Kind::Service, body).await
            } else {
                outbox.framed(Kind::Service, body).await
            };
            match queued {
                Ok(()) => sent.push(id),
                Err(e) => {
                    tracing::debug!(worker = id, service = %self.name, error = %e, "not sent")
                }
            }
        }
        sent
    }

    /// [`broadcast`](Self::broadcast) without waiting: a worker with more
    /// than 32 MiB waiting for it is skipped (and left out of the answer),
    /// with a debug log.
    ///
    /// # Errors
    /// [`Error::Codec`], [`Error::TooLarge`].
    pub fn broadcast_now<T: Serialize + ?Sized>(
        &self,
        to: Option<&[u32]>,
        msg: &T,
    ) -> Result<Vec<u32>, Error> {
        let json = codec::to_vec(msg)?;
        let targets = match to {
            Some(ids) => ids.to_vec(),
            None => self.workers(),
        };
        let mut sent = Vec::with_capacity(targets.len());
        for id in targets {
            let Ok((_, outbox)) = self.outbox(id) else {
                continue;
            };
            let queued = outbox.framed_now(Kind::Service, Some(id), |buf| {
                frame::write_prefix(buf, &self.name, Op::Message, 0);
                buf.extend_from_slice(&json);
                Ok(())
            });
            match queued {
                Ok(()) => sent.push(id),
                Err(Error::ChannelClosed) => {}
                Err(e @ Error::Backlog { .. }) => {
                    tracing::debug!(worker = id, service = %self.name, error = %e, "skipped")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Asks the service of the same name in `worker` and waits at most
    /// `timeout` for its answer.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::NoReply`] when the worker has no such
    /// service, drops the request, disconnects or dies;
    /// [`Error::TooManyRequests`] with 1024 service requests to this
    /// worker waiting already; [`Error::WorkerGone`]; [`Error::Codec`].
    pub async fn request<T, R>(&self, worker: u32, msg: &T, timeout: Duration) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (w, outbox) = self.outbox(worker)?;
        let name = &self.name;
        w.shared
            .services
            .calls
            .ask_with(
                |id| {
                    let outbox = outbox.clone();
                    async move { send_frame(&outbox, name, Op::Request, id, msg).await }
                },
                timeout,
            )
            .await
    }
}

fn gone(e: Error, worker: u32) -> Error {
    match e {
        Error::ChannelClosed => Error::WorkerGone { id: worker },
        e => e,
    }
}
