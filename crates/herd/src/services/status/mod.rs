//! The status registry (cluster2's `status`): workers register named
//! statuses, each with a view (read) and optionally an update (write); the
//! primary lists them, collects every worker's view of one, and sets one
//! everywhere.
//!
//! - In a worker, [`Worker::statuses`](crate::Worker::statuses) gives
//!   [`WorkerStatuses`]: [`register`](WorkerStatuses::register) a view,
//!   [`register_with_update`](WorkerStatuses::register_with_update) a
//!   view and an update, [`unregister`](WorkerStatuses::unregister).
//! - In the primary, [`Primary::statuses`](crate::Primary::statuses) gives
//!   the [`StatusRegistry`]: [`names`](StatusRegistry::names),
//!   [`get_status`](StatusRegistry::get_status) (every worker's view
//!   within a timeout, with those that did not answer: one slow worker
//!   does not fail the call), [`set_status`](StatusRegistry::set_status)
//!   (who applied it, who refused, who did not answer), and
//!   [`register_primary`](StatusRegistry::register_primary) for a status
//!   the primary's side holds (the supervisor's replace queue is one).
//!
//! A worker's entries go with it: once its channel closes, it is listed
//! no more. Built in: [`HEARTBEAT`], each worker's latest heartbeat (the
//! primary answers it from what it holds, without asking; the fields of
//! [`Worker::set_status`](crate::Worker::set_status) are in it, under
//! `app`; a foreign worker's is what the primary keeps of its notices, as
//! `handled` from `HERD_HANDLED=`), and, with a [`Supervisor`](crate::Supervisor), [`REPLACE_QUEUE`].
//! `Worker::set_status` stays what it was: fields pushed with every
//! heartbeat, no question asked (at most one heartbeat interval old); a
//! registered status is asked for when it is read, and may be written.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! match herd::role() {
//!     herd::Role::Primary => {
//!         let primary = herd::Primary::new()?;
//!         let statuses = primary.statuses()?;
//!         primary.fork()?;
//!         // ... once the workers registered:
//!         let level = statuses.get_status("log_level", Duration::from_secs(1)).await;
//!         println!("{:?}, no answer from {:?}", level.answers, level.missing);
//!         let set = statuses.set_status("log_level", &3, Duration::from_secs(1)).await?;
//!         println!("applied by {:?}", set.applied);
//!     }
//!     herd::Role::Worker => {
//!         let worker = herd::Worker::connect().await?;
//!         let level = Arc::new(AtomicU64::new(1));
//!         let (read, write) = (level.clone(), level.clone());
//!         worker
//!             .statuses()?
//!             .register_with_update(
//!                 "log_level",
//!                 move || {
//!                     let v = read.load(Ordering::Relaxed);
//!                     async move { v }
//!                 },
//!                 move |v: u64| {
//!                     write.store(v, Ordering::Relaxed);
//!                     async { Ok(()) }
//!                 },
//!             )
//!             .await?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod primary;
mod wire;
mod worker;

pub use primary::{SetReport, StatusName, StatusRegistry, StatusReport};
pub use wire::MAX_STATUS_NAME;
pub use worker::WorkerStatuses;

/// The registry's service name on the wire.
pub const SERVICE: &str = "herd.status";
/// The built-in status of each worker's latest heartbeat.
pub const HEARTBEAT: &str = "heartbeat";
/// The supervisor's replace queue (registered by the supervisor).
pub const REPLACE_QUEUE: &str = "replace_queue";
