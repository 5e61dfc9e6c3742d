//! The measurements every row shares: gets per second with callers at
//! once, sequential latencies, percentiles.

use std::time::Instant;

/// The `p` quantile of `sorted`, NaN when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn push_lat(figures: &mut Vec<(String, f64)>, name: &str, lat: &[f64]) {
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    figures.push((format!("{name}.mean"), mean));
    figures.push((format!("{name}.p50"), pct(lat, 0.5)));
    figures.push((format!("{name}.p99"), pct(lat, 0.99)));
}

/// Gets per second with `conc` callers doing `n` gets in all; `make` is
/// given the caller's index (0 to `conc - 1`).
pub async fn throughput<F, Fut>(n: usize, conc: usize, make: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = n / conc;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for caller in 0..conc {
        let make = make.clone();
        set.spawn(async move {
            for _ in 0..per {
                make(caller).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    (per * conc) as f64 / start.elapsed().as_secs_f64()
}

/// `n` sequential calls' latencies in microseconds, sorted.
pub async fn latencies<F, Fut>(n: usize, mut call: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call().await;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// How a measured get reads its value.
#[derive(Clone, Copy)]
pub enum Read {
    /// `Cache::get`, the JSON decoded at each get.
    Decoded,
    /// `Cache::get_shared`, the decoded value shared.
    Shared,
}

async fn cache_get(cache: &herd::Cache, read: Read, key: &str) -> bool {
    match read {
        Read::Decoded => cache.get::<crate::Item>(key).await.unwrap().is_some(),
        Read::Shared => cache
            .get_shared::<crate::Item>(key)
            .await
            .unwrap()
            .is_some(),
    }
}

/// [`throughput`] of gets in `cache`: caller `i` reads `keys[i % len]`,
/// and each get must find a value, or none, as `hit` says.
pub async fn cache_gets(
    cache: &herd::Cache,
    n: usize,
    conc: usize,
    read: Read,
    hit: bool,
    keys: &[&str],
) -> f64 {
    let keys: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(keys.iter().map(|k| k.to_string()).collect());
    let cache = cache.clone();
    throughput(n, conc, move |caller| {
        let (cache, keys) = (cache.clone(), keys.clone());
        async move {
            let found = cache_get(&cache, read, &keys[caller % keys.len()]).await;
            assert_eq!(found, hit, "a get of {}", keys[caller % keys.len()]);
        }
    })
    .await
}

/// [`latencies`] of `n` gets of `key` in `cache`, each finding a value, or
/// none, as `hit` says.
pub async fn cache_latencies(
    cache: &herd::Cache,
    n: usize,
    read: Read,
    hit: bool,
    key: &str,
) -> Vec<f64> {
    latencies(n, || async {
        assert_eq!(cache_get(cache, read, key).await, hit, "a get of {key}");
    })
    .await
}
