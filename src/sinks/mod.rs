//! Sinks: where evflow's records go.
//!
//! Owns: all output I/O. [`OutputSinks`] receives the records of one completed timely time,
//! in a deterministic order, and writes them: `sessions/`, `charging_periods/`, `revenue/`,
//! `health/`, `uptime/`, `outages/` as Parquet ([`parquet`]), `anomalies.jsonl`,
//! `notifications.jsonl`, `dead-letter.jsonl` ([`jsonl`]), and, with `[output.kafka]`, the same
//! JSONL records to Kafka topics ([`kafka`]).
//! It also keeps the domain metrics and the run summary, which are about what was written.

pub mod alertmanager;
pub mod cdr;
pub mod http;
pub mod jsonl;
pub mod kafka;
pub mod parquet;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::config::RouteConfig;
use crate::metrics::{labels2, Metrics};
use crate::model::{AnomalyState, Output};
use jsonl::JsonlWriter;
use parquet::{
    ChargingPeriodsWriter, HealthWriter, OutagesWriter, RevenueWriter, SessionsWriter, UptimeWriter,
};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Parquet(#[from] parquet::ParquetError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("http: {0}")]
    Http(String),
    #[error("sink state in a commit snapshot: {0}")]
    Snapshot(String),
    #[error("notification route: {0}")]
    Route(String),
}

/// The sinks' part of a commit snapshot: (next file number, buffered rows) per Parquet
/// table, and the lengths of `anomalies.jsonl`, `notifications.jsonl`, `dead-letter.jsonl`,
/// `leakage.jsonl`, `cdrs.jsonl` (0 when not written).
pub struct SinkState {
    sessions: (u64, Vec<crate::model::SessionRecord>),
    charging_periods: (u64, Vec<parquet::ChargingPeriodRow>),
    revenue: (u64, Vec<crate::model::RevenueRow>),
    health: (u64, Vec<crate::model::HealthRow>),
    uptime: (u64, Vec<crate::model::UptimeRow>),
    outages: (u64, Vec<crate::model::OutageRecord>),
    jsonl_lengths: [u64; 5],
    /// Per notification route: the length of its JSONL file or webhook outbox.
    route_lengths: Vec<(String, u64)>,
    /// Per Alertmanager route: the alerts firing at the commit.
    firing: Vec<(String, Vec<alertmanager::FiringAlert>)>,
}

/// What a run wrote, for the summary printed at the end.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub sessions: u64,
    pub energy_wh: i64,
    /// Revenue incl. VAT per currency.
    pub revenue_incl_vat: BTreeMap<String, Decimal>,
    pub revenue_excl_vat: BTreeMap<String, Decimal>,
    /// Anomalies opened, by kind.
    pub anomalies: BTreeMap<String, u64>,
    pub notifications: BTreeMap<String, u64>,
    pub dead_letters: u64,
    /// Revenue leakage records opened, by kind.
    pub leakage: BTreeMap<String, u64>,
    pub health_rows: u64,
    pub revenue_rows: u64,
    /// Rows of `uptime/` (days and months).
    pub uptime_rows: u64,
    /// Outages written (`outages/`).
    pub outages: u64,
    /// Per webhook route at the end of the run: (delivered, dead-lettered, still pending).
    pub deliveries: BTreeMap<String, (u64, u64, u64)>,
}

pub struct OutputSinks {
    sessions: SessionsWriter,
    charging_periods: ChargingPeriodsWriter,
    revenue: RevenueWriter,
    health: HealthWriter,
    uptime: UptimeWriter,
    outages: OutagesWriter,
    anomalies: JsonlWriter,
    notifications: JsonlWriter,
    dead_letters: JsonlWriter,
    leakage: JsonlWriter,
    /// `cdrs.jsonl` with (country code, party id), when `output.ocpi_cdrs`.
    cdrs: Option<(JsonlWriter, String, String)>,
    kafka: Option<kafka::KafkaSink>,
    /// `notifications.routes`: where notifications (and, for Alertmanager, anomalies) go.
    routes: Vec<Route>,
    /// Route lengths and firing alerts from the commit snapshot, until the routes are opened.
    restored_route_lengths: Vec<(String, u64)>,
    restored_firing: Vec<(String, Vec<alertmanager::FiringAlert>)>,
    dir: PathBuf,
    metrics: Metrics,
    pub summary: Summary,
}

/// One delivery route and its open sink.
struct Route {
    cfg: RouteConfig,
    sink: RouteSink,
}

