//! `/metrics`: the cluster in Prometheus's text format, encoded by the
//! `prometheus-client` crate from one status snapshot per scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::status::Document;

/// The text of `/metrics` for `doc`.
pub(crate) fn encode(doc: Document) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(doc)));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    prometheus_text(&out)
}

/// The crate writes OpenMetrics, which names a counter's family without
/// the `_total` its samples carry and ends with `# EOF`; the Prometheus
/// text format (0.0.4), which every scraper and promtool read, names the
/// family as its samples. This renames those families and drops the EOF.
fn prometheus_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64);
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct Snapshot(Document);

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name, its help, its type, and its samples.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, ty)?;
    for (labels, m) in samples {
        m.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn worker_labels(w: &super::status::Worker) -> Labels {
    vec![
        ("worker", w.status.id.to_string()),
        (
            "slot",
            w.slot.map_or_else(|| "leaving".into(), |s| s.to_string()),
        ),
    ]
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.0;
        let c = d;
        family(
            &mut e,
            "herd_health",
            "The health verdict a load balancer is told: 1 for the current one",
            MetricType::Gauge,
            ["up", "draining", "down"].map(|h| {
                (
                    vec![("state", h.to_string())],
                    ConstGauge::new(i64::from(c.health.name() == h)),
                )
            }),
        )?;
        family(
            &mut e,
            "herd_workers_wanted",
            "Workers the supervisor keeps up",
            MetricType::Gauge,
            [(vec![], ConstGauge::new(c.wanted as i64))],
        )?;
        let states = [
            "none",
            "online",
            "listening",
            "ready",
            "disconnected",
            "dead",
        ];
        let mut count: Vec<(Labels, ConstGauge)> = states
            .iter()
            .map(|s| {
                let n = d
                    .workers
                    .iter()
                    .filter(|w| !w.status.leaving && w.status.state.name() == *s)
                    .count();
                (vec![("state", s.to_string())], ConstGauge::new(n as i64))
            })
            .collect();
        let leaving = d.workers.iter().filter(|w| w.status.leaving).count();
        count.push((
            vec![("state", "leaving".into())],
            ConstGauge::new(leaving as i64),
        ));
        family(
            &mut e,
            "herd_workers",
            "Live workers by state",
            MetricType::Gauge,
            count,
        )?;
        let kinds = [
            "crash", "reload", "age", "requests", "memory", "hung", "degraded", "app",
        ];
        family(
            &mut e,
            "herd_worker_restarts",
            "Workers started to replace another, by why: crash, reload, or the recycle's kind",
            MetricType::Counter,
            kinds.iter().map(|k| {
                let n = d.replacements.get(*k).copied().unwrap_or(0);
                (vec![("reason", k.to_string())], ConstCounter::new(n))
            }),
        )?;
        family(
            &mut e,
            "herd_reloads",
            "Rolling restarts, by outcome",
            MetricType::Counter,
            [
                ("finished", d.reloads.finished),
                ("aborted", d.reloads.aborted),
            ]
            .map(|(o, n)| (vec![("outcome", o.to_string())], ConstCounter::new(n))),
        )?;
        family(
            &mut e,
            "herd_reload_duration_seconds",
            "Seconds the finished rolling restarts took, added up",
            MetricType::Counter,
            [(vec![], ConstCounter::new(d.reloads.seconds))],
        )?;
        if let Some(last) = d.reloads.last_seconds {
            family(
                &mut e,
                "herd_reload_last_duration_seconds",
                "How long the last finished rolling restart took",
                MetricType::Gauge,
                [(vec![], ConstGauge::new(last))],
            )?;
        }
        if let Some(w) = &d.watch {
            family(
                &mut e,
                "herd_primary_watches",
                "The primary thread's watches for a worker's next request before it sleeps, by how they ended: rang (a worker wrote), timed_out, gave_way (another process needed the CPU)",
                MetricType::Counter,
                [
                    ("rang", w.rang),
                    ("timed_out", w.timed_out),
                    ("gave_way", w.gave_way),
                ]
                .map(|(o, n)| (vec![("outcome", o.to_string())], ConstCounter::new(n))),
            )?;
            family(
                &mut e,
                "herd_primary_watch_seconds",
                "Seconds the primary's thread spent watching for its workers' next requests (not counting the time it yielded the CPU)",
                MetricType::Counter,
                [(vec![], ConstCounter::new(w.seconds))],
            )?;
        }
        family(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory of each worker",
            MetricType::Gauge,
            d.workers.iter().filter_map(|w| {
                Some((
                    worker_labels(w),
                    ConstGauge::new(w.status.rss_bytes? as i64),
                ))
            }),
        )?;
        family(
            &mut e,
            "process_cpu_seconds",
            "CPU time of each worker, user and system",
            MetricType::Counter,
            d.workers
                .iter()
                .filter_map(|w| Some((worker_labels(w), ConstCounter::new(w.status.cpu_secs?)))),
        )?;
        family(
            &mut e,
            "herd_worker_uptime_seconds",
            "Seconds since each worker was started",
            MetricType::Gauge,
            d.workers
                .iter()
                .map(|w| (worker_labels(w), ConstGauge::new(w.status.uptime_secs))),
        )?;
        family(
            &mut e,
            "herd_worker_connections",
            "Open connections of each worker",
            MetricType::Gauge,
            d.workers.iter().filter_map(|w| {
                Some((
                    worker_labels(w),
                    ConstGauge::new(w.status.connections? as i64),
                ))
            }),
        )?;
        family(
            &mut e,
            "herd_worker_handled_connections",
            "Connections each worker accepted since it started",
            MetricType::Counter,
            d.workers
                .iter()
                .filter_map(|w| Some((worker_labels(w), ConstCounter::new(w.status.handled?)))),
        )?;
        family(
            &mut e,
            "herd_worker_requests",
            "Requests each worker served (herd-aware workers, in serve)",
            MetricType::Counter,
            d.workers
                .iter()
                .filter_map(|w| Some((worker_labels(w), ConstCounter::new(w.status.requests?)))),
        )?;
        family(
            &mut e,
            "herd_worker_requests_in_flight",
            "Requests each worker is serving now",
            MetricType::Gauge,
            d.workers.iter().filter_map(|w| {
                Some((
                    worker_labels(w),
                    ConstGauge::new(w.status.in_flight? as i64),
                ))
            }),
        )?;
        {
            let mut metric = e.encode_descriptor(
                "herd_worker_request_duration_seconds",
                "How long each worker's requests took",
                None,
                MetricType::Histogram,
            )?;
            for w in &d.workers {
                let Some((counts, sum)) = &w.status.latency else {
                    continue;
                };
                let labels = worker_labels(w);
                let mut buckets: Vec<(f64, u64)> = crate::worker::LATENCY_BOUNDS_MS
                    .iter()
                    .map(|ms| ms / 1000.0)
                    .chain([f64::INFINITY])
                    .zip(counts.iter().copied())
                    .collect();
                buckets.truncate(counts.len());
                let count = counts.iter().fold(0u64, |a, b| a.saturating_add(*b));
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        *sum, count, &buckets, None,
                    )?;
            }
        }
        let listener = |l: &crate::primary::ListenStatus| vec![("address", l.address.to_string())];
        family(
            &mut e,
            "herd_listener_handed_off_connections",
            "Connections the primary handed to workers, per listener (rr, lc)",
            MetricType::Counter,
            d.listeners
                .iter()
                .map(|l| (listener(l), ConstCounter::new(l.handed_off))),
        )?;
        family(
            &mut e,
            "herd_listener_queued_connections",
            "Connections waiting for a worker, in the primary or a worker's queue",
            MetricType::Gauge,
            d.listeners
                .iter()
                .map(|l| (listener(l), ConstGauge::new((l.waiting + l.queued) as i64))),
        )?;
        family(
            &mut e,
            "herd_reload_in_progress",
            "1 while a rolling restart runs",
            MetricType::Gauge,
            [(vec![], ConstGauge::new(i64::from(c.reload.is_some())))],
        )?;
        super::cache_metrics::encode(&mut e, &d.caches)?;
        #[cfg(feature = "redis")]
        if let Some(h) = &d.redis {
            super::cache_metrics::encode_redis(&mut e, h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_families_are_named_as_their_samples() {
        let open = "# HELP a_b Help.\n# TYPE a_b counter\na_b_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::prometheus_text(open),
            "# HELP a_b_total Help.\n# TYPE a_b_total counter\na_b_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
