//! Metrics: the Prometheus registry and the `/metrics` endpoint.
//!
//! Owns: every metric's name, help text and labels, and the HTTP server that serves them
//! (axum on its own tokio runtime thread, 127.0.0.1 by default). Operators and sinks update
//! metrics through [`Metrics`]; the hot path folds its counts per chunk first so that a metric
//! update is never per event.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A family that is exposed (its `# HELP`/`# TYPE`) even before it has a series: for the
/// Kafka metrics, whose label values (topics, partitions) exist only in a Kafka run, so that
/// every run exposes every documented name.
#[derive(Debug)]
struct AlwaysDescribed<M>(M);

impl<M: EncodeMetric> EncodeMetric for AlwaysDescribed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}
type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// All of evflow's metrics. Cheap to clone (every handle is an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    // engine
    pub input_lines: Counter,
    pub events: Family<Labels, Counter>,
    /// Sum of `events` over actions (not exported; for summaries and progress).
    pub events_decoded: Counter,
    pub events_ignored: Family<Labels, Counter>,
    pub decode_errors: Family<Labels, Counter>,
    pub dead_letters: Counter,
    pub late_events: Family<Labels, Counter>,
    pub clock_skew_events: Counter,
    pub orphan_stops: Counter,
    pub duplicate_frames: Counter,
    pub ocpp_quirks: Family<Labels, Counter>,
    pub watermark: FloatGauge,
    pub watermark_lag: FloatGauge,
    pub chargers: Gauge,
    // domain
    pub health_score: Family<Labels, FloatGauge>,
    pub health_component: Family<Labels, FloatGauge>,
    pub anomalies_open: Family<Labels, Gauge>,
    pub anomalies: Family<Labels, Counter>,
    pub notifications: Family<Labels, Counter>,
    pub notifications_suppressed: Family<Labels, Counter>,
    pub sessions: Family<Labels, Counter>,
    pub energy_wh: Family<Labels, FloatCounter>,
    pub revenue_excl_vat: Family<Labels, FloatCounter>,
    pub revenue_incl_vat: Family<Labels, FloatCounter>,
    // kafka
    pub kafka_consumer_lag: Family<Labels, Gauge>,
    pub kafka_records: Family<Labels, Counter>,
    pub kafka_delivery_errors: Family<Labels, Counter>,
    pub kafka_committed_offset: Family<Labels, Gauge>,
    pub leakage: Family<Labels, Counter>,
    pub leakage_open: Family<Labels, Gauge>,
    // delivery (sinks::webhook, sinks::alertmanager); labels sink, route
    pub delivery_attempts: Family<Labels, Counter>,
    pub delivered: Family<Labels, Counter>,
    pub delivery_dead_letters: Family<Labels, Counter>,
    pub delivery_backlog: Family<Labels, Gauge>,
    pub alerts_firing: Family<Labels, Gauge>,
    // commits (dataflow::commit)
    pub commits: Counter,
    pub commits_postponed: Counter,
    pub commit_duration: Histogram,
    pub snapshot_bytes: Gauge,
    pub last_commit: FloatGauge,
    pub restore_duration: FloatGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("evflow");
        let m = MetricsBuilder::default();
        r.register(
            "input_lines",
            "Input lines read (envelopes, good or bad)",
            m.input_lines.clone(),
        );
        r.register(
            "events",
            "Normalised events decoded, by OCPP action",
            m.events.clone(),
        );
        r.register(
            "events_ignored",
            "Valid OCPP frames of actions evflow does not use, by action",
            m.events_ignored.clone(),
        );
        r.register(
            "decode_errors",
            "Lines that could not be decoded, by dead-letter reason",
            m.decode_errors.clone(),
        );
        r.register(
            "dead_letters",
            "Lines written to the dead letter output",
            m.dead_letters.clone(),
        );
        r.register(
            "late_events",
            "Events that arrived after the watermark had passed their event time, by action",
            m.late_events.clone(),
        );
        r.register("clock_skew_events", "Events whose charger timestamp was replaced by the receive time (clock skew beyond tolerance)", m.clock_skew_events.clone());
        r.register(
            "orphan_stops",
            "StopTransactions for transactions evflow never saw start",
            m.orphan_stops.clone(),
        );
        r.register(
            "duplicate_frames",
            "Verbatim repeats of a frame already received from the charger (retries), dropped",
            m.duplicate_frames.clone(),
        );
        r.register(
            "ocpp_quirks",
            "Tolerated deviations from OCPP in decoded frames (real chargers' quirks), by quirk",
            m.ocpp_quirks.clone(),
        );
        r.register(
            "watermark_timestamp_seconds",
            "Event-time watermark, Unix seconds",
            m.watermark.clone(),
        );
        r.register(
            "watermark_lag_seconds",
            "Newest event time seen minus the watermark, seconds",
            m.watermark_lag.clone(),
        );
        r.register("chargers", "Charge points with state", m.chargers.clone());
        r.register(
            "health_score",
            "Latest health score (0-100) per site",
            m.health_score.clone(),
        );
        r.register(
            "health_component",
            "Latest health score component (0-1) per site: availability, heartbeat_regularity, session_success, error_free, anomaly_free",
            m.health_component.clone(),
        );
        r.register(
            "anomalies_open",
            "Anomalies currently open, by kind",
            m.anomalies_open.clone(),
        );
        r.register(
            "anomalies",
            "Anomalies opened, by kind",
            m.anomalies.clone(),
        );
        r.register(
            "notifications",
            "Notifications emitted, by kind and audience",
            m.notifications.clone(),
        );
        r.register(
            "notifications_suppressed",
            "Driver notifications not sent, by kind and reason (repeat: hysteresis; rate_limit; superseded: replaced while held for quiet hours)",
            m.notifications_suppressed.clone(),
        );
        r.register(
            "sessions",
            "Finished sessions, by site and payment method",
            m.sessions.clone(),
        );
        r.register(
            "session_energy_watt_hours",
            "Energy of finished sessions, Wh, by site",
            m.energy_wh.clone(),
        );
        r.register("revenue_excl_vat", "Revenue excluding VAT of finished sessions (in currency units; exact figures are in revenue/ Parquet), by site and currency", m.revenue_excl_vat.clone());
        r.register(
            "revenue_incl_vat",
            "Revenue including VAT of finished sessions (in currency units), by site and currency",
            m.revenue_incl_vat.clone(),
        );
        r.register(
            "kafka_consumer_lag",
            "Kafka source: records behind the partition's high watermark, by topic and partition",
            AlwaysDescribed(m.kafka_consumer_lag.clone()),
        );
        r.register(
            "kafka_records",
            "Kafka source: records consumed, by topic",
            AlwaysDescribed(m.kafka_records.clone()),
        );
        r.register(
            "kafka_delivery_errors",
            "Kafka sinks: records librdkafka could not deliver (after its retries), by topic",
            AlwaysDescribed(m.kafka_delivery_errors.clone()),
        );
        r.register(
            "kafka_committed_offset",
            "Kafka source: the next offset of the last commit (manifest), by topic and partition",
            AlwaysDescribed(m.kafka_committed_offset.clone()),
        );
        r.register(
            "revenue_leakage",
            "Revenue leakage records opened (leakage.jsonl), by kind",
            m.leakage.clone(),
        );
        r.register(
            "revenue_leakage_open",
            "Revenue leakage records open now, by kind",
            m.leakage_open.clone(),
        );
        r.register(
            "delivery_attempts",
            "Webhook and Alertmanager sinks: HTTP requests made, by sink, route and outcome (ok, failed)",
            AlwaysDescribed(m.delivery_attempts.clone()),
        );
        r.register(
            "delivered",
            "Webhook and Alertmanager sinks: records delivered (acknowledged with 2xx), by sink and route",
            AlwaysDescribed(m.delivered.clone()),
        );
        r.register(
            "delivery_dead_letters",
            "Webhook sinks: notifications given up after the configured attempts (written to the route's dead letter), by sink and route",
            AlwaysDescribed(m.delivery_dead_letters.clone()),
        );
        r.register(
            "delivery_backlog",
            "Webhook and Alertmanager sinks: records waiting for delivery, by sink and route",
            AlwaysDescribed(m.delivery_backlog.clone()),
        );
        r.register(
            "alerts_firing",
            "Alertmanager sinks: alerts currently firing (sent with no end), by route",
            AlwaysDescribed(m.alerts_firing.clone()),
        );
        r.register(
            "commits",
            "Commits made (snapshots plus manifest; Kafka source only)",
            m.commits.clone(),
        );
        r.register(
            "commits_postponed",
            "Commits skipped because the outputs could not be made durable (e.g. Kafka sink down)",
            m.commits_postponed.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time from a commit boundary being reached to its manifest being written",
            m.commit_duration.clone(),
        );
        r.register(
            "commit_snapshot_bytes",
            "Size of the last commit's snapshots, all workers",
            m.snapshot_bytes.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "Wall-clock time of the last commit, Unix seconds",
            m.last_commit.clone(),
        );
        r.register(
            "restore_duration_seconds",
            "Time spent reading the last commit's snapshots at start (0: fresh start)",
            m.restore_duration.clone(),
        );
        // Series with known label values exist from the start (at 0), so dashboards and alert
        // rules see them before the first occurrence.
        let actions = [
            "BootNotification",
            "Heartbeat",
            "StatusNotification",
            "MeterValues",
            "StartTransaction",
            "StopTransaction",
            "Authorize",
            "CALLRESULT",
            "CALLERROR",
        ];
        for a in actions {
            let _ = m.events.get_or_create(&label("action", a));
            let _ = m.late_events.get_or_create(&label("action", a));
        }
        for a in [
            "DataTransfer",
            "FirmwareStatusNotification",
            "DiagnosticsStatusNotification",
        ] {
            let _ = m.events_ignored.get_or_create(&label("action", a));
        }
        for q in crate::ocpp::v16::quirk::ALL {
            let _ = m.ocpp_quirks.get_or_create(&label("quirk", *q));
        }
        for r in crate::model::DeadLetterReason::ALL {
            let _ = m.decode_errors.get_or_create(&label("reason", r.as_str()));
        }
        for k in crate::model::AnomalyKind::ALL {
            let _ = m.anomalies.get_or_create(&label("kind", k.as_str()));
            let _ = m.anomalies_open.get_or_create(&label("kind", k.as_str()));
        }
        for k in crate::model::LeakageKind::ALL {
            let _ = m.leakage.get_or_create(&label("kind", k.as_str()));
            let _ = m.leakage_open.get_or_create(&label("kind", k.as_str()));
        }
        for k in crate::model::NotificationKind::ALL {
            for a in ["driver", "operator"] {
                let _ = m
                    .notifications
                    .get_or_create(&labels2("kind", k.as_str(), "audience", a));
            }
        }
        Metrics {
            registry: Arc::new(r),
            input_lines: m.input_lines,
            events: m.events,
            events_decoded: Counter::default(),
            events_ignored: m.events_ignored,
            decode_errors: m.decode_errors,
            dead_letters: m.dead_letters,
            late_events: m.late_events,
            clock_skew_events: m.clock_skew_events,
            orphan_stops: m.orphan_stops,
            duplicate_frames: m.duplicate_frames,
            ocpp_quirks: m.ocpp_quirks,
            watermark: m.watermark,
            watermark_lag: m.watermark_lag,
            chargers: m.chargers,
            health_score: m.health_score,
            health_component: m.health_component,
            anomalies_open: m.anomalies_open,
            anomalies: m.anomalies,
            notifications: m.notifications,
            notifications_suppressed: m.notifications_suppressed,
            sessions: m.sessions,
            energy_wh: m.energy_wh,
            revenue_excl_vat: m.revenue_excl_vat,
            revenue_incl_vat: m.revenue_incl_vat,
            kafka_consumer_lag: m.kafka_consumer_lag,
            kafka_records: m.kafka_records,
            kafka_delivery_errors: m.kafka_delivery_errors,
            kafka_committed_offset: m.kafka_committed_offset,
            leakage: m.leakage,
            leakage_open: m.leakage_open,
            delivery_attempts: m.delivery_attempts,
            delivered: m.delivered,
            delivery_dead_letters: m.delivery_dead_letters,
            delivery_backlog: m.delivery_backlog,
            alerts_firing: m.alerts_firing,
            commits: m.commits,
            commits_postponed: m.commits_postponed,
            commit_duration: m.commit_duration,
            snapshot_bytes: m.snapshot_bytes,
            last_commit: m.last_commit,
            restore_duration: m.restore_duration,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }

    /// Starts `/metrics` on `addr` (port 0 picks a free port) in a background thread and
    /// returns the bound address.
    pub fn serve(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let bound = std_listener.local_addr()?;
        let metrics = self.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("evflow-metrics".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("metrics listener: {e}");
                            return;
                        }
                    };
                    let app = axum::Router::new().route(
                        "/metrics",
                        axum::routing::get(move || {
                            let body = metrics.encode();
                            async move {
                                (
                                    [(
                                        axum::http::header::CONTENT_TYPE,
                                        "text/plain; version=0.0.4; charset=utf-8",
                                    )],
                                    body,
                                )
                            }
                        }),
                    );
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!("metrics server: {e}");
                    }
                })
            })?;
        Ok(bound)
    }
}

