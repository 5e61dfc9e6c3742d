//! The primary's systemd lifecycle: READY=1 once the wanted workers are
//! first ready, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around each
//! reload, STOPPING=1 on shutdown, STATUS= when the picture changes, and
//! WATCHDOG=1 at the manager's interval.

use std::sync::Arc;
use std::time::Duration;

use super::events::{ReloadPhase, SupervisorEvent};
use super::status::ClusterStatus;
use crate::systemd::ServiceManager;

pub(crate) struct Notify {
    manager: Option<Arc<ServiceManager>>,
    ready_sent: bool,
    stopping: bool,
    /// The last STATUS= sent.
    status: String,
}

impl Notify {
    pub fn new(manager: Option<Arc<ServiceManager>>) -> Notify {
        Notify {
            manager,
            ready_sent: false,
            stopping: false,
            status: String::new(),
        }
    }

    /// How often the manager wants `WATCHDOG=1`.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.manager.as_ref().and_then(|m| m.watchdog())
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// After a step of the supervisor: what it said, and where it left the
    /// cluster.
    pub fn step(&mut self, events: &[SupervisorEvent], status: &ClusterStatus) {
        if self.manager.is_none() {
            return;
        }
        for ev in events {
            match ev {
                SupervisorEvent::ClusterReady { .. } if !self.ready_sent => {
                    self.ready_sent = true;
                    self.send("READY=1");
                }
                SupervisorEvent::Reload(ReloadPhase::Started { .. }) => {
                    self.status = "reloading".into();
                    self.send(&format!(
                        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                        crate::systemd::monotonic_usec()
                    ));
                }
                SupervisorEvent::Reload(
                    ReloadPhase::Finished { .. } | ReloadPhase::Aborted { .. },
                ) if self.ready_sent => self.send("READY=1"),
                SupervisorEvent::Stopping => {
                    self.stopping = true;
                    self.send("STOPPING=1\nSTATUS=stopping");
                }
                _ => {}
            }
        }
        if self.stopping {
            return;
        }
        let text = match &status.reload {
            Some(r) => format!("reloading: {} of {} workers replaced", r.replaced, r.total),
            None => format!("{} of {} workers ready", status.ready, status.wanted),
        };
        if text != self.status {
            self.send(&format!("STATUS={text}"));
            self.status = text;
        }
    }

    fn send(&self, msg: &str) {
        if let Some(m) = &self.manager {
            if let Err(e) = m.notify(msg) {
                tracing::debug!("cannot notify the service manager ({msg:?}): {e}");
            }
        }
    }
}