enum RouteSink {
    Jsonl(JsonlWriter),
    Kafka(String),
    Webhook(Box<webhook::WebhookSink>),
    Alertmanager(Box<alertmanager::AlertmanagerSink>),
}

impl OutputSinks {
    /// Opens the outputs under `dir`. Fresh (`restored` is `None`): Parquet tables continue
    /// numbering after existing parts, JSONL files are appended to. From a commit snapshot
    /// (see `dataflow::commit`): what was written after that commit is removed, and the rows
    /// then buffered are buffered again. `cdrs`: (country code, party id) of `cdrs.jsonl`'s
    /// OCPI CDRs, when they are written.
    pub fn open(
        dir: &Path,
        metrics: Metrics,
        restored: Option<SinkState>,
        cdrs: Option<(String, String)>,
    ) -> Result<OutputSinks, SinkError> {
        fn table<R: parquet::ParquetRow>(
            writer: parquet::ParquetTable<R>,
            state: Option<(u64, Vec<R>)>,
        ) -> Result<parquet::ParquetTable<R>, SinkError> {
            Ok(match state {
                Some((next_seq, rows)) => writer.restore(next_seq, rows)?,
                None => writer.resume()?,
            })
        }
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let lengths = restored.as_ref().map(|s| s.jsonl_lengths);
        let restored_route_lengths = restored
            .as_ref()
            .map(|s| s.route_lengths.clone())
            .unwrap_or_default();
        let restored_firing = restored
            .as_ref()
            .map(|s| s.firing.clone())
            .unwrap_or_default();
        let jsonl =
            |name: &str, i: usize| JsonlWriter::open_at(&dir.join(name), lengths.map(|l| l[i]));
        let (sessions, charging_periods, revenue, health, uptime, outages) = match restored {
            Some(s) => (
                Some(s.sessions),
                Some(s.charging_periods),
                Some(s.revenue),
                Some(s.health),
                Some(s.uptime),
                Some(s.outages),
            ),
            None => (None, None, None, None, None, None),
        };
        Ok(OutputSinks {
            sessions: table(parquet::sessions_writer(dir), sessions)?,
            charging_periods: table(parquet::charging_periods_writer(dir), charging_periods)?,
            revenue: table(parquet::revenue_writer(dir), revenue)?,
            health: table(parquet::health_writer(dir), health)?,
            uptime: table(parquet::uptime_writer(dir), uptime)?,
            outages: table(parquet::outages_writer(dir), outages)?,
            anomalies: jsonl("anomalies.jsonl", 0)?,
            notifications: jsonl("notifications.jsonl", 1)?,
            dead_letters: jsonl("dead-letter.jsonl", 2)?,
            leakage: jsonl("leakage.jsonl", 3)?,
            cdrs: match cdrs {
                Some((c, p)) => Some((jsonl("cdrs.jsonl", 4)?, c, p)),
                None => None,
            },
            kafka: None,
            routes: Vec::new(),
            restored_route_lengths,
            restored_firing,
            dir: dir.to_path_buf(),
            metrics,
            summary: Summary::default(),
        })
    }

    /// Opens the notification routes (after [`with_kafka`](Self::with_kafka): a Kafka route
    /// produces through that sink). A route's file is cut back to what the last commit recorded.
    pub fn with_routes(mut self, routes: &[RouteConfig]) -> Result<OutputSinks, SinkError> {
        for r in routes {
            let length = self
                .restored_route_lengths
                .iter()
                .find(|(name, _)| *name == r.name)
                .map(|(_, l)| *l);
            let sink = if let Some(path) = &r.jsonl {
                RouteSink::Jsonl(JsonlWriter::open_at(&self.dir.join(path), length)?)
            } else if let Some(w) = &r.webhook {
                RouteSink::Webhook(Box::new(webhook::WebhookSink::open(
                    &r.name,
                    w,
                    &self.dir.join("delivery"),
                    length,
                    self.metrics.clone(),
                )?))
            } else if let Some(a) = &r.alertmanager {
                let mut sink =
                    alertmanager::AlertmanagerSink::start(&r.name, a, self.metrics.clone())?;
                if let Some(i) = self.restored_firing.iter().position(|(n, _)| *n == r.name) {
                    sink.restore(self.restored_firing.swap_remove(i).1);
                }
                RouteSink::Alertmanager(Box::new(sink))
            } else if let Some(topic) = &r.kafka {
                if self.kafka.is_none() {
                    return Err(SinkError::Kafka(format!(
                        "route {}: a kafka route needs [output.kafka]",
                        r.name
                    )));
                }
                RouteSink::Kafka(topic.clone())
            } else {
                return Err(SinkError::Route(format!("route {}: no sink", r.name)));
            };
            let kind = match &sink {
                RouteSink::Webhook(_) => Some("webhook"),
                RouteSink::Alertmanager(_) => Some("alertmanager"),
                RouteSink::Jsonl(_) | RouteSink::Kafka(_) => None,
            };
            if let Some(kind) = kind {
                self.metrics.route_opened(kind, &r.name);
            }
            self.routes.push(Route {
                cfg: r.clone(),
                sink,
            });
        }
        Ok(self)
    }

