//! The primary's side of the status registry: who registered what, and
//! the calls that ask every worker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::wire::{Ask, Tell};
use super::{HEARTBEAT, SERVICE};
use crate::services::{Inbox, PrimaryService, ServiceEvent};
use crate::{Error, Primary};

type PrimaryView = Arc<dyn Fn() -> Value + Send + Sync>;

#[derive(Default)]
struct State {
    /// By name: the workers that registered it, and whether each has an
    /// update.
    workers: BTreeMap<String, BTreeMap<u32, bool>>,
    /// Statuses of the primary's own side.
    primary: BTreeMap<String, PrimaryView>,
}

impl State {
    fn tell(&mut self, worker: u32, tell: Tell) {
        match tell {
            Tell::Add { name, update } => {
                if super::wire::check_name(&name).is_ok() {
                    self.workers.entry(name).or_default().insert(worker, update);
                }
            }
            Tell::Remove { name } => self.remove(worker, Some(&name)),
        }
    }

    fn remove(&mut self, worker: u32, name: Option<&str>) {
        self.workers.retain(|n, ws| {
            if name.map_or(true, |name| name == n) {
                ws.remove(&worker);
            }
            !ws.is_empty()
        });
    }
}

/// One registered status, as [`StatusRegistry::names`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatusName {
    /// The status's name.
    pub name: String,
    /// The workers that registered it, by id.
    pub workers: Vec<u32>,
    /// Those of them that registered an update too.
    pub updatable: Vec<u32>,
    /// Whether the primary's side holds it (as the supervisor's replace
    /// queue).
    pub primary: bool,
}

/// What [`StatusRegistry::get_status`] collected.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatusReport {
    /// The status's name.
    pub name: String,
    /// The primary's side's view, for a status it holds.
    pub primary: Option<Value>,
    /// Each worker's view, by id.
    pub answers: BTreeMap<u32, Value>,
    /// Workers that answered with an error (their view failed, or they no
    /// longer have the status), and why.
    pub failed: BTreeMap<u32, String>,
    /// Workers that did not answer within the timeout (or left meanwhile).
    pub missing: Vec<u32>,
}

/// What [`StatusRegistry::set_status`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SetReport {
    /// The status's name.
    pub name: String,
    /// Workers whose update applied the value.
    pub applied: Vec<u32>,
    /// Workers that refused it (their update said why, or they have no
    /// update for it).
    pub refused: BTreeMap<u32, String>,
    /// Workers that did not answer within the timeout (or left meanwhile).
    pub missing: Vec<u32>,
}

/// The primary's side of the status registry, from
/// [`Primary::statuses`](crate::Primary::statuses): see the
/// [module docs](super). Cheap to clone.
#[derive(Clone)]
pub struct StatusRegistry {
    svc: PrimaryService,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for StatusRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl Primary {
    /// This primary's [status registry](crate::services::status), made
    /// on the first call. Made after workers registered statuses, it asks
    /// each connected worker for its list, so none is missed.
    ///
    /// # Errors
    /// [`Error::Service`] if the application registered [`SERVICE`] itself.
    pub fn statuses(&self) -> Result<StatusRegistry, Error> {
        let made = self.inner.slots.get_or_try_init(SERVICE, || {
            let (svc, inbox) = self.service(SERVICE)?;
            let reg = StatusRegistry {
                svc,
                state: Arc::default(),
                changed: watch::channel(0).0,
            };
            self.inner.rt.spawn(track(reg.clone(), inbox));
            let late = reg.clone();
            self.inner.rt.spawn(async move { late.ask_lists().await });
            Ok(reg)
        })?;
        Ok((*made).clone())
    }
}

/// Keeps the registry: what workers tell, and their departures.
async fn track(reg: StatusRegistry, mut inbox: Inbox<ServiceEvent>) {
    while let Some(event) = inbox.recv().await {
        match event {
            ServiceEvent::Message { worker, message } => match message.decode::<Tell>() {
                Ok(tell) => reg.update(|st| st.tell(worker, tell)),
                Err(e) => tracing::warn!(worker, error = %e, "bad status registration; dropped"),
            },
            ServiceEvent::Request { request, .. } => {
                let _ = request.reply_error("the status registry answers no requests");
            }
            ServiceEvent::WorkerGone { worker } => reg.update(|st| st.remove(worker, None)),
        }
    }
}

impl StatusRegistry {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
    }

    /// Asks every connected worker what it registered (for a registry made
    /// after they did).
    async fn ask_lists(&self) {
        for id in self.svc.workers() {
            let list: Result<Vec<Tell>, _> = self
                .svc
                .request(id, &Ask::List, Duration::from_secs(5))
                .await;
            if let Ok(list) = list {
                self.update(|st| list.into_iter().for_each(|t| st.tell(id, t)));
            }
        }
    }

    /// Waits until the list of names changes (a worker registers or
    /// unregisters a status, or leaves). Cancel safe.
    pub async fn changed(&self) {
        let mut rx = self.changed.subscribe();
        let _ = rx.changed().await;
    }

