//! [`ListenAddr`]: what a worker listens on, typed from the string a user
//! writes to the frame on the wire and the address an event reports.
//!
//! It holds only addresses, never host names: a host name is resolved
//! before it becomes a `ListenAddr` ([`ListenAddr::resolve`] in the worker,
//! with tokio's resolver), so the primary never waits on DNS (its one
//! dispatch thread serves every worker's connections).
//!
//! ```
//! use herd::{AddrKind, ListenAddr};
//! let a: ListenAddr = "127.0.0.1:8080".parse().unwrap();
//! assert_eq!(a.to_string(), "127.0.0.1:8080");
//! assert_eq!(a.kind(), AddrKind::Tcp4);
//! assert_eq!(":53".parse::<ListenAddr>().unwrap().to_string(), "[::]:53");
//! assert_eq!("udp:0.0.0.0:53".parse::<ListenAddr>().unwrap().kind(), AddrKind::Udp4);
//! assert!("localhost:80".parse::<ListenAddr>().unwrap_err().contains("host name"));
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A listening address: TCP, UDP or a Unix socket path.
///
/// Its one text form ([`Display`](fmt::Display), parsed back by
/// [`FromStr`]): `127.0.0.1:8080`, `[::]:80`, `udp:0.0.0.0:53`,
/// `unix:/run/app.sock`. `tcp:` may prefix a TCP address, and `:PORT`
/// means every address, IPv6 and IPv4 (`[::]:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UDP address.
    Udp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// The kind of a [`ListenAddr`], as Node's `addressType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrKind {
    /// TCP over IPv4.
    Tcp4,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv4.
    Udp4,
    /// UDP over IPv6.
    Udp6,
    /// A Unix domain socket.
    Unix,
}

impl fmt::Display for AddrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrKind::Tcp4 => "tcp4",
            AddrKind::Tcp6 => "tcp6",
            AddrKind::Udp4 => "udp4",
            AddrKind::Udp6 => "udp6",
            AddrKind::Unix => "unix",
        })
    }
}

const FORMS: &str = "use HOST:PORT, [V6]:PORT, :PORT, udp:HOST:PORT or unix:PATH";

/// The parts of an address text: whether it is UDP, and the host and port
/// text (or the Unix path).
enum Parts<'a> {
    Unix(&'a str),
    Inet { udp: bool, rest: String },
}

fn split(s: &str) -> Result<Parts<'_>, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "invalid listen address {s:?}: empty path ({FORMS})"
            ));
        }
        return Ok(Parts::Unix(path));
    }
    let (udp, rest) = match s.strip_prefix("udp:") {
        Some(r) => (true, r),
        None => (false, s.strip_prefix("tcp:").unwrap_or(s)),
    };
    let rest = match rest.strip_prefix(':') {
        Some(port) => format!("[::]:{port}"),
        None => rest.to_string(),
    };
    Ok(Parts::Inet { udp, rest })
}

