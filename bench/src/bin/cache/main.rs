//! The `cache` benchmark, herd and Redis side: from one worker, `get` hit
//! and miss latency and gets per second for herd's shared cache (with the
//! local copy, and through the primary) and for a Redis server on a Unix
//! socket with the `redis` crate; and the local copy's staleness window
//! after another worker's `set`.
//!
//! ```text
//! cache --redis /path/redis.sock [--n N] [--conc C] [--stale S] [--backend redis]
//! ```
//! With `--backend redis` the herd cache itself is on that Redis
//! (`CacheService::with_redis`), and one worker measures it instead
//! ([`on_redis`]).
//! Output (one per line, times in microseconds): `herd-local.tput`,
//! `herd-local.hit.p50`, `herd-primary.tput` (a key per caller), `herd-primary-shared.tput` (one key),
//! `herd-primary.hit.{mean,p50,p99}`,
//! `herd-primary.miss.p50`, `redis.tput`, `redis.hit.{mean,p50,p99}`,
//! `redis.miss.{tput,p50}`, `stale.{p50,p99,max}`.
//!
//! Every gets-per-second figure is `C` callers at once (32 by default) on
//! the worker's one-thread runtime, each doing gets back to back: the same
//! for herd and Redis (its multiplexed connection pipelines them).

mod measure;
mod on_redis;

use herd::{CacheOptions, Event, Primary, Role, Worker};
use measure::{cache_gets, cache_latencies, latencies, pct, push_lat, throughput, Read};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Item {
    id: u64,
    name: String,
    tags: Vec<String>,
}

