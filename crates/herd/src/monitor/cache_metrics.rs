//! The shared cache's counters in `/metrics`, one sample per named cache
//! of this process's [`CacheService`](crate::CacheService).

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::CacheStats;

type Labels = Vec<(&'static str, String)>;

/// A family's name, its help, and how a cache's counters give its value.
type Family = (&'static str, &'static str, fn(&CacheStats) -> u64);

pub(super) fn encode(
    e: &mut DescriptorEncoder,
    caches: &std::collections::BTreeMap<String, CacheStats>,
) -> std::fmt::Result {
    let labels = |name: &String| -> Labels { vec![("cache", name.clone())] };
    let counters: [Family; 8] = [
        (
            "herd_cache_hits",
            "Cache gets answered with a value by the primary's store",
            |s| s.hits,
        ),
        ("herd_cache_misses", "Cache gets that found no value", |s| {
            s.misses
        }),
        (
            "herd_cache_loads",
            "Loads started (leases given to a loader)",
            |s| s.loads,
        ),
        (
            "herd_cache_load_failures",
            "Loads that failed or whose loader's worker died",
            |s| s.load_failures,
        ),
        (
            "herd_cache_lease_timeouts",
            "Leases that ran out before their loader filled them",
            |s| s.lease_timeouts,
        ),
        (
            "herd_cache_evictions",
            "Entries evicted by the memory bound",
            |s| s.evictions,
        ),
        ("herd_cache_expirations", "Entries removed by expire", |s| {
            s.expirations
        }),
        (
            "herd_cache_corrupt_files",
            "Persistence files found corrupt at start and set aside",
            |s| s.corrupt_files,
        ),
    ];
    for (name, help, get) in counters {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (cache, s) in caches {
            prometheus_client::encoding::EncodeMetric::encode(
                &ConstCounter::new(get(s)),
                m.encode_family(&labels(cache))?,
            )?;
        }
    }
    let gauges: [Family; 2] = [
        ("herd_cache_entries", "Entries in the cache", |s| s.entries),
        (
            "herd_cache_bytes",
            "Bytes of keys and values in the cache (64 more per entry)",
            |s| s.bytes,
        ),
    ];
    for (name, help, get) in gauges {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (cache, s) in caches {
            prometheus_client::encoding::EncodeMetric::encode(
                &ConstGauge::new(i64::try_from(get(s)).unwrap_or(i64::MAX)),
                m.encode_family(&labels(cache))?,
            )?;
        }
    }
    Ok(())
}

/// The cache's Redis link: up or away, how long, how often it came back,
/// and the loads run in this host alone meanwhile.
#[cfg(feature = "redis")]
pub(super) fn encode_redis(e: &mut DescriptorEncoder, h: &crate::RedisHealth) -> std::fmt::Result {
    use prometheus_client::encoding::EncodeMetric;
    let labels: Labels = vec![("redis", h.url.clone())];
    let gauges = [
        (
            "herd_redis_up",
            "1 while the cache's Redis answers (commands and pub/sub), 0 while it is away",
            i64::from(h.up),
        ),
        (
            "herd_redis_away_seconds",
            "Seconds since the cache's Redis went away (0 while up)",
            i64::try_from(h.away_ms / 1000).unwrap_or(i64::MAX),
        ),
    ];
    for (name, help, v) in gauges {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    let counters = [
        (
            "herd_redis_reconnects",
            "Times the cache's Redis link came back after Redis was away",
            h.reconnects,
        ),
        (
            "herd_redis_away_loads",
            "Cache loads run in this host alone while Redis was away (value not shared)",
            h.away_loads,
        ),
    ];
    for (name, help, v) in counters {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}
