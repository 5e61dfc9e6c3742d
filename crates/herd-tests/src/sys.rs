//! Raw descriptors, for test programs that misbehave on purpose: the one
//! module of herd-tests allowed `unsafe`.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

/// The channel's descriptor number, from `HERD_CHANNEL_FD`.
pub fn channel_fd() -> i32 {
    std::env::var(herd::ENV_CHANNEL_FD)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("HERD_CHANNEL_FD names a descriptor")
}

/// The channel, owned as a plain blocking socket. Call once, and only
/// in a program that never calls `Worker::connect`.
pub fn take_channel() -> UnixStream {
    let fd = channel_fd();
    // SAFETY: the primary handed this descriptor to this process for
    // the channel, and the caller uses nothing else on it: this is its
    // only owner.
    unsafe { UnixStream::from_raw_fd(fd) }
}

/// Writes `bytes` onto the channel behind the back of the `Worker`
/// that owns it (the misbehaviour under test); how many were written.
pub fn write_channel(bytes: &[u8]) -> isize {
    let fd = channel_fd();
    // SAFETY: `fd` is the channel socket, open for this process's whole
    // life (the `Worker` holding it is never dropped); `bytes` is a
    // valid buffer of `bytes.len()` bytes for the call.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
}
