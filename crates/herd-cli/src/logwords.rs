//! Words for herd's own log lines that need more than a format string:
//! the readiness rule as a person reads it, and SIGUSR1 for the log files.

use anyhow::Result;
use herd::foreign::ForeignReady;

/// `ready when it sends READY=1`, `ready when it listens`, `ready 2s
/// after it starts`.
pub fn ready(r: &ForeignReady) -> String {
    match r {
        ForeignReady::Notify => "ready when it sends READY=1".into(),
        ForeignReady::Listening => "ready when it listens".into(),
        ForeignReady::Delay(d) => format!("ready {} after it starts", crate::limits::Human(*d)),
        #[allow(unreachable_patterns)]
        other => format!("readiness {other}"),
    }
}

/// Reopens the log files at each SIGUSR1 (logrotate's `postrotate`).
/// Handled without --log-file too, so that a stray SIGUSR1 (a logrotate
/// rule written for the file that is no longer configured) does not kill
/// herd as its default action would.
pub fn reopen_on_sigusr1() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while sig.recv().await.is_some() {
            if crate::logfile::active() {
                tracing::info!("SIGUSR1: reopening the log files");
                crate::logfile::reopen();
            } else {
                tracing::info!("SIGUSR1: no --log-file to reopen");
            }
        }
    });
    Ok(())
}
