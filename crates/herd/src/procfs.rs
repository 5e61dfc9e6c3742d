//! Every read of /proc in one place: memory and CPU of a process (statm,
//! stat), the sockets it holds (fd links), what its threads wait in
//! (task syscall), its epoll sets (fdinfo) and this network namespace's TCP
//! table; a process's place in the process tree, its starting environment
//! and its credentials. Sizes use the kernel's real page size and clock tick from
//! `sysconf`, never an assumed 4 KiB or 100 Hz.
//!
//! Every reader returns `None` (or nothing) when the process is gone or the
//! file cannot be read: a process may end between two reads.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The kernel's page size in bytes (4 KiB, 16 KiB or 64 KiB).
pub(crate) fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|v| *v > 0)
            .map_or(4096, |v| v as u64)
    })
}

/// Clock ticks per second, the unit of /proc/PID/stat's CPU times.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|v| *v > 0)
            .map_or(100, |v| v as u64)
    })
}

/// Which process: this one, or another by pid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Proc {
    /// `/proc/self`.
    Me,
    /// `/proc/PID`.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Me => format!("/proc/self/{file}"),
            Proc::Pid(p) => format!("/proc/{p}/{file}"),
        }
    }
}

/// Resident memory in bytes (statm's second field), the figure that
/// /proc/PID/status shows as VmRSS.
pub(crate) fn rss_bytes(p: Proc) -> Option<u64> {
    let statm = std::fs::read_to_string(p.path("statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time used, user plus system, in milliseconds (stat's utime and
/// stime).
pub(crate) fn cpu_ms(p: Proc) -> Option<u64> {
    let stat = std::fs::read_to_string(p.path("stat")).ok()?;
    // utime and stime are the 12th and 13th fields after the command
    // name, which is in parentheses and may hold spaces or parentheses.
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(ticks * 1000 / clock_ticks())
}

/// The inode of a `socket:[INODE]` link target.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The socket inode that descriptor `fd` of the process is, if it is one.
pub(crate) fn fd_socket_inode(p: Proc, fd: &str) -> Option<u64> {
    let target = std::fs::read_link(p.path(&format!("fd/{fd}"))).ok()?;
    socket_inode(&target.to_string_lossy())
}

/// One open descriptor: its number and what it points to.
pub(crate) struct OpenFd {
    pub fd: String,
    pub target: String,
}

/// The process's open descriptors (empty if it is gone).
pub(crate) fn open_fds(p: Proc) -> Vec<OpenFd> {
    let Ok(dir) = std::fs::read_dir(p.path("fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some(OpenFd {
                fd: e.file_name().to_string_lossy().into_owned(),
                target: target.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// How many distinct sockets of `inodes` the processes of `tree` hold open
/// (one held by two of them counts once); `None` if its first process is
/// gone.
pub(crate) fn count_sockets_in(tree: &[Proc], inodes: &HashSet<u64>) -> Option<u64> {
    std::fs::metadata(tree.first()?.path("fd")).ok()?;
    let held: HashSet<u64> = tree
        .iter()
        .flat_map(|p| open_fds(*p))
        .filter_map(|o| socket_inode(&o.target))
        .filter(|i| inodes.contains(i))
        .collect();
    Some(held.len() as u64)
}

/// What each thread of the process is blocked in: the system call number
/// and its first argument (from task/TID/syscall), for threads that are in
/// a system call.
pub(crate) fn thread_syscalls(p: Proc) -> Vec<(i64, Option<i64>)> {
    let Ok(tasks) = std::fs::read_dir(p.path("task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let sc = std::fs::read_to_string(t.path().join("syscall")).ok()?;
            let mut f = sc.split_whitespace();
            let nr = f.next()?.parse::<i64>().ok()?;
            let arg0 = f
                .next()
                .and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
            Some((nr, arg0))
        })
        .collect()
}

/// The descriptors in the epoll set that descriptor `epfd` of the process
/// is (fdinfo's `tfd:` lines).
pub(crate) fn epoll_targets(p: Proc, epfd: &str) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string(p.path(&format!("fdinfo/{epfd}"))) else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.strip_prefix("tfd:"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The socket inodes of this network namespace's TCP connections on one of
/// `ports` (any state but LISTEN and TIME_WAIT), from /proc/self/net: one
/// pass for all workers, as the table may be long on a busy machine.
pub(crate) fn tcp_connection_inodes(ports: &[u16]) -> HashSet<u64> {
    let mut out = HashSet::new();
    if ports.is_empty() {
        return out;
    }
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            // 0A is LISTEN, 06 TIME_WAIT (no process holds those).
            if *state == "0A" || *state == "06" {
                continue;
            }
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if !port.is_some_and(|p| ports.contains(&p)) {
                continue;
            }
            if let Some(ino) = inode.parse::<u64>().ok().filter(|i| *i != 0) {
                out.insert(ino);
            }
        }
    }
    out
}

/// A process's place in the process tree (from its stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// The state letter: `R`, `S`, `D`, `Z` (zombie)...
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
}

/// Where process `pid` is in the tree; `None` once it is reaped.
pub(crate) fn place(pid: u32) -> Option<Place> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some(Place { state, ppid, pgid })
}

/// The children of process `ppid`, with their places: every process of
/// the system is looked at (the kernel's per-task `children` lists are not
/// always built in), so call it on an event, not in a tight loop.
pub(crate) fn children(ppid: u32) -> Vec<(u32, Place)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, place(pid)?)))
        .filter(|(_, p)| p.ppid == ppid)
        .collect()
}

