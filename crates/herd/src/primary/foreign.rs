//! The primary's side of foreign workers (see [`crate::foreign`]): binding
//! their sockets once, starting each worker through the trampoline with its
//! sockets at descriptors 3.., and reading its sd_notify datagrams.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use socket2::Socket;
use tokio::net::UnixDatagram;

use super::{Event, ExitStatus, Inner, WorkerHandle};
use crate::foreign::{Bound, Foreign, ForeignReady, ENV_TRAMPOLINE, TRAMPOLINE_ARG};
use crate::sched::{Link, ListenAddr, Policy};
use crate::sys::{install_child_setup, ChildSetup};
use crate::{Error, ENV_CHANNEL_FD, ENV_HEARTBEAT_MS, ENV_WORKER_ID};

/// When a foreign worker without sockets counts as ready under
/// [`ForeignReady::Listening`].
pub(crate) const NO_SOCKETS_READY: Duration = Duration::from_secs(1);

/// What `bind_foreign` set up, shared by every foreign worker.
pub(crate) struct State {
    /// (table handle, name), in descriptor order.
    listens: Vec<(u32, String)>,
    pub bound: Vec<Bound>,
    pub notify_dir: PathBuf,
    /// TCP ports, for counting a worker's connections.
    pub ports: Vec<u16>,
    /// Descriptors 3..3+n held open in the primary, so that nothing the
    /// spawn creates (std's exec-error pipe) gets a number a socket is
    /// moved to in the child.
    _reserved: Vec<std::fs::File>,
}

impl State {
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.notify_dir);
    }
}

/// The address a passed-in socket is bound to.
fn addr_of(sock: &Socket) -> std::io::Result<ListenAddr> {
    let local = sock.local_addr()?;
    let ty = sock.r#type()?;
    if let Some(sa) = local.as_socket() {
        return Ok(if ty == socket2::Type::DGRAM {
            ListenAddr::Udp(sa)
        } else {
            ListenAddr::Tcp(sa)
        });
    }
    match local.as_pathname() {
        Some(p) => Ok(ListenAddr::Unix(p.to_path_buf())),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a passed socket is neither TCP, UDP nor a Unix socket with a path",
        )),
    }
}

pub(crate) fn prepare(inner: &Inner, policy: Policy, spec: &Foreign) -> Result<State, Error> {
    if matches!(policy, Policy::RoundRobin | Policy::LeastConnections) {
        return Err(Error::Unsupported(format!(
            "the {policy} policy hands each connection to a worker over herd's channel, which a foreign program does not speak; use the shared or reuseport policy (or build the program with the herd library)"
        )));
    }
    let n = spec.listens.len();
    let mut listens = Vec::with_capacity(n);
    let mut bound = Vec::with_capacity(n);
    let mut ports = Vec::new();
    for (i, l) in spec.listens.iter().enumerate() {
        let (addr, socket) = match (&l.addr, &l.socket) {
            (_, Some(fd)) => {
                let copy = fd
                    .try_clone()
                    .map_err(|e| Error::io("duplicate a passed socket", e))?;
                let sock = Socket::from(copy);
                let addr = addr_of(&sock).map_err(|e| Error::io("passed socket", e))?;
                if policy == Policy::ReusePort
                    && !matches!(addr, ListenAddr::Unix(_))
                    && !sock.reuse_port().unwrap_or(false)
                {
                    return Err(Error::Unsupported(format!(
                        "the passed socket for {addr} does not have SO_REUSEPORT, which the reuseport policy needs to bind one per worker: set ReusePort=yes in the systemd socket unit, or use the shared policy"
                    )));
                }
                (addr, Some(sock))
            }
            (Some(a), None) => (a.clone(), None),
            (None, None) => unreachable!("a listen has an address or a socket"),
        };
        let inherited = socket.is_some();
        let (handle, address) = inner
            .table
            .preset(policy, &addr, l.options, socket)
            .map_err(|source| Error::Listen {
                address: addr.to_string(),
                source,
            })?;
        if let ListenAddr::Tcp(sa) = &address {
            ports.push(sa.port());
        }
        let name = l.name.clone().unwrap_or_else(|| "unknown".to_string());
        listens.push((handle, name.clone()));
        bound.push(Bound {
            name,
            address,
            fd: 3 + i as i32,
            inherited,
        });
    }
    let mut reserved = Vec::new();
    for fd in 3..3 + n as i32 {
        while !crate::sys::fd_is_open(fd) {
            // open() takes the lowest free number: this fills every hole
            // up to `fd` (close-on-exec, as std opens files).
            reserved.push(
                std::fs::File::open("/dev/null")
                    .map_err(|e| Error::io("open /dev/null to reserve descriptors", e))?,
            );
        }
    }
    let base = match &spec.runtime_dir {
        Some(d) => d.clone(),
        None => crate::foreign::runtime_dir()?,
    };
    // Directories left by primaries that were killed.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("notify-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let notify_dir = base.join(format!("notify-{}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::remove_dir_all(&notify_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&notify_dir)
            .map_err(|e| Error::io(format!("create {}", notify_dir.display()), e))?;
    }
    Ok(State {
        listens,
        bound,
        notify_dir,
        ports,
        _reserved: reserved,
    })
}

