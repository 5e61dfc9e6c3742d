//! The status registry's scenario (`SVC=status`): three workers register
//! `load` (worker 3's view and update never answer; worker 2 refuses
//! values over 100) and worker 1 a view-only `name`; the primary reads and
//! sets them, then SIGKILLs worker 1 and lists the names again. A
//! supervisor (not run) registers its replace queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::services::status::{HEARTBEAT, REPLACE_QUEUE};
use herd::services::StatusRegistry;
use herd::{Primary, Worker};
use serde_json::{json, Value};

use crate::say;

/// Waits (at most 20 s) until `cond` holds of the registry's names.
async fn until(
    reg: &StatusRegistry,
    what: &str,
    cond: impl Fn(&[herd::services::StatusName]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let changed = reg.changed();
        if cond(&reg.names()) {
            return;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            panic!("{what}: names are {:?}", reg.names());
        }
    }
}

fn holders(names: &[herd::services::StatusName], name: &str) -> Vec<u32> {
    names
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.workers.clone())
        .unwrap_or_default()
}

pub async fn primary(_s: &str) {
    let p = Primary::new().unwrap();
    let reg = p.statuses().unwrap();
    let _sup = herd::Supervisor::new(p.clone(), herd::Supervision::new(3));
    let workers: Vec<_> = (0..3).map(|_| crate::fork(&p)).collect();
    until(&reg, "load from 3 workers", |n| {
        holders(n, "load") == [1, 2, 3] && holders(n, "name") == [1]
    })
    .await;
    let names = serde_json::to_value(reg.names()).unwrap();
    let t = Instant::now();
    let got = reg.get_status("load", Duration::from_millis(500)).await;
    let get_ms = t.elapsed().as_millis() as u64;
    let set = reg
        .set_status("load", &50, Duration::from_millis(500))
        .await
        .unwrap();
    let after_set = reg.get_status("load", Duration::from_millis(500)).await;
    let big = reg
        .set_status("load", &500, Duration::from_millis(500))
        .await
        .unwrap();
    let view_only = reg
        .set_status("name", &"x", Duration::from_millis(500))
        .await
        .unwrap();
    let name = reg.get_status("name", Duration::from_millis(500)).await;
    let queue = reg
        .get_status(REPLACE_QUEUE, Duration::from_millis(500))
        .await;
    // Heartbeats: every worker has sent one within a few intervals.
    let deadline = Instant::now() + Duration::from_secs(20);
    let beats = loop {
        let b = reg.get_status(HEARTBEAT, Duration::from_millis(500)).await;
        if b.answers.len() == 3 || Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    workers[0].kill_with(herd::Signal::SIGKILL);
    until(&reg, "worker 1's entries gone", |n| {
        holders(n, "load") == [2, 3] && holders(n, "name").is_empty()
    })
    .await;
    let after_kill = reg.get_status("load", Duration::from_millis(300)).await;
    say(json!({
        "event": "status",
        "names": names,
        "got": got, "get_ms": get_ms,
        "set": set, "after_set": after_set, "big": big,
        "view_only": view_only, "name": name,
        "queue": queue,
        "beats": beats.answers.keys().collect::<Vec<_>>(),
        "beat_app": beats.answers.get(&2).map(|b| b["app"].clone()),
        "after_kill": after_kill,
        "names_after_kill": serde_json::to_value(reg.names()).unwrap(),
    }));
}

pub async fn worker(_s: &str) {
    let w = Worker::connect().await.unwrap();
    let me = w.id();
    w.set_status("role", "worker");
    let st = w.statuses().unwrap();
    let load = Arc::new(AtomicU64::new(u64::from(me) * 10));
    let (read, write) = (load.clone(), load.clone());
    if me == 3 {
        // Never answers, either way.
        st.register_with_update("load", std::future::pending::<u64>, |_: u64| {
            std::future::pending::<Result<(), String>>()
        })
        .await
        .unwrap();
    } else {
        st.register_with_update(
            "load",
            move || {
                let v = read.load(Ordering::SeqCst);
                async move { v }
            },
            move |v: u64| {
                let write = write.clone();
                async move {
                    if me == 2 && v > 100 {
                        return Err(format!("{v} is over 100"));
                    }
                    write.store(v, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    }
    if me == 1 {
        st.register("name", move || async move { format!("worker-{me}") })
            .await
            .unwrap();
    }
    std::future::pending::<Value>().await;
}
