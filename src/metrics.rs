//! Metrics: the Prometheus registry and the `/metrics` endpoint.
//!
//! Owns: every metric's name, help text, labels and unit (the catalogue is the README's
//! "Metrics" table), what a record does to them ([`Metrics::session_finished`],
//! [`Metrics::health_row`], [`Metrics::anomaly_record`], [`Metrics::leakage_record`]), and the
//! HTTP server that serves them (axum on its own tokio runtime thread, 127.0.0.1 by default).
//! Operators and sinks update metrics through [`Metrics`]; the hot path folds its counts per
//! chunk first so that a metric update is never per event.
//!
//! Conventions: names are `evflow_<what>[_<unit>]` with base units (seconds, bytes, joules),
//! counters are exposed with `_total` (prometheus-client appends it), ratios are 0–1 (the
//! health score is a 0–100 score, as in `health/`). Per-site labels are the default
//! granularity; per-charger series are opt-in (`[metrics] per_charger`) and bounded by
//! `per_charger_limit`. Every family's cardinality bound is in the README.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;

use crate::config::{MetricsConfig, PerCharger};
use crate::model::{
    AnomalyKind, AnomalyRecord, AnomalyState, HealthComponent, HealthLevel, HealthRow,
    LeakageRecord, SessionRecord,
};

