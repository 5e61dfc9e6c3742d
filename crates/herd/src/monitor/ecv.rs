//! ECV: the health answer load balancers poll, as cluster2 gave it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::supervise::Health;

/// Decides from a probe's status code and body whether the host serves.
pub(crate) type Validator = Arc<dyn Fn(u16, &[u8]) -> bool + Send + Sync>;

/// Monitor mode: each health request fetches `path` from the application
/// through the workers (on the cluster's first TCP listen) and `validate`
/// decides from the status code and body whether the host serves.
#[derive(Clone)]
pub struct Probe {
    pub(crate) path: String,
    pub(crate) timeout: Duration,
    pub(crate) validate: Validator,
}

impl Probe {
    /// Probes `path` (e.g. `/health`); the host serves when `validate`
    /// returns true for the answer's status and body.
    pub fn new(
        path: impl Into<String>,
        validate: impl Fn(u16, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Probe {
        Probe {
            path: path.into(),
            timeout: Duration::from_secs(2),
            validate: Arc::new(validate),
        }
    }

    /// Probes `path` and expects `status`, and `body_contains` in the body
    /// when given (what `herd run --monitor-probe` sets).
    pub fn expect(path: impl Into<String>, status: u16, body_contains: Option<String>) -> Probe {
        Probe::new(path, move |code, body| {
            code == status
                && body_contains.as_deref().map_or(true, |needle| {
                    String::from_utf8_lossy(body).contains(needle)
                })
        })
    }

    /// How long a probe may take (default 2 s); past it, the host is
    /// reported down.
    pub fn timeout(mut self, timeout: Duration) -> Probe {
        self.timeout = timeout;
        self
    }

    /// Fetches the path from `target` and validates the answer.
    pub(crate) async fn check(&self, target: SocketAddr) -> Result<(), String> {
        let got = tokio::time::timeout(self.timeout, get(target, &self.path)).await;
        let (code, body) = match got {
            Err(_) => return Err(format!("the probe of {} timed out", self.path)),
            Ok(Err(e)) => return Err(format!("the probe of {} failed: {e}", self.path)),
            Ok(Ok(answer)) => answer,
        };
        if (self.validate)(code, &body) {
            Ok(())
        } else {
            Err(format!(
                "the probe of {} answered {code}, which the validator refused",
                self.path
            ))
        }
    }
}

/// A plain HTTP/1.0 GET: the status code and up to 64 KiB of body.
async fn get(target: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(target).await?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: herd-monitor\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    (&mut s).take(64 << 10).read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((code, body))
}

/// The ECV verdict: whether to serve traffic, and cluster2's status word.
pub(crate) struct Verdict {
    pub serve: bool,
    pub status: &'static str,
    pub why: Option<String>,
}

impl Verdict {
    pub fn of(health: Health, probe: Option<Result<(), String>>) -> Verdict {
        match (health, probe) {
            (Health::Draining, _) => Verdict {
                serve: false,
                status: "DISABLED",
                why: None,
            },
            (Health::Down, _) => Verdict {
                serve: false,
                status: "WARNING",
                why: Some("not every wanted worker is ready".into()),
            },
            (_, Some(Err(why))) => Verdict {
                serve: false,
                status: "WARNING",
                why: Some(why),
            },
            _ => Verdict {
                serve: true,
                status: "AVAILABLE",
                why: None,
            },
        }
    }

    /// cluster2's body: `status=AVAILABLE&ServeTraffic=true&ip=...`.
    pub fn body(&self, local: Option<SocketAddr>, port: Option<u16>) -> String {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let ip = local.map(|a| a.ip().to_string()).unwrap_or_default();
        let port = port.map(|p| p.to_string()).unwrap_or_default();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!(
            "status={}&ServeTraffic={}&ip={ip}&hostname={host}&port={port}&time={time}",
            self.status, self.serve
        )
    }
}
