//! A worker's side of the services transport: its handle on each service
//! of the primary, and what the primary pushes to it.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::common::{self, send_frame, send_frame_now, Credit, Handler, Inbox, Router};
use super::frame::{self, Op};
use super::ServiceRequest;
use crate::channel::Outbox;
use crate::message::Message;
use crate::primary::events::Gate;
use crate::request::Pending;
use crate::{Error, Worker};

/// What a service in a worker receives from the primary, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Pushed {
    /// A one-way message.
    Message(Message),
    /// The primary asks: answer with [`ServiceRequest::reply`].
    Request(ServiceRequest),
}

/// Most deliveries (and bytes) from the primary that wait, in a worker,
/// for its services to take them; past either, the worker reads nothing
/// more from its channel until they are taken (the primary's sends then
/// wait).
pub const WORKER_QUEUE: (usize, usize) = (1024, 8 << 20);

/// A worker's service traffic.
pub(crate) struct Endpoint {
    router: Router<Pushed>,
    calls: Pending,
    open: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

impl Endpoint {
    /// `rt` runs the worker's channel (the runtime it connected on).
    pub fn new(rt: &tokio::runtime::Handle) -> Self {
        Endpoint {
            router: Router::default(),
            calls: Pending::new(None, rt),
            open: Arc::default(),
            gate: Gate::new(WORKER_QUEUE.0, WORKER_QUEUE.1),
        }
    }
}

impl Endpoint {
    /// A service frame from the primary: delivered (waiting for room under
    /// [`WORKER_QUEUE`]), answered with an error (a request to no service
    /// here), or dropped with a debug log (a message to none).
    pub async fn on_frame(&self, outbox: &Arc<Outbox>, body: Vec<u8>) -> Result<(), Error> {
        let p = frame::parse(&body).map_err(Error::Protocol)?;
        let len = body.len();
        let body = bytes::Bytes::from(body);
        let name = std::str::from_utf8(&body[p.name.clone()]).expect("checked ASCII");
        match p.op {
            Op::Reply => self.calls.answer(p.id, Ok(common::value_of(&body, &p))),
            Op::Error => self
                .calls
                .answer(p.id, Err(frame::error_text(&body[p.value.clone()]))),
            Op::Message | Op::Request => {
                let Some(handler) = self.router.get(name) else {
                    tracing::debug!(service = name, "frame for no service here; dropped");
                    if p.op == Op::Request {
                        let why = format!("no service {name:?} in this worker");
                        let _ = common::send_error(outbox, None, name, p.id, &why);
                    }
                    return Ok(());
                };
                let message = common::value_of(&body, &p);
                let pushed = if p.op == Op::Message {
                    Pushed::Message(message)
                } else {
                    let open = self.open.clone();
                    let arrived = ServiceRequest::arrived(
                        p.id,
                        name.into(),
                        message,
                        None,
                        outbox.clone(),
                        open,
                    );
                    let Some(request) = arrived else {
                        return Ok(());
                    };
                    Pushed::Request(request)
                };
                let credit = match self.gate.try_admit(len) {
                    Some(c) => c,
                    None => self.gate.admit(len).await,
                };
                handler(pushed, Credit(Some(Arc::new(credit))));
            }
        }
        Ok(())
    }

    /// The channel closed: requests fail, inboxes end.
    pub fn close(&self, why: &str) {
        self.calls.close(why);
        self.router.clear();
    }
}

/// A worker's handle on one service of the primary: send, request with a
/// timeout. Cheap to clone.
#[derive(Clone)]
pub struct WorkerService {
    name: Arc<str>,
    worker: Worker,
}

impl std::fmt::Debug for WorkerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService")
            .field("name", &self.name)
            .finish()
    }
}

impl Worker {
    /// Registers this worker's side of the service `name` and returns its
    /// handle and the [`Inbox`] of what the primary pushes to it. What the
    /// primary pushes before this call is dropped (a request is answered
    /// with an error).
    ///
    /// ```no_run
    /// # async fn demo(worker: herd::Worker) -> Result<(), herd::Error> {
    /// let (counter, mut pushed) = worker.service("counter")?;
    /// let total: u64 = counter.request(&5u64).await?;
    /// counter.send(&"tell me again").await?;
    /// if let Some(herd::services::Pushed::Message(m)) = pushed.recv().await {
    ///     assert_eq!(m.decode::<u64>()?, total);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Service`] for a malformed name or one registered already.
    pub fn service(&self, name: &str) -> Result<(WorkerService, Inbox<Pushed>), Error> {
        let (handler, inbox) = Inbox::new();
        Ok((self.register_service(name, handler)?, inbox))
    }

