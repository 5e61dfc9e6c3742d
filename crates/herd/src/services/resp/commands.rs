//! The commands the RESP socket answers, and the store they act on.
//!
//! [`Backend`] is what a command needs from the cluster's services: a
//! key-value store with expiry and a publish/subscribe hub. The server
//! (`server.rs`) owns connections and pub/sub state; this module turns one
//! parsed command into one reply, with redis-server's argument rules and
//! error texts where a client depends on them.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::codec::Reply;

/// How `SET` treats an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Always set.
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if it exists.
    IfPresent,
}

/// What `TTL` answers about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (`-2`).
    Missing,
    /// It never expires (`-1`).
    Forever,
    /// It expires after this long.
    Left(Duration),
}

/// The store and hub behind the RESP socket. Keys and values are bytes;
/// the implementation decides how they map onto the cluster's cache.
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`, if it has one.
    fn get(&self, key: &[u8]) -> impl Future<Output = Option<Bytes>> + Send;
    /// Sets `key` to `value` (expiring after `ttl`) if `cond` allows;
    /// whether it did, or why it cannot (a key or value the store refuses).
    fn set(
        &self,
        key: Bytes,
        value: Bytes,
        ttl: Option<Duration>,
        cond: Condition,
    ) -> impl Future<Output = Result<bool, String>> + Send;
    /// Removes `key`; whether it was there.
    fn del(&self, key: &[u8]) -> impl Future<Output = bool> + Send;
    /// Every key matching the glob `pattern` (`*`, `?`, `[...]`, `\`).
    fn keys(&self, pattern: &[u8]) -> impl Future<Output = Vec<Bytes>> + Send;
    /// Makes `key` expire after `ttl`; whether it exists.
    fn expire(&self, key: &[u8], ttl: Duration) -> impl Future<Output = bool> + Send;
    /// How long `key` has left.
    fn ttl(&self, key: &[u8]) -> impl Future<Output = Ttl> + Send;
    /// Publishes `message` on `channel`; how many subscribers it reached.
    fn publish(&self, channel: Bytes, message: Bytes) -> impl Future<Output = i64> + Send;
}

/// The upper-case name of a command, for matching and for error texts.
pub fn name(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

fn wrong_args(cmd: &str) -> Reply {
    Reply::err(format!(
        "wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    ))
}

fn syntax() -> Reply {
    Reply::err("syntax error")
}

fn int_arg(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A positive expiry in seconds or milliseconds, as EX/PX/EXPIRE take it.
fn expiry(b: &[u8], millis: bool, cmd: &str) -> Result<Duration, Reply> {
    match int_arg(b) {
        Some(n) if n > 0 => Ok(if millis {
            Duration::from_millis(n as u64)
        } else {
            Duration::from_secs(n as u64)
        }),
        Some(_) => Err(Reply::err(format!(
            "invalid expire time in '{}' command",
            cmd.to_ascii_lowercase()
        ))),
        None => Err(Reply::err("value is not an integer or out of range")),
    }
}

/// Runs one key-value command; `None` when `cmd` is not one of them (the
/// server handles the connection's own commands and unknown ones).
pub async fn run<B: Backend>(b: &B, cmd: &str, args: &[Bytes]) -> Option<Reply> {
    let a = &args[1..];
    Some(match cmd {
        "GET" => match a {
            [k] => b.get(k).await.map_or(Reply::Nil, Reply::Bulk),
            _ => wrong_args(cmd),
        },
        "SET" => set(b, a).await,
        "DEL" | "UNLINK" => {
            if a.is_empty() {
                return Some(wrong_args(cmd));
            }
            let mut n = 0;
            for k in a {
                n += i64::from(b.del(k).await);
            }
            Reply::Int(n)
        }
        "EXISTS" => {
            if a.is_empty() {
                return Some(wrong_args(cmd));
            }
            let mut n = 0;
            for k in a {
                n += i64::from(b.get(k).await.is_some());
            }
            Reply::Int(n)
        }
        "KEYS" => match a {
            [p] => Reply::Array(b.keys(p).await.into_iter().map(Reply::Bulk).collect()),
            _ => wrong_args(cmd),
        },
        "SCAN" => scan(b, a).await,
        "EXPIRE" | "PEXPIRE" => match a {
            // As in Redis, a time of zero or less deletes the key.
            [k, t] if int_arg(t).is_some_and(|n| n <= 0) => Reply::Int(i64::from(b.del(k).await)),
            [k, t] => match expiry(t, cmd == "PEXPIRE", cmd) {
                Ok(ttl) => Reply::Int(i64::from(b.expire(k, ttl).await)),
                Err(e) => e,
            },
            _ => wrong_args(cmd),
        },
        "TTL" | "PTTL" => match a {
            [k] => Reply::Int(match b.ttl(k).await {
                Ttl::Missing => -2,
                Ttl::Forever => -1,
                Ttl::Left(d) if cmd == "PTTL" => d.as_millis() as i64,
                // redis rounds to the nearest second.
                Ttl::Left(d) => ((d.as_millis() + 500) / 1000) as i64,
            }),
            _ => wrong_args(cmd),
        },
        "PUBLISH" => match a {
            [ch, msg] => Reply::Int(b.publish(ch.clone(), msg.clone()).await),
            _ => wrong_args(cmd),
        },
        _ => return None,
    })
}

/// `SET key value [NX|XX] [EX s|PX ms|KEEPTTL] [GET]` without KEEPTTL and GET,
/// which are refused by name.
async fn set<B: Backend>(b: &B, a: &[Bytes]) -> Reply {
    let [k, v, opts @ ..] = a else {
        return wrong_args("SET");
    };
    let mut cond = Condition::Always;
    let mut ttl = None;
    let mut i = 0;
    while i < opts.len() {
        match name(&opts[i]).as_str() {
            "NX" if cond == Condition::Always => cond = Condition::IfAbsent,
            "XX" if cond == Condition::Always => cond = Condition::IfPresent,
            o @ ("EX" | "PX") if ttl.is_none() => {
                let Some(t) = opts.get(i + 1) else {
                    return syntax();
                };
                match expiry(t, o == "PX", "set") {
                    Ok(d) => ttl = Some(d),
                    Err(e) => return e,
                }
                i += 1;
            }
            o @ ("KEEPTTL" | "GET" | "EXAT" | "PXAT") => {
                return Reply::err(format!(
                    "SET {o} is not supported by herd's services socket"
                ))
            }
            _ => return syntax(),
        }
        i += 1;
    }
    match b.set(k.clone(), v.clone(), ttl, cond).await {
        Ok(true) => Reply::Simple("OK"),
        Ok(false) => Reply::Nil,
        Err(why) => Reply::err(why),
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n]`: the whole key set in one
/// reply, with cursor 0 (a client's loop ends after it, as it must).
async fn scan<B: Backend>(b: &B, a: &[Bytes]) -> Reply {
    let [cursor, opts @ ..] = a else {
        return wrong_args("SCAN");
    };
    if !int_arg(cursor).is_some_and(|c| c >= 0) {
        return Reply::err("invalid cursor");
    }
    let mut pattern = Bytes::from_static(b"*");
    let mut i = 0;
    while i < opts.len() {
        let Some(value) = opts.get(i + 1) else {
            return syntax();
        };
        match name(&opts[i]).as_str() {
            "MATCH" => pattern = value.clone(),
            "COUNT" if int_arg(value).is_some_and(|n| n > 0) => {}
            "COUNT" => return Reply::err("value is not an integer or out of range"),
            "TYPE" if name(value) == "STRING" => {}
            "TYPE" => return Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]),
            _ => return syntax(),
        }
        i += 2;
    }
    let keys = b.keys(&pattern).await;
    Reply::Array(vec![
        Reply::bulk("0"),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// Redis's glob match (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), as KEYS and
/// SCAN MATCH use it. Iterative with one backtrack point, so no pattern
/// makes it take more than `pattern.len() * key.len()` steps.
pub fn glob(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, k));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pattern[p..], key[k]) {
                        if matched {
                            p += next;
                            k += 1;
                            continue;
                        }
                    } else if key[k] == b'[' {
                        p += 1;
                        k += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == key[k] => {
                    p += 2;
                    k += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == key[k] => {
                    p += 1;
                    k += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sk)) => {
                p = sp + 1;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `p` against `c`: whether it matches,
/// and the class's length; `None` if the class never closes.
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(1) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < p.len() && p[i] != b']' {
        if p[i] == b'\\' && i + 1 < p.len() {
            matched |= p[i + 1] == c;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis_does() {
        for (p, k, m) in [
            ("*", "", true),
            ("*", "anything", true),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("[unclosed", "[unclosed", true),
        ] {
            assert_eq!(glob(p.as_bytes(), k.as_bytes()), m, "{p} vs {k}");
        }
    }

    #[test]
    fn glob_is_linear_on_hostile_patterns() {
        let p = "*a".repeat(50) + "b";
        let k = "a".repeat(5000);
        let t = std::time::Instant::now();
        assert!(!glob(p.as_bytes(), k.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
