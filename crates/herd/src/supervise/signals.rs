//! The supervisor's signals, turned into its commands: TERM and INT stop
//! gracefully (a second one kills the workers now), HUP reloads, TTIN and
//! TTOU add or remove a worker (down to 1). Nothing else handles them, and
//! nothing here exits the process.
//!
//! A stop signal that comes again within [`ECHO`] of the first is the same
//! signal sent twice, not a second one: `timeout`, and service managers
//! that kill a process group, signal herd and then its whole group (herd is
//! in it; its workers are not, each leads its own). Only a stop signal
//! after that window kills the workers.

use crate::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Command;

/// How soon a repeated stop signal counts as an echo of the first (one
/// sender signalling herd and then its process group): well above the
/// microseconds between the two, well below a person's second Ctrl-C
/// after reading "shutting down".
pub(crate) const ECHO: std::time::Duration = std::time::Duration::from_secs(1);

/// Listens for the signals until aborted, sending a command for each.
pub(crate) fn spawn(commands: UnboundedSender<Command>) -> JoinHandle<()> {
    tokio::spawn(listen(commands))
}

async fn listen(commands: UnboundedSender<Command>) {
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::from_raw(Signal::SIGTTIN.as_raw()),
        SignalKind::from_raw(Signal::SIGTTOU.as_raw()),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => streams.push(s),
            Err(e) => {
                tracing::warn!("cannot handle signals (TERM, INT, HUP, TTIN, TTOU): {e}");
                return;
            }
        }
    }
    let [term, int, hup, ttin, ttou] = &mut streams[..] else {
        unreachable!("five signals")
    };
    let mut first_stop: Option<std::time::Instant> = None;
    loop {
        let command = tokio::select! {
            _ = term.recv() => Command::Terminate { signal: "SIGTERM" },
            _ = int.recv() => Command::Terminate { signal: "SIGINT" },
            _ = hup.recv() => {
                tracing::info!("SIGHUP: rolling restart");
                Command::Reload(None)
            }
            _ = ttin.recv() => Command::ScaleBy { delta: 1, signal: "SIGTTIN" },
            _ = ttou.recv() => Command::ScaleBy { delta: -1, signal: "SIGTTOU" },
        };
        if let Command::Terminate { signal } = command {
            let now = std::time::Instant::now();
            match first_stop {
                Some(at) if now.duration_since(at) < ECHO => {
                    tracing::debug!(
                        "{signal} again within {ECHO:?}: the same signal sent to herd and to its process group; still stopping gracefully"
                    );
                    continue;
                }
                Some(_) => {}
                None => first_stop = Some(now),
            }
        }
        if commands.send(command).is_err() {
            return;
        }
    }
}
