//! `shared`: every worker accepts on one listening socket, as Node's
//! SCHED_NONE. The kernel wakes whichever worker it likes, so the spread is
//! uneven; it works for any program, herd-aware or not.

use std::io;
use std::os::fd::OwnedFd;

use socket2::Socket;

use super::{Link, Share};
use crate::channel::wire::ListenMode;

pub(crate) struct SharedSocket {
    socket: OwnedFd,
}

impl SharedSocket {
    pub fn new(socket: Socket) -> SharedSocket {
        SharedSocket {
            socket: socket.into(),
        }
    }
}

impl Share for SharedSocket {
    fn add(&mut self, _worker: &Link) -> io::Result<(ListenMode, Vec<OwnedFd>)> {
        Ok((ListenMode::Socket, vec![self.socket.try_clone()?]))
    }

    fn remove(&mut self, _worker: u32) {}

    fn name(&self) -> &'static str {
        "shared"
    }
}
