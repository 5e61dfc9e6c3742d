//! `herd systemd-unit [--socket-unit] [RUN OPTIONS] -- PROGRAM`: prints a
//! systemd `.service` unit whose ExecStart is the same `herd run` command
//! line (with herd's absolute path), and with `--socket-unit` a `.socket`
//! unit for the `-l` addresses after it. Each unit starts with a comment
//! line `# --- NAME.service ---` (`NAME.socket`), NAME being `--name` (or
//! `herd`): cut there to save them as files.
//!
//! herd reports READY=1 (and STOPPING=1, RELOADING=1) from its own
//! process, the unit's main process: `Type=notify` with
//! `NotifyAccess=main`. `ExecReload` sends SIGHUP (a rolling restart),
//! `KillMode=mixed` lets herd stop its workers gracefully on SIGTERM while
//! systemd still kills whatever is left after `TimeoutStopSec` (the grace
//! plus the drain delay plus 15s).
//!
//! Options are copied as written: give absolute paths for files
//! (`--config`, `--env-file`...), since systemd starts herd in `/`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use herd::ListenAddr;

use crate::cli::UnitArgs;

/// Prints the unit(s): exit code 0.
pub fn print(args: UnitArgs) -> Result<i32> {
    let herd = std::env::current_exe().map_err(|e| anyhow!("cannot find herd's own path: {e}"))?;
    let argv: Vec<OsString> = std::env::args_os().collect();
    let units = render(&herd.to_string_lossy(), &argv, &args)
        .map_err(|e| anyhow::Error::new(crate::Usage(format!("{e:#}"))))?;
    print!("{units}");
    Ok(0)
}

/// The units for `argv` (herd's own command line, `systemd-unit` in it).
pub fn render(herd: &str, argv: &[OsString], args: &UnitArgs) -> Result<String> {
    if args.run.command.is_empty() {
        bail!("no program to run: put it after --, e.g. herd systemd-unit -l :8080 -- /usr/bin/node /srv/server.js");
    }
    let name = args.run.name.clone().unwrap_or_else(|| "herd".into());
    crate::name::check(&name)?;
    // herd's words before the subcommand (global options), then `run`, then
    // those after it but --socket-unit.
    let words: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let at = words
        .iter()
        .position(|w| w == "systemd-unit")
        .ok_or_else(|| anyhow!("no systemd-unit in the command line"))?;
    let mut exec = vec![herd.to_string()];
    exec.extend(words[..at].iter().cloned());
    exec.push("run".into());
    let mut after_dashes = false;
    for w in &words[at + 1..] {
        if !after_dashes && w == "--socket-unit" {
            continue;
        }
        after_dashes |= w == "--";
        exec.push(w.clone());
    }
    let exec_start = exec.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    let program = args
        .run
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let grace = dur(args.run.grace.as_deref(), "grace")?.unwrap_or(Duration::from_secs(30));
    let drain = dur(args.run.drain_delay.as_deref(), "drain-delay")?.unwrap_or_default();
    let stop = (grace + drain + Duration::from_secs(15)).as_secs();

    let mut out = String::new();
    let socket = if args.socket_unit {
        Some(socket_unit(&name, args)?)
    } else {
        None
    };
    let _ = writeln!(out, "# --- {name}.service ---");
    let _ = writeln!(out, "[Unit]");
    let _ = writeln!(
        out,
        "Description={}",
        escape_text(&format!("{name}, a herd cluster: {program}"))
    );
    let _ = writeln!(out, "Wants=network-online.target");
    let _ = writeln!(out, "After=network-online.target");
    if socket.is_some() {
        let _ = writeln!(out, "Requires={name}.socket");
        let _ = writeln!(out, "After={name}.socket");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "[Service]");
    let _ = writeln!(out, "Type=notify");
    let _ = writeln!(out, "NotifyAccess=main");
    let _ = writeln!(out, "ExecStart={exec_start}");
    let _ = writeln!(out, "ExecReload=/bin/kill -HUP $MAINPID");
    let _ = writeln!(out, "KillMode=mixed");
    let _ = writeln!(out, "TimeoutStopSec={stop}");
    let _ = writeln!(out, "Restart=on-failure");
    let _ = writeln!(out);
    let _ = writeln!(out, "[Install]");
    let _ = writeln!(out, "WantedBy=multi-user.target");
    if let Some(s) = socket {
        let _ = writeln!(out);
        out.push_str(&s);
    }
    Ok(out)
}

