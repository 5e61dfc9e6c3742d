//! One name, one herd: the lock a `herd run --name NAME` holds for its
//! life, taken before its control socket exists.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Longest herd name.
pub const MAX_NAME: usize = 64;

/// Whether `name` can name a herd: 1 to 64 letters, digits, `_`, `-` or
/// `.`, not starting with `.` (it names files in the runtime directory).
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !name.starts_with('.')
}

/// Fails with the rule when `name` cannot name a herd.
pub fn check(name: &str) -> Result<()> {
    if !valid(name) {
        bail!("--name {name:?}: use 1 to {MAX_NAME} letters, digits, '_', '-' or '.'");
    }
    Ok(())
}

/// The name of a running herd, held for its life: an exclusive `flock` on
/// `NAME.lock` in the runtime directory, released by the kernel when the
/// process ends however it ends. The file holds the holder's pid (for the
/// message a second herd gets) and is left in place: unlinking a lock file
/// lets two processes hold locks on two different files of one name.
pub struct NameLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the name `name`, before anything else of the herd exists: a
/// second herd of the same name, started at the same moment or later,
/// fails here with a clear error.
pub fn take_name(runtime_dir: &Path, name: &str) -> Result<NameLock> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = runtime_dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            writeln!(lock, "{}", std::process::id())?;
            Ok(NameLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            // The holder writes its pid just after it takes the lock: read
            // again for a moment if it is not there yet.
            let mut pid = String::new();
            for _ in 0..50 {
                let mut holder = String::new();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut holder);
                if let Ok(p) = holder.trim().parse::<u32>() {
                    pid = format!(" (pid {p})");
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            bail!(
                "a herd named {name:?} is already running{pid}; stop it with `herd ctl --name {name} stop`, or give this one another --name"
            )
        }
        Err((_, e)) => {
            Err(anyhow::Error::new(e)).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}
