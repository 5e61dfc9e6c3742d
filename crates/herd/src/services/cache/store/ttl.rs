//! Per-key expiry and conditional writes, as the Redis protocol asks for
//! them (`SET k v NX PX 100`, `EXPIRE`, `TTL`; services/resp): the
//! cache-wide `expire` option is the default, and these override it for
//! one key.

use std::time::Duration;

use super::{ms, Json, Store};
use crate::services::cache::options::{check_key, CacheError};

/// When a conditional write happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    /// Only if the key holds no live value.
    Absent,
    /// Only if it does.
    Present,
}

impl Store {
    /// Writes `key` if `when` allows, expiring after `ttl` (none: it never
    /// expires, whatever the cache's option). Whether it wrote.
    pub fn set_expiring(
        &self,
        name: &str,
        key: &str,
        json: Json,
        ttl: Option<Duration>,
        when: When,
    ) -> Result<bool, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        let there = named.table.peek(key, now).is_some();
        if (when == When::Absent && there) || (when == When::Present && !there) {
            return Ok(false);
        }
        self.write(named, key, json)?;
        named.table.set_expiry(key, ttl.map(|t| now + ms(t).max(1)));
        drop(inner);
        if ttl.is_some() {
            self.wake.notify_one();
        }
        Ok(true)
    }

    /// Makes `key` expire after `ttl`; whether it holds a live value.
    pub fn expire(&self, name: &str, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        if named.table.peek(key, now).is_none() {
            return Ok(false);
        }
        named.table.set_expiry(key, Some(now + ms(ttl).max(1)));
        named.dirty |= named.options.persist;
        drop(inner);
        self.wake.notify_one();
        Ok(true)
    }

    /// What `key` has left to live: `None` when it holds no live value,
    /// `Some(None)` when it never expires.
    pub fn ttl(&self, name: &str, key: &str) -> Result<Option<Option<Duration>>, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        Ok(named
            .table
            .peek(key, now)
            .map(|e| e.expires.map(|t| Duration::from_millis(t - now))))
    }
}
