//! `herd`: run any program as a cluster of workers sharing its ports, and
//! control it. See `herd --help`, README.md and the `herd::foreign` module.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod config;
mod ctl;
mod ctl_worker;
mod held;
mod limits;
mod list;
mod logfile;
mod logwords;
mod name;
mod output;
mod run;
mod startup;
mod table;
mod unit;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

use cli::{Cli, Command, LogFormat};

/// The command a usage error is about, from the command line: `herd`,
/// `herd run`, `herd ctl`, `herd ctl scale`... (clap's error does not
/// always say which command it came from).
fn command_path(args: &[String]) -> String {
    const CTL: [&str; 10] = [
        "status", "reload", "scale", "stop", "list", "drain", "undrain", "replace", "profile",
        "dump",
    ];
    let mut words = args.iter().skip(1).take_while(|a| *a != "--");
    let mut path = "herd".to_string();
    if let Some(cmd) = words.find(|a| *a == "run" || *a == "ctl" || *a == "systemd-unit") {
        path.push(' ');
        path.push_str(cmd);
        if cmd == "ctl" {
            if let Some(sub) = words.find(|a| CTL.contains(&a.as_str())) {
                path.push(' ');
                path.push_str(sub);
            }
        }
    }
    path
}

/// One line for a usage error: what is wrong and where to look.
fn usage_error(e: &clap::Error) -> String {
    let ctx = |k| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let path = command_path(&args);
    let help = format!("see {path} --help");
    let arg = ctx(ContextKind::InvalidArg).unwrap_or_default();
    let value = ctx(ContextKind::InvalidValue).unwrap_or_default();
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let suggestion = ctx(ContextKind::SuggestedArg)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            if arg.starts_with('-') {
                format!("unknown option {arg}{suggestion}; {help}")
            } else if path == "herd run" {
                format!(
                    "unexpected argument {arg:?}: put the program after --, e.g. herd run -- node server.js"
                )
            } else {
                format!("unexpected argument {arg:?}; {help}")
            }
        }
        ErrorKind::InvalidSubcommand => {
            let cmd = ctx(ContextKind::InvalidSubcommand).unwrap_or_default();
            let suggestion = ctx(ContextKind::SuggestedSubcommand)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            if path == "herd ctl" {
                format!(
                    "unknown command {cmd:?}{suggestion}: use herd ctl status, reload, scale, stop, list, drain, undrain, replace, profile or dump (see herd ctl --help)"
                )
            } else {
                format!("unknown command {cmd:?}{suggestion}: use herd run or herd ctl (see herd --help)")
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let why = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            format!("invalid value {value:?} for {arg}{why}; {help}")
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad usage").trim();
            format!("{}; {help}", first.trim_start_matches("error: "))
        }
    }
}

use std::error::Error as _;

/// Bad input in the options or the config file: exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() {
    // A worker's trampoline execs the worker program here and never returns.
    herd::foreign::trampoline();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
                let _ = e.print();
                std::process::exit(2);
            }
            _ => {
                eprintln!("herd: {}", usage_error(&e));
                std::process::exit(2);
            }
        },
    };
    // The config file's log_format counts too (below flags and HERD_*).
    let from_file = match &cli.command {
        Command::Run(a) => a
            .config
            .as_deref()
            .and_then(|p| config::File::load(p).ok())
            .and_then(|f| f.log_format)
            .and_then(|f| match f.as_str() {
                "json" => Some(LogFormat::Json),
                "text" => Some(LogFormat::Text),
                _ => None,
            }),
        Command::Ctl(_) | Command::SystemdUnit(_) => None,
    };
    let format = cli.log_format.or(from_file).unwrap_or(LogFormat::Text);
    let code = match cli.command {
        Command::Run(args) => {
            output::init_logging(format);
            run::run(*args, format)
        }
        Command::Ctl(args) => client::client(args),
        Command::SystemdUnit(args) => unit::print(*args),
    };
    // Lines still queued for the log file are written before herd exits.
    logfile::flush(std::time::Duration::from_secs(2));
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if logfile::active() {
                let line = match format {
                    LogFormat::Json => format!(
                        "{}\n",
                        serde_json::json!({"timestamp": output::timestamp(), "level": "ERROR", "message": format!("{e:#}")})
                    ),
                    LogFormat::Text => format!("herd: error: {e:#}\n"),
                };
                logfile::line(None, line.into_bytes());
                logfile::flush(std::time::Duration::from_secs(2));
            }
            match format {
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({"level": "ERROR", "message": format!("{e:#}")})
                ),
                LogFormat::Text => eprintln!("herd: {e:#}"),
            }
            std::process::exit(if e.is::<Usage>() { 2 } else { 1 });
        }
    }
}
