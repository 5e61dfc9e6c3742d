//! The library's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in herd's library calls.
///
/// Bind errors from `listen` are returned as [`std::io::Error`] instead, so
/// that `err.kind()` is `AddrInUse` or `PermissionDenied` exactly as with a
/// plain `bind`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker program could not be started.
    #[error("cannot start worker program {}: {source}; check that the path exists and is executable (settings `exec`)", path.display())]
    Exec {
        /// The program that was to be executed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The worker has disconnected or exited; nothing can be sent to it.
    #[error("worker {id} is gone (disconnected or dead); the message was not sent")]
    WorkerGone {
        /// The worker's id.
        id: u32,
    },
    /// The channel to the primary is closed.
    #[error("the channel to the primary is closed")]
    ChannelClosed,
    /// The peer broke the channel protocol (see docs/protocol.md).
    #[error("protocol error on the channel: {0}")]
    Protocol(String),
    /// A message could not be encoded to or decoded from JSON.
    #[error("message could not be encoded or decoded as JSON: {0}")]
    Codec(#[from] serde_json::Error),
    /// A message is larger than a frame may be.
    #[error("message of {size} bytes is larger than the channel's {max}-byte frame limit (the primary's `max_frame` setting)")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// This process is not what the call needs (a worker calling a
    /// primary-only function, or the reverse).
    #[error("{0}")]
    WrongRole(String),
    /// The application's warm-up failed: the worker takes no traffic.
    #[error("warm-up failed: {0}")]
    WarmUp(String),
    /// A variable the primary sets for its workers is malformed.
    #[error("{var}: {why}; start this program from a herd primary, which sets it")]
    Environment {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The primary cannot find its own executable to start as a worker (or
    /// as a foreign worker's trampoline).
    #[error("cannot find this program's own executable to start workers with: set it in the settings (Settings::exec, or Foreign::trampoline)")]
    NoExecutable,
    /// A socket could not be bound for foreign workers.
    #[error("cannot listen on {address}: {source}{}", listen_hint(source))]
    Listen {
        /// The address asked for.
        address: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The worker is a foreign program: it has no channel to send on.
    #[error("worker {id} is a foreign program: it has no channel for messages")]
    NoChannel {
        /// The worker's id.
        id: u32,
    },
    /// A `setup` asked to change the scheduling policy once it was fixed
    /// by the first fork (or `bind_foreign`): sockets already bound follow
    /// it, so it cannot change under them.
    #[error("the scheduling policy is {policy} since the first fork; setup cannot change it to {asked}: set Settings::policy before the first fork (in Primary::with_settings or an earlier setup), or start a new primary")]
    PolicyFixed {
        /// The policy in force.
        policy: crate::Policy,
        /// The policy the setup asked for.
        asked: crate::Policy,
    },
    /// The settings ask for something this kind of worker cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A request got no reply within its timeout (a reply that comes later
    /// is dropped); the other side may still be handling it.
    #[error("no reply from {} within {after:?}; the request may still be handled there (give more time with request_with_timeout)", peer(*worker))]
    Timeout {
        /// Who was asked: a worker's id, or `None` for the primary.
        worker: Option<u32>,
        /// The timeout.
        after: std::time::Duration,
    },
    /// A request will get no reply: the other side went away, dropped the
    /// request unanswered, or holds too many unanswered requests already.
    #[error("no reply from {}: {why}", peer(*worker))]
    NoReply {
        /// Who was asked: a worker's id, or `None` for the primary.
        worker: Option<u32>,
        /// Why.
        why: String,
    },
    /// This side has too many requests waiting for replies already.
    #[error("{max} requests to {} already wait for their replies; wait for some before asking more", peer(*worker))]
    TooManyRequests {
        /// Who would be asked: a worker's id, or `None` for the primary.
        worker: Option<u32>,
        /// The limit ([`crate::request::MAX_PENDING`]).
        max: usize,
    },
    /// A request was answered already: it has one reply.
    #[error("request {id} was answered already; a request has one reply")]
    AlreadyAnswered {
        /// The request's number on its channel.
        id: u64,
    },
    /// Too much waits to be written to the other side already (it reads
    /// nothing): a send that does not wait was refused. The waiting form
    /// (`send` rather than `send_now`) waits for room instead.
    #[error("{queued} bytes already wait to be written to {}, which is not reading them; nothing more is queued without waiting (use the waiting send)", peer(*worker))]
    Backlog {
        /// Who is not reading: a worker's id, or `None` for the primary.
        worker: Option<u32>,
        /// Bytes waiting.
        queued: usize,
    },
    /// A service name is malformed, or taken already on this side.
    #[error("service {name:?}: {why}")]
    Service {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What herd was doing.
        context: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// "worker N", or "the primary".
fn peer(worker: Option<u32>) -> String {
    match worker {
        Some(id) => format!("worker {id}"),
        None => "the primary".into(),
    }
}

fn listen_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "; another process holds it: stop that process or choose another port"
        }
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. `setcap cap_net_bind_service=+ep` on the binary), or use a port from 1024 up"
        }
        io::ErrorKind::AddrNotAvailable => "; that address is not one of this machine's",
        _ => "",
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Shorthand for `Result<T, herd::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
