//! The sending half of a channel: frames queued under a short lock and
//! flushed by one writer task per channel (see the module docs of
//! `channel`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::Notify;

use super::wire::{Control, Header, Kind, HEADER_LEN, MAX_FDS};
use super::UnixStream;
use crate::error::Error;
use crate::message::codec;

/// Senders wait while more than this many bytes are queued.
pub const HIGH_WATER: usize = 8 << 20;
/// What [`Outbox::framed_now`] may leave waiting to be written, beyond
/// which it refuses: four times [`HIGH_WATER`].
pub const MAX_BACKLOG: usize = 4 * HIGH_WATER;
/// How many frames, and bytes, queued for the writer task make the next
/// frame write them all at once instead of joining them (`Outbox::batching`):
/// at most 7 frames wait, the 8th goes out with them.
pub const BATCH_FRAMES: usize = 8;
/// See [`BATCH_FRAMES`].
pub const BATCH_BYTES: usize = 64 << 10;
/// Frames with descriptors that may wait to be written before
/// [`Outbox::room`] waits (each descriptor is an open file of ours).
pub const MAX_FD_FRAMES: usize = 64;

#[derive(Default)]
struct OutState {
    buf: Vec<u8>,
    /// Descriptors to attach at a byte offset of `buf` (a frame's start).
    fds: Vec<(usize, Vec<OwnedFd>)>,
    closed: bool,
    /// The writer task holds bytes it has not finished writing.
    writing: bool,
    /// Frames in `buf`.
    frames: usize,
}

/// The sending half of a channel; cheap to share.
pub struct Outbox {
    state: Mutex<OutState>,
    stream: Arc<UnixStream>,
    wake_writer: Notify,
    drained: Notify,
    /// The largest frame body the peer accepts.
    max_body: usize,
    /// How many times queued bytes were taken to be written ([`takes`](Outbox::takes)).
    takes: AtomicU64,
    /// The thread the writer task last ran on ([`this_thread`]), 0 before
    /// it first ran.
    writer_thread: AtomicUsize,
}

/// A number that tells this thread from the others alive (the address of
/// a thread-local), never 0.
fn this_thread() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

