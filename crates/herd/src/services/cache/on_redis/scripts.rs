//! The Lua scripts that make each cache operation one atomic step in
//! Redis: a lease is filled or released only by the owner of its token,
//! and every change is published in the same step, so that the order of
//! notices is the order of the changes.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: value, lease. ARGV: token, lease ms.
/// `{1, value, pttl}` on a hit, `{2}` when the lease is ours, `{0}` when
/// another holds it.
pub(super) static GET_OR_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v then return {1, v, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}",
    )
});

/// KEYS: value, lease. ARGV: token, json, ttl ms (0: none), channel,
/// notice. 1 when the lease was the token's and the value is stored.
pub(super) static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '0' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1",
    )
});

/// KEYS: lease. ARGV: token, channel, notice. 1 when the lease was the
/// token's (and is released now).
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1",
    )
});

/// KEYS: value, lease. ARGV: json, ttl ms (0: none), leave_if_not_null
/// ('1'), channel, notice. 1 when it wrote (and ended any lease).
pub(super) static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if ARGV[3] == '1' then
  local v = redis.call('GET', KEYS[1])
  if v and v ~= 'null' then return 0 end
end
if ARGV[2] ~= '0' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1",
    )
});

/// KEYS: value. ARGV: channel, notice. 1 when it held a value.
pub(super) static DEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1",
    )
});
