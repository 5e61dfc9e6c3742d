//! What PM2 and gunicorn users expect at start-up: `--env-file`,
//! `--chdir`, `--user`/`--group` and `--pid-file`.
//!
//! The workers' environment, lowest first: herd's own environment (what
//! the workers inherit), then the `--config` file's `[env]`, then the
//! `--env-file` files in the order given (a flag wins over the config
//! file, as everywhere in herd; an env file's `env_file` key counts only
//! without the flag). herd's own variables (LISTEN_FDS, HERD_WORKER_ID...)
//! win over all of them.
//!
//! `--chdir DIR` changes herd's own directory, as gunicorn's does, after
//! reading `--config` and `--env-file` (relative to where herd started)
//! and before anything else: the program, `unix:` paths, `--pid-file` and
//! `--monitor-token-file` are then relative to DIR, and the workers start
//! in it.
//!
//! `--user`/`--group` need root: herd binds the sockets as root (so a
//! privileged port works), then starts every worker as that user and group
//! (the user's primary group without `--group`; no supplementary groups).
//! herd itself stays root: it must be, to start workers as another user.
//! Such workers can still use `--ready notify` and `--heartbeat-timeout`:
//! the library puts their `NOTIFY_SOCKET` where they can reach it (see
//! docs/security.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// The largest env file read.
pub const ENV_FILE_MAX_BYTES: u64 = 1 << 20;
/// The most lines an env file may have.
pub const ENV_FILE_MAX_LINES: usize = 10_000;

/// Reads a dotenv file: `KEY=VALUE` lines, `#` comments and blank lines,
/// an optional `export ` prefix, values optionally in single quotes
/// (literal) or double quotes (`\n`, `\t`, `\"`, `\\` and `\$` escapes);
/// an unquoted value ends at ` #`. A bad line is an error naming the file
/// and the line.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--env-file {}: cannot read it", path.display()))?;
    if !meta.is_file() {
        bail!("--env-file {}: not a regular file", path.display());
    }
    if meta.len() > ENV_FILE_MAX_BYTES {
        bail!(
            "--env-file {}: {} bytes is too large (at most {} bytes)",
            path.display(),
            meta.len(),
            ENV_FILE_MAX_BYTES
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("--env-file {}: cannot read it", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("--env-file {}: not UTF-8 text", path.display()))?;
    parse_env(&text)
        .map_err(|(line, why)| anyhow!("--env-file {} line {line}: {why}", path.display()))
}

/// Parses dotenv text; an error is (line number, what is wrong).
pub fn parse_env(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if n > ENV_FILE_MAX_LINES {
            return Err((n, format!("too many lines (at most {ENV_FILE_MAX_LINES})")));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|r| r.starts_with([' ', '\t']))
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n, "expected KEY=VALUE".into()));
        };
        let key = key.trim_end();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((
                n,
                format!("invalid name {key:?}: use letters, digits and '_', not first a digit"),
            ));
        }
        let value = unquote(value.trim_start()).map_err(|why| (n, why))?;
        if value.contains('\0') {
            return Err((n, "a value cannot contain a NUL byte".into()));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    let rest_ok = |rest: &str| {
        let rest = rest.trim();
        if rest.is_empty() || rest.starts_with('#') {
            Ok(())
        } else {
            Err(format!("unexpected {rest:?} after the closing quote"))
        }
    };
    if let Some(body) = v.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated ' quote")?;
        rest_ok(&body[end + 1..])?;
        return Ok(body[..end].to_string());
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    rest_ok(&body[i + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e @ ('"' | '\\' | '$'))) => out.push(e),
                    Some((_, e)) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated \" quote".into());
    }
    let end = v
        .char_indices()
        .find(|&(i, c)| c == '#' && i > 0 && v[..i].ends_with([' ', '\t']))
        .map_or(v.len(), |(i, _)| i);
    Ok(v[..end].trim_end().to_string())
}

/// Who the workers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `--user`/`--group` (names or numeric ids) as ids; needs root.
pub fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Credentials> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(Credentials {
            uid: None,
            gid: None,
        });
    }
    if !nix::unistd::geteuid().is_root() {
        let flag = if user.is_some() { "--user" } else { "--group" };
        bail!(
            "{flag} needs root: herd binds as root, then starts the workers as that user; run herd as root, or drop {flag}"
        );
    }
    let user = user
        .map(|u| {
            let found = match u.parse::<u32>() {
                Ok(id) => User::from_uid(Uid::from_raw(id)),
                Err(_) => User::from_name(u),
            };
            found
                .map_err(|e| anyhow!("--user {u:?}: cannot look it up: {e}"))?
                .ok_or_else(|| anyhow!("--user {u:?}: no such user (see /etc/passwd)"))
        })
        .transpose()?;
    let gid = match group {
        Some(g) => {
            let found = match g.parse::<u32>() {
                Ok(id) => Group::from_gid(Gid::from_raw(id)),
                Err(_) => Group::from_name(g),
            };
            Some(
                found
                    .map_err(|e| anyhow!("--group {g:?}: cannot look it up: {e}"))?
                    .ok_or_else(|| anyhow!("--group {g:?}: no such group (see /etc/group)"))?
                    .gid
                    .as_raw(),
            )
        }
        None => user.as_ref().map(|u| u.gid.as_raw()),
    };
    Ok(Credentials {
        uid: user.map(|u| u.uid.as_raw()),
        gid,
    })
}

/// `--chdir DIR`: enters it (herd itself; the workers inherit it).
pub fn chdir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "--chdir {}: {}",
            dir.display(),
            if dir.exists() {
                "not a directory"
            } else {
                "no such directory"
            }
        );
    }
    std::env::set_current_dir(dir).with_context(|| format!("--chdir {}", dir.display()))
}

/// `--pid-file`: written at start, removed when dropped (a clean stop).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path` (a temporary file renamed over
    /// it), unless it names a live process other than this one; a stale
    /// or unreadable one is replaced.
    pub fn create(path: &Path) -> Result<PidFile> {
        let path =
            std::path::absolute(path).with_context(|| format!("--pid-file {}", path.display()))?;
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let me = std::process::id() as i32;
                if pid > 0 && pid != me && alive(pid) {
                    bail!(
                        "--pid-file {}: process {pid} is running (another herd?): stop it, or remove the file if that process is not herd",
                        path.display()
                    );
                }
            }
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            bail!("--pid-file {}: cannot write it: {e}", path.display());
        }
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only if it is still ours.
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether process `pid` exists (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_parse() {
        let text = "# comment\n\nA=1\nexport B = two words \nC='x # y'\nD=\"a\\nb \\\"q\\\"\" # c\nE=v # trailing\nF=\nG=a#b\n";
        let got = parse_env(text).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "x # y"),
            ("D", "a\nb \"q\""),
            ("E", "v"),
            ("F", ""),
            ("G", "a#b"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_dotenv_lines_name_their_line() {
        for (text, line) in [
            ("A=1\nnope\n", 2),
            ("1A=x\n", 1),
            ("A=1\nB=\"open\n", 2),
            ("A='x' y\n", 1),
            ("export=\n=x\n", 2),
            ("A B=1\n", 1),
        ] {
            let (n, why) = parse_env(text).unwrap_err();
            assert_eq!(n, line, "{text:?}: {why}");
        }
        let many = "A=1\n".repeat(ENV_FILE_MAX_LINES + 1);
        assert_eq!(parse_env(&many).unwrap_err().0, ENV_FILE_MAX_LINES + 1);
    }
}