/// A closed outbox: a foreign worker has no channel, but its handle wants
/// one; every send on it fails as on a closed channel.
fn detached_outbox() -> Result<Arc<crate::channel::Outbox>, Error> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, _theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::io("socketpair", e))?;
    let stream = super::unix_stream(ours).map_err(|e| Error::io("socketpair", e))?;
    let outbox = crate::channel::Outbox::start(stream);
    outbox.close();
    Ok(outbox)
}

impl super::Primary {
    /// Starts one foreign worker (the foreign half of `fork_inner`).
    pub(super) fn fork_foreign(
        &self,
        id: u32,
        spec: &Foreign,
        extra_env: Vec<(OsString, OsString)>,
        predecessor: Option<u32>,
    ) -> Result<WorkerHandle, Error> {
        let state = self.foreign_state(spec)?;
        let settings = self.settings();
        let inner = &self.inner;
        let outbox = detached_outbox()?;
        let link = Link { id, handoff: false };
        if let Some(old) = predecessor {
            inner.table.set_successor(id, old);
        }
        let n = state.listens.len() as i32;
        let mut high: Vec<OwnedFd> = Vec::new();
        for (handle, _) in &state.listens {
            let r = inner.table.attach(*handle, &link).and_then(|fd| {
                // Above every target number, so no move overwrites a source.
                crate::sys::dup_above(fd.as_fd(), 3 + n)
            });
            match r {
                Ok(fd) => high.push(fd),
                Err(e) => {
                    inner.table.remove_worker(id);
                    return Err(Error::io("give a socket to a foreign worker", e));
                }
            }
        }
        let inodes: Vec<u64> = high
            .iter()
            .filter_map(|fd| nix::sys::stat::fstat(fd.as_raw_fd()).ok())
            .map(|st| st.st_ino)
            .collect();
        let moves: Vec<(i32, i32)> = high
            .iter()
            .enumerate()
            .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as i32))
            .collect();

        let notify_path = state.notify_dir.join(id.to_string());
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).map_err(|e| {
            inner.table.remove_worker(id);
            Error::io(format!("bind {}", notify_path.display()), e)
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o600));
        }

        let exe = match (&spec.trampoline, &inner.default_exec) {
            (Some(p), _) | (None, Some(p)) => p.clone(),
            (None, None) => {
                inner.table.remove_worker(id);
                return Err(Error::Role(
                    "cannot find the current executable to use as the trampoline: set Foreign::trampoline".into(),
                ));
            }
        };
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg(TRAMPOLINE_ARG).arg(&spec.program).args(&spec.args);
        for (k, v) in &settings.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.env(ENV_TRAMPOLINE, "1")
            .env(ENV_WORKER_ID, id.to_string())
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove(ENV_CHANNEL_FD)
            .env_remove(ENV_HEARTBEAT_MS)
            .env_remove("LISTEN_PID")
            .env_remove("WATCHDOG_PID");
        if n > 0 {
            let names: Vec<&str> = state.listens.iter().map(|(_, n)| n.as_str()).collect();
            cmd.env("LISTEN_FDS", n.to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        } else {
            cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
        }
        match spec.watchdog {
            Some(d) => cmd.env("WATCHDOG_USEC", d.as_micros().to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        settings.apply_to(&mut cmd);
        install_child_setup(
            &mut cmd,
            ChildSetup {
                keep: Vec::new(),
                moves,
                parent_death_kill: true,
                parent_pid: std::process::id() as i32,
            },
        );
        let mut child = match inner.forker.spawn(cmd) {
            Ok(c) => c,
            Err(source) => {
                inner.table.remove_worker(id);
                let _ = std::fs::remove_file(&notify_path);
                return Err(Error::Exec { path: exe, source });
            }
        };
        drop(high);
        let pid = child.id().unwrap_or(0);
        let handle = self.register(
            id,
            pid,
            outbox,
            &mut child,
            Some(spec.stop_signal),
            predecessor,
        );
        tracing::debug!(worker = id, pid, program = ?spec.program, "started foreign worker");
        inner.bus.emit(Event::Fork { worker: id });
        handle.online(inner);
        for b in &state.bound {
            handle.listening(inner, b.address.clone());
        }
        // Nothing to listen on: ready once it has run for a second, so that
        // a program that exits at once counts as a crash, not a success.
        let ready = match spec.ready {
            ForeignReady::Listening if inodes.is_empty() => ForeignReady::Delay(NO_SOCKETS_READY),
            r => r,
        };
        match ready {
            ForeignReady::Listening => {
                let (inner, w) = (inner.clone(), handle.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    while !w.is_dead() && !w.exited_after_disconnect() {
                        tick.tick().await;
                        let (pid, inodes) = (w.pid(), inodes.clone());
                        let seen = tokio::task::spawn_blocking(move || accepting(pid, &inodes))
                            .await
                            .unwrap_or(false);
                        if seen {
                            w.ready(&inner);
                            return;
                        }
                    }
                });
            }
            ForeignReady::Delay(d) => {
                let (inner, w) = (inner.clone(), handle.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    if !w.is_dead() {
                        w.ready(&inner);
                    }
                });
            }
            ForeignReady::Notify => {}
        }
        tokio::spawn(watch(
            inner.clone(),
            handle.clone(),
            child,
            notify,
            notify_path,
            spec.ready,
            spec.watchdog.is_some(),
            settings.get_heartbeat(),
        ));
        Ok(handle)
    }
}

