//! A hand-off's accept task: accepts in bursts while some worker has room,
//! and holds its socket only while it is polled (see the parent module).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::{State, BATCH, SATURATED_POLL};

/// Hands out what `listener` accepts until the hand-off closes it.
pub(super) async fn accept_loop(
    listener: Weak<AsyncFd<OwnedFd>>,
    state: Arc<Mutex<State>>,
    room: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        // Accept only while some worker can take connections and none
        // accepted earlier still waits: the rest wait in the kernel's queue.
        loop {
            let notified = room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let routing = {
                let mut st = state.lock().unwrap();
                st.distribute();
                if st.pending.is_empty() && st.has_room() {
                    break;
                }
                st.routing()
            };
            if routing {
                // Workers do not say when they take from a full queue: look
                // again in a while, unless room comes first.
                let _ = tokio::time::timeout(SATURATED_POLL, notified).await;
            } else {
                notified.await;
            }
        }
        let Some((batch, pause)) = accept_burst(&listener, &mut backoff).await else {
            return;
        };
        if !batch.is_empty() {
            backoff = Duration::from_millis(5);
            let mut st = state.lock().unwrap();
            st.pending.extend(batch);
            st.distribute();
            st.retry_later(&state, &room);
        }
        if let Some(d) = pause {
            tokio::time::sleep(d).await;
        }
    }
}

/// Waits for connections on `listener` and accepts a burst of them (at
/// most [`BATCH`]), with the pause to take after an error that retrying
/// at once would spin on. `None` once the socket is closed (its hand-off
/// dropped it) or failed.
///
/// The socket is held only within a poll: between polls the hand-off is its
/// one owner, so that closing it there closes it at once.
async fn accept_burst(
    listener: &Weak<AsyncFd<OwnedFd>>,
    backoff: &mut Duration,
) -> Option<(Vec<OwnedFd>, Option<Duration>)> {
    std::future::poll_fn(|cx| {
        let Some(listener) = listener.upgrade() else {
            return Poll::Ready(None);
        };
        loop {
            let mut guard = match listener.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => {
                    tracing::error!(error = %e, "listener failed; no more connections on it");
                    return Poll::Ready(None);
                }
            };
            let mut batch = Vec::new();
            let mut pause = None;
            while batch.len() < BATCH {
                match guard.try_io(|fd| crate::sys::accept(fd.as_raw_fd())) {
                    Ok(Ok(conn)) => batch.push(conn),
                    Ok(Err(e)) => match e.raw_os_error().map(nix::errno::Errno::from_raw) {
                        Some(
                            nix::errno::Errno::ECONNABORTED
                            | nix::errno::Errno::EINTR
                            | nix::errno::Errno::EPROTO,
                        ) => continue,
                        _ => {
                            // EMFILE, ENFILE, ENOBUFS...: retrying at once spins.
                            tracing::warn!(error = %e, "accept failed; backing off {backoff:?}");
                            pause = Some(*backoff);
                            *backoff = (*backoff * 2).min(Duration::from_secs(1));
                            break;
                        }
                    },
                    Err(_would_block) => break,
                }
            }
            // Nothing came (the readiness was stale and is cleared now):
            // wait for the next.
            if batch.is_empty() && pause.is_none() {
                continue;
            }
            return Poll::Ready(Some((batch, pause)));
        }
    })
    .await
}
