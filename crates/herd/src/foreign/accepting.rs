//! Whether a foreign program accepts on its sockets yet, as /proc shows it
//! (the `listening` readiness rule): a heuristic, for programs that say
//! nothing of their readiness.

/// Whether process `pid` waits for connections on one of the sockets
/// `inodes`, as /proc shows it: one of its threads is blocked in
/// `accept` on one, or one is in one of its epoll sets, or a thread is
/// blocked in `poll`/`select` while it holds one (the fds a poll waits on
/// are not visible: a heuristic, for select/poll servers such as Python's
/// socketserver).
pub(crate) fn accepting(pid: u32, inodes: &[u64]) -> bool {
    use crate::procfs::{epoll_targets, fd_socket_inode, open_fds, thread_syscalls, Proc};
    let p = Proc::Pid(pid);
    let ours = |fd: &str| fd_socket_inode(p, fd).is_some_and(|i| inodes.contains(&i));
    let mut polling = false;
    for (nr, arg0) in thread_syscalls(p) {
        if ACCEPT.contains(&nr) && arg0.is_some_and(|fd| ours(&fd.to_string())) {
            return true;
        }
        polling |= POLL.contains(&nr);
    }
    let mut holds = false;
    for o in open_fds(p) {
        if o.target == "anon_inode:[eventpoll]" {
            if epoll_targets(p, &o.fd).iter().any(|t| ours(t)) {
                return true;
            }
        } else if !holds && ours(&o.fd) {
            holds = true;
        }
    }
    polling && holds
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