pub(crate) fn item() -> Item {
    Item {
        id: 42,
        name: "a cached value of some hundred bytes".into(),
        tags: vec!["alpha".into(), "beta".into(), "gamma".into()],
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Note {
    /// Worker 2 set the staleness key to `i` and its set returned at `t` ns.
    Set { i: u64, t: u64 },
    /// Worker 1's local copy shows `i` since `t` ns.
    Seen { i: u64, t: u64 },
    /// The primary to worker 2: set `i` now.
    Go { i: u64 },
    /// Worker 1's figures.
    Figures(Vec<(String, f64)>),
}

pub(crate) fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

pub(crate) struct Opts {
    pub(crate) n: usize,
    pub(crate) conc: usize,
    pub(crate) redis: String,
    pub(crate) stale: u64,
    /// `--backend redis`: the herd cache on `redis`.
    pub(crate) on_redis: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        n: 200_000,
        conc: 32,
        redis: String::new(),
        stale: 2_000,
        on_redis: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args
            .next()
            .unwrap_or_else(|| panic!("cache: {a} needs a value"));
        match a.as_str() {
            "--n" => o.n = v.parse().expect("--n N"),
            "--conc" => o.conc = v.parse().expect("--conc C"),
            "--stale" => o.stale = v.parse().expect("--stale N"),
            "--redis" => o.redis = v,
            "--backend" if v == "redis" => o.on_redis = true,
            _ => panic!("cache: unknown argument {a}"),
        }
    }
    o
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match herd::role() {
        Role::Primary if opts().on_redis => rt.block_on(on_redis::primary(opts())),
        Role::Primary => rt.block_on(primary()),
        Role::Worker if !env("BENCH_ON_REDIS").is_empty() => rt.block_on(on_redis::worker()),
        Role::Worker => rt.block_on(worker()),
    }
}

async fn primary() {
    let o = opts();
    let primary = Primary::new().expect("primary");
    let _service = herd::CacheService::new(&primary).expect("cache service");
    let mut events = primary.events();
    let env = [
        ("BENCH_N", o.n.to_string()),
        ("BENCH_CONC", o.conc.to_string()),
        ("BENCH_REDIS", o.redis.clone()),
        ("BENCH_STALE", o.stale.to_string()),
    ];
    let w1 = primary.fork_with_env(env.clone()).expect("fork");
    let w2 = primary.fork_with_env(env).expect("fork");
    let mut set_at = std::collections::HashMap::new();
    let mut seen_at = std::collections::HashMap::new();
    let mut stale = Vec::new();
    let mut figures = None;
    while let Some(ev) = events.next().await {
        match ev {
            Event::Message { message, .. } => match message.decode::<Note>().expect("note") {
                Note::Set { i, t } => {
                    set_at.insert(i, t);
                }
                Note::Seen { i, t } => {
                    seen_at.insert(i, t);
                }
                Note::Figures(f) => figures = Some(f),
                Note::Go { .. } => unreachable!(),
            },
            Event::Exit { worker, status, .. } if !status.success() => {
                panic!("worker {worker} failed: {status:?}")
            }
            _ => {}
        }
        // A round is done when both sides reported it: the next may start.
        let done: Vec<u64> = set_at
            .keys()
            .filter(|i| seen_at.contains_key(i))
            .copied()
            .collect();
        for i in done {
            let (s, t) = (set_at.remove(&i).unwrap(), seen_at.remove(&i).unwrap());
            if i > 0 {
                // Round 0 is worker 1's kick-off, no set.
                stale.push(t.saturating_sub(s) as f64 / 1000.0);
            }
            if i < o.stale {
                w2.send(&Note::Go { i: i + 1 }).await.expect("go");
            } else {
                w1.send(&"stop").await.expect("stop");
                w2.send(&"stop").await.expect("stop");
            }
        }
        if figures.is_some() && stale.len() as u64 == o.stale {
            break;
        }
    }
    for (k, v) in figures.expect("worker 1's figures") {
        println!("{k} {v:.3}");
    }
    stale.sort_by(f64::total_cmp);
    println!("stale.p50 {:.3}", pct(&stale, 0.5));
    println!("stale.p99 {:.3}", pct(&stale, 0.99));
    println!("stale.max {:.3}", stale.last().copied().unwrap_or(f64::NAN));
    primary.disconnect().await;
}

pub(crate) fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

async fn worker() {
    let worker = Worker::connect().await.expect("connect");
    let n: usize = env("BENCH_N").parse().unwrap();
    let conc: usize = env("BENCH_CONC").parse().unwrap();
    let stale_rounds: u64 = env("BENCH_STALE").parse().unwrap();
    let stale = worker
        .cache("stale", CacheOptions::default())
        .await
        .expect("cache");
    if worker.id() == 2 {
        // The writer: sets round i when the primary says so.
        while let Some(msg) = worker.recv().await {
            let Ok(Note::Go { i }) = msg.decode::<Note>() else {
                break;
            };
            stale.set("k", &i).await.expect("set");
            let t = mono_ns();
            worker.send(&Note::Set { i, t }).await.expect("note");
        }
        return;
    }
    let mut figures = Vec::new();
    let local = worker
        .cache("local", CacheOptions::default())
        .await
        .expect("cache");
    let remote = worker
        .cache("remote", CacheOptions::default().local_copy(false))
        .await
        .expect("cache");
    local.set("hit", &item()).await.unwrap();
    remote.set("hit", &item()).await.unwrap();
    let _: Option<Item> = local.get("hit").await.unwrap();

    // herd, local copy, decoding the JSON at each hit (as `get` does).
    let tput = cache_gets(&local, n * 10, conc, Read::Decoded, true, &["hit"]).await;
    figures.push(("herd-local-decode.tput".into(), tput));
    // herd, local copy, the decoded value shared (`get_shared`).
    let tput = cache_gets(&local, n * 10, conc, Read::Shared, true, &["hit"]).await;
    figures.push(("herd-local.tput".into(), tput));
    let lat = cache_latencies(&local, n, Read::Shared, true, "hit").await;
    figures.push(("herd-local.hit.p50".into(), pct(&lat, 0.5)));
    assert!(
        local.local_hits() as usize >= n * 21,
        "the local copy served"
    );

    // herd, through the primary, all callers on one key: concurrent gets
    // share requests not yet sent.
    let tput = cache_gets(&remote, n, conc, Read::Decoded, true, &["hit"]).await;
    figures.push(("herd-primary-shared.tput".into(), tput));
    // Each caller on a key of its own: no get shares another's request, so
    // each is a round trip, as each redis and node get is.
    let keys: Vec<String> = (0..conc).map(|i| format!("hit{i}")).collect();
    for k in &keys {
        remote.set(k, &item()).await.unwrap();
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let tput = cache_gets(&remote, n, conc, Read::Decoded, true, &keys).await;
    figures.push(("herd-primary.tput".into(), tput));
    let lat = cache_latencies(&remote, n / 4, Read::Decoded, true, "hit").await;
    push_lat(&mut figures, "herd-primary.hit", &lat);
    let lat = cache_latencies(&remote, n / 4, Read::Decoded, false, "missing").await;
    figures.push(("herd-primary.miss.p50".into(), pct(&lat, 0.5)));

    // Redis over its Unix socket, from this same worker.
    let client = redis::Client::open(format!("unix://{}", env("BENCH_REDIS"))).expect("redis url");
    let con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let json = serde_json::to_string(&item()).unwrap();
    let mut c = con.clone();
    let () = redis::cmd("SET")
        .arg("hit")
        .arg(&json)
        .query_async(&mut c)
        .await
        .unwrap();
    let tput = throughput(n, conc, {
        let con = con.clone();
        move |_| {
            let mut c = con.clone();
            async move {
                let s: Option<String> = redis::cmd("GET")
                    .arg("hit")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let v: Item = serde_json::from_str(&s.unwrap()).unwrap();
                assert_eq!(v.id, 42);
            }
        }
    })
    .await;
    figures.push(("redis.tput".into(), tput));
    let lat = latencies(n / 4, || {
        let mut c = con.clone();
        async move {
            let s: Option<String> = redis::cmd("GET")
                .arg("hit")
                .query_async(&mut c)
                .await
                .unwrap();
            let _: Item = serde_json::from_str(&s.unwrap()).unwrap();
        }
    })
    .await;
    push_lat(&mut figures, "redis.hit", &lat);
    let tput = throughput(n, conc, {
        let con = con.clone();
        move |_| {
            let mut c = con.clone();
            async move {
                let s: Option<String> = redis::cmd("GET")
                    .arg("missing")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert!(s.is_none());
            }
        }
    })
    .await;
    figures.push(("redis.miss.tput".into(), tput));
    let lat = latencies(n / 4, || {
        let mut c = con.clone();
        async move {
            let s: Option<String> = redis::cmd("GET")
                .arg("missing")
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(s.is_none());
        }
    })
    .await;
    figures.push(("redis.miss.p50".into(), pct(&lat, 0.5)));
    worker.send(&Note::Figures(figures)).await.expect("figures");

    // Staleness: watch the local copy of worker 2's key; report each new
    // value the moment it shows.
    let mut last: Option<u64> = stale.get("k").await.unwrap();
    if stale_rounds > 0 {
        worker.send(&Note::Seen { i: 0, t: 0 }).await.unwrap();
        worker.send(&Note::Set { i: 0, t: 0 }).await.unwrap();
    }
    let stop = worker.recv();
    tokio::pin!(stop);
    loop {
        // Spin on the local copy (a hit costs no message), yielding so
        // that the invalidation can be read.
        // The window ends before the get that shows the new value starts:
        // its stale entry is gone by then.
        let t = mono_ns();
        let now: Option<u64> = stale.get("k").await.unwrap();
        if let Some(i) = now.filter(|_| now != last) {
            worker.send(&Note::Seen { i, t }).await.unwrap();
            last = now;
        }
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = tokio::task::yield_now() => {}
        }
    }
}
