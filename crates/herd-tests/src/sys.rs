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

/// A copy of the page of doorbells' descriptor (`HERD_DOORBELL_FD`), the
/// original left for `Worker::connect`.
pub fn doorbell_fd() -> std::os::fd::OwnedFd {
    let fd: i32 = std::env::var(herd::ENV_DOORBELL_FD)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("HERD_DOORBELL_FD names a descriptor");
    // SAFETY: the primary handed this descriptor to this process, and it
    // stays open until `Worker::connect` takes it, after the copy is made.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .expect("dup the doorbell descriptor")
}

/// Maps the page `fd` names and writes garbage into every byte of it but
/// the 64 of slot `own` (this process's `Worker` bumps its counter there
/// atomically), for ever: what a hostile worker may do to the page it
/// shares.
pub fn scribble_forever(fd: std::os::fd::OwnedFd, own: usize) -> ! {
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    let len = std::num::NonZeroUsize::new(4096).unwrap();
    // SAFETY: a new shared mapping of the page at an address the kernel
    // picks, aliasing no Rust object; in this process only the volatile
    // writes below touch it, outside slot `own`, which they leave to the
    // `Worker`'s atomics (another mapping of the same page).
    let ptr = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &fd,
            0,
        )
    }
    .expect("map the doorbells")
    .cast::<u8>();
    let mut x: u8 = 0x5a;
    loop {
        for i in (0..4096).filter(|i| i / 64 != own) {
            x = x.wrapping_mul(31).wrapping_add(7);
            // SAFETY: `i` is within the 4096-byte mapping, which is never
            // unmapped.
            unsafe { ptr.as_ptr().add(i).write_volatile(x) };
        }
        // A round a millisecond: garbage all the time, without taking a
        // CPU from the other tests.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
