//! Debug logging, as `NODE_DEBUG=cluster`: set `HERD_LOG=debug` (or
//! `RUST_LOG`) and the primary logs each worker's life to stderr.
//!
//! The library installs its subscriber only if the application has not
//! installed one of its own, and only when one of those variables is set.

pub(crate) fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = match (std::env::var("HERD_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => EnvFilter::new(format!("herd={v}")),
        (Err(_), Ok(v)) => EnvFilter::new(v),
        _ => return,
    };
    let role = match std::env::var(crate::ENV_WORKER_ID) {
        Ok(id) if std::env::var_os(crate::ENV_CHANNEL_FD).is_some() => format!("worker {id}"),
        _ => "primary".to_string(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    tracing::debug!(pid = std::process::id(), "herd logging on ({role})");
}

/// Logs a warning that an operator must see even where no logging was set
/// up (a connection a worker could not take, say): through `tracing` when
/// a subscriber is installed (the application's, or herd's own for
/// HERD_LOG), else straight to stderr, in the same words.
pub(crate) fn warn_always(msg: std::fmt::Arguments<'_>) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{msg}");
    } else {
        let who = match std::env::var(crate::ENV_WORKER_ID) {
            Ok(id) if std::env::var_os(crate::ENV_CHANNEL_FD).is_some() => format!("worker {id}"),
            _ => "primary".to_string(),
        };
        eprintln!(" WARN herd {who}: {msg}");
    }
}

/// Rate-limits a warning: at most one per `every`, each saying how many
/// occurrences it stands for.
pub(crate) struct Every {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Every {
    pub(crate) const fn new(every: std::time::Duration) -> Every {
        Every {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; returns how many there were since the last
    /// warning when it is time for the next one.
    pub(crate) fn tick(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 += 1;
        let now = std::time::Instant::now();
        if st
            .0
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        let n = st.1;
        *st = (Some(now), 0);
        Some(n)
    }
}