    /// Registers this worker's side of `name` with a handler run by the
    /// worker's channel reader as each push arrives (no queue); it must not
    /// block. See [`Credit`] for its second argument.
    ///
    /// # Errors
    /// As [`service`](Self::service).
    pub fn service_with(
        &self,
        name: &str,
        handler: impl Fn(Pushed, Credit) + Send + Sync + 'static,
    ) -> Result<WorkerService, Error> {
        self.register_service(name, Arc::new(handler))
    }

    fn register_service(
        &self,
        name: &str,
        handler: Handler<Pushed>,
    ) -> Result<WorkerService, Error> {
        self.services().router.register(name, handler)?;
        Ok(WorkerService {
            name: name.into(),
            worker: self.clone(),
        })
    }
}

impl WorkerService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker this handle belongs to.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Sends `msg` to the service in the primary, waiting while more than
    /// 8 MiB wait to be written (and so while the primary holds this worker
    /// back). In order with this worker's other service frames.
    ///
    /// # Errors
    /// [`Error::ChannelClosed`], [`Error::Codec`], [`Error::TooLarge`].
    pub async fn send<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        send_frame(self.worker.outbox(), &self.name, Op::Message, 0, msg).await
    }

    /// [`send`](Self::send) of a value encoded already (`json`).
    pub(crate) async fn send_json(&self, json: &[u8]) -> Result<(), Error> {
        self.worker
            .outbox()
            .framed(crate::channel::wire::Kind::Service, |buf| {
                frame::write_prefix(buf, &self.name, Op::Message, 0);
                buf.extend_from_slice(json);
                Ok(())
            })
            .await
    }

    /// Asks with a value `write` appends (encoded already, in whatever
    /// form the service reads) and returns the reply undecoded; otherwise
    /// as [`request_with_timeout`](Self::request_with_timeout).
    pub(crate) async fn request_raw(
        &self,
        write: impl FnOnce(&mut Vec<u8>),
        timeout: Duration,
    ) -> Result<Message, Error> {
        let outbox = self.worker.outbox();
        let name = &self.name;
        let send = |id| {
            outbox.framed(crate::channel::wire::Kind::Service, move |buf| {
                frame::write_prefix(buf, name, Op::Request, id);
                write(buf);
                Ok(())
            })
        };
        self.worker.services().calls.ask_raw(send, timeout).await
    }

    /// [`send`](Self::send) without waiting.
    ///
    /// # Errors
    /// As [`send`](Self::send), and [`Error::Backlog`] when more than
    /// 32 MiB wait to be written already.
    pub fn send_now<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        send_frame_now(self.worker.outbox(), None, &self.name, Op::Message, 0, msg)
    }

    /// Asks the service in the primary, waiting at most
    /// [`DEFAULT_TIMEOUT`](crate::request::DEFAULT_TIMEOUT) (30 s).
    ///
    /// # Errors
    /// As [`request_with_timeout`](Self::request_with_timeout).
    pub async fn request<T, R>(&self, msg: &T) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with_timeout(msg, crate::request::DEFAULT_TIMEOUT)
            .await
    }

    /// Asks the service in the primary and waits at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::NoReply`] when the primary has no such
    /// service or drops the request; [`Error::TooManyRequests`] with 1024
    /// service requests waiting already; [`Error::ChannelClosed`];
    /// [`Error::Codec`] (also when the answer does not decode as `R`).
    pub async fn request_with_timeout<T, R>(&self, msg: &T, timeout: Duration) -> Result<R, Error>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let outbox = self.worker.outbox();
        let name = &self.name;
        self.worker
            .services()
            .calls
            .ask_with(
                |id| async move { send_frame(outbox, name, Op::Request, id, msg).await },
                timeout,
            )
            .await
    }
}
