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
