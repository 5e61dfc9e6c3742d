//! One worker's link to the primary, and the one task per worker that
//! watches it and the worker's process (what Node's primary keeps per
//! worker in lib/internal/cluster/primary.js).
//!
//! A herd-aware worker's link is herd's channel: its frames ask for
//! sockets, say the worker is listening or ready, carry heartbeats and the
//! application's messages. A foreign worker's link is its `NOTIFY_SOCKET`:
//! its sd_notify datagrams say the same things in systemd's words. Either
//! way the watcher turns what arrives into the worker's lifecycle, and
//! emits `Disconnect` then `Exit` exactly once each when the link closes
//! and the process ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::events::{Credit, Gate};
use super::{Event, ExitStatus, Inner, Readiness, WorkerHandle};
use crate::channel::wire::{Control, Kind, VERSION};
use crate::channel::{Frame, Outbox, Reader};
use crate::foreign::notify::{Notice, Receiver};
use crate::foreign::ForeignReady;
use crate::message::Message;
use crate::request::Request;
use crate::sched::Policy;
use crate::{Error, Signal};

/// How the primary reaches a worker.
pub(crate) enum Link {
    /// A herd-aware worker: the sending half of its channel.
    Channel(Arc<Outbox>),
    /// A foreign program, which has no channel: the signal that asks it to
    /// stop gracefully.
    Foreign {
        /// SIGTERM unless the spec says otherwise.
        stop: Signal,
    },
}

/// What the watcher reads from a worker.
pub(crate) enum Inbound {
    /// A herd-aware worker's channel.
    Channel(Reader),
    /// A foreign worker's notification socket, and what its notices mean.
    Foreign {
        notify: Receiver,
        ready: ForeignReady,
        /// Only `WATCHDOG=1` counts as a heartbeat (else a running process
        /// counts as alive at every heartbeat interval).
        watchdog: bool,
        every: Duration,
    },
}

/// Starts the task that watches worker `w`: its link and its process.
pub(super) fn watch(
    inner: Arc<Inner>,
    w: WorkerHandle,
    child: tokio::process::Child,
    inbound: Inbound,
) {
    tokio::spawn(run(inner, w, child, inbound));
}

