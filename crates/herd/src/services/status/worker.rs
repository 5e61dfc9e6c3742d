//! A worker's side of the status registry: its named statuses, each a
//! view and maybe an update, answered when the primary asks.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::wire::{Ask, Tell};
use super::SERVICE;
use crate::services::{Pushed, ServiceRequest, WorkerService};
use crate::{Error, Worker};

type Fut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type View = Arc<dyn Fn() -> Fut<Result<Value, String>> + Send + Sync>;
type Update = Arc<dyn Fn(Value) -> Fut<Result<(), String>> + Send + Sync>;

#[derive(Clone)]
struct Entry {
    view: View,
    update: Option<Update>,
}

/// A worker's statuses, by name.
#[derive(Default)]
struct Entries(Mutex<BTreeMap<String, Entry>>);

/// This worker's side of the status registry, from
/// [`Worker::statuses`](crate::Worker::statuses). Cheap to clone.
#[derive(Clone)]
pub struct WorkerStatuses {
    svc: WorkerService,
    entries: Arc<Entries>,
}

impl std::fmt::Debug for WorkerStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.entries.0.lock().unwrap().keys().cloned().collect();
        f.debug_struct("WorkerStatuses")
            .field("names", &names)
            .finish()
    }
}

impl Worker {
    /// This worker's side of the [status registry](crate::services::status).
    ///
    /// # Errors
    /// [`Error::Service`] if the application registered [`SERVICE`] itself.
    pub fn statuses(&self) -> Result<WorkerStatuses, Error> {
        let made = self.slots().get_or_try_init(SERVICE, || {
            let entries = Arc::new(Entries::default());
            let mine = entries.clone();
            let svc = self.service_with(SERVICE, move |pushed, _credit| match pushed {
                Pushed::Request(r) => answer(&mine, r),
                Pushed::Message(_) => {}
            })?;
            Ok(WorkerStatuses { svc, entries })
        })?;
        Ok((*made).clone())
    }
}

/// The primary asks: the view or the update runs on a task of its own,
/// so one that takes long (or never ends) holds up nothing else.
fn answer(entries: &Entries, r: ServiceRequest) {
    let ask: Ask = match r.decode() {
        Ok(a) => a,
        Err(e) => {
            let _ = r.reply_error(&format!("not a status request: {e}"));
            return;
        }
    };
    let map = entries.0.lock().unwrap();
    match ask {
        Ask::List => {
            let list: Vec<Tell> = map
                .iter()
                .map(|(name, e)| Tell::Add {
                    name: name.clone(),
                    update: e.update.is_some(),
                })
                .collect();
            let _ = r.reply(&list);
        }
        Ask::Get { name } => match map.get(&name) {
            Some(e) => {
                let view = e.view.clone();
                tokio::spawn(async move {
                    match view().await {
                        Ok(v) => drop(r.reply(&v)),
                        Err(why) => drop(r.reply_error(&why)),
                    }
                });
            }
            None => drop(r.reply_error(&format!("no status {name:?} in this worker"))),
        },
        Ask::Set { name, value } => match map.get(&name).map(|e| e.update.clone()) {
            Some(Some(update)) => {
                tokio::spawn(async move {
                    match update(value).await {
                        Ok(()) => drop(r.reply(&true)),
                        Err(why) => drop(r.reply_error(&why)),
                    }
                });
            }
            Some(None) => drop(r.reply_error(&format!("status {name:?} has no update here"))),
            None => drop(r.reply_error(&format!("no status {name:?} in this worker"))),
        },
    }
}

impl WorkerStatuses {
    /// Registers the status `name` with its `view`, run each time the
    /// primary asks (`get_status`), on a task of its own. Registering a
    /// name again replaces it.
    ///
    /// # Errors
    /// [`Error::ChannelClosed`]; [`Error::Service`] for a name of 0 or more
    /// than 128 bytes.
    pub async fn register<F, Fu, T>(&self, name: &str, view: F) -> Result<(), Error>
    where
        F: Fn() -> Fu + Send + Sync + 'static,
        Fu: Future<Output = T> + Send + 'static,
        T: Serialize,
    {
        self.add(name, view_of(view), None).await
    }

    /// Registers `name` with a `view` and an `update`, which
    /// `set_status(name, value)` in the primary calls with the value
    /// decoded as `V`; an `Err(why)` is reported to the primary as a
    /// refusal.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub async fn register_with_update<F, Fu, T, U, Uf, V>(
        &self,
        name: &str,
        view: F,
        update: U,
    ) -> Result<(), Error>
    where
        F: Fn() -> Fu + Send + Sync + 'static,
        Fu: Future<Output = T> + Send + 'static,
        T: Serialize,
        U: Fn(V) -> Uf + Send + Sync + 'static,
        Uf: Future<Output = Result<(), String>> + Send + 'static,
        V: DeserializeOwned + Send + 'static,
    {
        let update = Arc::new(update);
        let update: Update = Arc::new(move |value: Value| {
            let update = update.clone();
            Box::pin(async move {
                let v: V = serde_json::from_value(value)
                    .map_err(|e| format!("the value does not fit this status: {e}"))?;
                update(v).await
            })
        });
        self.add(name, view_of(view), Some(update)).await
    }

    /// Removes the status `name` here (the primary lists it no more for
    /// this worker).
    ///
    /// # Errors
    /// [`Error::ChannelClosed`].
    pub async fn unregister(&self, name: &str) -> Result<(), Error> {
        self.entries.0.lock().unwrap().remove(name);
        self.svc.send(&Tell::Remove { name: name.into() }).await
    }

    /// The names registered here.
    pub fn names(&self) -> Vec<String> {
        self.entries.0.lock().unwrap().keys().cloned().collect()
    }

    async fn add(&self, name: &str, view: View, update: Option<Update>) -> Result<(), Error> {
        super::wire::check_name(name)?;
        let tell = Tell::Add {
            name: name.into(),
            update: update.is_some(),
        };
        self.entries
            .0
            .lock()
            .unwrap()
            .insert(name.into(), Entry { view, update });
        self.svc.send(&tell).await
    }
}

fn view_of<F, Fu, T>(view: F) -> View
where
    F: Fn() -> Fu + Send + Sync + 'static,
    Fu: Future<Output = T> + Send + 'static,
    T: Serialize,
{
    Arc::new(move || {
        let fut = view();
        Box::pin(async move {
            let v = fut.await;
            serde_json::to_value(v).map_err(|e| format!("the view's value cannot be encoded: {e}"))
        })
    })
}
