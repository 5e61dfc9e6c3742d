//! Never take over a port silently: herd binds its sockets with
//! SO_REUSEPORT (one per worker under `reuseport`), and so would a second
//! herd on the same address, which would then get new connections meant for
//! the first. Before binding, each TCP and UDP address is probed with a
//! socket that has no SO_REUSEPORT: the kernel refuses it (EADDRINUSE) when
//! any socket holds the address, herd's or not. The holder is then named:
//! a herd of this runtime directory by its name and pid (from its
//! `NAME.lock`, see `name.rs`), another process by its pid and command.
//! `--takeover` skips the probe (what a hot upgrade will use).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{bail, Result};
use herd::ListenAddr;

/// Fails, naming the holder, if another socket holds `addr` (TCP or UDP
/// with a port; anything else is left to the bind itself).
pub fn check(addr: &ListenAddr, runtime_dir: &Path) -> Result<()> {
    let (sa, udp) = match addr {
        ListenAddr::Tcp(sa) => (*sa, false),
        ListenAddr::Udp(sa) => (*sa, true),
        ListenAddr::Unix(_) => return Ok(()),
    };
    if sa.port() == 0 {
        return Ok(());
    }
    // std sets SO_REUSEADDR (TCP, so a port in TIME_WAIT is free) and never
    // SO_REUSEPORT.
    let probe = if udp {
        std::net::UdpSocket::bind(sa).map(drop)
    } else {
        std::net::TcpListener::bind(sa).map(drop)
    };
    match probe {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        // Free, or another error that the bind itself reports (a
        // privileged port, an address not on this host).
        _ => return Ok(()),
    }
    let who = holder(sa, udp, runtime_dir);
    bail!(
        "cannot listen on {addr}: the address is already in use (EADDRINUSE); {who}: stop it, listen on another address, or pass --takeover to share the address with it (new connections may then go to this herd)"
    )
}

/// Who holds `sa`, in words: `herd "NAME" (pid N) holds it`, `another
/// process holds it (pid N: COMMAND)`.
fn holder(sa: SocketAddr, udp: bool, runtime_dir: &Path) -> String {
    let inodes = socket_inodes(sa, udp);
    let pids = if inodes.is_empty() {
        Vec::new()
    } else {
        pids_holding(&inodes)
    };
    let herds = herds_in(runtime_dir);
    if let Some((name, pid)) = herds.iter().find(|(_, pid)| pids.contains(pid)) {
        return format!(
            "herd {name:?} (pid {pid}) holds it (`herd ctl --name {name} stop` stops that herd)"
        );
    }
    match pids.iter().min() {
        Some(pid) => format!("another process holds it (pid {pid}: {})", command(*pid)),
        None => "another process holds it".into(),
    }
}

/// The inodes of the sockets bound to an address that conflicts with `sa`
/// (the same port, and the same IP or a wildcard on either side), listening
/// for TCP, from /proc/net.
fn socket_inodes(sa: SocketAddr, udp: bool) -> HashSet<u64> {
    let files: [&str; 2] = if udp {
        ["/proc/net/udp", "/proc/net/udp6"]
    } else {
        ["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let mut out = HashSet::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if !udp && *state != "0A" {
                continue;
            }
            let Some((ip, port)) = parse_local(local) else {
                continue;
            };
            if port == sa.port() && conflicts(ip, sa.ip()) {
                if let Ok(i) = inode.parse::<u64>() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// `0100007F:1F90` (v4) or 32 hex digits and a port (v6), as the kernel
/// prints each 32-bit word in host order.
fn parse_local(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        ip.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    let ip = match ip.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Whether two bound IPs overlap: equal (a v4-mapped v6 as its v4), or
/// either a wildcard.
fn conflicts(a: IpAddr, b: IpAddr) -> bool {
    let norm = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (norm(a), norm(b));
    a.is_unspecified() || b.is_unspecified() || a == b
}

/// The processes (of those this user may look at) holding one of
/// `inodes`.
fn pids_holding(inodes: &HashSet<u64>) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| {
                t.to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
            })
        });
        if holds {
            out.push(pid);
        }
    }
    out
}

/// The herds of `runtime_dir`: (name, pid) from each `NAME.lock`.
fn herds_in(runtime_dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(runtime_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let name = file.to_str()?.strip_suffix(".lock")?.to_string();
            let pid = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((name, pid))
        })
        .collect()
}

/// A process's command line, shortened, for a message.
fn command(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    if text.is_empty() {
        "unknown command".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn proc_net_addresses_parse() {
        let (ip, port) = parse_local("0100007F:1F90").unwrap();
        assert_eq!((ip, port), ("127.0.0.1".parse().unwrap(), 8080));
        let (ip, _) = parse_local("00000000000000000000000001000000:0050").unwrap();
        assert_eq!(ip, "::1".parse::<IpAddr>().unwrap());
        assert!(parse_local("zz:1").is_none());
        assert!(parse_local("0100007F").is_none());
    }

    #[test]
    fn wildcards_and_mapped_addresses_conflict() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(conflicts(ip("::"), ip("127.0.0.1")));
        assert!(conflicts(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(!conflicts(ip("127.0.0.2"), ip("127.0.0.1")));
    }
}