    /// Makes everything written so far durable — JSONL files synced, Kafka records
    /// acknowledged — and writes what a restart needs to continue exactly here: the rows
    /// buffered for Parquet, the tables' file numbers and the JSONL files' lengths. An error
    /// means this commit cannot be made (e.g. the Kafka broker is down); a later one can.
    pub fn save(&mut self, w: &mut impl std::io::Write) -> Result<(), SinkError> {
        let lengths = [
            self.anomalies.sync()?,
            self.notifications.sync()?,
            self.dead_letters.sync()?,
            self.leakage.sync()?,
            match self.cdrs.as_mut() {
                Some((w, _, _)) => w.sync()?,
                None => 0,
            },
        ];
        if let Some(k) = self.kafka.as_mut() {
            k.flush_all()?;
        }
        let mut route_lengths = Vec::with_capacity(self.routes.len());
        for r in &mut self.routes {
            let length = match &mut r.sink {
                RouteSink::Jsonl(w) => w.sync()?,
                RouteSink::Webhook(w) => w.sync()?,
                RouteSink::Kafka(_) | RouteSink::Alertmanager(_) => continue,
            };
            route_lengths.push((r.cfg.name.clone(), length));
        }
        let firing: Vec<(String, Vec<alertmanager::FiringAlert>)> = self
            .routes
            .iter()
            .filter_map(|r| match &r.sink {
                RouteSink::Alertmanager(a) => Some((r.cfg.name.clone(), a.firing())),
                _ => None,
            })
            .collect();
        bincode::serialize_into(
            w,
            &(
                self.sessions.state(),
                self.charging_periods.state(),
                self.revenue.state(),
                self.health.state(),
                self.uptime.state(),
                self.outages.state(),
                lengths,
                route_lengths,
                firing,
            ),
        )
        .map_err(|e| SinkError::Snapshot(e.to_string()))
    }

    /// Reads what [`save`](Self::save) wrote.
    pub fn read_state(r: &mut impl std::io::Read) -> Result<SinkState, SinkError> {
        let (
            sessions,
            charging_periods,
            revenue,
            health,
            uptime,
            outages,
            jsonl_lengths,
            route_lengths,
            firing,
        ) = bincode::deserialize_from(r).map_err(|e| SinkError::Snapshot(e.to_string()))?;
        Ok(SinkState {
            sessions,
            charging_periods,
            revenue,
            health,
            uptime,
            outages,
            jsonl_lengths,
            route_lengths,
            firing,
        })
    }

    /// Also sends anomalies, notifications and dead letters to Kafka.
    pub fn with_kafka(mut self, sink: kafka::KafkaSink) -> OutputSinks {
        self.kafka = Some(sink);
        self
    }