    /// The registered statuses, by name: the built-in [`HEARTBEAT`] (every
    /// connected worker), the primary side's, and the workers'.
    pub fn names(&self) -> Vec<StatusName> {
        let st = self.state.lock().unwrap();
        let mut names: BTreeMap<String, StatusName> = BTreeMap::new();
        let blank = |name: &str| StatusName {
            name: name.into(),
            workers: Vec::new(),
            updatable: Vec::new(),
            primary: false,
        };
        let beats = names
            .entry(HEARTBEAT.into())
            .or_insert_with(|| blank(HEARTBEAT));
        beats.workers = self.beating();
        for name in st.primary.keys() {
            names
                .entry(name.clone())
                .or_insert_with(|| blank(name))
                .primary = true;
        }
        for (name, ws) in &st.workers {
            let entry = names.entry(name.clone()).or_insert_with(|| blank(name));
            entry.workers = ws.keys().copied().collect();
            entry.updatable = ws.iter().filter(|(_, u)| **u).map(|(w, _)| *w).collect();
        }
        names.into_values().collect()
    }

    /// The workers [`HEARTBEAT`] covers: those on a channel, and foreign
    /// ones while they live (their beat is what the primary keeps of
    /// their notices: `HERD_HANDLED=`, `WATCHDOG=1`, or its own tick).
    fn beating(&self) -> Vec<u32> {
        let mut ids = self.svc.workers();
        let foreign = self.svc.primary().workers().into_iter();
        ids.extend(
            foreign
                .filter(|w| w.is_foreign() && !w.is_dead())
                .map(|w| w.id()),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Registers a status the primary's side holds: `view` runs (on the
    /// caller's thread, so it must be quick) each time it is read. Listed
    /// with `primary: true`; its view is a [`StatusReport`]'s `primary`.
    ///
    /// # Errors
    /// [`Error::Service`] for a malformed name, or [`HEARTBEAT`].
    pub fn register_primary(
        &self,
        name: &str,
        view: impl Fn() -> Value + Send + Sync + 'static,
    ) -> Result<(), Error> {
        super::wire::check_name(name)?;
        if name == HEARTBEAT {
            return Err(Error::Service {
                name: SERVICE.into(),
                why: format!("{HEARTBEAT:?} is built in"),
            });
        }
        self.update(|st| {
            st.primary.insert(name.into(), Arc::new(view));
        });
        Ok(())
    }

    fn holders(&self, name: &str) -> (Option<PrimaryView>, Vec<u32>) {
        let st = self.state.lock().unwrap();
        let workers = st
            .workers
            .get(name)
            .map(|ws| ws.keys().copied().collect())
            .unwrap_or_default();
        (st.primary.get(name).cloned(), workers)
    }

    /// Every holder's view of `name`, collected within `timeout`: the
    /// workers that answered, those that failed, and those that did not
    /// answer in time (a slow worker costs the call no more than the
    /// timeout, and fails nothing else). [`HEARTBEAT`] is answered by the
    /// primary at once.
    pub async fn get_status(&self, name: &str, timeout: Duration) -> StatusReport {
        let mut report = StatusReport {
            name: name.into(),
            ..StatusReport::default()
        };
        if name == HEARTBEAT {
            for id in self.beating() {
                let beat = self
                    .svc
                    .primary()
                    .worker(id)
                    .and_then(|w| w.last_heartbeat());
                match beat {
                    Some((_, beat)) => {
                        report
                            .answers
                            .insert(id, serde_json::to_value(beat).unwrap_or_default());
                    }
                    None => report.missing.push(id),
                }
            }
            return report;
        }
        let (primary, workers) = self.holders(name);
        report.primary = primary.map(|view| view());
        let ask = Ask::Get { name: name.into() };
        for (id, answer) in self.ask_all(workers, ask, timeout).await {
            match answer {
                Ok(v) => drop(report.answers.insert(id, v)),
                Err(Answer::Refused(why)) => drop(report.failed.insert(id, why)),
                Err(Answer::Missing) => report.missing.push(id),
            }
        }
        report
    }

    /// Calls the update of `name` in every worker that registered it, with
    /// `value`, and reports within `timeout` who applied it, who refused
    /// (and why), and who did not answer.
    ///
    /// # Errors
    /// [`Error::Codec`] if `value` cannot be encoded (nothing is sent).
    pub async fn set_status<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<SetReport, Error> {
        let value = serde_json::to_value(value)?;
        let (_, workers) = self.holders(name);
        let mut report = SetReport {
            name: name.into(),
            ..SetReport::default()
        };
        let ask = Ask::Set {
            name: name.into(),
            value,
        };
        for (id, answer) in self.ask_all(workers, ask, timeout).await {
            match answer {
                Ok(_) => report.applied.push(id),
                Err(Answer::Refused(why)) => drop(report.refused.insert(id, why)),
                Err(Answer::Missing) => report.missing.push(id),
            }
        }
        Ok(report)
    }

    /// Asks each of `workers` at once, each within `timeout`.
    async fn ask_all(
        &self,
        workers: Vec<u32>,
        ask: Ask,
        timeout: Duration,
    ) -> BTreeMap<u32, Result<Value, Answer>> {
        let mut set = tokio::task::JoinSet::new();
        for id in workers {
            let (svc, ask) = (self.svc.clone(), ask.clone());
            set.spawn(async move {
                let r: Result<Value, Error> = svc.request(id, &ask, timeout).await;
                let r = r.map_err(|e| match e {
                    Error::NoReply { why, .. } if !why.contains("disconnected") => {
                        Answer::Refused(why)
                    }
                    _ => Answer::Missing,
                });
                (id, r)
            });
        }
        let mut out = BTreeMap::new();
        while let Some(done) = set.join_next().await {
            if let Ok((id, r)) = done {
                out.insert(id, r);
            }
        }
        out
    }
}

enum Answer {
    Refused(String),
    Missing,
}