/// Checks the port of `HOST:PORT` text, for a clear error before any
/// lookup.
fn check_port(s: &str, rest: &str) -> Result<(), String> {
    let (_, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid listen address {s:?}: no port ({FORMS})"))?;
    port.parse::<u16>().map(drop).map_err(|_| {
        format!("invalid listen address {s:?}: port is not a number from 0 to 65535 ({FORMS})")
    })
}

impl ListenAddr {
    /// Parses an address without resolving anything: a host name is an
    /// error (use [`resolve`](Self::resolve)). A relative Unix path stays
    /// relative; a worker's `listen` makes it absolute against its own
    /// working directory.
    ///
    /// # Errors
    /// A message naming the text and the forms that are accepted.
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        match split(s)? {
            Parts::Unix(p) => Ok(ListenAddr::Unix(PathBuf::from(p))),
            Parts::Inet { udp, rest } => match rest.parse::<SocketAddr>() {
                Ok(sa) => Ok(ListenAddr::inet(udp, sa)),
                Err(_) => {
                    check_port(s, &rest)?;
                    Err(format!(
                        "invalid listen address {s:?}: a host name, not an address; resolve it first (ListenAddr::resolve, as Worker::listen does), or give an IP address ({FORMS})"
                    ))
                }
            },
        }
    }

    /// Parses an address, resolving a host name with tokio's resolver (the
    /// first address it gives). This is what [`Worker::listen`] does, in
    /// the worker, so no lookup ever runs in the primary.
    ///
    /// [`Worker::listen`]: crate::Worker::listen
    ///
    /// # Errors
    /// `InvalidInput` for a malformed address or a name that resolves to
    /// nothing, naming the text.
    pub async fn resolve(s: &str) -> io::Result<ListenAddr> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        match split(s).map_err(invalid)? {
            Parts::Unix(p) => Ok(ListenAddr::Unix(PathBuf::from(p))),
            Parts::Inet { udp, rest } => {
                if let Ok(sa) = rest.parse::<SocketAddr>() {
                    return Ok(ListenAddr::inet(udp, sa));
                }
                check_port(s, &rest).map_err(invalid)?;
                let sa = tokio::net::lookup_host(rest.as_str())
                    .await
                    .map_err(|e| invalid(format!("cannot resolve the host of {s:?}: {e}")))?
                    .next()
                    .ok_or_else(|| invalid(format!("the host of {s:?} resolves to no address")))?;
                Ok(ListenAddr::inet(udp, sa))
            }
        }
    }

    /// [`resolve`](Self::resolve) for code outside a runtime (a command
    /// line parsed at start), with the system's blocking resolver.
    ///
    /// # Errors
    /// As [`resolve`](Self::resolve).
    pub fn resolve_blocking(s: &str) -> Result<ListenAddr, String> {
        use std::net::ToSocketAddrs;
        match split(s)? {
            Parts::Unix(p) => Ok(ListenAddr::Unix(PathBuf::from(p))),
            Parts::Inet { udp, rest } => {
                if let Ok(sa) = rest.parse::<SocketAddr>() {
                    return Ok(ListenAddr::inet(udp, sa));
                }
                check_port(s, &rest)?;
                let sa = rest
                    .to_socket_addrs()
                    .map_err(|e| format!("invalid listen address {s:?}: cannot resolve host: {e}"))?
                    .next()
                    .ok_or_else(|| {
                        format!("invalid listen address {s:?}: host resolves to no address")
                    })?;
                Ok(ListenAddr::inet(udp, sa))
            }
        }
    }

    fn inet(udp: bool, sa: SocketAddr) -> ListenAddr {
        if udp {
            ListenAddr::Udp(sa)
        } else {
            ListenAddr::Tcp(sa)
        }
    }

    /// TCP or UDP, over IPv4 or IPv6, or Unix.
    pub fn kind(&self) -> AddrKind {
        match self {
            ListenAddr::Tcp(a) if a.is_ipv4() => AddrKind::Tcp4,
            ListenAddr::Tcp(_) => AddrKind::Tcp6,
            ListenAddr::Udp(a) if a.is_ipv4() => AddrKind::Udp4,
            ListenAddr::Udp(_) => AddrKind::Udp6,
            ListenAddr::Unix(_) => AddrKind::Unix,
        }
    }

    /// The IP address and port, for TCP and UDP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(a) | ListenAddr::Udp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }

    /// The IP address, for TCP and UDP (Node's `address().address`).
    ///
    /// ```
    /// let a: herd::ListenAddr = "[::1]:8080".parse().unwrap();
    /// assert_eq!(a.ip(), Some(std::net::Ipv6Addr::LOCALHOST.into()));
    /// assert_eq!(a.port(), Some(8080));
    /// assert_eq!(a.kind(), herd::AddrKind::Tcp6);
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        self.socket_addr().map(|a| a.ip())
    }

    /// The port, for TCP and UDP.
    pub fn port(&self) -> Option<u16> {
        self.socket_addr().map(|a| a.port())
    }

    /// The path, for a Unix socket.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ListenAddr::Unix(p) => Some(p),
            _ => None,
        }
    }
}

