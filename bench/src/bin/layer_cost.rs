//! What a request-counting layer costs per request, in process (no
//! network): the hello-world router alone, and wrapped in the three shapes
//! `Worker::serve`'s layer has had, each doing the same work (count the
//! request and its latency with a guard, check a flag for
//! `Connection: close`):
//!
//! - `from_fn`: `axum::middleware::from_fn` under `Router::layer`, one
//!   shared set of counters behind an `Arc` (herd before issue 10's
//!   benchmark), which boxes a clone of the route, another oneshot and its
//!   own future on every request;
//! - `map_future+arc`: tower's `map_future` around the whole router, the
//!   same shared counters and a worker handle cloned per request (herd at
//!   commit 7eb3d07);
//! - `map_future+static`: the same map over a `'static` reference, the
//!   counters in one cache line per thread (the work herd does now, in the
//!   per-request future `Worker::serve`'s hyper service makes anyway).
//!
//! ```text
//! cargo run --release -p herd-bench --bin layer_cost [REQUESTS] [ROUNDS]
//! ```
//!
//! Each shape runs REQUESTS requests (default 300,000) on one thread, then
//! on two threads at once (a worker's runtime has a thread per CPU, and
//! shared counters then move between their caches), ROUNDS times in turn
//! (default 7). It prints the medians in ns of CPU per request and each
//! layer's cost over the bare router. The counters mirror
//! `herd::worker::requests` (same atomics, same clock reads); herd's own
//! types are private.

use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use axum::{routing::get, Router};
use tower::ServiceExt;

const BUCKETS: usize = 13;

fn bucket(took: std::time::Duration) -> usize {
    const BOUNDS_MS: [f64; BUCKETS - 1] = [
        1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    ];
    let ms = took.as_secs_f64() * 1000.0;
    BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BOUNDS_MS.len())
}

/// The shared counters (herd's before the per-thread ones).
#[derive(Default)]
struct Shared {
    total: AtomicU64,
    in_flight: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

struct SharedGuard(Arc<Shared>, Instant);

fn begin_shared(r: &Arc<Shared>) -> SharedGuard {
    r.in_flight.fetch_add(1, Ordering::Relaxed);
    SharedGuard(r.clone(), Instant::now())
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        let took = self.1.elapsed();
        let r = &self.0;
        r.buckets[bucket(took)].fetch_add(1, Ordering::Relaxed);
        r.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        r.total.fetch_add(1, Ordering::Relaxed);
        r.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker handle, as the layer cloned one per request.
struct Handle {
    requests: Arc<Shared>,
    closing: AtomicBool,
}

/// One thread's counters (herd's now).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    begun: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

const SHARDS: usize = 16;

struct Counting {
    shards: [Shard; SHARDS],
    closing: AtomicBool,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        i.get()
    })
}

struct ShardGuard(&'static Shard, Instant);

fn begin_shard(c: &'static Counting) -> ShardGuard {
    let shard = &c.shards[shard_index()];
    shard.begun.fetch_add(1, Ordering::Relaxed);
    ShardGuard(shard, Instant::now())
}

impl Drop for ShardGuard {
    fn drop(&mut self) {
        let took = self.1.elapsed();
        self.0.buckets[bucket(took)].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
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

/// ns of CPU per request of `svc` on `threads` threads at once, as
/// axum::serve calls it (a clone, then oneshot).
async fn run<S>(svc: &S, n: u32, threads: u32) -> f64
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..threads)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..n {
                    let req = Request::builder()
                        .uri("/")
                        .body(axum::body::Body::empty())
                        .expect("request");
                    let res = svc.clone().oneshot(req).await;
                    std::hint::black_box(res.ok());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7).max(1);

    let shared = Arc::new(Shared::default());
    let closing = Arc::new(AtomicBool::new(false));
    let (r, c) = (shared.clone(), closing.clone());
    let from_fn = app().layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let counted = begin_shared(&r);
            let c = c.clone();
            async move {
                let mut res = next.run(req).await;
                drop(counted);
                close_if(&c, &mut res);
                res
            }
        },
    ));
    let handle = Arc::new(Handle {
        requests: shared.clone(),
        closing: AtomicBool::new(false),
    });
    let map_arc = ServiceExt::<Request>::map_future(app(), move |answer| {
        let counted = begin_shared(&handle.requests);
        let h = handle.clone();
        async move {
            let mut res = answer.await?;
            drop(counted);
            close_if(&h.closing, &mut res);
            Ok::<_, Infallible>(res)
        }
    });
    let counting: &'static Counting = Box::leak(Box::new(Counting {
        shards: std::array::from_fn(|_| Shard::default()),
        closing: AtomicBool::new(false),
    }));
    let map_static = ServiceExt::<Request>::map_future(app(), move |answer| {
        let counted = begin_shard(counting);
        async move {
            let mut res = answer.await?;
            drop(counted);
            close_if(&counting.closing, &mut res);
            Ok::<_, Infallible>(res)
        }
    });
    let bare = app();

    let names = [
        "bare router",
        "from_fn",
        "map_future+arc",
        "map_future+static",
    ];
    // ns[threads - 1][shape]
    let mut ns: [[Vec<f64>; 4]; 2] = Default::default();
    for _ in 0..rounds {
        for threads in [1, 2] {
            let row = &mut ns[threads as usize - 1];
            row[0].push(run(&bare, n, threads).await);
            row[1].push(run(&from_fn, n, threads).await);
            row[2].push(run(&map_arc, n, threads).await);
            row[3].push(run(&map_static, n, threads).await);
        }
    }
    let counted: u64 = counting
        .shards
        .iter()
        .flat_map(|s| s.buckets.iter())
        .map(|b| b.load(Ordering::Relaxed))
        .sum();
    assert_eq!(counted, u64::from(n) * 3 * rounds as u64);
    assert_eq!(
        shared.total.load(Ordering::Relaxed),
        u64::from(n) * 2 * 3 * rounds as u64
    );

    println!("# {rounds} rounds of {n} requests per thread, shapes in turn; ns of CPU per request (median)");
    println!("{:20} {:>10} {:>10}", "shape", "1 thread", "2 threads");
    let mut med = [[0.0; 4]; 2];
    for (t, row) in ns.iter_mut().enumerate() {
        for (i, x) in row.iter_mut().enumerate() {
            x.sort_by(f64::total_cmp);
            med[t][i] = x[x.len() / 2];
        }
    }
    for (i, name) in names.iter().enumerate() {
        println!("{name:20} {:10.1} {:10.1}", med[0][i], med[1][i]);
    }
    for (t, label) in ["1 thread", "2 threads"].iter().enumerate() {
        println!(
            "layer-cost ({label}): from_fn {:.0} ns map_future+arc {:.0} ns map_future+static {:.0} ns (over the bare router)",
            med[t][1] - med[t][0],
            med[t][2] - med[t][0],
            med[t][3] - med[t][0]
        );
    }
}
