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

mod cache_hub;
mod codec;
mod commands;
mod server;
mod socket;

pub use cache_hub::RESP_CACHE;
pub use codec::{Limits, Proto, ProtocolError, Reply};
pub use commands::{glob, Backend, Condition, Ttl};
pub use server::{serve, Hub, PushSender, MAX_SUBSCRIPTIONS, PUSH_BYTES, PUSH_QUEUE};
pub use socket::{ServicesSocket, ENV, MAX_CONNECTIONS};

/// Serves `cache`'s store ([`RESP_CACHE`]) and the RESP clients' channels,
/// bridged to `primary`'s emitter, on a services socket at `path` (mode
/// 0600, given to `owner`, the workers' uid, when they run as another
/// user: put it then in a directory they can search, such as
/// [`crate::foreign::reachable_dir`]'s), on the current runtime. Give
/// workers the path in [`ENV`] (`HERD_SERVICES_SOCKET`).
pub fn serve_cache(
    primary: &crate::Primary,
    cache: &crate::CacheService,
    path: &std::path::Path,
    owner: Option<u32>,
) -> Result<ServicesSocket, crate::Error> {
    if cache.is_standalone() {
        return Err(crate::Error::Service {
            name: "herd.resp".into(),
            why: "the services socket serves an in-primary cache store, not a standalone one"
                .into(),
        });
    }
    let emitter = primary.emitter()?;
    let hub = cache_hub::CacheHub::new(cache.store().clone(), Some(emitter)).map_err(|e| {
        crate::Error::Service {
            name: "herd.resp".into(),
            why: e.to_string(),
        }
    })?;
    ServicesSocket::bind(path, std::sync::Arc::new(hub), Limits::default(), owner).map_err(|e| {
        crate::Error::Service {
            name: "herd.resp".into(),
            why: format!("cannot bind the services socket {}: {e}", path.display()),
        }
    })
}

#[cfg(test)]
mod tests;
