//! herd's per-user runtime directory: where the control socket, the lock
//! that holds a herd's name and the workers' notification sockets go; and
//! the directory, reachable by other users, for the notification sockets
//! of workers that run as another user.
//!
//! herd never changes a directory it did not create: a directory that is
//! not private to the user is either used through a private subdirectory
//! of herd's own (when others cannot remove or rename what herd puts in
//! it) or refused with a message that says what to do.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Sticky bit: in such a directory only an entry's owner may remove or
/// rename it (as in /tmp).
const STICKY: u32 = 0o1000;

/// The per-user directory for herd's sockets (workers' notification
/// sockets, the CLI's control socket and name locks): `$HERD_RUNTIME_DIR`
/// if set, else `$XDG_RUNTIME_DIR/herd`, else `/tmp/herd-UID`.
///
/// - Missing, it is created with mode 0700.
/// - Owned by the user and closed to everyone else (no group or other
///   bits), it is used as it is.
/// - Shared but safe to hold a private entry (sticky, as /tmp is, or
///   writable by nobody but its owner, the user or root), herd uses its own
///   subdirectory `herd-UID` in it, created with mode 0700.
/// - Otherwise (writable by others without the sticky bit, not a
///   directory, or a `herd-UID` that is not the user's and private) it is
///   refused. herd never changes the mode of a directory it did not create.
///
/// # Errors
/// [`Error::Io`] naming the directory and what to do, when it cannot be
/// created or is not safe to use.
pub fn runtime_dir() -> Result<PathBuf, Error> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = match (
        std::env::var_os("HERD_RUNTIME_DIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
    ) {
        (Some(d), _) if !d.is_empty() => PathBuf::from(d),
        (_, Some(x)) if !x.is_empty() => PathBuf::from(x).join("herd"),
        _ => PathBuf::from(format!("/tmp/herd-{uid}")),
    };
    let meta = ensure_dir(&dir, 0o700)?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() == uid && mode & 0o077 == 0 {
        return Ok(dir);
    }
    let writable_by_others = mode & 0o022 != 0;
    let owner_trusted = meta.uid() == uid || meta.uid() == 0;
    if mode & STICKY != 0 || (!writable_by_others && owner_trusted) {
        let own = dir.join(format!("herd-{uid}"));
        let meta = ensure_dir(&own, 0o700)?;
        if meta.uid() != uid {
            return Err(refused(
                &own,
                format!(
                    "owned by uid {}, not by you (uid {uid}): remove it, or set HERD_RUNTIME_DIR to a private directory",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(refused(
                &own,
                format!(
                    "mode {:04o} lets other users in: herd does not change it; chmod 700 it, or set HERD_RUNTIME_DIR to a private directory",
                    meta.mode() & 0o7777
                ),
            ));
        }
        return Ok(own);
    }
    Err(refused(
        &dir,
        format!(
            "mode {mode:04o}{}: others may write in it and remove what herd puts there (no sticky bit); herd does not change it; chmod 700 it (or 1777), or set HERD_RUNTIME_DIR to a private directory",
            if meta.uid() == uid {
                String::new()
            } else {
                format!(", owned by uid {}", meta.uid())
            }
        ),
    ))
}

/// Creates `dir` (with `mode`, whatever the umask) if missing; returns
/// what it is, never following a symbolic link.
fn ensure_dir(dir: &Path, mode: u32) -> Result<std::fs::Metadata, Error> {
    use std::os::unix::fs::PermissionsExt;
    let created = match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(Error::io(
                format!("cannot create herd's runtime directory {}", dir.display()),
                e,
            ))
        }
    };
    if created {
        // The umask may have taken bits `mode` asks for (0711's search bits).
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {mode:o} {}", dir.display()), e))?;
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("runtime directory {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(refused(
            dir,
            "not a directory (a symbolic link or a file is not followed)".into(),
        ));
    }
    Ok(meta)
}

/// Where the notification sockets of workers that run as another user go
/// (`herd run --user` as root): `herd-notify-UID` in the temporary
/// directory (`$TMPDIR`, else `/tmp`), mode 0711, so that such a worker
/// may reach a socket inside it by its path but list, add, remove or
/// rename nothing there. Each socket in it is then given to its worker's
/// uid, mode 0600 (see `notify::Receiver::bind`): no other user (root
/// aside) can send to it.
///
/// - The temporary directory must be safe to hold herd's entry (sticky, or
///   writable by nobody but its owner, the user or root), and it and every
///   directory above it searchable by others (mode `o+x`).
/// - `herd-notify-UID` must be herd's user's, writable by nobody else and
///   searchable by others; created by herd if missing, never chmod'ed
///   otherwise.
///
/// # Errors
/// [`Error::Io`] naming the directory that is not safe or not reachable,
/// and what to do.
pub fn reachable_dir() -> Result<PathBuf, Error> {
    let uid = nix::unistd::geteuid().as_raw();
    let tmp = std::env::temp_dir();
    if !tmp.is_absolute() {
        return Err(refused_tmp(&tmp, "TMPDIR must be an absolute path".into()));
    }
    let meta = std::fs::symlink_metadata(&tmp)
        .map_err(|e| Error::io(format!("temporary directory {}", tmp.display()), e))?;
    let mode = meta.mode() & 0o7777;
    let owner_trusted = meta.uid() == uid || meta.uid() == 0;
    if !meta.is_dir() || !(mode & STICKY != 0 || (mode & 0o022 == 0 && owner_trusted)) {
        return Err(refused_tmp(
            &tmp,
            format!(
                "mode {mode:04o}, owned by uid {}: not a directory where others cannot remove what herd puts there (no sticky bit); set TMPDIR to one (e.g. /tmp, or a root-owned 0755 directory)",
                meta.uid()
            ),
        ));
    }
    for dir in tmp.ancestors() {
        let m = std::fs::metadata(dir)
            .map_err(|e| Error::io(format!("temporary directory {}", dir.display()), e))?;
        if m.mode() & 0o001 == 0 {
            return Err(refused_tmp(
                dir,
                format!(
                    "mode {:04o}: workers run as another user cannot search it to reach their NOTIFY_SOCKET below {}; set TMPDIR to a directory they can reach (e.g. /tmp)",
                    m.mode() & 0o7777,
                    tmp.display()
                ),
            ));
        }
    }
    let own = tmp.join(format!("herd-notify-{uid}"));
    let meta = ensure_dir(&own, 0o711)?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid || mode & 0o022 != 0 || mode & 0o001 == 0 {
        return Err(refused_tmp(
            &own,
            format!(
                "mode {mode:04o}, owned by uid {}: herd needs it to be yours (uid {uid}), writable by you alone and searchable by others (0711); herd does not change it: remove it, or set TMPDIR elsewhere",
                meta.uid()
            ),
        ));
    }
    Ok(own)
}

/// [`refused`] for the directories of [`reachable_dir`].
fn refused_tmp(dir: &Path, why: String) -> Error {
    Error::io(
        format!(
            "notification sockets for workers run as another user, in {}",
            dir.display()
        ),
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
    )
}

fn refused(dir: &Path, why: String) -> Error {
    Error::io(
        format!("runtime directory {}", dir.display()),
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
    )
}