impl Outbox {
    /// Starts the writer task for `stream` and returns the outbox feeding
    /// it; a message whose body would exceed `max_body` (what the peer's
    /// reader accepts) is refused with [`Error::TooLarge`].
    pub fn start(stream: Arc<UnixStream>, max_body: usize) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(OutState::default()),
            stream: stream.clone(),
            max_body,
            wake_writer: Notify::new(),
            drained: Notify::new(),
            writer_thread: AtomicUsize::new(0),
            takes: AtomicU64::new(0),
        });
        tokio::spawn(writer(stream, outbox.clone()));
        outbox
    }

    /// Queues a control frame. Control frames skip backpressure: they are
    /// small and must not wait behind the application's messages.
    pub fn control(&self, msg: &Control, fds: Vec<OwnedFd>) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        if st.closed {
            return Err(Error::ChannelClosed);
        }
        push_frame(&mut st, Kind::Control, fds, self.max_body, |buf| {
            serde_json::to_writer(buf, msg)
        })?;
        self.write_or_wake(st, false);
        Ok(())
    }

    /// Queues a user message, waiting while the queue is over [`HIGH_WATER`].
    pub async fn user<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        self.app(Kind::User, None, msg).await
    }

    /// Queues request `id` (a [`Kind::Request`] frame), waiting as
    /// [`user`](Self::user) does.
    pub async fn request<T: Serialize + ?Sized>(&self, id: u64, msg: &T) -> Result<(), Error> {
        self.app(Kind::Request, Some(id), msg).await
    }

    /// Queues the reply to request `id`, waiting as [`user`](Self::user) does.
    pub async fn reply<T: Serialize + ?Sized>(&self, id: u64, msg: &T) -> Result<(), Error> {
        self.app(Kind::Reply, Some(id), msg).await
    }

    /// Queues a reply saying why request `id` gets no answer. It does not
    /// wait (it is small, and is sent from `Drop`).
    pub fn reply_error(&self, id: u64, why: &str) -> Result<(), Error> {
        #[derive(Serialize)]
        struct NoAnswer<'a> {
            id: u64,
            error: &'a str,
        }
        let mut st = self.state.lock().unwrap();
        if st.closed {
            return Err(Error::ChannelClosed);
        }
        push_frame(&mut st, Kind::Reply, Vec::new(), self.max_body, |buf| {
            serde_json::to_writer(buf, &NoAnswer { id, error: why })
        })?;
        self.write_or_wake(st, false);
        Ok(())
    }

    /// Queues the application's value: a message, or a request or reply
    /// `id` in its envelope (`{"id":N,"msg":VALUE}`).
    async fn app<T: Serialize + ?Sized>(
        &self,
        kind: Kind,
        id: Option<u64>,
        msg: &T,
    ) -> Result<(), Error> {
        let body = |buf: &mut Vec<u8>| {
            let Some(id) = id else {
                return codec::to_writer(buf, msg);
            };
            buf.extend_from_slice(format!(r#"{{"id":{id},"msg":"#).as_bytes());
            codec::to_writer(buf, msg)?;
            buf.push(b'}');
            Ok(())
        };
        self.framed(kind, body).await
    }

    /// Queues a frame of `kind` whose body `body` writes (straight into
    /// the queue, no copy), waiting as [`user`](Self::user) does.
    pub async fn framed(
        &self,
        kind: Kind,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), Error> {
        self.framed_as(kind, body, false).await
    }

    /// As [`framed`](Self::framed), but left to the writer task even when
    /// it is idle: one frame of a fan-out to many channels, whose writers
    /// then write what piles up meanwhile in one system call each, instead
    /// of the sender making one per frame and channel.
    pub async fn framed_deferred(
        &self,
        kind: Kind,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), Error> {
        self.framed_as(kind, body, true).await
    }

    async fn framed_as(
        &self,
        kind: Kind,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
        deferred: bool,
    ) -> Result<(), Error> {
        let mut body = Some(body);
        // Room at once, the common case, needs no waiter set up.
        if let Some(done) = self.try_frame(kind, &mut body, deferred) {
            return done;
        }
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if let Some(done) = self.try_frame(kind, &mut body, deferred) {
                return done;
            }
            drained.await;
        }
    }

    /// Queues `body`'s frame if there is room (`None` if not).
    fn try_frame(
        &self,
        kind: Kind,
        body: &mut Option<impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>>,
        deferred: bool,
    ) -> Option<Result<(), Error>> {
        let mut st = self.state.lock().unwrap();
        if st.closed {
            return Some(Err(Error::ChannelClosed));
        }
        if st.buf.len() >= HIGH_WATER {
            return None;
        }
        let body = body.take().expect("written once");
        if let Err(e) = push_frame(&mut st, kind, Vec::new(), self.max_body, body) {
            return Some(Err(e));
        }
        if deferred {
            drop(st);
            self.wake_writer.notify_one();
        } else {
            self.write_or_wake(st, true);
        }
        Some(Ok(()))
    }

    /// Queues a frame of `kind` without waiting: refused with
    /// [`Error::Backlog`] while more than [`MAX_BACKLOG`] bytes wait to be
    /// written (a peer that reads nothing), so that a caller that cannot
    /// wait (a handler running on the primary's dispatch thread) still
    /// grows nothing without bound. `worker` names the peer in that error.
    pub fn framed_now(
        &self,
        kind: Kind,
        worker: Option<u32>,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        if st.closed {
            return Err(Error::ChannelClosed);
        }
        if st.buf.len() >= MAX_BACKLOG {
            return Err(Error::Backlog {
                worker,
                queued: st.buf.len(),
            });
        }
        push_frame(&mut st, kind, Vec::new(), self.max_body, body)?;
        self.write_or_wake(st, true);
        Ok(())
    }

    /// Called with a frame just queued: writes the queue now when the
    /// writer is idle (it has written everything it took, so no byte can
    /// overtake another), no queued frame carries descriptors, and
    /// [`batching`](Self::batching) (where `batch` allows it: not for
    /// control frames, nor for the error reply a dropped request sends,
    /// maybe as its runtime shuts down) does not hold it back; otherwise,
    /// or for what the socket does not take at once, wakes the writer.
    fn write_or_wake(&self, mut st: MutexGuard<'_, OutState>, batch: bool) {
        if !st.writing && st.fds.is_empty() && !(batch && self.batching(&st)) {
            self.takes.fetch_add(1, Ordering::SeqCst);
            match self.stream.try_write(&st.buf) {
                Ok(n) if n == st.buf.len() => {
                    st.buf.clear();
                    st.frames = 0;
                    return;
                }
                Ok(n) => {
                    st.buf.drain(..n);
                }
                // WouldBlock, or an error that the writer meets again and
                // handles (closing the channel).
                Err(_) => {}
            }
        }
        drop(st);
        self.wake_writer.notify_one();
    }

    /// Whether a frame just queued waits for the writer, to go out with
    /// the frames queued after it in one system call: when the caller runs
    /// on the writer's own thread of a one-thread runtime (the primary's
    /// dispatch thread, a worker on a `current_thread` runtime) and fewer
    /// than [`BATCH_FRAMES`] frames and [`BATCH_BYTES`] bytes wait. There
    /// the writer runs as soon as the caller yields, so the frame is not
    /// late; and what piles up meanwhile (the replies to all the requests
    /// of one read, the requests of every caller that ran before it) costs
    /// one write and one wake-up of the peer, instead of one per frame.
    /// The batch is written once it is full, so that the peer starts on it
    /// while more is made: batches of every frame one turn of the runtime
    /// makes leave the two sides taking turns, each idle while the other
    /// works (measured: docs/benchmarks.md, "cache").
    fn batching(&self, st: &OutState) -> bool {
        st.frames < BATCH_FRAMES
            && st.buf.len() < BATCH_BYTES
            && self.writer_thread.load(Ordering::Relaxed) == this_thread()
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    }

    /// How many times queued bytes were taken to be written so far. A
    /// frame queued after this returned `n` has not reached the socket, not
    /// one byte of it, while it still returns `n`: the count goes up before
    /// the bytes are taken.
    pub fn takes(&self) -> u64 {
        self.takes.load(Ordering::SeqCst)
    }

    /// Stops accepting frames; the writer flushes what is queued, then shuts
    /// the socket's write side so the peer reads end-of-file.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
    }

    /// Waits while more than [`HIGH_WATER`] bytes, or more than
    /// [`MAX_FD_FRAMES`] frames with descriptors, wait to be written (or
    /// until the channel is closed): the primary reads no more requests
    /// from a worker that does not read the answers.
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.state.lock().unwrap();
                if st.closed || (st.buf.len() <= HIGH_WATER && st.fds.len() <= MAX_FD_FRAMES) {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Waits until everything queued has been written (or the channel failed).
    pub async fn flushed(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.state.lock().unwrap();
                if st.buf.is_empty() {
                    return;
                }
            }
            drained.await;
        }
    }
}