    /// Writes the records of one completed time. `records` must already be in their
    /// deterministic order (see `dataflow::sink_order`).
    pub fn write(&mut self, records: Vec<Output>) -> Result<(), SinkError> {
        for r in records {
            match r {
                Output::Session(s) => {
                    if let Some((w, country, party)) = self.cdrs.as_mut() {
                        w.write_raw(&cdr::cdr_json(&s, country, party))?;
                    }
                    self.summary.sessions += 1;
                    self.summary.energy_wh += s.energy_wh;
                    *self
                        .summary
                        .revenue_incl_vat
                        .entry(s.currency.to_string())
                        .or_default() += s.total_incl_vat;
                    *self
                        .summary
                        .revenue_excl_vat
                        .entry(s.currency.to_string())
                        .or_default() += s.total_excl_vat;
                    self.metrics.session_finished(&s);
                    for p in parquet::period_rows(&s) {
                        self.charging_periods.push(p);
                    }
                    self.sessions.push(*s);
                }
                Output::Revenue(r) => {
                    self.summary.revenue_rows += 1;
                    self.revenue.push(r);
                }
                Output::Health(h) => {
                    self.summary.health_rows += 1;
                    self.metrics.health_row(&h);
                    self.health.push(h);
                }
                Output::Anomaly(a) => {
                    count_opened(&mut self.summary.anomalies, a.kind.as_str(), a.state);
                    self.metrics.anomaly_record(&a);
                    self.anomalies.write(&a)?;
                    if let Some(k) = self.kafka.as_mut() {
                        k.anomaly(&a.charge_point_id, &a)?;
                    }
                    for r in &mut self.routes {
                        if let (RouteSink::Alertmanager(am), true) = (&mut r.sink, r.cfg.anomalies)
                        {
                            am.anomaly(&a);
                        }
                    }
                }
                Output::Notification(n) => {
                    *self
                        .summary
                        .notifications
                        .entry(n.kind.as_str().to_string())
                        .or_default() += 1;
                    let audience = match n.audience {
                        crate::model::Audience::Driver => "driver",
                        crate::model::Audience::Operator => "operator",
                    };
                    self.metrics
                        .notifications
                        .get_or_create(&labels2("kind", n.kind.as_str(), "audience", audience))
                        .inc();
                    self.notifications.write(&n)?;
                    if let Some(k) = self.kafka.as_mut() {
                        k.notification(&n.charge_point_id, &n)?;
                    }
                    self.route_notification(&n)?;
                }
                Output::DeadLetter(d) => {
                    self.summary.dead_letters += 1;
                    self.dead_letters.write(&d)?;
                    if let Some(k) = self.kafka.as_mut() {
                        k.dead_letter(&d)?;
                    }
                }
                Output::Leakage(l) => self.write_leakage(l)?,
                Output::Uptime(u) => {
                    self.summary.uptime_rows += 1;
                    self.uptime.push(u);
                }
                Output::Outage(o) => {
                    self.summary.outages += 1;
                    self.outages.push(o);
                }
                // Consumed by the fleet detectors and the notification router.
                Output::Observation(_) | Output::Trigger(_) => {}
                Output::BackInOrder(b) => {
                    for r in &mut self.routes {
                        if let RouteSink::Alertmanager(am) = &mut r.sink {
                            am.back_in_order(&b.charge_point_id, b.connector_id, b.event_time);
                        }
                    }
                }
                Output::Checkpoint { .. } => self.flush()?,
            }
        }
        // JSONL records are for live consumers: make them visible at every completed time.
        self.anomalies.flush()?;
        self.notifications.flush()?;
        self.dead_letters.flush()?;
        self.leakage.flush()?;
        if let Some((w, _, _)) = self.cdrs.as_mut() {
            w.flush()?;
        }
        for r in &mut self.routes {
            match &mut r.sink {
                RouteSink::Jsonl(w) => w.flush()?,
                RouteSink::Webhook(w) => w.flush()?,
                RouteSink::Kafka(_) | RouteSink::Alertmanager(_) => {}
            }
        }
        Ok(())
    }

