//! Unit tests of the supervisor's decisions, in-process against a fake
//! core. Time moves only when a test says so: each step is given a later
//! `Instant`, nothing sleeps.

mod health;
mod operator;
mod recycle;
mod reload;
mod respawn;
mod scale;
mod the_end;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::core::{Core, Kill, WorkerFacts};
use super::events::{Emitter, SupervisorEvent, SupervisorEvents};
use super::machine::Machine;
use super::status::SlotStatus;
use super::Supervision;
use crate::primary::{Event, ExitStatus};
use crate::{Error, Signal};

/// What the machine asked of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Fork(u32),
    Successor { old: u32, new: u32 },
    Disconnect(u32),
    Kill(u32, Kill),
}

#[derive(Default)]
struct FakeState {
    last_id: u32,
    now: Option<Instant>,
    workers: BTreeMap<u32, WorkerFacts>,
    rss: HashMap<u32, u64>,
    calls: Vec<Call>,
    fail_forks: bool,
}

/// A core of fake workers: they live until the test says they exited.
#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn start(&self, call: impl FnOnce(u32) -> Call) -> Result<u32, Error> {
        let mut s = self.0.lock().unwrap();
        if s.fail_forks {
            return Err(Error::Unsupported("no fork today".into()));
        }
        s.last_id += 1;
        let id = s.last_id;
        let started = s.now.expect("the rig sets the time");
        s.workers.insert(
            id,
            WorkerFacts {
                ready: false,
                started,
                leaving: false,
                heartbeat: None,
                health: None,
                unready: None,
                drained: false,
            },
        );
        s.calls.push(call(id));
        Ok(id)
    }
}

impl Core for Fake {
    fn fork(&self) -> Result<u32, Error> {
        self.start(Call::Fork)
    }
    fn fork_successor(&self, old: u32) -> Result<u32, Error> {
        self.start(|new| Call::Successor { old, new })
    }
    fn disconnect(&self, id: u32) {
        let mut s = self.0.lock().unwrap();
        if let Some(w) = s.workers.get_mut(&id) {
            w.leaving = true;
        }
        s.calls.push(Call::Disconnect(id));
    }
    fn kill(&self, id: u32, how: Kill) {
        let mut s = self.0.lock().unwrap();
        if let Some(w) = s.workers.get_mut(&id) {
            w.leaving |= how == Kill::Deliberate;
        }
        s.calls.push(Call::Kill(id, how));
    }
    fn worker(&self, id: u32) -> Option<WorkerFacts> {
        self.0.lock().unwrap().workers.get(&id).cloned()
    }
    fn rss(&self, id: u32) -> Option<u64> {
        self.0.lock().unwrap().rss.get(&id).copied()
    }
    fn drain(&self, id: u32, on: bool) -> Result<(), Error> {
        let mut s = self.0.lock().unwrap();
        let w = s.workers.get_mut(&id).ok_or(Error::NoSuchWorker { id })?;
        w.drained = on;
        Ok(())
    }
}

