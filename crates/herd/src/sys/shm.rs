//! A page of memory shared with other processes through a sealed memfd,
//! reached only through atomics: the channels' doorbells
//! (`crate::channel::doorbell`).
//!
//! The page's creator hands the descriptor to its children. The memfd is
//! sealed so that its size never changes: whatever a child does with its
//! descriptor (`ftruncate` to zero or to a terabyte, `fallocate`, more
//! seals), every mapping of the page stays backed, no access to it faults,
//! and it never holds more than its page. (A child may punch the page out:
//! it then reads as zeros again.) What a child writes into the page is any
//! bit pattern, and any is a valid `u64`.

use std::ffi::c_void;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;

/// The page's size in bytes.
pub(crate) const PAGE: usize = 4096;
/// The page as 64-bit words.
pub(crate) const WORDS: usize = PAGE / 8;
/// `memfd_create`'s MFD_NOEXEC_SEAL (linux/memfd.h), which nix lacks.
const MFD_NOEXEC_SEAL: std::ffi::c_uint = 0x0008;

/// One mapping of a shared page; unmapped on drop.
pub(crate) struct SharedPage {
    ptr: NonNull<c_void>,
}

// SAFETY: the mapping is reached only through `AtomicU64`s (`words`), which
// any thread may use at once; the pointer itself is never written after
// `map` and stays valid until drop.
unsafe impl Send for SharedPage {}
// SAFETY: as for Send: shared access is through atomics only.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// A new zeroed page in a memfd whose size can never change (sealed
    /// with `F_SEAL_SHRINK` and `F_SEAL_GROW`, then `F_SEAL_SEAL` so that
    /// no other seal is added), mapped here. Returns it with the
    /// descriptor to hand on.
    pub(crate) fn create(name: &std::ffi::CStr) -> io::Result<(SharedPage, OwnedFd)> {
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
        // MFD_NOEXEC_SEAL (Linux 6.3): the page can never be executed, as
        // kernels that know the flag want to be told (and some require).
        let noexec = MemFdCreateFlag::from_bits_retain(MFD_NOEXEC_SEAL);
        let fd = match memfd_create(name, flags | noexec) {
            Err(nix::errno::Errno::EINVAL) => memfd_create(name, flags)?,
            other => other?,
        };
        nix::unistd::ftruncate(&fd, PAGE as i64)?;
        fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let page = SharedPage::map(&fd)?;
        Ok((page, fd))
    }

    /// Maps the page that `fd` (from [`create`](Self::create), in another
    /// process) names: refused unless it is one page, sealed as `create`
    /// seals it, so that this mapping never faults either (and a stale
    /// descriptor number that names some other file is not written).
    pub(crate) fn open(fd: &OwnedFd) -> io::Result<SharedPage> {
        let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
        let seals = SealFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GET_SEALS)?);
        let want = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        if seals & want != want || seals.contains(SealFlag::F_SEAL_WRITE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the shared page is not sealed as herd seals its page",
            ));
        }
        if fstat(raw)?.st_size as u64 != PAGE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the shared page is not one page long",
            ));
        }
        SharedPage::map(fd)
    }

    /// Maps the page read-write, in every process: the atomics of `words`
    /// may then be used in any way, loads and stores alike.
    fn map(fd: &OwnedFd) -> io::Result<SharedPage> {
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        let len = NonZeroUsize::new(PAGE).expect("a page is not empty");
        // SAFETY: a new mapping at an address the kernel picks, of a file
        // at least PAGE long that can never shrink (checked or sealed by
        // the callers), so no part of it can fault; it aliases no Rust
        // object, and is unmapped only by our Drop.
        let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd.as_fd(), 0) }?;
        Ok(SharedPage { ptr })
    }

    /// The page as words. Other processes may write them at any time, so
    /// they are atomics.
    pub(crate) fn words(&self) -> &[AtomicU64; WORDS] {
        // SAFETY: the mapping is PAGE bytes, page-aligned (so aligned for
        // u64), valid until drop, which the borrow of self outlives;
        // AtomicU64 has u64's size and alignment and every bit pattern is
        // valid; all access, here and in the other processes, is through
        // atomics (herd's) or at worst a hostile process's plain writes,
        // which can change only the values read.
        unsafe { &*self.ptr.as_ptr().cast::<[AtomicU64; WORDS]>() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `map`, PAGE long; no reference from
        // `words` outlives self.
        let _ = unsafe { munmap(self.ptr, PAGE) };
    }
}