/// Watches one foreign worker: its notifications and its process.
#[allow(clippy::too_many_arguments)]
async fn watch(
    inner: Arc<Inner>,
    w: WorkerHandle,
    mut child: tokio::process::Child,
    notify: UnixDatagram,
    notify_path: PathBuf,
    ready: ForeignReady,
    watchdog: bool,
    every: Duration,
) {
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            r = notify.recv(&mut buf) => {
                if let Ok(n) = r {
                    on_notify(&inner, &w, &buf[..n], ready, watchdog);
                }
            }
            // Without a watchdog, a running process counts as alive.
            _ = tick.tick(), if !watchdog => w.touch(),
        }
    };
    // What it said just before it went (STOPPING=1).
    while let Ok(n) = notify.try_recv(&mut buf) {
        on_notify(&inner, &w, &buf[..n], ready, watchdog);
    }
    drop(notify);
    let _ = std::fs::remove_file(&notify_path);
    let status = match status {
        Ok(s) => ExitStatus::from(s),
        Err(e) => {
            tracing::warn!(worker = w.id(), error = %e, "cannot wait for worker");
            ExitStatus::default()
        }
    };
    w.disconnected(&inner);
    w.exited(&inner, status);
}

fn on_notify(inner: &Inner, w: &WorkerHandle, msg: &[u8], ready: ForeignReady, watchdog: bool) {
    let msg = String::from_utf8_lossy(msg);
    for (key, value) in crate::systemd::parse_notify(&msg) {
        match (key, value) {
            ("READY", "1") => {
                if ready == ForeignReady::Notify {
                    w.ready(inner);
                }
            }
            ("STATUS", s) => *w.shared.status_text.lock().unwrap() = Some(s.to_string()),
            ("WATCHDOG", "1") => {
                if watchdog {
                    w.touch();
                }
            }
            ("WATCHDOG", "trigger") => {
                tracing::warn!(worker = w.id(), "WATCHDOG=trigger: killing it (SIGABRT)");
                w.signal(Signal::SIGABRT);
            }
            ("STOPPING", "1") => w.mark_leaving(),
            ("HERD_HANDLED", n) => {
                if let Ok(n) = n.trim().parse() {
                    w.set_handled(n);
                }
            }
            (k, v) => tracing::debug!(worker = w.id(), "notification {k}={v} ignored"),
        }
    }
}

/// Whether process `pid` waits for connections on one of the sockets
/// `inodes`, as /proc shows it: one of its threads is blocked in
/// `accept` on one, or one is in one of its epoll sets, or a thread is
/// blocked in `poll`/`select` while it holds one (the fds a poll waits on
/// are not visible: a heuristic, for select/poll servers such as Python's
/// socketserver).
pub(crate) fn accepting(pid: u32, inodes: &[u64]) -> bool {
    use crate::procfs::{epoll_targets, fd_socket_inode, open_fds, thread_syscalls, Proc};
    let p = Proc::Pid(pid);
    let ours = |fd: &str| fd_socket_inode(p, fd).is_some_and(|i| inodes.contains(&i));
    let mut polling = false;
    for (nr, arg0) in thread_syscalls(p) {
        if ACCEPT.contains(&nr) && arg0.is_some_and(|fd| ours(&fd.to_string())) {
            return true;
        }
        polling |= POLL.contains(&nr);
    }
    let mut holds = false;
    for o in open_fds(p) {
        if o.target == "anon_inode:[eventpoll]" {
            if epoll_targets(p, &o.fd).iter().any(|t| ours(t)) {
                return true;
            }
        } else if !holds && ours(&o.fd) {
            holds = true;
        }
    }
    polling && holds
}

#[cfg(target_arch = "x86_64")]
const ACCEPT: [i64; 2] = [libc::SYS_accept, libc::SYS_accept4];
#[cfg(not(target_arch = "x86_64"))]
const ACCEPT: [i64; 1] = [libc::SYS_accept4];
#[cfg(target_arch = "x86_64")]
const POLL: [i64; 4] = [
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
];
#[cfg(not(target_arch = "x86_64"))]
const POLL: [i64; 2] = [libc::SYS_ppoll, libc::SYS_pselect6];
