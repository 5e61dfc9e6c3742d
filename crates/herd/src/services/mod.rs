//! Services: cooperation between the primary and its workers beyond
//! plain messages (cluster2's emitter, status registry and cache), over a
//! transport of their own.
//!
//! The services: the [`cache`] (named caches shared by the cluster, with
//! single-flight loading and a local copy in each worker).
//!
//! # The transport
//!
//! A service has a name (1 to 64 ASCII letters, digits, `._:-`; `herd.` is
//! the library's own prefix) and a side in the primary and in each worker.
//! Its traffic travels in frames of its own kind (4) on each worker's
//! channel (docs/protocol.md, "Service frames"), so it never mixes with the
//! application's `send` messages, requests, or herd's control frames.
//!
//! - In the primary, [`Primary::service`](crate::Primary::service)
//!   registers a service and returns its [`PrimaryService`] (send to one
//!   worker, to all, or ask one) and its [`Inbox`] of [`ServiceEvent`]s:
//!   a worker's message, a worker's request to answer, and
//!   [`ServiceEvent::WorkerGone`] once a worker's channel closed (after
//!   all it sent), so that what it held goes with it.
//!   [`Primary::service_with`](crate::Primary::service_with) runs a handler
//!   on the primary's dispatch thread instead, with no queue or thread hop.
//! - In a worker, [`Worker::service`](crate::Worker::service) returns its
//!   [`WorkerService`] (send, request with a timeout) and the [`Inbox`] of
//!   what the primary pushes ([`Pushed`]).
//!
//! Order is kept per sender. Everything waiting is bounded: a worker's
//! deliveries in the primary wait under its `message_queue` bound (the
//! primary reads no more of its channel meanwhile, as for its messages),
//! the primary's in a worker under [`WORKER_QUEUE`]; each side has at most
//! 1024 service requests waiting for replies per channel, and answers more
//! than 1024 unanswered ones from the other side with an error. A message
//! for a service not registered on the receiving side is dropped (a debug
//! log); a request to one is answered with an error naming it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! use herd::services::ServiceEvent;
//! match herd::role() {
//!     herd::Role::Primary => {
//!         let primary = herd::Primary::new()?;
//!         let (_echo, mut inbox) = primary.service("echo")?;
//!         primary.fork()?;
//!         while let Some(event) = inbox.recv().await {
//!             if let ServiceEvent::Request { request, .. } = event {
//!                 let text: String = request.decode()?;
//!                 request.reply(&text.to_uppercase())?;
//!             }
//!         }
//!     }
//!     herd::Role::Worker => {
//!         let worker = herd::Worker::connect().await?;
//!         let (echo, _pushed) = worker.service("echo")?;
//!         let loud: String = echo.request(&"hello").await?;
//!         assert_eq!(loud, "HELLO");
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod cache;
mod client;
mod common;
pub mod emitter;
pub(crate) mod frame;
pub(crate) mod host;
pub mod status;

pub(crate) use client::Endpoint;
pub use client::{Pushed, WorkerService, WORKER_QUEUE};
pub(crate) use common::Slots;
pub use common::{Credit, Inbox, ServiceRequest};
pub use emitter::{Emitted, Emitter, Origin, Subscription, Target, Targets};
pub use frame::MAX_NAME;
pub use host::{PrimaryService, ServiceEvent};
pub use status::{SetReport, StatusName, StatusRegistry, StatusReport, WorkerStatuses};
