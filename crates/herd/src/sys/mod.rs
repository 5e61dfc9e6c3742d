//! Every `unsafe` block of the crate lives here, each with a `SAFETY:` note.
//!
//! Five things need it: taking ownership of a descriptor number that came
//! from the environment (HERD_CHANNEL_FD, systemd's LISTEN_FDS) or from the
//! kernel (SCM_RIGHTS, accept, fcntl's dup), running code in a child
//! between `fork` and `exec`, and calls with pointer arguments that no safe
//! crate wraps: `ioctl(FIONREAD)`, `sched_setscheduler`, `sendmmsg` with a
//! different descriptor in each message, `recvmsg` that keeps the
//! descriptors of a truncated control message, and `bpf(2)` with
//! `setsockopt(SO_ATTACH_REUSEPORT_EBPF)` for reuseport's round-robin.
//! [`guard`] forks the process-tree guard (a child that runs no `exec`),
//! and changes this thread's file-system credentials for a worker's listen;
//! [`shm`] maps the page of the channels' doorbells, shared with workers.

mod guard;
mod shm;
pub(crate) use guard::{spawn_guard, with_fs_creds, FsCreds};
pub(crate) use shm::{SharedPage, WORDS as SHARED_WORDS};

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Takes ownership of a descriptor inherited from the parent (named by an
/// environment variable), after checking that it is open.
///
/// Each number is taken at most once per process, whatever happens after:
/// a caller that fails half-way (and so closes the descriptor) and is
/// retried gets an error here instead of a second owner of a number that
/// may by then name another file.
pub(crate) fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    static TAKEN: std::sync::Mutex<std::collections::BTreeSet<RawFd>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "negative descriptor",
        ));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("descriptor {fd} was already taken by this process (an earlier attempt that failed closed it); it is not taken twice"),
        ));
    }
    fcntl(fd, FcntlArg::F_GETFD).map_err(io::Error::from)?;
    taken.insert(fd);
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was handed to
    // this process by its parent for herd alone; `TAKEN` records every
    // number wrapped here, under its lock, so this is the first and only
    // owner of it: no other `OwnedFd` for this number was made by herd
    // before, and none will be.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates `fd` to a new close-on-exec descriptor numbered `min` or
/// above (fcntl F_DUPFD_CLOEXEC).
pub(crate) fn dup_above(fd: std::os::fd::BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let new = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(min)).map_err(io::Error::from)?;
    // SAFETY: fcntl just created this descriptor and returned its number to
    // us alone; wrapping it here makes this the one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Whether descriptor number `fd` is open in this process.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

/// What a child must do between fork and exec.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChildSetup {
    /// Descriptors to keep open across exec (their CLOEXEC flag is cleared).
    pub keep: Vec<RawFd>,
    /// Descriptors to move: `(from, to)`. Every `from` must be above every
    /// `to` so that no move overwrites a source still to be moved.
    pub moves: Vec<(RawFd, RawFd)>,
    /// Kill the child with SIGKILL when the thread that forked it dies. herd
    /// forks from one thread that lives as long as the primary.
    pub parent_death_kill: bool,
    /// The primary's pid: if the child's parent is no longer this pid by the
    /// time it runs, the primary died during fork and the child exits.
    pub parent_pid: i32,
}