fn dur(v: Option<&str>, what: &str) -> Result<Option<Duration>> {
    v.map(|v| herd::foreign::parse_duration(v).map_err(|e| anyhow!("--{what}: {e}")))
        .transpose()
}

/// The `.socket` unit for the `-l` addresses.
fn socket_unit(name: &str, args: &UnitArgs) -> Result<String> {
    if args.run.listen.is_empty() {
        bail!("--socket-unit needs the addresses: give -l ADDR (one or more)");
    }
    let listens = args
        .run
        .listen
        .iter()
        .map(|l| crate::config::parse_listen(l.trim()))
        .collect::<Result<Vec<_>>>()?;
    let named: Vec<_> = listens.iter().filter_map(|l| l.name.as_deref()).collect();
    if listens.len() > 1 && !named.is_empty() {
        bail!(
            "--socket-unit: one socket unit names all its sockets alike, so -l names cannot be kept with several addresses: drop the NAME= parts (herd then matches the sockets in order)"
        );
    }
    let mut out = format!(
        "# --- {name}.socket ---\n[Unit]\nDescription={}\n\n[Socket]\n",
        escape_text(&format!("{name}'s sockets, for herd"))
    );
    let mut tcp = false;
    for l in &listens {
        match &l.addr {
            ListenAddr::Tcp(a) | ListenAddr::Udp(a) if a.port() == 0 => {
                bail!(
                    "--socket-unit: -l {} has port 0: systemd needs a fixed port",
                    l.text
                )
            }
            ListenAddr::Tcp(a) => {
                tcp = true;
                let _ = writeln!(out, "ListenStream={a}");
            }
            ListenAddr::Udp(a) => {
                let _ = writeln!(out, "ListenDatagram={a}");
            }
            ListenAddr::Unix(p) => {
                if !p.is_absolute() {
                    bail!("--socket-unit: -l {}: give an absolute path", l.text);
                }
                let _ = writeln!(out, "ListenStream={}", escape_text(&p.to_string_lossy()));
            }
        }
    }
    if let [one] = named.as_slice() {
        let _ = writeln!(out, "FileDescriptorName={one}");
    }
    // herd's default policy, reuseport, needs it (else herd serves the
    // socket shared).
    let _ = writeln!(out, "ReusePort=yes");
    if tcp && !args.run.no_tcp_nodelay {
        let _ = writeln!(out, "NoDelay=yes");
    }
    let _ = writeln!(out, "Service={name}.service");
    let _ = writeln!(out, "\n[Install]\nWantedBy=sockets.target");
    Ok(out)
}

/// A unit-file value: `%` doubled (specifiers), no newlines.
fn escape_text(s: &str) -> String {
    s.replace('%', "%%").replace(['\n', '\r'], " ")
}

/// One ExecStart word, as systemd splits them: plain when safe, else in
/// double quotes with C escapes; `%` and `$` doubled either way (systemd
/// expands specifiers and variables in ExecStart).
pub fn quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-[]".contains(c));
    if safe {
        return w.replace('%', "%%");
    }
    let mut out = String::from("\"");
    for c in w.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn exec_words_are_quoted_for_systemd() {
        assert_eq!(quote("-l"), "-l");
        assert_eq!(quote("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(quote("50%"), "50%%");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("$HOME"), "\"$$HOME\"");
        assert_eq!(quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(quote(""), "\"\"");
    }
}