/// Serializes an address as its text form (for status documents; the wire
/// keeps the typed form).
pub(crate) fn as_text<S: serde::Serializer>(a: &ListenAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ListenAddr::parse(s)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Udp(a) => write!(f, "udp:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Options of one listen. The first worker to listen on an address sets
/// them for every worker that shares it, as in Node.
///
/// ```
/// let o = herd::ListenOptions::new().backlog(4096).mode(0o660);
/// let batching = herd::ListenOptions::new().nodelay(false);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenOptions {
    pub(crate) backlog: Option<u32>,
    pub(crate) ipv6_only: Option<bool>,
    pub(crate) mode: Option<u32>,
    /// Left out of the wire when unset: a primary that predates it still
    /// reads a worker's listen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nodelay: Option<bool>,
}

impl ListenOptions {
    /// The defaults: backlog 1024, dual-stack, the umask's file mode,
    /// TCP_NODELAY on.
    pub fn new() -> ListenOptions {
        ListenOptions::default()
    }

    /// The accept queue's length. Default: 1024.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// For `[::]`: refuse IPv4. Default: false (dual-stack).
    pub fn ipv6_only(mut self, only: bool) -> Self {
        self.ipv6_only = Some(only);
        self
    }

    /// For a Unix socket: the file's permission bits. Default: from the
    /// umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// For TCP: set TCP_NODELAY on the listening socket, which Linux
    /// passes to every connection accepted on it, so that a program that
    /// never sets it itself (uvicorn given a descriptor, Python's
    /// socketserver) does not wait on Nagle's algorithm for its small
    /// responses on a keep-alive connection. Default: true. A socket passed
    /// in already bound (systemd's, see `NoDelay=`) is left as it is.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = Some(nodelay);
        self
    }

    /// Whether TCP_NODELAY is set in force.
    pub(crate) fn nodelay_or_default(&self) -> bool {
        self.nodelay.unwrap_or(true)
    }

    /// The accept queue's length in force.
    pub(crate) fn backlog_or_default(&self) -> u32 {
        self.backlog.unwrap_or(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_displays_back() {
        for text in [
            "127.0.0.1:80",
            "[::1]:9",
            "[::]:8080",
            "udp:0.0.0.0:53",
            "unix:/run/x.sock",
            "unix:run/x.sock",
        ] {
            let a = ListenAddr::parse(text).unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(ListenAddr::parse(&a.to_string()).unwrap(), a);
        }
        assert_eq!(
            ListenAddr::parse("tcp:127.0.0.1:1").unwrap().to_string(),
            "127.0.0.1:1"
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert!(ListenAddr::parse("127.0.0.1:99999")
            .unwrap_err()
            .contains("0 to 65535"));
        assert!(ListenAddr::parse("unix:").unwrap_err().contains("empty"));
        assert!(ListenAddr::parse("nonsense")
            .unwrap_err()
            .contains("no port"));
        assert!(ListenAddr::parse("example.com:80")
            .unwrap_err()
            .contains("host name"));
    }

    #[test]
    fn on_the_wire_an_address_cannot_be_a_host_name() {
        let a = ListenAddr::parse("127.0.0.1:80").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"tcp":"127.0.0.1:80"}"#);
        assert_eq!(serde_json::from_str::<ListenAddr>(&json).unwrap(), a);
        assert!(serde_json::from_str::<ListenAddr>(r#"{"tcp":"localhost:80"}"#).is_err());
    }

    #[test]
    fn nodelay_is_on_the_wire_only_when_set() {
        let json = serde_json::to_string(&ListenOptions::new().backlog(8)).unwrap();
        assert!(!json.contains("nodelay"), "{json}");
        let off = ListenOptions::new().nodelay(false);
        let json = serde_json::to_string(&off).unwrap();
        assert_eq!(serde_json::from_str::<ListenOptions>(&json).unwrap(), off);
        assert!(ListenOptions::new().nodelay_or_default());
    }

    #[tokio::test]
    async fn a_host_name_resolves_in_the_caller() {
        let a = ListenAddr::resolve("localhost:0").await.unwrap();
        assert!(a.socket_addr().unwrap().ip().is_loopback(), "{a}");
        assert_eq!(
            ListenAddr::resolve_blocking("udp:localhost:0")
                .unwrap()
                .socket_addr()
                .unwrap()
                .port(),
            0
        );
    }
}
