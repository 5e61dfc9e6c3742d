//! `cache --backend redis`: the herd cache on Redis
//! (`CacheService::with_redis`, the redis-server on `--redis`'s Unix
//! socket), from one worker, as the in-primary rows measure it: a hit with
//! the local copy (no message), a hit through the primary (`local_copy`
//! off: the worker asks its primary, which asks Redis) and a miss through
//! the primary. Output: `herd-redis-local.{tput,hit.p50}`,
//! `herd-redis-primary.{tput,hit.mean,hit.p50,hit.p99}`,
//! `herd-redis-primary.miss.{tput,p50}`.

use herd::{CacheOptions, Event, Primary, Worker};

use super::measure::{cache_gets, cache_latencies, pct, push_lat, Read};
use super::{env, item, Item, Note, Opts};

pub async fn primary(o: Opts) {
    let primary = Primary::new().expect("primary");
    let service = herd::CacheService::with_redis(&primary, &format!("unix://{}", o.redis), "bench")
        .expect("cache service on redis");
    // The link connects in the background: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !service.redis_health().is_some_and(|h| h.up) {
        assert!(
            std::time::Instant::now() < deadline,
            "redis not reached within 10 s: {:?}",
            service.redis_health()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut events = primary.events();
    let env = [
        ("BENCH_N", o.n.to_string()),
        ("BENCH_CONC", o.conc.to_string()),
        ("BENCH_ON_REDIS", "1".to_string()),
    ];
    primary.fork_with_env(env).expect("fork");
    let figures = loop {
        match events.next().await.expect("the worker's figures") {
            Event::Message { message, .. } => match message.decode::<Note>().expect("note") {
                Note::Figures(f) => break f,
                other => panic!("unexpected {other:?}"),
            },
            Event::Exit { worker, status, .. } if !status.success() => {
                panic!("worker {worker} failed: {status:?}")
            }
            _ => {}
        }
    };
    let health = service.redis_health().expect("on redis");
    assert!(health.up, "redis went away during the run: {health:?}");
    for (k, v) in figures {
        println!("{k} {v:.3}");
    }
    primary.disconnect().await;
}

pub async fn worker() {
    let worker = Worker::connect().await.expect("connect");
    let n: usize = env("BENCH_N").parse().unwrap();
    let conc: usize = env("BENCH_CONC").parse().unwrap();
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

    // The local copy, the decoded value shared (as herd-local.tput).
    let tput = cache_gets(&local, n * 10, conc, Read::Shared, true, &["hit"]).await;
    figures.push(("herd-redis-local.tput".into(), tput));
    let lat = cache_latencies(&local, n, Read::Shared, true, "hit").await;
    figures.push(("herd-redis-local.hit.p50".into(), pct(&lat, 0.5)));
    assert!(
        local.local_hits() as usize >= n * 11,
        "the local copy served"
    );

    // Through the primary, and so through Redis; each caller on a key of
    // its own, so that no get shares another's request (as the redis row).
    let hits: Vec<String> = (0..conc).map(|i| format!("hit{i}")).collect();
    for k in &hits {
        remote.set(k, &item()).await.unwrap();
    }
    let hits: Vec<&str> = hits.iter().map(String::as_str).collect();
    let misses: Vec<String> = (0..conc).map(|i| format!("missing{i}")).collect();
    let misses: Vec<&str> = misses.iter().map(String::as_str).collect();
    let tput = cache_gets(&remote, n, conc, Read::Decoded, true, &hits).await;
    figures.push(("herd-redis-primary.tput".into(), tput));
    let lat = cache_latencies(&remote, n / 4, Read::Decoded, true, "hit").await;
    push_lat(&mut figures, "herd-redis-primary.hit", &lat);
    let tput = cache_gets(&remote, n, conc, Read::Decoded, false, &misses).await;
    figures.push(("herd-redis-primary.miss.tput".into(), tput));
    let lat = cache_latencies(&remote, n / 4, Read::Decoded, false, "missing").await;
    figures.push(("herd-redis-primary.miss.p50".into(), pct(&lat, 0.5)));
    worker.send(&Note::Figures(figures)).await.expect("figures");
    // Until the primary is done.
    while worker.recv().await.is_some() {}
}
