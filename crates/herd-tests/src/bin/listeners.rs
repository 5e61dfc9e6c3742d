//! A worker that opens and closes listeners as the primary tells it, as a
//! Node program calls `server.listen` and `server.close` (for
//! tests/relisten.rs and tests/close_listener.rs). A fixture primary starts
//! it once told so (`{"cmd":"setup","exec":PATH}`).
//!
//! Each listener has a name; each is served with `axum::serve` (`/`
//! answers `worker ID`), given the listener's [`ListenerCloser`]'s
//! `closed()` as its graceful shutdown. Messages, and the answers sent:
//!
//! - `{"cmd":"listen","name":N,"addr":A}`: listens on A and serves it;
//!   `{"listened":N,"address":ADDR}` or `{"listen_error":E,"kind":K,"name":N}`.
//!   With `"serve":"herd"` it is served by `Worker::serve` instead (which
//!   ends by itself when the listener is closed; no pause then).
//! - `{"cmd":"close","name":N}`: closes it with its closer while
//!   `axum::serve` owns it; `{"closed":N}`. When that `axum::serve` returns
//!   (its open connections done), `{"serve_ended":N}`.
//! - `{"cmd":"relisten","name":N}`: closes it and at once listens again on
//!   the address it was asked for; `{"relistened":N,"address":ADDR}` or
//!   `{"listen_error":...}`.
//! - `{"cmd":"pause","name":N}`: its server stops taking connections
//!   (they wait for this worker, queued or in the kernel), answered
//!   `{"paused":N}` once its accept is parked; `{"cmd":"resume","name":N}`.
//!
//! [`ListenerCloser`]: herd::ListenerCloser

#![deny(unsafe_code)]

use std::collections::HashMap;

use herd::{Connection, Listener, ListenerCloser, PeerAddr, Worker};
use serde_json::{json, Value};
use tokio::sync::watch;

/// A listener that serves while its gate is open, and parks its accept
/// (saying so on `parked`) while it is shut.
struct Gated {
    inner: Listener,
    open: watch::Receiver<bool>,
    parked: watch::Sender<bool>,
}

impl axum::serve::Listener for Gated {
    type Io = Connection;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Connection, PeerAddr) {
        loop {
            if !*self.open.borrow() {
                self.parked.send_replace(true);
                let _ = self.open.wait_for(|open| *open).await;
                self.parked.send_replace(false);
            }
            tokio::select! {
                biased;
                _ = self.open.wait_for(|open| !*open) => continue,
                pair = axum::serve::Listener::accept(&mut self.inner) => return pair,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<PeerAddr> {
        axum::serve::Listener::local_addr(&self.inner)
    }
}

/// One named listener: what it was asked to listen on, its closer and its
/// gate.
struct Named {
    asked: String,
    closer: ListenerCloser,
    open: watch::Sender<bool>,
    parked: watch::Receiver<bool>,
}

#[tokio::main]
async fn main() {
    let worker = Worker::connect().await.expect("connect");
    let mut named: HashMap<String, Named> = HashMap::new();
    while let Some(msg) = worker.recv().await {
        let v: Value = msg.decode().unwrap_or(Value::Null);
        let name = v["name"].as_str().unwrap_or("").to_string();
        let answer = match v["cmd"].as_str().unwrap_or("") {
            "listen" => {
                let addr = v["addr"].as_str().unwrap_or("");
                let herd_serve = v["serve"] == "herd";
                listen(&worker, &mut named, &name, addr, "listened", herd_serve).await
            }
            "relisten" => match named.get(&name) {
                Some(n) => {
                    let asked = n.asked.clone();
                    // Node's server.close(); server.listen(port): no wait
                    // between the two.
                    n.closer.close();
                    listen(&worker, &mut named, &name, &asked, "relistened", false).await
                }
                None => json!({ "error": format!("no listener {name}") }),
            },
            "close" => match named.get(&name) {
                Some(n) => {
                    n.closer.close();
                    json!({ "closed": name })
                }
                None => json!({ "error": format!("no listener {name}") }),
            },
            "pause" => match named.get_mut(&name) {
                Some(n) => {
                    n.open.send_replace(false);
                    let _ = n.parked.wait_for(|parked| *parked).await;
                    json!({ "paused": name })
                }
                None => json!({ "error": format!("no listener {name}") }),
            },
            "resume" => match named.get(&name) {
                Some(n) => {
                    n.open.send_replace(true);
                    json!({ "resumed": name })
                }
                None => json!({ "error": format!("no listener {name}") }),
            },
            other => json!({ "error": format!("unknown command {other:?}") }),
        };
        let _ = worker.send(&answer).await;
    }
}

/// Listens on `addr` as `name` and serves it; the answer to send.
async fn listen(
    worker: &Worker,
    named: &mut HashMap<String, Named>,
    name: &str,
    addr: &str,
    done: &str,
    herd_serve: bool,
) -> Value {
    let listener = match worker.listen(addr).await {
        Ok(l) => l,
        Err(e) => {
            return json!({
                "listen_error": e.to_string(), "kind": format!("{:?}", e.kind()), "name": name,
            })
        }
    };
    let address = listener.address().to_string();
    let closer = listener.closer();
    let (open, open_rx) = watch::channel(true);
    let (parked_tx, parked) = watch::channel(false);
    let gated = Gated {
        inner: listener,
        open: open_rx,
        parked: parked_tx,
    };
    let id = worker.id();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { format!("worker {id}\n") }),
    );
    let (w, n, closed) = (worker.clone(), name.to_string(), closer.closed());
    tokio::spawn(async move {
        if herd_serve {
            let _ = w.serve(gated.inner, app).await;
        } else {
            let _ = axum::serve(gated, app).with_graceful_shutdown(closed).await;
        }
        let _ = w.send(&json!({ "serve_ended": n })).await;
    });
    named.insert(
        name.to_string(),
        Named {
            asked: addr.to_string(),
            closer,
            open,
            parked,
        },
    );
    json!({ done: name, "address": address })
}
