//! The Redis protocol (RESP) for foreign workers: the primary serves the
//! cluster's cache and emitter on a Unix socket, so a Node, Python or Go
//! program reaches them with the Redis client it already has.
//!
//! - `codec`: RESP2/RESP3 parsing and encoding, bounded ([`Limits`]).
//! - `commands`: GET, SET (NX/XX, EX/PX), DEL, EXISTS, KEYS, SCAN, EXPIRE,
//!   TTL, PUBLISH against a [`Backend`].
//! - `server`: one connection: HELLO, PING, SUBSCRIBE/UNSUBSCRIBE, the
//!   connection commands client libraries send as they connect, pushes.
//! - `socket`: the 0600 Unix socket ([`ServicesSocket`]) and its bound on
//!   connections.

mod codec;
mod commands;
mod server;
mod socket;

pub use codec::{Limits, Proto, ProtocolError, Reply};
pub use commands::{glob, Backend, Condition, Ttl};
pub use server::{serve, Hub, PushSender, MAX_SUBSCRIPTIONS, PUSH_QUEUE};
pub use socket::{ServicesSocket, ENV, MAX_CONNECTIONS};

#[cfg(test)]
mod tests;
