//! Two things that keep a worker within what it owns: the process-tree
//! guard, a forked child of the primary that kills every worker's process
//! group when the primary dies (even by SIGKILL, when no code of the
//! primary runs), and running a path operation with a worker's file-system
//! credentials.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Groups the guard can hold at once; more are not recorded (their
/// leaders still die by their parent-death signal).
const MAX_GROUPS: usize = 16 * 1024;

/// Forks the guard: a child that only reads a pipe whose write end the
/// primary alone holds. Each 4-byte little-endian `i32` on it records a
/// process group (positive) or forgets one (negative). When the pipe ends
/// (the primary is gone, however it ended) the guard sends SIGKILL to every
/// group it holds and exits. Returns its pid and the write end.
///
/// The guard ignores the terminal's and the usual stop signals, runs in its
/// own process group (Ctrl-C does not reach it) and holds no descriptor but
/// its end of the pipe.
pub(crate) fn spawn_guard() -> io::Result<(u32, OwnedFd)> {
    use nix::fcntl::OFlag;
    use nix::unistd::{fork, pipe2, ForkResult};
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: the child of a multi-threaded process may only make
    // async-signal-safe calls until it execs, and this one never execs:
    // `guard_main` calls only signal, setpgid, close_range (or close),
    // read, kill and _exit, allocates nothing, takes no lock and cannot
    // panic (no indexing that can fail, no unwrap). The parent goes on as
    // after any fork.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => {
            drop(read);
            Ok((child.as_raw() as u32, write))
        }
        ForkResult::Child => guard_main(read.as_raw_fd()),
    }
}

/// The guard's whole life, in the forked child. See [`spawn_guard`].
fn guard_main(pipe: RawFd) -> ! {
    const IGNORED: [libc::c_int; 10] = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];
    // SAFETY: signal and setpgid are async-signal-safe system calls with
    // plain integer arguments; SIG_IGN is a valid disposition for these.
    unsafe {
        for sig in IGNORED {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::setpgid(0, 0);
    }
    close_all_but(pipe);
    let mut groups = [0i32; MAX_GROUPS];
    let mut held = 0usize;
    let mut buf = [0u8; 4096];
    let mut record = [0u8; 4];
    let mut have = 0usize;
    loop {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes for
        // the whole call; `pipe` is open (nothing in this process closes it).
        let n = unsafe { libc::read(pipe, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            break;
        }
        for &byte in buf.iter().take(n as usize) {
            if let Some(slot) = record.get_mut(have) {
                *slot = byte;
            }
            have += 1;
            if have < 4 {
                continue;
            }
            have = 0;
            let v = i32::from_le_bytes(record);
            let known = groups
                .iter()
                .take(held)
                .position(|g| *g == v.wrapping_abs());
            match (v > 0, known) {
                (true, None) => {
                    if let Some(slot) = groups.get_mut(held) {
                        *slot = v;
                        held += 1;
                    }
                }
                (false, Some(i)) if v < 0 => {
                    held -= 1;
                    groups.swap(i, held);
                }
                _ => {}
            }
        }
    }
    for &g in groups.iter().take(held) {
        // SAFETY: kill is async-signal-safe; a negative pid names a group.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    // SAFETY: _exit is async-signal-safe and ends the child at once.
    unsafe { libc::_exit(0) }
}

/// Closes every descriptor but `keep` (close_range, or one by one where
/// the kernel lacks it).
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range takes plain integers and closes only descriptors
    // of this (forked, single-threaded) process, none of which anything
    // here uses but `keep`.
    let done = unsafe {
        (keep == 0 || libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32) == 0)
            && libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0u32) == 0
    };
    if !done {
        for fd in 0..65_536 {
            if fd != keep as RawFd {
                // SAFETY: close is async-signal-safe; closing a descriptor
                // that is not open only fails with EBADF.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// A process's credentials for file-system access: what the kernel checks
/// when it binds a Unix socket path, removes or chmods a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FsCreds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Runs `f` on the calling thread with the file-system credentials `to`
/// (its fsuid, fsgid and supplementary groups, changed by raw system calls,
/// which change the calling thread only, never the other threads of the
/// primary), then puts this thread's back. Needs CAP_SETUID and CAP_SETGID;
/// without them nothing runs and the error is EPERM.
pub(crate) fn with_fs_creds<T>(to: &FsCreds, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    use nix::unistd::{getgroups, setfsgid, setfsuid, Gid, Uid};
    let saved_groups: Vec<u32> = getgroups()
        .map_err(io::Error::from)?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    set_thread_groups(&to.groups)?;
    let old_gid = setfsgid(Gid::from_raw(to.gid));
    let old_uid = setfsuid(Uid::from_raw(to.uid));
    // setfsuid reports no error: the current value says whether it took.
    let took = setfsuid(Uid::from_raw(u32::MAX)).as_raw() == to.uid
        && setfsgid(Gid::from_raw(u32::MAX)).as_raw() == to.gid;
    let result = if took {
        f()
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    };
    setfsuid(old_uid);
    setfsgid(old_gid);
    let restored = set_thread_groups(&saved_groups);
    if let Err(e) = &restored {
        tracing::error!(error = %e, "cannot restore the primary thread's groups after a worker's listen");
    }
    result
}

/// `setgroups` for the calling thread only: the raw system call (libc's
/// wrapper changes every thread of the process).
fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    let list: Vec<libc::gid_t> = groups.iter().map(|g| *g as libc::gid_t).collect();
    // SAFETY: the pointer and length describe `list`, live and readable for
    // the whole call, which only reads it.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, list.len(), list.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
