//! Round-robin placement for `reuseport`: a small eBPF program, attached to
//! the reuseport group, sends each new TCP connection to the next worker's
//! socket in turn, instead of the kernel's hash of the addresses.
//!
//! With a new connection per request the hash spreads evenly enough; with a
//! few long-lived connections (keep-alive, WebSockets) it gives each worker
//! a binomial share: 32 connections over 2 workers split 16/16 no more often
//! than 14/18. Placing them in turn splits them exactly, as Node's `rr`
//! does, while every worker still accepts on its own socket (so this serves
//! foreign workers too).
//!
//! The program keeps a counter and the number of sockets in an array map,
//! and the sockets in a `REUSEPORT_SOCKARRAY`; the primary rewrites both
//! when workers come and go. A connection for which it picks no socket (an
//! index just emptied) falls back to the hash. Loading it needs CAP_BPF and
//! CAP_NET_ADMIN (root, in practice): without them `reuseport` keeps the
//! kernel's hash, and says so in the log (at info level, for each listen).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The most sockets placed in turn; beyond, the rest get none by the
/// program (they still get the hash's fallback share).
const MAX_SOCKETS: u32 = 1024;

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;

/// The attached program and its maps.
pub(crate) struct RoundRobinPlacement {
    /// `[0]`: connections placed so far; `[1]`: how many sockets are in
    /// `sockets`.
    state: OwnedFd,
    sockets: OwnedFd,
    _prog: OwnedFd,
    /// Entries of `sockets` filled by the last [`set`](Self::set).
    filled: u32,
}

impl RoundRobinPlacement {
    /// Loads the program and attaches it to the group of `socket` (a
    /// listening reuseport socket).
    pub fn attach(socket: BorrowedFd<'_>) -> io::Result<RoundRobinPlacement> {
        let state = crate::sys::bpf_map_create(BPF_MAP_TYPE_ARRAY, 8, 2)?;
        let sockets = crate::sys::bpf_map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 8, MAX_SOCKETS)?;
        let insns = program(state.as_raw_fd(), sockets.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let prog = crate::sys::bpf_load_reuseport_prog(&insns, license)?;
        crate::sys::attach_reuseport_prog(socket, prog.as_fd())?;
        Ok(RoundRobinPlacement {
            state,
            sockets,
            _prog: prog,
            filled: 0,
        })
    }