/// A machine over a fake core, and the test's clock.
pub struct Rig {
    pub m: Machine<Fake>,
    pub core: Fake,
    pub t0: Instant,
    pub now: Instant,
    events: SupervisorEvents,
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Rig {
    /// A machine as `cfg` says, started at time 0.
    pub fn new(cfg: Supervision) -> Rig {
        let core = Fake::default();
        let t0 = Instant::now();
        core.0.lock().unwrap().now = Some(t0);
        let emitter = Arc::new(Emitter::default());
        let events = emitter.subscribe();
        let mut m = Machine::new(cfg, core.clone(), emitter, t0);
        m.start(t0);
        Rig {
            m,
            core,
            t0,
            now: t0,
            events,
        }
    }

    /// Moves the clock to `t` ms after the start.
    pub fn at(&mut self, t: u64) -> &mut Rig {
        self.now = self.t0 + ms(t);
        assert!(
            self.now >= self.core.0.lock().unwrap().now.unwrap(),
            "time goes forward"
        );
        self.core.0.lock().unwrap().now = Some(self.now);
        self
    }

    pub fn tick(&mut self) -> &mut Rig {
        self.m.tick(self.now);
        self
    }

    /// Worker `id` says it is ready (and beats).
    pub fn ready(&mut self, id: u32) -> &mut Rig {
        {
            let mut s = self.core.0.lock().unwrap();
            let w = s.workers.get_mut(&id).expect("a live worker");
            w.ready = true;
            w.heartbeat = Some((self.now, 0));
        }
        self.m.on_event(&Event::Ready { worker: id }, self.now);
        self
    }

    /// Worker `id` sends a heartbeat saying `health`.
    pub fn health(&mut self, id: u32, health: crate::supervise::WorkerHealth) -> &mut Rig {
        let now = self.now;
        {
            let mut s = self.core.0.lock().unwrap();
            let w = s.workers.get_mut(&id).unwrap();
            w.heartbeat = Some((now, 0));
            w.health = Some(health);
        }
        self
    }

    /// Worker `id` sends a heartbeat with `handled` connections.
    pub fn beat(&mut self, id: u32, handled: u64) -> &mut Rig {
        let now = self.now;
        let mut s = self.core.0.lock().unwrap();
        s.workers.get_mut(&id).unwrap().heartbeat = Some((now, handled));
        drop(s);
        self
    }

    pub fn set_rss(&mut self, id: u32, bytes: u64) -> &mut Rig {
        self.core.0.lock().unwrap().rss.insert(id, bytes);
        self
    }

    pub fn fail_forks(&mut self, fail: bool) -> &mut Rig {
        self.core.0.lock().unwrap().fail_forks = fail;
        self
    }

    /// Worker `id` exits with `code` (deliberately if it was asked to go).
    pub fn exit(&mut self, id: u32, code: i32) -> &mut Rig {
        self.ended(
            id,
            ExitStatus {
                code: Some(code),
                signal: None,
            },
        )
    }

    /// Worker `id` dies of SIGKILL.
    pub fn killed(&mut self, id: u32) -> &mut Rig {
        self.ended(
            id,
            ExitStatus {
                code: None,
                signal: Some(Signal::SIGKILL),
            },
        )
    }

    fn ended(&mut self, id: u32, status: ExitStatus) -> &mut Rig {
        let w = self.core.0.lock().unwrap().workers.remove(&id);
        let w = w.expect("a live worker");
        let ev = Event::Exit {
            worker: id,
            status,
            exited_after_disconnect: w.leaving,
        };
        self.m.on_event(&ev, self.now);
        self
    }

    /// The core calls since the last look.
    pub fn calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.core.0.lock().unwrap().calls)
    }

    /// The supervisor's events since the last look, but for the health
    /// verdicts (see [`all_events`](Self::all_events)).
    pub fn events(&mut self) -> Vec<SupervisorEvent> {
        self.all_events()
            .into_iter()
            .filter(|e| !matches!(e, SupervisorEvent::Health { .. }))
            .collect()
    }

    /// Every event of the supervisor since the last look.
    pub fn all_events(&mut self) -> Vec<SupervisorEvent> {
        let _ = self.m.take_emitted();
        std::iter::from_fn(|| self.events.try_next()).collect()
    }

    /// The live workers, by id.
    pub fn live(&self) -> Vec<u32> {
        self.core
            .0
            .lock()
            .unwrap()
            .workers
            .keys()
            .copied()
            .collect()
    }

    pub fn slot(&self, n: usize) -> SlotStatus {
        let s = self.m.snapshot(self.now).status;
        s.slots.into_iter().find(|s| s.slot == n).expect("a slot")
    }

    pub fn ready_count(&self) -> usize {
        self.m.snapshot(self.now).status.ready
    }
}

/// A supervision without the nanny (fake workers send no heartbeats
/// unless told).
pub fn quiet(n: usize) -> Supervision {
    Supervision::new(n).heartbeat_timeout(None)
}

/// `n` workers, all ready at time 0: ids 1..=n.
pub fn ready_cluster(cfg: Supervision) -> Rig {
    let n = cfg.workers as u32;
    let mut r = Rig::new(cfg);
    assert_eq!(r.calls(), (1..=n).map(Call::Fork).collect::<Vec<_>>());
    for id in 1..=n {
        r.ready(id);
    }
    r.events();
    r
}