struct MetricsBuilder {
    input_lines: Counter,
    events: Family<Labels, Counter>,
    events_ignored: Family<Labels, Counter>,
    decode_errors: Family<Labels, Counter>,
    dead_letters: Counter,
    late_events: Family<Labels, Counter>,
    clock_skew_events: Counter,
    orphan_stops: Counter,
    duplicate_frames: Counter,
    ocpp_quirks: Family<Labels, Counter>,
    watermark: FloatGauge,
    watermark_lag: FloatGauge,
    chargers: Gauge,
    health_score: Family<Labels, FloatGauge>,
    health_component: Family<Labels, FloatGauge>,
    anomalies_open: Family<Labels, Gauge>,
    anomalies: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
    notifications_suppressed: Family<Labels, Counter>,
    sessions: Family<Labels, Counter>,
    energy_wh: Family<Labels, FloatCounter>,
    revenue_excl_vat: Family<Labels, FloatCounter>,
    revenue_incl_vat: Family<Labels, FloatCounter>,
    kafka_consumer_lag: Family<Labels, Gauge>,
    kafka_records: Family<Labels, Counter>,
    kafka_delivery_errors: Family<Labels, Counter>,
    kafka_committed_offset: Family<Labels, Gauge>,
    leakage: Family<Labels, Counter>,
    leakage_open: Family<Labels, Gauge>,
    delivery_attempts: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    delivery_dead_letters: Family<Labels, Counter>,
    delivery_backlog: Family<Labels, Gauge>,
    alerts_firing: Family<Labels, Gauge>,
    commits: Counter,
    commits_postponed: Counter,
    commit_duration: Histogram,
    snapshot_bytes: Gauge,
    last_commit: FloatGauge,
    restore_duration: FloatGauge,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        MetricsBuilder {
            input_lines: Default::default(),
            events: Default::default(),
            events_ignored: Default::default(),
            decode_errors: Default::default(),
            dead_letters: Default::default(),
            late_events: Default::default(),
            clock_skew_events: Default::default(),
            orphan_stops: Default::default(),
            duplicate_frames: Default::default(),
            ocpp_quirks: Default::default(),
            watermark: Default::default(),
            watermark_lag: Default::default(),
            chargers: Default::default(),
            health_score: Default::default(),
            health_component: Default::default(),
            anomalies_open: Default::default(),
            anomalies: Default::default(),
            notifications: Default::default(),
            notifications_suppressed: Default::default(),
            sessions: Default::default(),
            energy_wh: Default::default(),
            revenue_excl_vat: Default::default(),
            revenue_incl_vat: Default::default(),
            kafka_consumer_lag: Default::default(),
            kafka_records: Default::default(),
            kafka_delivery_errors: Default::default(),
            kafka_committed_offset: Default::default(),
            leakage: Default::default(),
            leakage_open: Default::default(),
            delivery_attempts: Default::default(),
            delivered: Default::default(),
            delivery_dead_letters: Default::default(),
            delivery_backlog: Default::default(),
            alerts_firing: Default::default(),
            commits: Default::default(),
            commits_postponed: Default::default(),
            // 1 ms to ~16 s.
            commit_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            snapshot_bytes: Default::default(),
            last_commit: Default::default(),
            restore_duration: Default::default(),
        }
    }
}

/// One label pair, for `Family::get_or_create`.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

pub fn labels2(
    a: &'static str,
    av: impl Into<String>,
    b: &'static str,
    bv: impl Into<String>,
) -> Labels {
    vec![(a, av.into()), (b, bv.into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_uses_documented_names() {
        let m = Metrics::new();
        let _ = m.events.get_or_create(&label("action", "Heartbeat")).inc();
        m.revenue_incl_vat
            .get_or_create(&labels2("site_id", "S", "currency", "EUR"))
            .inc_by(1.5);
        let text = m.encode();
        assert!(
            text.contains("evflow_events_total{action=\"Heartbeat\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("evflow_revenue_incl_vat_total{site_id=\"S\",currency=\"EUR\"} 1.5"),
            "{text}"
        );
        assert!(text.contains("# TYPE evflow_watermark_timestamp_seconds gauge"));
        // The Kafka families are described before (without) any series.
        assert!(
            text.contains("# TYPE evflow_kafka_consumer_lag gauge"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE evflow_kafka_records counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE evflow_kafka_delivery_errors counter"),
            "{text}"
        );
    }
}