    /// Places new connections over `sockets` in turn (a socket given twice,
    /// under two descriptors, counts once).
    ///
    /// A socket may sit in one entry only, so the entries are emptied
    /// first; meanwhile (the count at 0) the hash places connections.
    pub fn set(&mut self, sockets: &[BorrowedFd<'_>]) -> io::Result<()> {
        crate::sys::bpf_map_update(self.state.as_fd(), 1, 0)?;
        for i in 0..self.filled {
            match crate::sys::bpf_map_delete(self.sockets.as_fd(), i) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.filled = 0;
        let mut seen = HashSet::new();
        for s in sockets {
            let inode = nix::sys::stat::fstat(s.as_raw_fd())
                .map_err(io::Error::from)?
                .st_ino;
            if self.filled == MAX_SOCKETS || !seen.insert(inode) {
                continue;
            }
            crate::sys::bpf_map_update(self.sockets.as_fd(), self.filled, s.as_raw_fd() as u64)?;
            self.filled += 1;
        }
        crate::sys::bpf_map_update(self.state.as_fd(), 1, u64::from(self.filled))
    }
}

/// Tries [`RoundRobinPlacement::attach`]; logs why not when it cannot.
pub(crate) fn try_attach(socket: BorrowedFd<'_>) -> Option<RoundRobinPlacement> {
    match RoundRobinPlacement::attach(socket) {
        Ok(p) => {
            tracing::debug!("reuseport: new connections placed round-robin (eBPF)");
            Some(p)
        }
        Err(e) => {
            tracing::info!(
                error = %e,
                "reuseport: cannot load the round-robin placement program (it needs CAP_BPF and CAP_NET_ADMIN); \
                 the kernel's hash of the addresses spreads connections instead"
            );
            None
        }
    }
}

/// The program, as eBPF instructions:
///
/// ```text
///  0  r6 = r1                          ; the context
///  1  *(u32 *)(r10 - 4) = 0
///  2  r2 = r10
///  3  r2 += -4
///  4  r1 = map state (2 slots)
///  6  r0 = map_lookup_elem(r1, r2)     ; &state[0], the counter
///  7  if r0 == 0 goto 29
///  8  r7 = r0
///  9  *(u32 *)(r10 - 4) = 1
/// 10  r2 = r10
/// 11  r2 += -4
/// 12  r1 = map state (2 slots)
/// 14  r0 = map_lookup_elem(r1, r2)     ; &state[1], the socket count
/// 15  if r0 == 0 goto 29
/// 16  r9 = *(u64 *)(r0 + 0)
/// 17  if r9 == 0 goto 29
/// 18  r1 = 1
/// 19  r1 = atomic_fetch_add((u64 *)(r7 + 0), r1)
/// 20  r1 %= r9
/// 21  *(u32 *)(r10 - 8) = r1
/// 22  r1 = r6
/// 23  r2 = map sockets (2 slots)
/// 25  r3 = r10
/// 26  r3 += -8
/// 27  r4 = 0
/// 28  sk_select_reuseport(r1, r2, r3, r4) ; no socket selected: the hash decides
/// 29  r0 = 1                           ; SK_PASS
/// 30  exit
/// ```
fn program(state: i32, sockets: i32) -> Vec<u64> {
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    const R4: u8 = 4;
    const R6: u8 = 6;
    const R7: u8 = 7;
    const R9: u8 = 9;
    const FP: u8 = 10;
    const MAP_LOOKUP_ELEM: i32 = 1;
    const SK_SELECT_REUSEPORT: i32 = 82;
    const PSEUDO_MAP_FD: u8 = 1;
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        u64::from(code)
            | u64::from(dst | (src << 4)) << 8
            | u64::from(off as u16) << 16
            | u64::from(imm as u32) << 32
    };
    let mov = |dst, src| insn(0xbf, dst, src, 0, 0);
    let mov_imm = |dst, imm| insn(0xb7, dst, 0, 0, imm);
    let add_imm = |dst, imm| insn(0x07, dst, 0, 0, imm);
    let store_w_imm = |dst, off, imm| insn(0x62, dst, 0, off, imm);
    let store_w = |dst, src, off| insn(0x63, dst, src, off, 0);
    let load_dw = |dst, src, off| insn(0x79, dst, src, off, 0);
    let jeq_imm = |dst, imm, off| insn(0x15, dst, 0, off, imm);
    let call = |f| insn(0x85, 0, 0, 0, f);
    let map = |dst, fd| [insn(0x18, dst, PSEUDO_MAP_FD, 0, fd), 0];
    let atomic_fetch_add = |dst, src| insn(0xdb, dst, src, 0, 0x01);
    let mod_reg = |dst, src| insn(0x9f, dst, src, 0, 0);
    let exit = insn(0x95, 0, 0, 0, 0);

    // r0 = &state[key], or on to SK_PASS (`skip` instructions on) if null.
    let lookup_state = |key: i32, skip: i16| {
        let mut v = vec![store_w_imm(FP, -4, key), mov(R2, FP), add_imm(R2, -4)];
        v.extend(map(R1, state));
        v.extend([call(MAP_LOOKUP_ELEM), jeq_imm(R0, 0, skip)]);
        v
    };

    let mut p = vec![mov(R6, R1)];
    p.extend(lookup_state(0, 21));
    p.push(mov(R7, R0));
    p.extend(lookup_state(1, 13));
    p.extend([
        load_dw(R9, R0, 0),
        jeq_imm(R9, 0, 11),
        mov_imm(R1, 1),
        atomic_fetch_add(R7, R1),
        mod_reg(R1, R9),
        store_w(FP, R1, -8),
        mov(R1, R6),
    ]);
    p.extend(map(R2, sockets));
    p.extend([
        mov(R3, FP),
        add_imm(R3, -8),
        mov_imm(R4, 0),
        call(SK_SELECT_REUSEPORT),
        mov_imm(R0, 1),
        exit,
    ]);
    debug_assert_eq!(p.len(), 31);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_jumps_land_on_its_sk_pass() {
        let p = program(3, 4);
        assert_eq!(p.len(), 31);
        // Each conditional jump (opcode 0x15) lands on instruction 29.
        for (i, insn) in p.iter().enumerate() {
            if insn & 0xff == 0x15 {
                let off = ((insn >> 16) & 0xffff) as u16 as i16;
                assert_eq!(i as i64 + 1 + i64::from(off), 29, "jump at {i}");
            }
        }
        assert_eq!(p[29] & 0xff, 0xb7, "r0 = SK_PASS");
        assert_eq!(p[30] & 0xff, 0x95, "exit");
    }
}
