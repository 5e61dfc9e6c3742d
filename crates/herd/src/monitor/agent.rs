//! HAProxy's agent-check: on each TCP connection, one line with the
//! host's state and weight, then close.

use crate::supervise::Health;
use crate::Supervisor;

/// The answer for the cluster now: `ready up 75%` (the share of wanted
/// workers that are ready), `drain` (marked down or stopping) or `down`.
///
/// `drain` sets HAProxy's administrative state, which only the agent can
/// lift, and only with the word `ready`: an `up` alone leaves the server
/// drained for good after a markDown and markUp.
pub(crate) fn answer(sup: &Supervisor) -> String {
    let s = sup.state();
    match s.health {
        Health::Draining => "drain\n".into(),
        _ if s.ready == 0 => "down\n".into(),
        _ => {
            let pct = (s.ready * 100 / s.wanted.max(1)).clamp(1, 100);
            format!("ready up {pct}%\n")
        }
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, sup: Supervisor) {
    use tokio::io::AsyncWriteExt;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let line = answer(&sup);
        tokio::spawn(async move {
            let write = stream.write_all(line.as_bytes());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
            let _ = stream.shutdown().await;
        });
    }
}