/// Installs `setup` to run in the child after fork, before exec.
pub(crate) fn install_child_setup(cmd: &mut Command, setup: ChildSetup) {
    let ChildSetup {
        keep,
        moves,
        parent_death_kill,
        parent_pid,
    } = setup;
    let child_fn = move || -> io::Result<()> {
        // Only async-signal-safe calls below: prctl, getppid, fcntl, dup2 and
        // _exit. No allocation: the vectors were built before fork.
        if parent_death_kill {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)?;
            if nix::unistd::getppid().as_raw() != parent_pid {
                // SAFETY: _exit is async-signal-safe and ends the child at once.
                unsafe { libc::_exit(1) };
            }
        }
        for &(from, to) in &moves {
            nix::unistd::dup2(from, to).map_err(io::Error::from)?;
        }
        for &fd in &keep {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child of a multi-threaded parent,
    // where only async-signal-safe functions may be called. It calls only
    // prctl, getppid, dup2, fcntl and _exit, touches no lock, and does not
    // allocate (its captured vectors were built in the parent); errors are
    // reported through io::Error::from(Errno), which does not allocate.
    unsafe {
        cmd.pre_exec(child_fn);
    }
}

/// Accepts one connection on a listening socket, non-blocking and
/// close-on-exec (one `accept4` call).
pub(crate) fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{accept4, SockFlag};
    let fd = accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
        .map_err(io::Error::from)?;
    // SAFETY: accept4 just created this descriptor and returned its number to
    // us alone; wrapping it here makes this the one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bytes waiting to be read on a socket (`ioctl(FIONREAD)`; for a
/// `SOCK_SEQPACKET` socket, the sum over all queued messages).
pub(crate) fn bytes_queued(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to
    // `n`, live and writable for the whole call; `fd` is a borrowed, open
    // descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Sends one message per descriptor of `fds` on `sock` in one system call
/// (`sendmmsg`): each a single byte `0` with that descriptor attached by
/// SCM_RIGHTS, non-blocking. Returns how many were sent (the first ones; at
/// least one, or the error that stopped the first).
pub(crate) fn send_fd_messages(
    sock: std::os::fd::BorrowedFd<'_>,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    use std::{mem, ptr};
    if fds.is_empty() {
        return Ok(0);
    }
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) } as usize;
    // u64 elements keep every control buffer aligned for cmsghdr.
    let words = space.div_ceil(mem::size_of::<u64>());
    let mut control = vec![0u64; words * fds.len()];
    // SAFETY: an all-zero mmsghdr is a valid value (null pointers, zero
    // lengths); every field used is set below.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; fds.len()];
    // One raw pointer each, taken once: the headers keep them until the call.
    let iov_ptr: *mut libc::iovec = &mut iov;
    let control_ptr = control.as_mut_ptr();
    for (i, (msg, fd)) in msgs.iter_mut().zip(fds).enumerate() {
        let hdr = &mut msg.msg_hdr;
        hdr.msg_name = ptr::null_mut();
        hdr.msg_namelen = 0;
        hdr.msg_iov = iov_ptr;
        hdr.msg_iovlen = 1;
        // SAFETY: `i * words` is within `control`, which holds `words`
        // u64s per message.
        hdr.msg_control = unsafe { control_ptr.add(i * words) } as *mut libc::c_void;
        hdr.msg_controllen = space as _;
        // SAFETY: `hdr.msg_control` points to `space` zeroed, aligned bytes
        // of `control` that belong to this message alone, and
        // `msg_controllen` says so; CMSG_FIRSTHDR therefore returns a
        // non-null pointer to room for one cmsghdr followed by
        // CMSG_LEN(size_of RawFd) bytes, which is exactly what is written.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as _;
            ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd.as_raw_fd());
        }
    }
    // SAFETY: `msgs` holds `fds.len()` initialised headers whose iovec,
    // byte and control buffers (`iov`, `byte`, `control`) all outlive the
    // call; the descriptors are borrowed, hence open, for its duration.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            fds.len() as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// What one [`recv_with_fds`] brought.
pub(crate) struct Received {
    /// Bytes read into the buffer (0 at end of file).
    pub bytes: usize,
    /// The descriptors the kernel installed, in order, even when it could
    /// not install them all.
    pub fds: Vec<OwnedFd>,
    /// MSG_CTRUNC: some descriptors were not installed, because the control
    /// buffer had no room for them or because this process is at its
    /// open-files limit (the kernel then closes its copies, unless
    /// `MSG_PEEK` left the message queued).
    pub truncated: bool,
}

