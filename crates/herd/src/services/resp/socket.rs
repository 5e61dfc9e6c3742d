//! The services socket: a Unix socket, mode 0600, on which the primary
//! serves RESP to its workers (its path is in each worker's environment as
//! `HERD_SERVICES_SOCKET`).
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once; one more is
//! answered with an error and closed, so a worker that opens connections
//! in a loop costs the primary a bounded number of tasks.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use super::codec::Limits;
use super::server::{serve, Hub};

/// The environment variable that gives a worker the socket's path.
pub const ENV: &str = "HERD_SERVICES_SOCKET";

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// A bound services socket, serving until dropped (the file is removed).
#[derive(Debug)]
pub struct ServicesSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ServicesSocket {
    /// Binds `path` (mode 0600, given to `owner` when workers run as
    /// another uid; a stale socket file there is replaced, any other file
    /// is an error) and serves `hub` on it, on the current tokio runtime.
    pub fn bind<H: Hub>(
        path: &Path,
        hub: Arc<H>,
        limits: Limits,
        owner: Option<u32>,
    ) -> io::Result<ServicesSocket> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path)?
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{}: exists and is not a socket; remove it or choose another path",
                        path.display()
                    ),
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(uid) = owner {
            // Not following a link: `path` is the socket just bound.
            std::os::unix::fs::lchown(path, Some(uid), None)?;
        }
        let task = tokio::spawn(accept(listener, hub, limits, owner));
        Ok(ServicesSocket {
            path: path.to_path_buf(),
            task,
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ServicesSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept<H: Hub>(listener: UnixListener, hub: Arc<H>, limits: Limits, owner: Option<u32>) {
    let me = nix::unistd::geteuid().as_raw();
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ids = AtomicU64::new(1);
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: back off rather than spin on it.
                tracing::warn!("services socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Besides the file's mode: only herd's user, the workers' and root
        // are served (the socket's mode follows the umask until chmod).
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 || Some(c.uid()) == owner => {}
            Ok(c) => {
                tracing::warn!("services socket: a connection from uid {} refused", c.uid());
                continue;
            }
            Err(e) => {
                tracing::debug!("services socket: no peer credentials: {e}");
                continue;
            }
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(
                        format!("-ERR max number of clients reached ({MAX_CONNECTIONS})\r\n")
                            .as_bytes(),
                    )
                    .await;
            });
            continue;
        };
        let conn = ids.fetch_add(1, Ordering::Relaxed);
        let hub = hub.clone();
        tokio::spawn(async move {
            serve(stream, hub, conn, limits).await;
            drop(permit);
        });
    }
}