async fn run(
    inner: Arc<Inner>,
    w: WorkerHandle,
    mut child: tokio::process::Child,
    inbound: Inbound,
) {
    let exited = Arc::new(Notify::new());
    let mut reader = tokio::spawn(read(inner.clone(), w.clone(), inbound, exited.clone()));
    let mut read_done = false;
    let status = tokio::select! {
        _ = &mut reader => {
            read_done = true;
            w.disconnected(&inner);
            child.wait().await
        }
        s = child.wait() => s,
    };
    if !read_done {
        // The process is gone: let the reader take what the worker said
        // before dying, but do not wait on a descendant that may have
        // inherited its end of the channel.
        exited.notify_one();
        if tokio::time::timeout(Duration::from_secs(1), &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    let status = match status {
        Ok(s) => ExitStatus::from(s),
        Err(e) => {
            tracing::warn!(worker = w.id(), error = %e, "cannot wait for worker");
            ExitStatus::default()
        }
    };
    // The worker is gone when its whole process group is.
    super::tree::end_group(w.pid(), w.id(), rest_of_group(&w)).await;
    w.disconnected(&inner);
    w.exited(&inner, status);
}

/// What becomes of the rest of a worker's process group once its own
/// process exited: killed after a crash or a kill; waited for when it was
/// asked to stop and its group got the stop signal (whoever asked bounds
/// that); otherwise asked to stop now (and killed after a while if it left
/// by itself, as nobody else will).
fn rest_of_group(w: &WorkerHandle) -> super::tree::Rest {
    use super::tree::{Rest, LEFT_BY_ITSELF};
    match (&w.shared.link, w.exited_after_disconnect(), w.stop_asked()) {
        (_, false, _) => Rest::Kill,
        (Link::Foreign { .. }, true, true) => Rest::Wait,
        (Link::Channel(_), true, true) => Rest::Stop(Signal::SIGTERM, None),
        (Link::Foreign { stop }, true, false) => Rest::Stop(*stop, Some(LEFT_BY_ITSELF)),
        (Link::Channel(_), true, false) => Rest::Stop(Signal::SIGTERM, Some(LEFT_BY_ITSELF)),
    }
}

/// Reads the link until it closes (a channel), or until the process has
/// ended and what it queued is read (a notification socket).
async fn read(inner: Arc<Inner>, w: WorkerHandle, inbound: Inbound, exited: Arc<Notify>) {
    match inbound {
        Inbound::Channel(reader) => read_channel(&inner, &w, reader).await,
        Inbound::Foreign {
            mut notify,
            ready,
            watchdog,
            every,
        } => {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let on = |n| on_notice(&inner, &w, n, ready, watchdog);
            loop {
                tokio::select! {
                    r = notify.recv(w.id(), w.pid()) => match r {
                        Ok(notices) => notices.into_iter().for_each(on),
                        Err(e) => tracing::debug!(worker = w.id(), error = %e, "notification socket"),
                    },
                    _ = exited.notified() => {
                        notify.drain(w.id(), w.pid()).into_iter().for_each(on);
                        return;
                    }
                    _ = tick.tick(), if !watchdog => w.touch(),
                }
            }
        }
    }
}

/// A worker asked a service, answered on this thread at once: the
/// herd-primary thread may watch for its next request before it sleeps
/// (`crate::channel::doorbell`). The application's requests are answered
/// on its own runtime, later: a watch would wait for nothing.
fn conversing(inner: &Inner) {
    if let Some(bells) = &inner.doorbells {
        bells.conversing();
    }
}

async fn read_channel(inner: &Inner, w: &WorkerHandle, mut reader: Reader) {
    let (gate, service_gate, every) = {
        let settings = inner.settings.lock().unwrap();
        let (messages, bytes) = settings.message_queue();
        // Service traffic waits under a bound of its own: a service that
        // keeps up is not held back by the application's unread events.
        let service_gate = Gate::new(messages, bytes);
        (
            Gate::new(messages, bytes),
            service_gate,
            settings.heartbeat(),
        )
    };
    let mut online = false;
    loop {
        let result = match reader.next().await {
            Ok(Some(frame)) if frame.kind == Kind::User && online => {
                let credit = match gate.try_admit(frame.body.len()) {
                    Some(credit) => credit,
                    None => held_back(&gate, frame.body.len(), w, every).await,
                };
                inner.bus.emit_message(
                    Event::Message {
                        worker: w.id(),
                        message: Message::new(frame.body),
                    },
                    credit,
                );
                Ok(())
            }
            Ok(Some(frame)) if frame.kind == Kind::Request && online => {
                on_request(inner, w, &gate, every, frame).await
            }
            Ok(Some(frame)) if frame.kind == Kind::Reply && online => on_reply(w, frame),
            Ok(Some(frame)) if frame.kind == Kind::Service && online => {
                conversing(inner);
                let service_gate = &service_gate;
                let admit = |len| async move {
                    match service_gate.try_admit(len) {
                        Some(credit) => credit,
                        None => held_back(service_gate, len, w, every).await,
                    }
                };
                let r =
                    crate::services::host::on_frame(&inner.services, w, frame.body, admit).await;
                // A worker that asks without reading the answers is read
                // no further until they are written.
                if let Link::Channel(outbox) = &w.shared.link {
                    outbox.room().await;
                }
                r
            }
            Ok(Some(frame)) => {
                let r = on_frame(inner, w, &mut online, frame);
                // A worker that asks without reading the answers is read
                // no further until they are written.
                if let Link::Channel(outbox) = &w.shared.link {
                    outbox.room().await;
                }
                r
            }
            Ok(None) => return,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let e = match e {
                Error::Protocol(m) => Error::Protocol(format!("worker {}: {m}", w.id())),
                e => e,
            };
            tracing::warn!(worker = w.id(), error = %e, "dropping worker");
            inner.bus.emit(Event::Error {
                worker: w.id(),
                error: Arc::new(e),
            });
            w.signal(Signal::SIGKILL);
            return;
        }
    }
}

/// Waits until the worker's messages waiting in the primary leave room
/// for one more. Meanwhile the worker counts as alive (its heartbeats wait
/// behind its messages: its silence is the primary's).
async fn held_back(gate: &Arc<Gate>, bytes: usize, w: &WorkerHandle, every: Duration) -> Credit {
    tracing::debug!(
        worker = w.id(),
        "messages not consumed; reading no more of them for now"
    );
    let admit = gate.admit(bytes);
    tokio::pin!(admit);
    loop {
        tokio::select! {
            credit = &mut admit => return credit,
            _ = tokio::time::sleep(every) => w.touch(),
        }
    }
}

/// A request from the worker: delivered as [`Event::Request`], under the
/// worker's message bound as its messages are; answered at once with an
/// error when too many of its requests wait unanswered already.
async fn on_request(
    inner: &Inner,
    w: &WorkerHandle,
    gate: &Arc<Gate>,
    every: Duration,
    frame: Frame,
) -> Result<(), Error> {
    let len = frame.body.len();
    let (id, message) = crate::request::open_envelope(Kind::Request, frame.body)?;
    let Link::Channel(outbox) = &w.shared.link else {
        return Ok(());
    };
    let Ok(message) = message else {
        return Ok(());
    };
    let Some(request) = Request::arrived(
        id,
        message,
        Some(w.id()),
        outbox.clone(),
        w.shared.open.clone(),
    ) else {
        // Refused with an answer: read no more while answers pile up.
        outbox.room().await;
        return Ok(());
    };
    let credit = match gate.try_admit(len) {
        Some(credit) => credit,
        None => held_back(gate, len, w, every).await,
    };
    inner.bus.emit_message(
        Event::Request {
            worker: w.id(),
            request,
        },
        credit,
    );
    Ok(())
}

/// A reply from the worker to one of the primary's requests; a reply to
/// none (timed out, never asked) is dropped.
fn on_reply(w: &WorkerHandle, frame: Frame) -> Result<(), Error> {
    let (id, answer) = crate::request::open_envelope(Kind::Reply, frame.body)?;
    w.shared.calls.answer(id, answer);
    Ok(())
}

/// A control frame, or an application's frame before `hello`.
fn on_frame(inner: &Inner, w: &WorkerHandle, online: &mut bool, frame: Frame) -> Result<(), Error> {
    if frame.kind != Kind::Control {
        return Err(Error::Protocol("message before hello".into()));
    }
    let control = frame.control()?;
    if !*online {
        return match control {
            Control::Hello {
                version: VERSION, ..
            } => {
                *online = true;
                w.online(inner);
                Ok(())
            }
            Control::Hello { version, .. } => Err(Error::Protocol(format!(
                "worker speaks protocol version {version}, this primary speaks {VERSION}"
            ))),
            other => Err(Error::Protocol(format!("expected hello, got {other:?}"))),
        };
    }
    let link = crate::sched::Link {
        id: w.id(),
        handoff: true,
    };
    match control {
        Control::Listen {
            seq,
            addr,
            index,
            options,
        } => {
            let policy = *inner.policy.get().unwrap_or(&Policy::RoundRobin);
            // What the worker may do itself bounds what it gets bound.
            let who = crate::procfs::creds(w.pid());
            let max_listens = inner.settings.lock().unwrap().max_listens();
            let (reply, fds) = inner.table.listen(
                policy,
                &link,
                seq,
                &addr,
                index,
                options,
                who.as_ref(),
                max_listens,
            );
            w.control(&reply, fds);
        }
        Control::Listening { handle } => {
            if let Some(address) = inner.table.listening(&link, handle) {
                w.listening(inner, address);
                if inner.settings.lock().unwrap().readiness() == Readiness::Listening {
                    w.ready(inner);
                }
            }
        }
        Control::Ready => {
            if inner.settings.lock().unwrap().readiness() == Readiness::Explicit {
                w.ready(inner);
            }
        }
        Control::Heartbeat(beat) => w.heartbeat(beat),
        Control::Profiled { seq, svg, error } => w.shared.profiles.answer(seq, svg, error),
        Control::Unlisten { handle } => inner.table.unlisten(w.id(), handle),
        Control::Closed { handle, n } => inner.table.closed(w.id(), handle, n),
        Control::Disconnecting => {
            w.mark_leaving();
            inner.table.stop_routing(w.id());
        }
        other => {
            return Err(Error::Protocol(format!(
                "worker sent a primary-only message: {other:?}"
            )))
        }
    }
    Ok(())
}

fn on_notice(inner: &Inner, w: &WorkerHandle, notice: Notice, ready: ForeignReady, watchdog: bool) {
    match notice {
        // Under `listening` too: a program that says it is ready is (a
        // pre-fork server whose master waits while its children accept).
        Notice::Ready => {
            if matches!(ready, ForeignReady::Notify | ForeignReady::Listening) {
                w.ready(inner);
            }
        }
        Notice::Status(s) => *w.shared.status_text.lock().unwrap() = Some(s),
        Notice::Watchdog => {
            if watchdog {
                w.touch();
            }
        }
        Notice::WatchdogTrigger => {
            tracing::warn!(worker = w.id(), "WATCHDOG=trigger: killing it (SIGABRT)");
            w.signal(Signal::SIGABRT);
        }
        Notice::Stopping => w.mark_leaving(),
        Notice::Handled(n) => w.set_handled(n),
    }
}
