//! `resp-bridge`: the services socket's channels bridged to the Rust
//! emitter (`herd::services::resp::serve_cache`). The primary serves the
//! socket at `SVC_SOCKET` and forks one Rust worker; the test is the
//! foreign worker, a RESP client on that socket.
//!
//! - The worker subscribes to `from-foreign` and reports each emit it
//!   gets (`{"event":"worker-heard", ...}`).
//! - The primary reports what its own subscription to `from-foreign`
//!   hears (`primary-heard`).
//! - On `emit` (stdin), the primary emits `to-foreign` ("from primary",
//!   reaching itself and the worker) and has the worker emit `to-foreign`
//!   (`{"from":"worker"}`, reaching the primary and itself).
//! - On `probe`, the primary emits `from-foreign` "probe" to itself alone.

use herd::services::{Origin, Target};
use herd::{Primary, Worker};
use serde_json::{json, Value};

use crate::{fork, online, say};

fn origin(o: Origin) -> String {
    match o {
        Origin::Primary => "primary".into(),
        Origin::Worker(id) => format!("worker {id}"),
    }
}

pub async fn primary() {
    let primary = Primary::new().expect("primary");
    let emitter = primary.emitter().expect("emitter");
    let cache = herd::CacheService::new(&primary).expect("cache service");
    let path = std::env::var("SVC_SOCKET").expect("SVC_SOCKET");
    let _socket = herd::services::resp::serve_cache(&primary, &cache, path.as_ref(), None)
        .expect("services socket");
    let mut own = emitter.on::<Value>("from-foreign");
    tokio::spawn(async move {
        while let Some(e) = own.next().await {
            say(json!({"event": "primary-heard", "payload": e.payload, "from": origin(e.from)}));
        }
    });
    let mut events = primary.events();
    let w = fork(&primary);
    online(&mut events, 1).await;
    say(json!({"event": "ready"}));
    loop {
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap_or_default();
        match line.trim() {
            "emit" => {
                emitter.emit("to-foreign", &"from primary").await.unwrap();
                w.send(&"emit").await.unwrap();
            }
            "probe" => {
                emitter
                    .emit_to(Target::Myself, "from-foreign", &"probe")
                    .await
                    .unwrap();
            }
            "" => return,
            other => panic!("unknown command {other:?}"),
        }
    }
}

pub async fn worker() {
    let worker = Worker::connect().await.expect("connect");
    let emitter = worker.emitter().expect("emitter");
    let mut sub = emitter.on::<Value>("from-foreign");
    say(json!({"event": "subscribed", "id": worker.id()}));
    loop {
        tokio::select! {
            e = sub.next() => {
                let Some(e) = e else { return };
                say(json!({"event": "worker-heard", "id": worker.id(), "payload": e.payload, "from": origin(e.from)}));
            }
            m = worker.recv() => {
                let Some(_) = m else { return };
                emitter.emit("to-foreign", &json!({"from": "worker"})).await.unwrap();
            }
        }
    }
}