/// The processes below `pid`: its process group (each worker leads its
/// own) and every process whose parent chain reaches it (one that left the
/// group). One scan of /proc: call it now and then, not in a tight loop.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    trees(&[pid]).remove(&pid).unwrap_or_default()
}

/// [`descendants`] of each of `roots`, from one scan of /proc (a status
/// of many workers costs one pass, not one per worker).
pub(crate) fn trees(roots: &[u32]) -> std::collections::HashMap<u32, Vec<u32>> {
    let mut out: std::collections::HashMap<u32, Vec<u32>> =
        roots.iter().map(|r| (*r, Vec::new())).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let all: Vec<(u32, Place)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, place(p)?)))
        .collect();
    let parent: std::collections::HashMap<u32, u32> =
        all.iter().map(|(p, pl)| (*p, pl.ppid)).collect();
    // The root a process is below, by its parent chain (at most 64 up).
    let root_of = |mut p: u32| {
        for _ in 0..64 {
            match parent.get(&p) {
                Some(pp) if out.contains_key(pp) => return Some(*pp),
                Some(&pp) if pp > 1 => p = pp,
                _ => return None,
            }
        }
        None
    };
    let found: Vec<(u32, u32)> = all
        .iter()
        .filter(|(p, pl)| pl.state != 'Z' && !out.contains_key(p))
        .filter_map(|(p, pl)| {
            let root = if out.contains_key(&pl.pgid) {
                Some(pl.pgid)
            } else {
                root_of(*p)
            };
            root.map(|r| (r, *p))
        })
        .collect();
    for (root, p) in found {
        out.entry(root).or_default().push(p);
    }
    out
}

/// Whether process `pid`, or an ancestor of it below the init process,
/// is `ancestor` (at most 64 generations up).
pub(crate) fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        match place(p) {
            Some(pl) if pl.ppid > 1 => p = pl.ppid,
            _ => return false,
        }
    }
    false
}

/// The value of `key` in the environment process `pid` was started with
/// (its /proc environ: readable for the same user, or by root).
pub(crate) fn env_var(pid: u32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let rest = kv.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest).into_owned())
    })
}

/// A process's file-system credentials and effective capabilities, from
/// its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub fs: crate::sys::FsCreds,
    /// The effective capability set (CapEff), as bits.
    pub cap_eff: u64,
}

/// The credentials process `pid` has now; `None` once it is gone.
pub(crate) fn creds(pid: u32) -> Option<Creds> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    // Uid: and Gid: are real, effective, saved and file-system ids.
    let fs_id =
        |name: &str| -> Option<u32> { field(name)?.split_whitespace().nth(3)?.parse().ok() };
    let groups = field("Groups")?
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    Some(Creds {
        fs: crate::sys::FsCreds {
            uid: fs_id("Uid")?,
            gid: fs_id("Gid")?,
            groups,
        },
        cap_eff: u64::from_str_radix(field("CapEff")?, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VmRSS from /proc/PID/status, in bytes.
    fn vm_rss(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS line");
        kb * 1024
    }

    #[test]
    fn resident_size_is_what_proc_status_calls_vmrss() {
        // A process that sleeps: its resident size holds still while both
        // files are read.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // statm is read right after exec'ing, so wait for sleep to settle:
        // two equal VmRSS readings in a row.
        let mut last = 0;
        for _ in 0..200 {
            let now = vm_rss(pid);
            if now == last {
                break;
            }
            last = now;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let ours = rss_bytes(Proc::Pid(pid)).unwrap();
        let theirs = vm_rss(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ours, theirs, "page size {}", page_size());
    }

    #[test]
    fn cpu_time_and_memory_of_this_process_are_read() {
        // Spin a little so there is CPU time to see.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(rss_bytes(Proc::Me).unwrap() > 0);
        assert!(cpu_ms(Proc::Me).is_some());
        assert!(rss_bytes(Proc::Pid(u32::MAX)).is_none());
    }

    #[test]
    fn a_socket_link_gives_its_inode() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
