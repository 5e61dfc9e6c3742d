//! The dashboard's hub: one task on the monitor's runtime that reads the
//! cluster once per tick (and soon after each lifecycle event), keeps the
//! page's short memory (each worker's requests/s and each named cache's
//! hits/s of the last minutes, the recent events), encodes one frame and hands the same bytes to every
//! open page. A page whose queue is full (it does not read) is dropped,
//! never buffered for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::events::{row_of, EventRow};
use crate::monitor::status::Document;
use crate::Supervisor;

/// Pages open at once; one more is answered 503.
pub(crate) const MAX_CLIENTS: usize = 32;
/// Frames queued for one page beyond what its socket holds; a page this
/// far behind is dropped.
const CLIENT_QUEUE: usize = 8;
/// Samples kept per worker for its sparkline (at the default tick, the
/// last three minutes).
pub(crate) const HISTORY: usize = 180;
/// Recent events kept, newest first on the page.
pub(crate) const EVENTS: usize = 100;
/// After an event, how long to wait for the ones that come with it before
/// a frame goes out.
const SETTLE: Duration = Duration::from_millis(20);

/// One open page: where its frames go, and the switch that closes its
/// connection when it falls behind.
struct Client {
    tx: mpsc::Sender<Bytes>,
    kill: Arc<Notify>,
}

/// What the page remembers between frames.
#[derive(Default)]
struct Memory {
    /// Requests/s per tick, by worker id, oldest first.
    history: HashMap<u32, VecDeque<Option<f64>>>,
    /// CPU seconds at the last tick, by worker, to work out a CPU share.
    cpu: HashMap<u32, (Instant, f64)>,
    /// The CPU share (percent of one core) over the last tick.
    cpu_percent: HashMap<u32, f64>,
    /// Each named cache's hits/s per tick, oldest first.
    cache_history: BTreeMap<String, VecDeque<f64>>,
    /// Each cache's hits at the last tick, to work out its rate.
    cache_hits: HashMap<String, (Instant, u64)>,
    events: VecDeque<EventRow>,
}

/// What the hub shares with the route that opens pages.
pub(crate) struct Hub {
    clients: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
    /// The last frame, for a page that opens between two.
    latest: Mutex<Option<Bytes>>,
}

/// One frame: the /status document, and the page's memory.
#[derive(Serialize)]
struct Frame<'a> {
    status: &'a Document,
    history: BTreeMap<u32, &'a VecDeque<Option<f64>>>,
    cpu_percent: BTreeMap<u32, f64>,
    /// Each named cache's hits/s, one per tick.
    cache_history: &'a BTreeMap<String, VecDeque<f64>>,
    events: &'a VecDeque<EventRow>,
    tick_ms: u64,
    /// Where mark down and up are (`ROOT/markDown`).
    ecv_root: &'a str,
}

/// A page's place in the hub: its queue and the permit that counts it.
pub(crate) struct Opened {
    pub rx: mpsc::Receiver<Bytes>,
    pub permit: OwnedSemaphorePermit,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            clients: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            latest: Mutex::new(None),
        })
    }

    /// A new page, with the last frame already queued; `None` when
    /// [`MAX_CLIENTS`] are open.
    pub fn open(&self, kill: Arc<Notify>) -> Option<Opened> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        if let Some(frame) = self.latest.lock().unwrap().clone() {
            let _ = tx.try_send(frame);
        }
        self.clients.lock().unwrap().push(Client { tx, kill });
        Some(Opened { rx, permit })
    }

    /// Sends `frame` to every page; drops those that are gone or behind.
    fn fan_out(&self, frame: Bytes) {
        *self.latest.lock().unwrap() = Some(frame.clone());
        self.clients
            .lock()
            .unwrap()
            .retain(|c| match c.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!("dashboard: dropping a page that does not keep up");
                    c.kill.notify_one();
                    false
                }
            });
    }

    /// Pages open now (for tests and logs).
    #[cfg(test)]
    pub fn open_pages(&self) -> usize {
        MAX_CLIENTS - self.slots.available_permits()
    }
}

/// Runs the hub until the monitor is dropped: a frame every `tick`, and
/// one [`SETTLE`] after a burst of events.
pub(crate) async fn run(hub: Arc<Hub>, sup: Supervisor, tick: Duration, ecv_root: String) {
    let mut events = sup.cluster_events();
    let mut memory = Memory::default();
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        let sample = tokio::select! {
            _ = timer.tick() => true,
            ev = events.next(), if open => {
                match ev {
                    Some(ev) => remember(&mut memory, &ev),
                    None => open = false,
                }
                // What comes with it (a fork and its successor's online,
                // the reload phase and the exit) goes in the same frame.
                let settle = tokio::time::sleep(SETTLE);
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        ev = events.next(), if open => match ev {
                            Some(ev) => remember(&mut memory, &ev),
                            None => open = false,
                        },
                    }
                }
                false
            }
        };
        let Some(doc) = read(&sup).await else {
            continue;
        };
        if sample {
            memory.sample(&doc);
        }
        let frame = Frame {
            status: &doc,
            history: memory.history.iter().map(|(k, v)| (*k, v)).collect(),
            cpu_percent: memory.cpu_percent.iter().map(|(k, v)| (*k, *v)).collect(),
            cache_history: &memory.cache_history,
            events: &memory.events,
            tick_ms: tick.as_millis() as u64,
            ecv_root: &ecv_root,
        };
        match serde_json::to_vec(&frame) {
            Ok(json) => hub.fan_out(sse("snapshot", &json)),
            Err(e) => tracing::warn!(error = %e, "dashboard: cannot encode a frame"),
        }
    }
}