type Labels = Vec<(&'static str, String)>;

/// Joules per watt-hour: energy is exposed in the base unit.
const JOULES_PER_WH: f64 = 3600.0;

/// A family that is exposed (its `# HELP`/`# TYPE`) even before it has a series: for the
/// families whose series exist only in some runs (Kafka, delivery, per-charger) or after a
/// first record (sessions, health rows, anomalies per site), so that every run exposes every
/// documented name from the start.
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
    pub build_info: Family<Labels, Gauge>,
    pub input_lines: Counter,
    pub events: Family<Labels, Counter>,
    /// Sum of `events` over actions (not exported; for summaries and progress).
    pub events_decoded: Counter,
    pub events_ignored: Family<Labels, Counter>,
    /// Lines dead-lettered, by reason: exported as `evflow_dead_letters_total{reason}`.
    pub decode_errors: Family<Labels, Counter>,
    /// Sum of `decode_errors` over reasons (not exported; for summaries).
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
    /// Per site, 0–100.
    pub health_score: Family<Labels, FloatGauge>,
    pub health_component: Family<Labels, FloatGauge>,
    /// The worst chargers' health (`[metrics] per_charger = "worst"`); see `worst`.
    pub charger_health_score: Family<Labels, FloatGauge>,
    pub anomalies_open: Family<Labels, Gauge>,
    pub anomalies: Family<Labels, Counter>,
    pub site_anomalies_open: Family<Labels, Gauge>,
    pub chargers_offline: Family<Labels, Gauge>,
    pub notifications: Family<Labels, Counter>,
    pub notifications_suppressed: Family<Labels, Counter>,
    pub sessions: Family<Labels, Counter>,
    /// Exported in joules (`evflow_session_energy_joules_total`).
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
    // delivery (sinks::webhook, sinks::alertmanager); labels sink, route (, outcome)
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
    /// The latest score of every charger, from which the worst are exported at each scrape.
    worst: Arc<Mutex<WorstChargers>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Outcomes of `delivery_attempts`.
pub const DELIVERY_OUTCOMES: [&str; 2] = ["ok", "failed"];

impl Metrics {
    /// Metrics with the default configuration (no per-charger series).
    pub fn new() -> Metrics {
        Self::with_config(&MetricsConfig::default())
    }

    pub fn with_config(cfg: &MetricsConfig) -> Metrics {
        let limit = match cfg.per_charger {
            PerCharger::Off => 0,
            PerCharger::Worst => cfg.per_charger_limit,
        };
        let mut m = Metrics {
            registry: Arc::new(Registry::default()),
            build_info: Default::default(),
            input_lines: Default::default(),
            events: Default::default(),
            events_decoded: Default::default(),
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
            charger_health_score: Default::default(),
            anomalies_open: Default::default(),
            anomalies: Default::default(),
            site_anomalies_open: Default::default(),
            chargers_offline: Default::default(),
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
            worst: Arc::new(Mutex::new(WorstChargers::new(limit))),
        };
        m.registry = Arc::new(m.register());
        m.seed_known_series();
        m
    }

    fn register(&self) -> Registry {
        let mut r = Registry::with_prefix("evflow");
        let m = self;
        r.register(
            "build_info",
            "Always 1; the running evflow's version",
            m.build_info.clone(),
        );
        // engine
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
            "dead_letters",
            "Lines written to the dead letter output (input and side inputs), by reason",
            m.decode_errors.clone(),
        );
        r.register(
            "late_events",
            "Events that arrived after the watermark had passed their event time, by action",
            m.late_events.clone(),
        );
        r.register(
            "clock_skew_events",
            "Events whose charger timestamp was replaced by the receive time (clock skew beyond tolerance)",
            m.clock_skew_events.clone(),
        );
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
            "Newest event time seen minus the watermark, seconds (grows when a Kafka partition lags)",
            m.watermark_lag.clone(),
        );
        r.register("chargers", "Charge points with state", m.chargers.clone());
        // domain
        r.register(
            "site_health_score",
            "Latest health score of a site, 0-100 (the health/ score), by site",
            AlwaysDescribed(m.health_score.clone()),
        );
        r.register(
            "site_health_component",
            "Latest health score component of a site, ratio 0-1, by site and component (availability, heartbeat_regularity, session_success, error_free, anomaly_free)",
            AlwaysDescribed(m.health_component.clone()),
        );
        r.register(
            "charger_health_score",
            "Latest health score, 0-100, of the per_charger_limit worst chargers (only with [metrics] per_charger = \"worst\")",
            AlwaysDescribed(m.charger_health_score.clone()),
        );
        r.register(
            "anomalies_open",
            "Anomalies open now, by kind (fleet-wide)",
            m.anomalies_open.clone(),
        );
        r.register(
            "anomalies",
            "Anomalies opened, by kind",
            m.anomalies.clone(),
        );
        r.register(
            "site_anomalies_open",
            "Anomalies open now, by site and kind (a series appears with a site's first anomaly of the kind)",
            AlwaysDescribed(m.site_anomalies_open.clone()),
        );
        r.register(
            "chargers_offline",
            "Chargers offline now (communication_lost open), by site",
            AlwaysDescribed(m.chargers_offline.clone()),
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
            AlwaysDescribed(m.sessions.clone()),
        );
        r.register(
            "session_energy_joules",
            "Energy of finished sessions, joules (1 kWh = 3.6e6 J), by site",
            AlwaysDescribed(m.energy_wh.clone()),
        );
        r.register(
            "revenue_excl_vat",
            "Revenue excluding VAT of finished sessions, in currency units (exact figures are in revenue/), by site, payment method and currency",
            AlwaysDescribed(m.revenue_excl_vat.clone()),
        );
        r.register(
            "revenue_incl_vat",
            "Revenue including VAT of finished sessions, in currency units, by site, payment method and currency",
            AlwaysDescribed(m.revenue_incl_vat.clone()),
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
        // kafka
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
        // delivery
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
        // commits
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
        r
    }

    /// Series with known label values exist from the start (at 0), so dashboards and alert
    /// rules see them before the first occurrence.
    fn seed_known_series(&self) {
        let m = self;
        m.build_info
            .get_or_create(&label("version", env!("CARGO_PKG_VERSION")))
            .set(1);
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
        for k in AnomalyKind::ALL {
            let _ = m.anomalies.get_or_create(&label("kind", k.as_str()));
            let _ = m.anomalies_open.get_or_create(&label("kind", k.as_str()));
        }
        for k in crate::model::LeakageKind::ALL {
            let _ = m.leakage.get_or_create(&label("kind", k.as_str()));
            let _ = m.leakage_open.get_or_create(&label("kind", k.as_str()));
        }
        use crate::stages::notifications::Suppressed;
        for k in crate::model::NotificationKind::ALL {
            for a in ["driver", "operator"] {
                let _ = m
                    .notifications
                    .get_or_create(&labels2("kind", k.as_str(), "audience", a));
            }
            for why in [
                Suppressed::Repeat,
                Suppressed::RateLimit,
                Suppressed::Superseded,
            ] {
                let _ = m.notifications_suppressed.get_or_create(&labels2(
                    "kind",
                    k.as_str(),
                    "reason",
                    why.as_str(),
                ));
            }
        }
    }

    /// A delivery route was opened: its series exist from then on (at 0), so that a route
    /// that never fails still has a failure series for alerts and dashboards. `sink` is
    /// `webhook` or `alertmanager`.
    pub fn route_opened(&self, sink: &str, route: &str) {
        let key = labels2("sink", sink, "route", route);
        for outcome in DELIVERY_OUTCOMES {
            let mut l = key.clone();
            l.push(("outcome", outcome.to_string()));
            let _ = self.delivery_attempts.get_or_create(&l);
        }
        let _ = self.delivered.get_or_create(&key);
        let _ = self.delivery_dead_letters.get_or_create(&key);
        let _ = self.delivery_backlog.get_or_create(&key);
        if sink == "alertmanager" {
            let _ = self.alerts_firing.get_or_create(&label("route", route));
        }
    }

    /// A finished (priced) session: sessions, energy and revenue by site (and payment method).
    pub fn session_finished(&self, s: &SessionRecord) {
        let site_method = labels2("site_id", &*s.site_id, "payment_method", &*s.payment_method);
        self.sessions.get_or_create(&site_method).inc();
        self.energy_wh
            .get_or_create(&label("site_id", &*s.site_id))
            .inc_by(s.energy_wh.max(0) as f64 * JOULES_PER_WH);
        let mut money = site_method;
        money.push(("currency", s.currency.to_string()));
        // Counters cannot go down: a (never expected) negative total counts as 0.
        self.revenue_excl_vat
            .get_or_create(&money)
            .inc_by(s.total_excl_vat.to_f64().unwrap_or(0.0).max(0.0));
        self.revenue_incl_vat
            .get_or_create(&money)
            .inc_by(s.total_incl_vat.to_f64().unwrap_or(0.0).max(0.0));
    }

    /// A health snapshot: site rows set the site gauges; charger rows feed the worst-chargers
    /// view (when on); connector rows are only in `health/`.
    pub fn health_row(&self, h: &HealthRow) {
        match h.level {
            HealthLevel::Site => {
                let site = &*h.site_id;
                self.health_score
                    .get_or_create(&label("site_id", site))
                    .set(h.score);
                let values = [
                    h.availability,
                    h.heartbeat_regularity,
                    h.session_success,
                    h.error_free,
                    h.anomaly_free,
                ];
                for (c, v) in HealthComponent::ALL.into_iter().zip(values) {
                    self.health_component
                        .get_or_create(&labels2("site_id", site, "component", c.as_str()))
                        .set(v);
                }
                // Every site has an offline count, 0 until a charger goes offline.
                let _ = self.chargers_offline.get_or_create(&label("site_id", site));
            }
            HealthLevel::Charger => {
                if let Ok(mut w) = self.worst.lock() {
                    w.update(h);
                }
            }
            HealthLevel::Connector => {}
        }
    }

    /// An anomaly record (opened or resolved): counted by kind, open now by kind and by site,
    /// and `communication_lost` as a charger offline.
    pub fn anomaly_record(&self, a: &AnomalyRecord) {
        let kind = label("kind", a.kind.as_str());
        let site_kind = labels2("site_id", &*a.site_id, "kind", a.kind.as_str());
        let offline = a.kind == AnomalyKind::CommunicationLost;
        let site = label("site_id", &*a.site_id);
        match a.state {
            AnomalyState::Open => {
                self.anomalies.get_or_create(&kind).inc();
                self.anomalies_open.get_or_create(&kind).inc();
                self.site_anomalies_open.get_or_create(&site_kind).inc();
                if offline {
                    self.chargers_offline.get_or_create(&site).inc();
                }
            }
            AnomalyState::Resolved => {
                self.anomalies_open.get_or_create(&kind).dec();
                // The per-site gauges are not seeded from a commit snapshot: an anomaly open
                // before a restart resolves without going below 0.
                dec_to_zero(&self.site_anomalies_open.get_or_create(&site_kind));
                if offline {
                    dec_to_zero(&self.chargers_offline.get_or_create(&site));
                }
            }
        }
    }

    /// A revenue leakage record (opened or resolved).
    pub fn leakage_record(&self, l: &LeakageRecord) {
        let kind = label("kind", l.kind.as_str());
        match l.state {
            AnomalyState::Open => {
                self.leakage.get_or_create(&kind).inc();
                self.leakage_open.get_or_create(&kind).inc();
            }
            AnomalyState::Resolved => {
                self.leakage_open.get_or_create(&kind).dec();
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Held while encoding, so that a scrape sees one consistent worst-N set.
        let mut worst = self.worst.lock().ok();
        if let Some(w) = worst.as_mut() {
            w.export(&self.charger_health_score);
        }
        // Writing to a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        drop(worst);
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

fn dec_to_zero(g: &Gauge) {
    if g.get() > 0 {
        g.dec();
    }
}

/// The per-charger view: the latest score of every charger (from its charger-level health
/// rows), of which the `limit` lowest are exported. Recomputed at a scrape, not per row: a
/// window's rows arrive together, and only a scrape looks.
struct WorstChargers {
    /// 0: off.
    limit: usize,
    /// charge point id → (site, latest score).
    latest: HashMap<Arc<str>, (Arc<str>, f64)>,
    /// The label sets exported now, to remove those that leave the worst N.
    exported: Vec<Labels>,
    changed: bool,
}

impl WorstChargers {
    fn new(limit: usize) -> Self {
        WorstChargers {
            limit,
            latest: HashMap::new(),
            exported: Vec::new(),
            changed: false,
        }
    }

    fn update(&mut self, h: &HealthRow) {
        if self.limit == 0 {
            return;
        }
        self.latest
            .insert(h.charge_point_id.clone(), (h.site_id.clone(), h.score));
        self.changed = true;
    }

    fn export(&mut self, family: &Family<Labels, FloatGauge>) {
        if !self.changed {
            return;
        }
        self.changed = false;
        let mut all: Vec<(&Arc<str>, &Arc<str>, f64)> = self
            .latest
            .iter()
            .map(|(cp, (site, score))| (cp, site, *score))
            .collect();
        // Lowest score first; ties by id, so the set does not flicker between scrapes.
        all.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(b.0)));
        all.truncate(self.limit);
        let now: Vec<(Labels, f64)> = all
            .into_iter()
            .map(|(cp, site, score)| (labels2("charge_point_id", &**cp, "site_id", &**site), score))
            .collect();
        for old in &self.exported {
            if !now.iter().any(|(l, _)| l == old) {
                family.remove(old);
            }
        }
        for (l, score) in &now {
            family.get_or_create(l).set(*score);
        }
        self.exported = now.into_iter().map(|(l, _)| l).collect();
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
    use crate::model::Severity;

    fn health(level: HealthLevel, site: &str, cp: &str, score: f64) -> HealthRow {
        HealthRow {
            window_start: 0,
            window_end: 900_000,
            level,
            site_id: Arc::from(site),
            charge_point_id: Arc::from(cp),
            connector_id: None,
            score,
            availability: 1.0,
            heartbeat_regularity: 0.5,
            session_success: 1.0,
            error_free: 1.0,
            anomaly_free: 1.0,
            open_anomalies: 0,
            main_cause: None,
        }
    }

    fn anomaly(kind: AnomalyKind, state: AnomalyState, site: &str) -> AnomalyRecord {
        AnomalyRecord {
            id: "a".into(),
            kind,
            state,
            charge_point_id: Arc::from("CP-1"),
            site_id: Arc::from(site),
            connector_id: None,
            event_time: 0,
            severity: Severity::Critical,
            during_maintenance: false,
            details: serde_json::Value::Null,
        }
    }

    /// The series of `name` in an exposition (`name{…} value` lines).
    fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn exposition_uses_documented_names() {
        let m = Metrics::new();
        m.events.get_or_create(&label("action", "Heartbeat")).inc();
        let text = m.encode();
        assert!(
            text.contains("evflow_events_total{action=\"Heartbeat\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE evflow_watermark_timestamp_seconds gauge"));
        assert!(text.contains("evflow_build_info{version=\""), "{text}");
        assert!(
            text.contains("evflow_dead_letters_total{reason=\"invalid_json\"} 0"),
            "{text}"
        );
        // The Kafka and delivery families are described before (without) any series.
        for family in [
            "# TYPE evflow_kafka_consumer_lag gauge",
            "# TYPE evflow_kafka_records counter",
            "# TYPE evflow_kafka_delivery_errors counter",
            "# TYPE evflow_delivery_attempts counter",
            "# TYPE evflow_delivery_backlog gauge",
        ] {
            assert!(text.contains(family), "{family}:\n{text}");
        }
        // No per-charger series by default.
        assert!(series(&text, "evflow_charger_health_score").is_empty());
    }

    #[test]
    fn routes_have_their_series_from_the_start() {
        let m = Metrics::new();
        m.route_opened("webhook", "ops");
        let text = m.encode();
        assert!(text.contains(
            "evflow_delivery_attempts_total{sink=\"webhook\",route=\"ops\",outcome=\"failed\"} 0"
        ));
        assert!(text.contains("evflow_delivery_backlog{sink=\"webhook\",route=\"ops\"} 0"));
        assert!(series(&text, "evflow_alerts_firing").is_empty());
    }

    #[test]
    fn health_rows_set_site_gauges_and_only_sites() {
        let m = Metrics::new();
        m.health_row(&health(HealthLevel::Site, "S1", "", 87.5));
        m.health_row(&health(HealthLevel::Charger, "S1", "CP-1", 10.0));
        m.health_row(&health(HealthLevel::Connector, "S1", "CP-1", 10.0));
        let text = m.encode();
        assert_eq!(
            series(&text, "evflow_site_health_score"),
            ["evflow_site_health_score{site_id=\"S1\"} 87.5"]
        );
        assert!(text.contains(
            "evflow_site_health_component{site_id=\"S1\",component=\"heartbeat_regularity\"} 0.5"
        ));
        assert_eq!(
            series(&text, "evflow_chargers_offline"),
            ["evflow_chargers_offline{site_id=\"S1\"} 0"]
        );
        assert!(series(&text, "evflow_charger_health_score").is_empty());
    }

    #[test]
    fn worst_chargers_are_bounded_and_follow_the_latest_scores() {
        let m = Metrics::with_config(&MetricsConfig {
            per_charger: PerCharger::Worst,
            per_charger_limit: 2,
            ..MetricsConfig::default()
        });
        for (cp, score) in [
            ("CP-1", 90.0),
            ("CP-2", 40.0),
            ("CP-3", 60.0),
            ("CP-4", 100.0),
        ] {
            m.health_row(&health(HealthLevel::Charger, "S1", cp, score));
        }
        let text = m.encode();
        let mut got = series(&text, "evflow_charger_health_score");
        got.sort();
        assert_eq!(
            got,
            [
                "evflow_charger_health_score{charge_point_id=\"CP-2\",site_id=\"S1\"} 40.0",
                "evflow_charger_health_score{charge_point_id=\"CP-3\",site_id=\"S1\"} 60.0",
            ],
            "{text}"
        );
        // CP-2 recovers and CP-1 degrades: CP-2's series is removed, not left stale.
        m.health_row(&health(HealthLevel::Charger, "S1", "CP-2", 100.0));
        m.health_row(&health(HealthLevel::Charger, "S1", "CP-1", 20.0));
        let text = m.encode();
        let mut got = series(&text, "evflow_charger_health_score");
        got.sort();
        assert_eq!(
            got,
            [
                "evflow_charger_health_score{charge_point_id=\"CP-1\",site_id=\"S1\"} 20.0",
                "evflow_charger_health_score{charge_point_id=\"CP-3\",site_id=\"S1\"} 60.0",
            ],
            "{text}"
        );
    }

    #[test]
    fn sessions_count_revenue_by_payment_method_and_energy_in_joules() {
        let m = Metrics::new();
        use crate::model::{CostPair, EnergySource};
        use rust_decimal::Decimal;
        let s = SessionRecord {
            charge_point_id: "CP".into(),
            connector_id: 1,
            site_id: "S1".into(),
            transaction_id: "1".into(),
            id_tag: "T".into(),
            start_time: 0,
            end_time: 1000,
            energy_wh: 1000,
            energy_source: EnergySource::Registers,
            stop_reason: "Local".into(),
            payment_method: "card".into(),
            tariff_id: "t".into(),
            currency: "EUR".into(),
            total_excl_vat: Decimal::new(1000, 2),
            vat: Decimal::new(190, 2),
            total_incl_vat: Decimal::new(1190, 2),
            late: false,
            account: "T".into(),
            plan_id: None,
            charging_ms: 1000,
            parking_ms: 0,
            energy_cost: CostPair::default(),
            time_cost: CostPair::default(),
            parking_cost: CostPair::default(),
            fixed_cost: CostPair::default(),
            included_energy_wh: 0,
            discount: CostPair::default(),
            payment_fee: Decimal::ZERO,
            net: Decimal::new(1000, 2),
            periods: vec![],
            audit: Default::default(),
        };
        m.session_finished(&s);
        let text = m.encode();
        assert!(text.contains(
            "evflow_revenue_incl_vat_total{site_id=\"S1\",payment_method=\"card\",currency=\"EUR\"} 11.9"
        ), "{text}");
        assert!(text.contains("evflow_sessions_total{site_id=\"S1\",payment_method=\"card\"} 1"));
        assert!(text.contains("evflow_session_energy_joules_total{site_id=\"S1\"} 3600000.0"));
    }

    #[test]
    fn open_anomalies_by_kind_and_site_and_offline_chargers() {
        let m = Metrics::new();
        m.anomaly_record(&anomaly(
            AnomalyKind::CommunicationLost,
            AnomalyState::Open,
            "S1",
        ));
        m.anomaly_record(&anomaly(AnomalyKind::MeterError, AnomalyState::Open, "S2"));
        let text = m.encode();
        assert!(text.contains("evflow_chargers_offline{site_id=\"S1\"} 1"));
        assert!(text
            .contains("evflow_site_anomalies_open{site_id=\"S1\",kind=\"communication_lost\"} 1"));
        assert!(text.contains("evflow_anomalies_open{kind=\"meter_error\"} 1"));
        assert!(text.contains("evflow_anomalies_total{kind=\"communication_lost\"} 1"));
        m.anomaly_record(&anomaly(
            AnomalyKind::CommunicationLost,
            AnomalyState::Resolved,
            "S1",
        ));
        // A resolve of an anomaly opened before a restart (not counted here) stays at 0.
        m.anomaly_record(&anomaly(
            AnomalyKind::CommunicationLost,
            AnomalyState::Resolved,
            "S1",
        ));
        let text = m.encode();
        assert!(text.contains("evflow_chargers_offline{site_id=\"S1\"} 0"));
        assert!(text
            .contains("evflow_site_anomalies_open{site_id=\"S1\",kind=\"communication_lost\"} 0"));
    }
}
