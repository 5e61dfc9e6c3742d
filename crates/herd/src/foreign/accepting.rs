//! Whether a foreign program accepts on its sockets yet, as /proc shows it
//! (the `listening` readiness rule): a heuristic, for programs that say
//! nothing of their readiness. A pre-fork server (gunicorn, a master that
//! holds the socket while the children it forks accept) counts: its
//! descendants are looked at too.

/// What the `listening` rule saw of a worker's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// One of them waits for connections on one of its sockets.
    Accepting,
    /// One of them holds one of its sockets, none seen waiting on it.
    Holds,
    /// None of them holds any of its sockets.
    NotHeld,
}

impl Seen {
    /// What it means for a worker that is not ready at its boot timeout:
    /// what was seen, and what to try.
    pub(crate) fn unready_hint(self) -> String {
        let seen = match self {
            Seen::Accepting => "it was seen accepting on its socket only now",
            Seen::Holds => {
                "it never accepted on its socket (it holds it, but neither it nor a process it started was seen waiting on it) and sent no READY=1"
            }
            Seen::NotHeld => {
                "it never accepted on its socket (neither it nor a process it started holds it) and sent no READY=1"
            }
        };
        format!(
            "{seen}; if it forks its own workers or waits for connections in a way /proc does not show, have it send READY=1 on its NOTIFY_SOCKET when it serves and try `--ready notify` (or `--ready delay:DURATION`)"
        )
    }
}

/// What the `listening` rule sees of worker process `pid` and, with
/// `tree`, of every process below it (see [`crate::procfs::descendants`]).
pub(crate) fn seen(pid: u32, inodes: &[u64], tree: bool) -> Seen {
    let mut best = look(pid, inodes);
    if best == Seen::Accepting || !tree {
        return best;
    }
    for p in crate::procfs::descendants(pid) {
        match look(p, inodes) {
            Seen::Accepting => return Seen::Accepting,
            Seen::Holds => best = Seen::Holds,
            Seen::NotHeld => {}
        }
    }
    best
}

/// What is seen of one process.
fn look(pid: u32, inodes: &[u64]) -> Seen {
    match accepting_holding(pid, inodes) {
        (true, _) => Seen::Accepting,
        (false, true) => Seen::Holds,
        (false, false) => Seen::NotHeld,
    }
}

/// Whether process `pid` waits for connections on one of the sockets
/// `inodes`, as /proc shows it: one of its threads is blocked in
/// `accept` on one, or one is in one of its epoll sets, or a thread is
/// blocked in `poll`/`select` while it holds one (the fds a poll waits on
/// are not visible: a heuristic, for select/poll servers such as Python's
/// socketserver); and whether it holds one of them.
fn accepting_holding(pid: u32, inodes: &[u64]) -> (bool, bool) {
    use crate::procfs::{epoll_targets, fd_socket_inode, open_fds, thread_syscalls, Proc};
    let p = Proc::Pid(pid);
    let ours = |fd: &str| fd_socket_inode(p, fd).is_some_and(|i| inodes.contains(&i));
    let mut polling = false;
    for (nr, arg0) in thread_syscalls(p) {
        if ACCEPT.contains(&nr) && arg0.is_some_and(|fd| ours(&fd.to_string())) {
            return (true, true);
        }
        polling |= POLL.contains(&nr);
    }
    let mut holds = false;
    for o in open_fds(p) {
        if o.target == "anon_inode:[eventpoll]" {
            if epoll_targets(p, &o.fd).iter().any(|t| ours(t)) {
                return (true, true);
            }
        } else if !holds && ours(&o.fd) {
            holds = true;
        }
    }
    (polling && holds, holds)
}

#[cfg(target_arch = "x86_64")]
const ACCEPT: [i64; 2] = [libc::SYS_accept, libc::SYS_accept4];
#[cfg(not(target_arch = "x86_64"))]
const ACCEPT: [i64; 1] = [libc::SYS_accept4];
#[cfg(target_arch = "x86_64")]
const POLL: [i64; 4] = [
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
];
#[cfg(not(target_arch = "x86_64"))]
const POLL: [i64; 2] = [libc::SYS_ppoll, libc::SYS_pselect6];
