//! The primary's side of foreign workers (see [`crate::foreign`]): binding
//! their sockets once, and what the one spawn path adds for each foreign
//! worker: the trampoline, its sockets at descriptors 3.., its
//! notification socket and when it counts as ready.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;

use super::link::Inbound;
use super::{Inner, WorkerHandle};
use crate::foreign::notify::Receiver;
use crate::foreign::{Bound, Foreign, ForeignReady, Seen, ENV_TRAMPOLINE, TRAMPOLINE_ARG};
use crate::sched::{Link, ListenAddr, Policy};
use crate::Error;

/// When a foreign worker without sockets counts as ready under
/// [`ForeignReady::Listening`].
pub(crate) const NO_SOCKETS_READY: Duration = Duration::from_secs(1);

/// What `bind_foreign` set up, shared by every foreign worker.
pub(crate) struct State {
    /// (table handle, name), in descriptor order.
    listens: Vec<(u32, String)>,
    pub bound: Vec<Bound>,
    /// The notification sockets of workers that run as herd's user: in
    /// herd's private runtime directory.
    pub notify_dir: PathBuf,
    /// Those of workers that run as another user, made at start when the
    /// settings name one, else when the first such worker starts: in
    /// [`crate::foreign::reachable_dir`], mode 0711.
    reachable: std::sync::Mutex<Option<PathBuf>>,
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
        if let Some(d) = self.reachable.lock().unwrap().as_ref() {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// Where worker `id`'s notification socket goes, if it runs as `owner`
    /// (`None`: as herd's user).
    fn notify_path(&self, id: u32, owner: Option<u32>) -> Result<PathBuf, Error> {
        if owner.is_none() {
            return Ok(self.notify_dir.join(id.to_string()));
        }
        let mut slot = self.reachable.lock().unwrap();
        let dir = match slot.as_ref() {
            Some(d) => d.clone(),
            None => slot
                .insert(run_dir(&crate::foreign::reachable_dir()?, 0o711)?)
                .clone(),
        };
        Ok(dir.join(id.to_string()))
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

/// This primary's `notify-PID` directory in `base`, made afresh with
/// `mode`, after removing those left there by primaries that were killed.
fn run_dir(base: &Path, mode: u32) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Ok(entries) = std::fs::read_dir(base) {
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
    let dir = base.join(format!("notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(mode)
        .recursive(true)
        .create(&dir)
        // The umask may have taken 0711's search bits.
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
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
    let notify_dir = run_dir(&base, 0o700)?;
    // Workers that will run as another user: their directory now, so that
    // a temporary directory they cannot reach is an error at start.
    let uid = inner.settings.lock().unwrap().uid;
    let reachable = match uid.filter(|&u| u != nix::unistd::geteuid().as_raw()) {
        Some(_) => Some(run_dir(&crate::foreign::reachable_dir()?, 0o711)?),
        None => None,
    };
    Ok(State {
        listens,
        bound,
        notify_dir,
        reachable: std::sync::Mutex::new(reachable),
        ports,
        _reserved: reserved,
    })
}

/// What the spawn path needs to start one foreign worker.
pub(super) struct Plan {
    /// The trampoline, its arguments and the worker's environment.
    pub exe: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// `(from, to)`: the worker's sockets, to descriptors 3, 4...
    pub moves: Vec<(i32, i32)>,
    /// The descriptors `moves` moves from; closed once the child runs.
    pub sources: Vec<OwnedFd>,
    /// What the watcher reads.
    pub inbound: Inbound,
    /// When the worker counts as ready, and the socket inodes that the
    /// `listening` rule looks for.
    pub ready: ForeignReady,
    pub inodes: Vec<u64>,
}

/// Prepares worker `id`: its sockets from the table (a successor gets its
/// predecessor's under `reuseport`), its notification socket (reachable by
/// `uid` when the worker runs as that user), and the trampoline's command.
/// On error, the caller removes `id` from the table.
pub(super) fn plan(
    inner: &Inner,
    state: &State,
    spec: &Foreign,
    id: u32,
    every: Duration,
    uid: Option<u32>,
) -> Result<Plan, Error> {
    let link = Link { id, handoff: false };
    let n = state.listens.len() as i32;
    let mut sources: Vec<OwnedFd> = Vec::new();
    for (handle, _) in &state.listens {
        let fd = inner
            .table
            .attach(*handle, &link)
            // Above every target number, so no move overwrites a source.
            .and_then(|fd| crate::sys::dup_above(fd.as_fd(), 3 + n))
            .map_err(|e| Error::io("give a socket to a foreign worker", e))?;
        sources.push(fd);
    }
    let inodes: Vec<u64> = sources
        .iter()
        .filter_map(|fd| nix::sys::stat::fstat(fd.as_raw_fd()).ok())
        .map(|st| st.st_ino)
        .collect();
    let moves = sources
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as i32))
        .collect();

    let owner = uid.filter(|&u| u != nix::unistd::geteuid().as_raw());
    let notify_path = state.notify_path(id, owner)?;
    let notify = Receiver::bind(&notify_path, owner)
        .map_err(|e| Error::io(format!("bind {}", notify_path.display()), e))?;
    let exe = match (&spec.trampoline, &inner.default_exec) {
        (Some(p), _) | (None, Some(p)) => p.clone(),
        (None, None) => return Err(Error::NoExecutable),
    };
    let mut args = vec![TRAMPOLINE_ARG.into(), spec.program.clone()];
    args.extend(spec.args.iter().cloned());
    let mut env = vec![
        (ENV_TRAMPOLINE.into(), "1".into()),
        ("NOTIFY_SOCKET".into(), notify_path.clone().into_os_string()),
    ];
    if n > 0 {
        let names: Vec<&str> = state.listens.iter().map(|(_, n)| n.as_str()).collect();
        env.push(("LISTEN_FDS".into(), n.to_string().into()));
        env.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    if let Some(d) = spec.watchdog {
        env.push(("WATCHDOG_USEC".into(), d.as_micros().to_string().into()));
    }
    // Nothing to listen on: ready once it has run for a second, so that a
    // program that exits at once counts as a crash, not a success.
    let ready = match spec.ready {
        ForeignReady::Listening if inodes.is_empty() => ForeignReady::Delay(NO_SOCKETS_READY),
        r => r,
    };
    Ok(Plan {
        exe,
        args,
        env,
        moves,
        sources,
        inbound: Inbound::Foreign {
            notify,
            ready: spec.ready,
            watchdog: spec.watchdog.is_some(),
            every,
        },
        ready,
        inodes,
    })
}

/// A foreign worker was started: its sockets already listen, so it is
/// online and listening at once; then ready as its rule says.
pub(super) fn started(
    inner: &Arc<Inner>,
    state: &State,
    w: &WorkerHandle,
    ready: ForeignReady,
    inodes: Vec<u64>,
) {
    w.online(inner);
    for b in &state.bound {
        w.listening(inner, b.address.clone());
    }
    let (inner, w) = (inner.clone(), w.clone());
    match ready {
        ForeignReady::Listening => {
            // The worker's own process at every tick; the processes it
            // started (a pre-fork server's children) at every TREE_EVERY-th,
            // as that reads all of /proc. A READY=1 meanwhile counts too
            // (the watcher's `on_notice`).
            tokio::spawn(async move {
                const TREE_EVERY: u32 = 5;
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut n = 0u32;
                while !w.is_dead() && !w.exited_after_disconnect() && !w.is_ready() {
                    tick.tick().await;
                    n = n.wrapping_add(1);
                    let (pid, inodes) = (w.pid(), inodes.clone());
                    let tree = n % TREE_EVERY == 1;
                    let seen = tokio::task::spawn_blocking(move || {
                        crate::foreign::seen(pid, &inodes, tree)
                    })
                    .await
                    .unwrap_or(Seen::NotHeld);
                    if seen == Seen::Accepting {
                        w.ready(&inner);
                        return;
                    }
                    if tree {
                        *w.shared.unready.lock().unwrap() = Some(seen.unready_hint());
                    }
                }
            });
        }
        ForeignReady::Delay(d) => {
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if !w.is_dead() {
                    w.ready(&inner);
                }
            });
        }
        ForeignReady::Notify => {
            *w.shared.unready.lock().unwrap() = Some(
                "it sent no READY=1 on its NOTIFY_SOCKET (under `--ready notify` nothing else makes it ready)".into(),
            );
        }
    }
}
