//! The Redis protocol (RESP) for foreign workers: the primary serves the
//! cluster's cache and emitter on a Unix socket, so a Node, Python or Go
//! program reaches them with the Redis client it already has.
//!
//! - `codec`: RESP2/RESP3 parsing and encoding, bounded ([`Limits`]).
//! - `commands`: GET, SET (NX/XX, EX/PX), DEL, EXISTS, KEYS, SCAN, EXPIRE,
//!   TTL, PUBLISH against a [`Backend`].
//! - `server`: one connection: HELLO, PING, SUBSCRIBE/UNSUBSCRIBE, the
//!   connection commands client libraries send as they connect, pushes.

mod codec;
mod commands;
mod server;

pub use codec::{Limits, Proto, ProtocolError, Reply};
pub use commands::{glob, Backend, Condition, Ttl};
pub use server::{serve, Hub, PushSender, MAX_SUBSCRIPTIONS, PUSH_QUEUE};

#[cfg(test)]
mod tests;