    /// End of a bounded run: waits (at most `max_wait` in all) until the webhooks and
    /// Alertmanager have acknowledged what was sent, and records the outcome per route in the
    /// summary. Whatever is still pending stays in the route's outbox for the next run.
    pub fn drain_deliveries(&mut self, max_wait: std::time::Duration) {
        let deadline = std::time::Instant::now() + max_wait;
        for r in std::mem::take(&mut self.routes) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match r.sink {
                RouteSink::Webhook(w) => {
                    let report = w.drain(left);
                    self.summary.deliveries.insert(
                        r.cfg.name.clone(),
                        (report.delivered, report.dead_lettered, report.pending),
                    );
                }
                RouteSink::Alertmanager(a) => {
                    let report = a.drain(left);
                    if report.pending > 0 {
                        tracing::warn!(
                            "alertmanager route {}: {} change(s) not acknowledged",
                            r.cfg.name,
                            report.pending
                        );
                    }
                }
                RouteSink::Jsonl(_) | RouteSink::Kafka(_) => {}
            }
        }
    }

    /// Sends a notification along every route that wants it. Kafka routes are keyed by the
    /// recipient, so one driver's notifications stay in order on one partition.
    fn route_notification(
        &mut self,
        n: &crate::model::NotificationRecord,
    ) -> Result<(), SinkError> {
        let mut json: Option<String> = None;
        for r in &mut self.routes {
            if !r.cfg.wants(n) {
                continue;
            }
            match &mut r.sink {
                RouteSink::Jsonl(w) => w.write(n)?,
                RouteSink::Kafka(topic) => {
                    if let Some(k) = self.kafka.as_mut() {
                        k.to_topic(topic, &n.recipient, n)?;
                    }
                }
                RouteSink::Alertmanager(a) => a.out_of_order(n),
                RouteSink::Webhook(w) => {
                    if json.is_none() {
                        json = Some(
                            serde_json::to_string(n)
                                .map_err(|e| SinkError::Route(e.to_string()))?,
                        );
                    }
                    if let Some(j) = &json {
                        w.send(&n.id, j)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes buffered Parquet rows to new files.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.sessions.flush()?;
        self.charging_periods.flush()?;
        self.revenue.flush()?;
        self.health.flush()?;
        self.uptime.flush()?;
        self.outages.flush()?;
        self.anomalies.flush()?;
        self.notifications.flush()?;
        self.dead_letters.flush()?;
        self.leakage.flush()?;
        if let Some((w, _, _)) = self.cdrs.as_mut() {
            w.flush()?;
        }
        if let Some(k) = self.kafka.as_mut() {
            k.flush();
        }
        Ok(())
    }
}

impl OutputSinks {
    fn write_leakage(&mut self, l: crate::model::LeakageRecord) -> Result<(), SinkError> {
        count_opened(&mut self.summary.leakage, l.kind.as_str(), l.state);
        self.metrics.leakage_record(&l);
        self.leakage.write(&l)
    }
}

/// Counts a record that opens (anomalies, leakage) per kind in the summary; resolving
/// records are not counted.
fn count_opened(summary: &mut BTreeMap<String, u64>, kind: &str, state: AnomalyState) {
    if state == AnomalyState::Open {
        *summary.entry(kind.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{OutageRecord, UptimePeriod, UptimeRow};

    #[test]
    fn uptime_and_outages_are_written_and_restored_from_a_commit_snapshot() {
        let dir = std::env::temp_dir().join(format!("evflow-sinks-{}-uptime", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let day = UptimeRow {
            charge_point_id: Arc::from("CP-1"),
            site_id: Arc::from("site-1"),
            connector_id: 1,
            period: UptimePeriod::Day,
            period_start: 1_772_168_400_000,
            period_end: 1_772_254_800_000,
            minutes: 1440.0,
            outage_minutes: 315.0,
            excluded_minutes: 80.0,
            uptime_pct: 83.681,
        };
        let outage = OutageRecord {
            id: crate::model::stable_id(&["outage", "CP-1", "1", "1772175600000"]),
            charge_point_id: Arc::from("CP-1"),
            site_id: Arc::from("site-1"),
            connector_id: 1,
            start: 1_772_175_600_000,
            end: 1_772_181_000_000,
            cause: Arc::from("faulted"),
            outage_minutes: 90.0,
            excluded_minutes: 0.0,
            exclusion: Arc::from(""),
        };
        let mut sinks = OutputSinks::open(&dir, Metrics::new(), None, None).expect("open");
        sinks
            .write(vec![
                Output::Uptime(day.clone()),
                Output::Outage(outage.clone()),
            ])
            .expect("write");
        assert_eq!((sinks.summary.uptime_rows, sinks.summary.outages), (1, 1));
        // A commit while the rows are buffered, then a flush the restart must undo.
        let mut snapshot = Vec::new();
        sinks.save(&mut snapshot).expect("save");
        sinks
            .write(vec![Output::Checkpoint { watermark: 0 }])
            .expect("checkpoint");
        assert_eq!(
            parquet::read_uptime(&dir).expect("uptime"),
            std::slice::from_ref(&day)
        );
        assert_eq!(
            parquet::read_outages(&dir).expect("outages"),
            std::slice::from_ref(&outage)
        );
        drop(sinks);

        let state = OutputSinks::read_state(&mut snapshot.as_slice()).expect("state");
        let mut restored =
            OutputSinks::open(&dir, Metrics::new(), Some(state), None).expect("reopen");
        assert!(parquet::read_uptime(&dir).expect("uptime").is_empty());
        assert!(parquet::read_outages(&dir).expect("outages").is_empty());
        restored.flush().expect("flush");
        assert_eq!(parquet::read_uptime(&dir).expect("uptime"), [day]);
        assert_eq!(parquet::read_outages(&dir).expect("outages"), [outage]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
