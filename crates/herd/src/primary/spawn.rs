//! The one way a worker is started, herd-aware or foreign: one command
//! built in one place, one child setup, one registry entry, one watcher.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::sync::watch;

use super::link::{self, Inbound, Link};
use super::{foreign, worker, Event, Events, Primary, WorkerHandle, WorkerState};
use crate::channel::Outbox;
use crate::foreign::ForeignReady;
use crate::sys::{install_child_setup, ChildSetup};
use crate::{
    Error, ENV_CHANNEL_FD, ENV_EXIT_TIMEOUT_MS, ENV_HEARTBEAT_MS, ENV_MAX_FRAME, ENV_WORKER_ID,
};

/// What differs between the two kinds of worker at start.
struct Kind {
    /// The program (named in an exec error), its arguments, and the
    /// environment this kind of worker needs.
    program: std::path::PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Descriptors the child keeps (the channel's end), and moves (a
    /// foreign worker's sockets to 3, 4...).
    keep: Vec<i32>,
    moves: Vec<(i32, i32)>,
    /// Descriptors the child inherits: closed here once it runs.
    handed: Vec<OwnedFd>,
    link: Link,
    inbound: Inbound,
    /// For a foreign worker: its readiness rule and socket inodes.
    foreign: Option<(Arc<foreign::State>, ForeignReady, Vec<u64>)>,
}

impl Primary {
    /// Starts a worker with `extra` environment; a successor of
    /// `predecessor` takes over its sockets under `reuseport`. With
    /// `subscribe`, also returns a subscription to the worker's events made
    /// before its first (`Fork`).
    pub(super) fn spawn(
        &self,
        extra: Vec<(OsString, OsString)>,
        predecessor: Option<u32>,
        subscribe: bool,
    ) -> Result<(WorkerHandle, Option<Events>), Error> {
        // Sockets, channels and their tasks belong to the primary's runtime.
        let _rt = self.inner.rt.enter();
        self.fix_policy();
        // What `settings()` shows is what is used: one resolution of the
        // defaults (program, arguments) for both.
        let raw = self.inner.settings.lock().unwrap().clone();
        let settings = self.with_defaults(raw);
        // A foreign spec's sockets are bound before an id is taken, so a
        // bind error wastes none.
        let state = match &settings.foreign {
            Some(spec) => Some(self.foreign_state(spec)?),
            None => None,
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Before anything of this worker can be emitted: it sees all.
        let events = subscribe.then(|| self.inner.bus.subscribe(Some(id)));
        if let Some(old) = predecessor {
            // Known before the successor can ask to listen.
            self.inner.table.set_successor(id, old);
        }
        let started = self.start_child(id, &settings, state, extra);
        let (mut child, kind) = match started {
            Ok(c) => c,
            Err(e) => {
                self.inner.table.remove_worker(id);
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let handle = self.register(id, pid, kind.link, &mut child);
        tracing::debug!(worker = id, pid, program = %kind.program.display(), "forked worker");
        self.inner.bus.emit(Event::Fork { worker: id });
        if let Some((state, ready, inodes)) = kind.foreign {
            foreign::started(&self.inner, &state, &handle, ready, inodes);
        }
        link::watch(self.inner.clone(), handle.clone(), child, kind.inbound);
        Ok((handle, events))
    }

    /// Builds the worker's command and starts it.
    fn start_child(
        &self,
        id: u32,
        settings: &super::Settings,
        state: Option<Arc<foreign::State>>,
        extra: Vec<(OsString, OsString)>,
    ) -> Result<(tokio::process::Child, Kind), Error> {
        let every = settings.heartbeat();
        let mut kind = match (state, &settings.foreign) {
            (Some(state), Some(spec)) => {
                let plan = foreign::plan(&self.inner, &state, spec, id, every, settings.uid)?;
                Kind {
                    program: plan.exe,
                    args: plan.args,
                    env: plan.env,
                    keep: Vec::new(),
                    moves: plan.moves,
                    handed: plan.sources,
                    link: Link::Foreign {
                        stop: spec.stop_signal,
                    },
                    inbound: plan.inbound,
                    foreign: Some((state, plan.ready, plan.inodes)),
                }
            }
            _ => self.herd_aware(settings)?,
        };
        // What the primary's own manager gave it stays the primary's; then
        // the settings' and this fork's environment; then herd's own.
        let mut cmd = std::process::Command::new(&kind.program);
        cmd.args(&kind.args);
        for k in crate::systemd::MANAGER_VARIABLES.iter().chain(&[
            // The monitor's secret is the primary's alone.
            "HERD_MONITOR_TOKEN",
            ENV_CHANNEL_FD,
            crate::ENV_DOORBELL_FD,
            crate::ENV_DOORBELL_SLOT,
            ENV_HEARTBEAT_MS,
            ENV_MAX_FRAME,
            ENV_EXIT_TIMEOUT_MS,
            crate::foreign::ENV_TRAMPOLINE,
        ]) {
            cmd.env_remove(k);
        }
        let own = std::mem::take(&mut kind.env);
        for (k, v) in settings.env.iter().cloned().chain(extra).chain(own) {
            cmd.env(k, v);
        }
        cmd.env(ENV_WORKER_ID, id.to_string());
        settings.apply_to(&mut cmd);
        // Its own process group: its whole tree gets its signals (see
        // tree.rs), and a terminal's Ctrl-C reaches only the primary.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        install_child_setup(
            &mut cmd,
            ChildSetup {
                keep: std::mem::take(&mut kind.keep),
                moves: std::mem::take(&mut kind.moves),
                parent_death_kill: true,
                parent_pid: std::process::id() as i32,
            },
        );
        let child = match self.inner.forker.spawn(cmd) {
            Ok(c) => c,
            Err(source) => {
                // The channel's writer task holds its end open until told.
                if let Link::Channel(outbox) = &kind.link {
                    outbox.close();
                }
                return Err(Error::Exec {
                    path: kind.program.clone(),
                    source,
                });
            }
        };
        // The child has its copies.
        kind.handed.clear();
        Ok((child, kind))
    }

    /// A herd-aware worker: the settings' program, with one end of a new
    /// channel.
    fn herd_aware(&self, settings: &super::Settings) -> Result<Kind, Error> {
        // Resolved by `with_defaults`: the program set or this one's own.
        let exec = settings.exec.clone().ok_or(Error::NoExecutable)?;
        let args: Vec<OsString> = settings.args.clone().unwrap_or_default();
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::io("socketpair for the worker channel", e))?;
        let mut env = vec![
            (ENV_CHANNEL_FD.into(), theirs.as_raw_fd().to_string().into()),
            (
                ENV_HEARTBEAT_MS.into(),
                settings.heartbeat().as_millis().to_string().into(),
            ),
            (
                ENV_MAX_FRAME.into(),
                settings.max_frame().to_string().into(),
            ),
            (
                ENV_EXIT_TIMEOUT_MS.into(),
                settings.exit_timeout().as_millis().to_string().into(),
            ),
        ];
        let mut keep = vec![theirs.as_raw_fd()];
        // The page of doorbells is the primary's: the child gets a copy
        // across exec, and this one stays open. Its slot is its own while
        // the primary reads its channel.
        let mark = self
            .inner
            .doorbells
            .as_ref()
            .and_then(|b| Some((b, b.claim()?)));
        let mark = mark.map(|(bells, mark)| {
            let fd = bells.fd().as_raw_fd();
            env.push((crate::ENV_DOORBELL_FD.into(), fd.to_string().into()));
            env.push((
                crate::ENV_DOORBELL_SLOT.into(),
                mark.slot().to_string().into(),
            ));
            keep.push(fd);
            mark
        });
        let stream =
            crate::channel::unix_stream(ours).map_err(|e| Error::io("worker channel", e))?;
        let limits = crate::channel::Limits {
            max_body: settings.max_frame(),
            frame_timeout: Some(settings.frame_timeout()),
        };
        let reader = crate::channel::Reader::with_limits(stream.clone(), limits);
        Ok(Kind {
            program: exec,
            args,
            env,
            keep,
            moves: Vec::new(),
            handed: vec![theirs],
            link: Link::Channel(Outbox::start(stream, limits.max_body)),
            inbound: Inbound::Channel(match mark {
                Some(mark) => reader.marking(mark),
                None => reader,
            }),
            foreign: None,
        })
    }

    /// Builds a worker's handle and enters it in the registry.
    fn register(
        &self,
        id: u32,
        pid: u32,
        link: Link,
        child: &mut tokio::process::Child,
    ) -> WorkerHandle {
        let mut workers = self.inner.workers.lock().unwrap();
        let (exit, _) = watch::channel(None);
        let handle = WorkerHandle {
            shared: Arc::new(worker::Shared {
                id,
                pid,
                link,
                life: Mutex::new(worker::Life {
                    state: WorkerState::None,
                    connected: true,
                    dead: false,
                    exited_after_disconnect: false,
                    disconnect_sent: false,
                    stop_asked: false,
                    ready: false,
                }),
                primary: Arc::downgrade(&self.inner),
                exit,
                stdout: Mutex::new(child.stdout.take()),
                stderr: Mutex::new(child.stderr.take()),
                started: std::time::Instant::now(),
                beat: Mutex::new(None),
                handled_at: Mutex::new(None),
                status_text: Mutex::new(None),
                unready: Mutex::new(None),
                calls: crate::request::Pending::new(Some(id), &self.inner.rt),
                open: Default::default(),
                profiles: Default::default(),
                services: crate::services::host::PerWorker::new(id, &self.inner.rt),
            }),
        };
        workers.insert(id, handle.clone());
        handle
    }
}