fn remember(memory: &mut Memory, ev: &crate::supervise::ClusterEvent) {
    if let Some(row) = row_of(ev) {
        memory.events.push_front(row);
        memory.events.truncate(EVENTS);
    }
}

impl Memory {
    /// One tick's sample of every live worker; forgets the gone ones.
    fn sample(&mut self, doc: &Document) {
        let now = Instant::now();
        let live: Vec<u32> = doc.workers.iter().map(|w| w.status.id).collect();
        self.history.retain(|id, _| live.contains(id));
        self.cpu.retain(|id, _| live.contains(id));
        self.cpu_percent.retain(|id, _| live.contains(id));
        for w in &doc.workers {
            let s = &w.status;
            let h = self.history.entry(s.id).or_default();
            h.push_back(s.requests_per_sec.map(|r| (r * 10.0).round() / 10.0));
            while h.len() > HISTORY {
                h.pop_front();
            }
            if let Some(cpu) = s.cpu_secs {
                if let Some((at, before)) = self.cpu.insert(s.id, (now, cpu)) {
                    let dt = now.saturating_duration_since(at).as_secs_f64();
                    if dt > 0.0 {
                        let pct = ((cpu - before).max(0.0) / dt * 100.0 * 10.0).round() / 10.0;
                        self.cpu_percent.insert(s.id, pct);
                    }
                }
            }
        }
        self.sample_caches(doc, now);
    }

    /// Each named cache's hits/s since the last tick.
    fn sample_caches(&mut self, doc: &Document, now: Instant) {
        self.cache_history
            .retain(|name, _| doc.caches.contains_key(name));
        self.cache_hits
            .retain(|name, _| doc.caches.contains_key(name));
        for (name, stats) in &doc.caches {
            let before = self.cache_hits.insert(name.clone(), (now, stats.hits));
            let Some((at, hits)) = before else { continue };
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt <= 0.0 {
                continue;
            }
            let rate = (stats.hits.saturating_sub(hits) as f64 / dt * 10.0).round() / 10.0;
            let h = self.cache_history.entry(name.clone()).or_default();
            h.push_back(rate);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
    }
}

/// The cluster now, read off the runtime's threads (it reads /proc).
async fn read(sup: &Supervisor) -> Option<Document> {
    let sup = sup.clone();
    tokio::task::spawn_blocking(move || {
        let policy = sup.primary().policy().to_string();
        // The registry's names (a lock, no question to any worker): the
        // values are read on a page's click, from /statuses/NAME.
        Document::new(sup.status(), sup.primary().listens(), policy).with_primary(sup.primary())
    })
    .await
    .ok()
}

/// One server-sent event: `event: NAME`, the data on one line.
pub(crate) fn sse(name: &str, data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(data.len() + name.len() + 16);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    // JSON from serde_json holds no raw newline; a stray one would end
    // the event early, so none may pass.
    b.extend(data.iter().map(|&c| if c == b'\n' { b' ' } else { c }));
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_that_does_not_read_is_dropped_and_its_switch_thrown() {
        let hub = Hub::new();
        let kill = Arc::new(Notify::new());
        let mut page = hub.open(kill.clone()).unwrap();
        let reader = hub.open(Arc::new(Notify::new())).unwrap();
        drop(reader);
        for i in 0..CLIENT_QUEUE {
            hub.fan_out(Bytes::from(format!("{i}")));
        }
        // The closed one is forgotten; the full one still counted.
        assert_eq!(hub.clients.lock().unwrap().len(), 1);
        hub.fan_out(Bytes::from_static(b"one too many"));
        assert!(hub.clients.lock().unwrap().is_empty());
        assert_eq!(page.rx.try_recv().unwrap(), Bytes::from_static(b"0"));
        // The switch holds a permit: the connection's task sees it at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), kill.notified())
                .await
                .expect("the slow page's switch was thrown")
        });
    }

    #[test]
    fn pages_beyond_the_limit_are_refused_until_one_closes() {
        let hub = Hub::new();
        let pages: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| hub.open(Arc::new(Notify::new())).unwrap())
            .collect();
        assert!(hub.open(Arc::new(Notify::new())).is_none());
        assert_eq!(hub.open_pages(), MAX_CLIENTS);
        drop(pages);
        assert!(hub.open(Arc::new(Notify::new())).is_some());
    }

    #[test]
    fn an_event_is_one_line_of_data() {
        assert_eq!(
            sse("snapshot", b"{\"a\":\n1}"),
            Bytes::from_static(b"event: snapshot\ndata: {\"a\": 1}\n\n")
        );
    }
}
