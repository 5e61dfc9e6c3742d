//! What a request-counting layer costs per request, in process (no
//! network, one thread): the hello-world router alone, and wrapped in the
//! two shapes `Worker::serve`'s layer has had, doing the same work (count
//! the request and its latency with a guard, check a flag for
//! `Connection: close`):
//!
//! - `axum::middleware::from_fn` under `Router::layer` (herd before issue
//!   10's benchmark), which boxes a clone of the route, another oneshot
//!   and its own future on every request;
//! - tower's `map_future` around the whole router (herd since then).
//!
//! ```text
//! cargo run --release -p herd-bench --bin layer_cost [REQUESTS] [ROUNDS]
//! ```
//!
//! The three run in turn, ROUNDS times (default 7) of REQUESTS requests
//! (default 300,000) each; it prints each one's median and minimum in ns
//! per request, and the layers' cost over the bare router. The counter here
//! mirrors `herd::worker::requests` (same atomics, same clock reads); it is
//! not herd's own type, which is private.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use axum::{routing::get, Router};
use tower::ServiceExt;

/// As herd's `Requests`: totals, in flight, latency sum and buckets.
#[derive(Default)]
struct Requests {
    total: AtomicU64,
    in_flight: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; 13],
}

/// As herd's `InFlight`: counts the request when dropped.
struct InFlight(Arc<Requests>, Instant);

impl Requests {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone(), Instant::now())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let took = self.1.elapsed();
        let i = if took.as_secs_f64() <= 0.001 { 0 } else { 12 };
        let r = &self.0;
        r.buckets[i].fetch_add(1, Ordering::Relaxed);
        r.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        r.total.fetch_add(1, Ordering::Relaxed);
        r.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello world" }))
}

fn close_if(flag: &AtomicBool, res: &mut Response) {
    if flag.load(Ordering::Relaxed) {
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
}

/// ns per request of `svc`, as axum::serve calls it (a clone, oneshot).
async fn run<S>(svc: &S, n: u32) -> f64
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone,
{
    let t = Instant::now();
    for _ in 0..n {
        let req = Request::builder()
            .uri("/")
            .body(axum::body::Body::empty())
            .expect("request");
        let res = svc.clone().oneshot(req).await;
        std::hint::black_box(res.ok());
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let requests = Arc::new(Requests::default());
    let closing = Arc::new(AtomicBool::new(false));

    let (r, c) = (requests.clone(), closing.clone());
    let from_fn = app().layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let counted = r.begin();
            let c = c.clone();
            async move {
                let mut res = next.run(req).await;
                drop(counted);
                close_if(&c, &mut res);
                res
            }
        },
    ));
    let (r, c) = (requests.clone(), closing.clone());
    let mapped = ServiceExt::<Request>::map_future(app(), move |answer| {
        let counted = r.begin();
        let c = c.clone();
        async move {
            let mut res = answer.await?;
            drop(counted);
            close_if(&c, &mut res);
            Ok::<_, Infallible>(res)
        }
    });

    let bare = app();
    let mut ns: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds.max(1) {
        ns[0].push(run(&bare, n).await);
        ns[1].push(run(&from_fn, n).await);
        ns[2].push(run(&mapped, n).await);
    }
    let names = [
        "bare router",
        "from_fn + Router::layer",
        "map_future on the router",
    ];
    let mut medians = [0.0; 3];
    println!("# {rounds} rounds of {n} requests, in turn; ns per request");
    for (i, (name, mut x)) in names.into_iter().zip(ns).enumerate() {
        x.sort_by(f64::total_cmp);
        medians[i] = x[x.len() / 2];
        println!("{name:26} median {:7.1}  min {:7.1}", medians[i], x[0]);
    }
    assert_eq!(
        requests.total.load(Ordering::Relaxed),
        2 * u64::from(n) * rounds.max(1) as u64
    );
    println!(
        "layer-cost: from_fn {:.0} ns map_future {:.0} ns (over the bare router)",
        medians[1] - medians[0],
        medians[2] - medians[0]
    );
}
