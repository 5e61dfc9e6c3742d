//! A Unix socket's address, whatever the length of its path.
//!
//! A `sockaddr_un` holds at most [`SUN_PATH_MAX`] bytes of path, so a socket
//! deep in a directory tree cannot be bound by its absolute path. Node's
//! primary binds such a path by its shorter form relative to its own
//! working directory, which helps only when that directory is close by.
//! herd reaches the socket through its directory instead: the directory is
//! opened (`O_PATH`, which, as binding by path would, needs search
//! permission on the way and nothing more), and the socket is bound or
//! connected as `/proc/self/fd/N/NAME`, which the kernel resolves through
//! that descriptor. Any directory length works (up to the system's
//! PATH_MAX); only the file name itself must fit beside the short prefix.
//! The file is otherwise named by its path: `unlink` and `chmod` take up to
//! PATH_MAX bytes, so its mode and its removal need nothing special.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

/// The longest path a `sockaddr_un` holds (108 bytes with its NUL).
pub(crate) const SUN_PATH_MAX: usize = 107;

/// A Unix socket's address, with what keeps it valid: the directory it is
/// reached through when the path is too long to name directly.
pub(crate) struct UnixName {
    addr: SockAddr,
    /// Open while `addr` names `/proc/self/fd/N/...` through it.
    _dir: Option<std::fs::File>,
}

impl UnixName {
    /// The address of `path`: the path itself when it fits, else the path
    /// through its directory.
    ///
    /// # Errors
    /// `InvalidInput` carrying a [`NameTooLong`] when the file name alone
    /// is too long even through its directory, or there is no file name;
    /// the directory's open error (`NotFound`, `PermissionDenied`...) when
    /// it cannot be opened.
    pub fn of(path: &Path) -> io::Result<UnixName> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(UnixName {
                addr: SockAddr::unix(path)?,
                _dir: None,
            });
        }
        let name = path.file_name().ok_or_else(|| {
            NameTooLong::error(
                "the path names no file (it ends in `..` or `/`): give the socket a file name"
                    .into(),
            )
        })?;
        // A name too long fails before anything is opened: whatever the
        // directory's descriptor, `/proc/self/fd/` and a number precede it.
        let longest = SUN_PATH_MAX - "/proc/self/fd/1/".len();
        if name.len() > longest {
            return Err(name_too_long(name.len(), longest));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir_file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)?;
        let mut through = format!("/proc/self/fd/{}/", dir_file.as_raw_fd()).into_bytes();
        let room = SUN_PATH_MAX.saturating_sub(through.len());
        if name.len() > room {
            return Err(name_too_long(name.len(), room));
        }
        through.extend_from_slice(name.as_bytes());
        Ok(UnixName {
            addr: SockAddr::unix(OsString::from_vec(through))?,
            _dir: Some(dir_file),
        })
    }

    /// The address to bind or connect.
    pub fn addr(&self) -> &SockAddr {
        &self.addr
    }

    /// Whether something listens there: a connection is refused only when
    /// nobody does (a socket file left by a crash). Never waits: a live
    /// socket whose queue is full counts as alive.
    pub fn is_listened_on(&self) -> bool {
        let Ok(probe) = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
        else {
            return true;
        };
        !matches!(probe.connect(&self.addr),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
    }
}

/// A Unix socket name that no form of address can hold; the primary
/// answers the worker's listen with ENAMETOOLONG and this message.
#[derive(Debug)]
pub(crate) struct NameTooLong(String);

impl NameTooLong {
    fn error(why: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, NameTooLong(why))
    }

    /// Whether `e` is one.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|r| r.is::<NameTooLong>())
    }
}

impl std::fmt::Display for NameTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameTooLong {}

fn name_too_long(len: usize, room: usize) -> io::Error {
    NameTooLong::error(format!(
        "the socket's file name is {len} bytes, too long for a Unix socket address even \
         through its directory (at most {room} bytes; a whole path of at most \
         {SUN_PATH_MAX} bytes is bound as it is): choose a shorter file name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory whose path is over 200 bytes, and its top.
    fn deep_dir() -> (std::path::PathBuf, std::path::PathBuf) {
        let base = std::env::temp_dir().join(format!("herd-unix-{}", std::process::id()));
        let dir = base.join("d".repeat(100)).join("e".repeat(100));
        std::fs::create_dir_all(&dir).unwrap();
        (base, dir)
    }

    #[test]
    fn a_long_path_is_bound_and_connected_through_its_directory() {
        let (base, dir) = deep_dir();
        let path = dir.join("app.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let name = UnixName::of(&path).unwrap();
        let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None).unwrap();
        sock.bind(name.addr()).unwrap();
        assert!(!name.is_listened_on(), "bound, not listening: refused");
        sock.listen(1).unwrap();
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "the file is where asked"
        );
        assert!(UnixName::of(&path).unwrap().is_listened_on());
        drop(sock);
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_file_name_too_long_for_any_form_is_refused_by_name() {
        let long = Path::new("/tmp").join("n".repeat(120));
        let e = UnixName::of(&long).err().unwrap();
        assert!(NameTooLong::is(&e), "{e}");
        assert!(e.to_string().contains("120 bytes"), "{e}");
        let missing = Path::new("/no-such-dir-for-herd")
            .join("m".repeat(120))
            .join("app.sock");
        let e = UnixName::of(&missing).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }
}