/// Appends a frame whose body `write` writes. The application's values go
/// through the message codec (exact payloads); herd's own control messages
/// are plain JSON.
fn push_frame(
    st: &mut OutState,
    kind: Kind,
    fds: Vec<OwnedFd>,
    max_body: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
) -> Result<(), Error> {
    debug_assert!(fds.len() <= MAX_FDS);
    let start = st.buf.len();
    st.buf.extend_from_slice(&[0u8; HEADER_LEN]);
    if let Err(e) = write(&mut st.buf) {
        st.buf.truncate(start);
        return Err(Error::Codec(e));
    }
    let len = st.buf.len() - start - HEADER_LEN;
    if len > max_body {
        st.buf.truncate(start);
        return Err(Error::TooLarge {
            size: len,
            max: max_body,
        });
    }
    let header = Header {
        len,
        kind,
        nfds: fds.len(),
    };
    st.buf[start..start + HEADER_LEN].copy_from_slice(&header.encode());
    if !fds.is_empty() {
        st.fds.push((start, fds));
    }
    st.frames += 1;
    Ok(())
}

async fn writer(stream: Arc<UnixStream>, outbox: Arc<Outbox>) {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    loop {
        outbox.writer_thread.store(this_thread(), Ordering::Relaxed);
        let closing = {
            let mut st = outbox.state.lock().unwrap();
            if !st.buf.is_empty() {
                outbox.takes.fetch_add(1, Ordering::SeqCst);
            }
            std::mem::swap(&mut buf, &mut st.buf);
            std::mem::swap(&mut fds, &mut st.fds);
            st.frames = 0;
            st.writing = !buf.is_empty();
            st.closed
        };
        if buf.is_empty() {
            outbox.drained.notify_waiters();
            if closing {
                break;
            }
            outbox.wake_writer.notified().await;
            continue;
        }
        if let Err(e) = stream.write_all(&buf, &mut fds).await {
            tracing::debug!(error = %e, "channel write failed; closing the channel");
            let mut st = outbox.state.lock().unwrap();
            st.closed = true;
            st.buf.clear();
            st.frames = 0;
            st.fds.clear();
            drop(st);
            outbox.drained.notify_waiters();
            return;
        }
        buf.clear();
        fds.clear();
        outbox.drained.notify_waiters();
    }
    let _ = nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}
