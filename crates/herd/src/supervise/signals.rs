//! The supervisor's signals, turned into its commands: TERM and INT stop
//! gracefully (a second one kills the workers now), HUP reloads, TTIN and
//! TTOU add or remove a worker (down to 1). Nothing else handles them, and
//! nothing here exits the process.

use crate::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::Command;

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
        if commands.send(command).is_err() {
            return;
        }
    }
}
