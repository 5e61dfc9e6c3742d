//! The dashboard's list of recent events: each lifecycle event of the core
//! and each decision of the supervisor as one line for a person, with a
//! kind the page colours by. Messages and requests between workers and
//! the application are the application's business and not listed.

use serde::Serialize;

use crate::primary::Event;
use crate::supervise::{ClusterEvent, ReloadPhase, SupervisorEvent};

/// One line of the page's event list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRow {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `fork`, `online`, `listening`, `ready`, `disconnect`, `exit`,
    /// `crash`, `error`, `recycle`, `breaker_tripped`, `reload`,
    /// `respawn`, `cluster_ready`, `gave_up`, `stopping`, `health`.
    pub kind: &'static str,
    pub worker: Option<u32>,
    pub text: String,
}

/// The row for `ev`, or `None` for what the page does not list.
pub(crate) fn row_of(ev: &ClusterEvent) -> Option<EventRow> {
    let (kind, worker, text) = match ev {
        ClusterEvent::Core(ev) => core(ev)?,
        ClusterEvent::Supervisor(ev) => supervisor(ev),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Some(EventRow {
        at_ms,
        kind,
        worker,
        text,
    })
}

type Row = (&'static str, Option<u32>, String);

fn core(ev: &Event) -> Option<Row> {
    Some(match ev {
        Event::Fork { worker } => ("fork", Some(*worker), format!("worker {worker} forked")),
        Event::Online { worker } => ("online", Some(*worker), format!("worker {worker} online")),
        Event::Listening { worker, address } => (
            "listening",
            Some(*worker),
            format!("worker {worker} listening on {address}"),
        ),
        Event::Ready { worker } => ("ready", Some(*worker), format!("worker {worker} ready")),
        Event::Disconnect { worker } => (
            "disconnect",
            Some(*worker),
            format!("worker {worker} disconnected"),
        ),
        Event::Exit {
            worker,
            status,
            exited_after_disconnect,
        } => {
            let how = match (status.code, status.signal) {
                (_, Some(sig)) => format!("killed by {}", sig.as_str()),
                (Some(code), None) => format!("exited with code {code}"),
                (None, None) => "exited".to_string(),
            };
            let (kind, why) = if *exited_after_disconnect {
                ("exit", "as asked")
            } else {
                ("crash", "unasked: a crash")
            };
            (kind, Some(*worker), format!("worker {worker} {how}, {why}"))
        }
        Event::Error { worker, error } => {
            ("error", Some(*worker), format!("worker {worker}: {error}"))
        }
        _ => return None,
    })
}

fn supervisor(ev: &SupervisorEvent) -> Row {
    let worker = match ev {
        SupervisorEvent::Recycle { worker, .. } => Some(*worker),
        SupervisorEvent::Respawn { previous, .. } => Some(*previous),
        SupervisorEvent::Reload(ReloadPhase::Replaced { new, .. }) => Some(*new),
        _ => None,
    };
    (ev.name(), worker, ev.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::ExitStatus;

    #[test]
    fn an_exit_names_its_signal_and_whether_it_was_asked_for() {
        let ev = ClusterEvent::Core(Event::Exit {
            worker: 4,
            status: ExitStatus {
                code: None,
                signal: Some(crate::Signal::SIGKILL),
            },
            exited_after_disconnect: false,
        });
        let row = row_of(&ev).unwrap();
        assert_eq!(row.kind, "crash");
        assert_eq!(row.worker, Some(4));
        assert_eq!(row.text, "worker 4 killed by SIGKILL, unasked: a crash");
        let ev = ClusterEvent::Core(Event::Exit {
            worker: 5,
            status: ExitStatus {
                code: Some(0),
                signal: None,
            },
            exited_after_disconnect: true,
        });
        assert_eq!(
            row_of(&ev).unwrap().text,
            "worker 5 exited with code 0, as asked"
        );
    }

    #[test]
    fn a_breaker_trip_is_listed_with_its_reason() {
        let ev = ClusterEvent::Supervisor(SupervisorEvent::BreakerTripped {
            slot: 1,
            reason: "slot 1: 5 deaths before ready".into(),
        });
        let row = row_of(&ev).unwrap();
        assert_eq!(
            (row.kind, row.text.as_str()),
            ("breaker_tripped", "slot 1: 5 deaths before ready")
        );
    }
}