/// `recvmsg` with room for `max_fds` SCM_RIGHTS descriptors, always with
/// `MSG_CMSG_CLOEXEC`, plus `flags` (`MSG_PEEK`, `MSG_DONTWAIT`).
///
/// Unlike nix's `RecvMsg::cmsgs`, which refuses to read the control
/// messages when MSG_CTRUNC is set (ENOBUFS), this takes every descriptor
/// that did arrive, so none is leaked and the caller learns the truncation
/// for what it is.
pub(crate) fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    max_fds: usize,
    flags: libc::c_int,
) -> io::Result<Received> {
    use std::{mem, ptr};
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE((max_fds * mem::size_of::<RawFd>()) as u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(mem::size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero
    // lengths); the fields used are set below.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: `hdr` points to `iov`, which points to `buf` (writable for
    // `buf.len()` bytes), and to `control` (writable for `space` bytes);
    // all three outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel wrote `hdr.msg_controllen` bytes of control
    // messages into `control`, still live and unchanged; CMSG_FIRSTHDR and
    // CMSG_NXTHDR never step past that length, and an SCM_RIGHTS message's
    // `cmsg_len` covers exactly the descriptors the kernel installed for
    // this call: each is read once (unaligned, as CMSG_DATA may be) and
    // owned once, here; nothing else knows their numbers yet.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Ok(Received {
        bytes: n as usize,
        fds,
        truncated: hdr.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Puts the calling thread in the `SCHED_BATCH` class: it no longer
/// preempts the running task when it wakes up, and waits for a free CPU
/// instead (it still runs at once on an idle one). Unprivileged.
pub(crate) fn set_thread_batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param
    // that lives for the whole call, which only reads it.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers a listening socket with tokio's reactor.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that stays open, and always
    // returns the same number from as_raw_fd, until the AsyncFd drops it.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Registers a Unix stream socket with tokio's reactor for `interest` only
/// (the channel registers for reading, and for writing only while a writer
/// waits on a full socket).
pub(crate) fn async_fd_with_interest(
    s: std::os::unix::net::UnixStream,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::unix::net::UnixStream>> {
    // SAFETY: the AsyncFd owns the stream, so its descriptor stays open and
    // names the same socket for as long as it is registered, and as_raw_fd
    // always returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(s, interest) }
        .map_err(|e| e.into_parts().1)
}

// bpf(2) commands (linux/bpf.h, `enum bpf_cmd`).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;

/// `bpf(BPF_MAP_CREATE)`: a map with `u32` keys.
pub(crate) fn bpf_map_create(map_type: u32, value_size: u32, entries: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    let attr = MapCreate {
        map_type,
        key_size: 4,
        value_size,
        max_entries: entries,
        map_flags: 0,
    };
    bpf_fd(BPF_MAP_CREATE, &attr)
}

/// `bpf(BPF_MAP_UPDATE_ELEM)`: `map[key] = value` (any flags).
pub(crate) fn bpf_map_update(
    map: std::os::fd::BorrowedFd<'_>,
    key: u32,
    value: u64,
) -> io::Result<()> {
    bpf_map_elem(BPF_MAP_UPDATE_ELEM, map, key, Some(value))
}

/// `bpf(BPF_MAP_DELETE_ELEM)`: removes `map[key]` (`NotFound` if empty).
pub(crate) fn bpf_map_delete(map: std::os::fd::BorrowedFd<'_>, key: u32) -> io::Result<()> {
    bpf_map_elem(BPF_MAP_DELETE_ELEM, map, key, None)
}

fn bpf_map_elem(
    cmd: libc::c_long,
    map: std::os::fd::BorrowedFd<'_>,
    key: u32,
    value: Option<u64>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct MapElem {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: value.as_ref().map_or(0, |v| v as *const u64 as u64),
        flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for the map element
    // commands; its key (and, for an update, value) pointer points to `key`
    // (`value`'s content), live for the whole call, of the sizes the map
    // was created with (4 and 8 bytes).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &attr as *const MapElem,
            std::mem::size_of::<MapElem>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `bpf(BPF_PROG_LOAD)` of a `BPF_PROG_TYPE_SK_REUSEPORT` program (attach
/// type `BPF_SK_REUSEPORT_SELECT`). On failure the error carries the
/// verifier's log.
pub(crate) fn bpf_load_reuseport_prog(
    insns: &[u64],
    license: &std::ffi::CStr,
) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
    const BPF_SK_REUSEPORT_SELECT: u32 = 39;
    let mut log = vec![0u8; 16 * 1024];
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"herd_rrsel");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SK_REUSEPORT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_SK_REUSEPORT_SELECT,
    };
    bpf_fd(BPF_PROG_LOAD, &attr).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let log = String::from_utf8_lossy(&log[..end]);
        io::Error::new(e.kind(), format!("{e}; verifier: {}", log.trim()))
    })
}

/// A `bpf(2)` command whose result is a new descriptor.
fn bpf_fd<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: every caller passes a #[repr(C)] prefix of `union bpf_attr`
    // for `cmd`, fully initialised, whose pointers (instructions, license,
    // log buffer) point to memory that outlives the call and, for the log,
    // is writable for the size given. The kernel zero-extends a shorter
    // attribute.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: bpf(2) just created this descriptor and returned its number to
    // us alone; wrapping it here makes this the one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Attaches a loaded `SK_REUSEPORT` program to the reuseport group of
/// `sock` (`setsockopt(SO_ATTACH_REUSEPORT_EBPF)`).
pub(crate) fn attach_reuseport_prog(
    sock: std::os::fd::BorrowedFd<'_>,
    prog: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd: libc::c_int = prog.as_raw_fd();
    // SAFETY: the option value points to `fd`, a c_int live for the call,
    // and the length given is its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_EBPF,
            &fd as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
