//! Alertmanager sink: anomalies and out-of-order stations as Prometheus Alertmanager alerts
//! (API v2, `POST {url}/api/v2/alerts`).
//!
//! Owns: a route's alert state (which alerts are firing, what Alertmanager has acknowledged)
//! and its background thread, the only place that touches the network. It writes no files and
//! may not touch other sinks; the dataflow thread that calls it never waits on the network.
//!
//! # Design
//!
//! Alertmanager is *state-based*: an alert is its label set, firing while `endsAt` is in the
//! future. So the sink keeps the latest state of every alert it knows and pushes changes; what
//! gets sent is always the latest state, which makes retries idempotent.
//!
//! - [`anomaly`](AlertmanagerSink::anomaly): an `open` anomaly fires an alert named after its
//!   kind (`connector_faulted` → `ConnectorFaulted`); the `resolved` record with the same id
//!   resolves it. Anomalies `during_maintenance` are not sent: the operator scheduled that
//!   work. A resolution of an alert the sink does not know (e.g. opened before a restart) is
//!   sent all the same, built from the record, so that Alertmanager ends it.
//! - [`out_of_order`](AlertmanagerSink::out_of_order): an operator `station_out_of_order`
//!   notification fires `StationOutOfOrder` for its (charger, connector);
//!   [`back_in_order`](AlertmanagerSink::back_in_order) resolves it (no-op when unknown: the
//!   call does not carry the labels; a forgotten alert times out at its `endsAt`). A repeated
//!   out-of-order for a firing key updates the annotations and keeps the labels (a changed
//!   label would be a different alert to Alertmanager).
//! - Labels: `alertname`, `severity`, `charge_point_id`, `site_id`, `connector_id` (when
//!   present), `kind`, plus the configured static ones. Annotations: `summary`,
//!   `anomaly_id` or `notification_id`, `event_time`, `details` (compact JSON).
//! - Times: `startsAt` is the opening record's event time (clamped to now). A firing alert is
//!   sent with `endsAt` = now + 4 × `resend_interval` and re-sent every `resend_interval`, so
//!   that Alertmanager keeps it while evflow runs and times it out if evflow stops. A resolved
//!   alert is sent once with `endsAt` = min(resolve event time, now), never before `startsAt`,
//!   then forgotten.
//! - Pushing: changes are batched for ~200 ms into one POST of a JSON array. When
//!   Alertmanager is down or failing, changes stay pending and are retried with backoff
//!   (250 ms doubling to 30 s). A 400 is not retried: Alertmanager stored the valid alerts of
//!   the batch and will never accept the others. [`drain`](AlertmanagerSink::drain) pushes
//!   what is pending (above all the resolutions) at the end of a run.
//!
//! Metrics (`sink="alertmanager"`, `route`): `delivery_attempts{outcome}`, `delivered`
//! (alerts posted and acknowledged), `delivery_backlog` (changes not yet acknowledged), and
//! `alerts_firing{route}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::http;
use super::SinkError;
use crate::config::Duration as ConfigDuration;
use crate::metrics::{label, labels2, Metrics};
use crate::model::{
    AnomalyRecord, AnomalyState, Audience, Millis, NotificationKind, NotificationRecord, Severity,
};
use crate::time::format_rfc3339;

const SINK: &str = "alertmanager";
/// Changes arriving within this window go into one POST.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// While draining, never wait longer than this for the next retry.
const DRAIN_RETRY_MAX: Duration = Duration::from_secs(1);
/// Alerts per POST at most (a large fleet's resends are split).
const MAX_BATCH: usize = 500;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Labels the sink sets itself; static labels may not override them.
const OWN_LABELS: [&str; 6] = [
    "alertname",
    "severity",
    "charge_point_id",
    "site_id",
    "connector_id",
    "kind",
];

/// A route's `alertmanager` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093`; alerts go to
    /// `{url}/api/v2/alerts`.
    pub url: String,
    /// How often a firing alert is re-sent (default `60s`); it is sent with an `endsAt` of
    /// 4 × this, so Alertmanager resolves it by itself if evflow stops.
    #[serde(default = "defaults::resend_interval")]
    pub resend_interval: ConfigDuration,
    /// Bound on one request (default `10s`).
    #[serde(default = "defaults::timeout")]
    pub timeout: ConfigDuration,
    /// Each alert's `generatorURL` (e.g. a dashboard); absent: none.
    #[serde(default)]
    pub generator_url: Option<String>,
    /// Static labels added to every alert, e.g. `env = "prod"`. Names are Prometheus label
    /// names and may not be one of the sink's own labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

mod defaults {
    use crate::config::Duration;

    pub fn resend_interval() -> Duration {
        Duration(60_000)
    }
    pub fn timeout() -> Duration {
        Duration(10_000)
    }
}

impl AlertmanagerConfig {
    /// The defaults, for Alertmanager at `url`.
    pub fn new(url: impl Into<String>) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: url.into(),
            resend_interval: defaults::resend_interval(),
            timeout: defaults::timeout(),
            generator_url: None,
            labels: BTreeMap::new(),
        }
    }

    fn validate(&self, route: &str) -> Result<String, SinkError> {
        let bad = |m: String| SinkError::Http(format!("alertmanager route {route}: {m}"));
        http::check_url(&self.url).map_err(bad)?;
        if self.resend_interval.0 <= 0 || self.timeout.0 <= 0 {
            return Err(bad("resend_interval and timeout must be positive".into()));
        }
        for (name, value) in &self.labels {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("__");
            if !valid {
                return Err(bad(format!(
                    "{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                )));
            }
            if OWN_LABELS.contains(&name.as_str()) {
                return Err(bad(format!("label {name:?} is set by evflow")));
            }
            if value.is_empty() {
                // Alertmanager drops empty labels: the configured one would silently vanish.
                return Err(bad(format!("label {name:?} is empty")));
            }
        }
        Ok(format!("{}/api/v2/alerts", self.url.trim_end_matches('/')))
    }
}

/// What [`AlertmanagerSink::drain`] came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertDrainReport {
    /// Alerts posted and acknowledged since the start (resends included).
    pub posted: u64,
    /// Changes Alertmanager had not acknowledged when the wait ended (lost with the process;
    /// firing ones time out at their `endsAt`).
    pub pending: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
enum AlertKey {
    Anomaly(String),
    OutOfOrder(String, Option<u32>),
}

/// A firing alert as a commit snapshot keeps it: a restored run goes on re-sending it (else
/// Alertmanager would time it out while its anomaly is still open).
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
pub struct FiringAlert {
    key: AlertKey,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Millis,
    opened_at: Millis,
}

struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Millis,
    /// When it resolved (its `endsAt`); `None` while firing.
    resolved_at: Option<Millis>,
    /// Event time of the newest record that (re)opened it: a back-in-order older than that
    /// (sinks see a batch's records grouped by type) does not resolve it.
    opened_at: Millis,
    /// Bumped at every change; `acked` is the version Alertmanager acknowledged (0: none).
    version: u64,
    acked: u64,
    last_sent: Option<Instant>,
}

#[derive(Default)]
struct State {
    alerts: BTreeMap<AlertKey, Alert>,
    next_version: u64,
    /// When the oldest change not yet taken into a POST happened.
    dirty_since: Option<Instant>,
    /// Draining: push now, retry soon.
    flush_now: bool,
    stop: bool,
    last_error: Option<String>,
    posted: u64,
}

impl State {
    fn pending(&self) -> u64 {
        self.alerts.values().filter(|a| a.version > a.acked).count() as u64
    }
}

type Shared = http::Shared<State>;

/// One route's Alertmanager: see the module doc.
pub struct AlertmanagerSink {
    route: String,
    static_labels: BTreeMap<String, String>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    metrics: Metrics,
}

impl AlertmanagerSink {
    /// Checks the config and starts the route's pushing thread.
    pub fn start(
        route: &str,
        cfg: &AlertmanagerConfig,
        metrics: Metrics,
    ) -> Result<Self, SinkError> {
        let endpoint = cfg.validate(route)?;
        if let Some(g) = &cfg.generator_url {
            http::check_url(g).map_err(|m| {
                SinkError::Http(format!("alertmanager route {route}: generator_url: {m}"))
            })?;
        }
        let shared = Arc::new(Shared::new(State {
            next_version: 1,
            ..State::default()
        }));
        let pusher = Pusher {
            route: route.to_string(),
            endpoint,
            generator_url: cfg.generator_url.clone(),
            resend: http::std_duration(cfg.resend_interval),
            agent: http::agent(http::std_duration(cfg.timeout)),
            shared: shared.clone(),
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("alertmanager-{route}"))
            .spawn(move || pusher.run())
            .map_err(|e| SinkError::Http(format!("alertmanager route {route}: {e}")))?;
        let sink = AlertmanagerSink {
            route: route.to_string(),
            static_labels: cfg.labels.clone(),
            shared,
            thread: Some(thread),
            metrics,
        };
        sink.update_gauges(&sink.shared.lock());
        Ok(sink)
    }

    /// An anomaly record: `open` fires, `resolved` resolves (see the module doc).
    pub fn anomaly(&mut self, a: &AnomalyRecord) {
        if a.during_maintenance {
            tracing::debug!(
                "alertmanager route {}: anomaly {} during maintenance, not sent",
                self.route,
                a.id
            );
            return;
        }
        let now = http::now_millis();
        let key = AlertKey::Anomaly(a.id.clone());
        let mut st = self.shared.lock();
        match a.state {
            AnomalyState::Open => {
                let (labels, annotations) = self.anomaly_alert(a);
                let starts_at = a.event_time.min(now);
                let starts_at = match st.alerts.get(&key) {
                    // A repeated open (a replay) keeps the earliest start.
                    Some(old) => old.starts_at.min(starts_at),
                    None => starts_at,
                };
                insert(&mut st, key, labels, annotations, starts_at);
            }
            AnomalyState::Resolved => {
                let end = a.event_time.min(now);
                if !resolve(&mut st, &key, end) {
                    // Not known here (opened before a restart?): tell Alertmanager anyway.
                    let (labels, annotations) = self.anomaly_alert(a);
                    insert(&mut st, key.clone(), labels, annotations, end);
                    resolve(&mut st, &key, end);
                }
            }
        }
        self.changed(&st);
    }

    /// An operator `station_out_of_order` notification fires `StationOutOfOrder` for its
    /// (charger, connector); other notifications are ignored.
    /// The alerts firing now, for a commit snapshot.
    pub fn firing(&self) -> Vec<FiringAlert> {
        let st = self.shared.lock();
        st.alerts
            .iter()
            .filter(|(_, a)| a.resolved_at.is_none())
            .map(|(key, a)| FiringAlert {
                key: key.clone(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at,
                opened_at: a.opened_at,
            })
            .collect()
    }

    /// Takes up the alerts a commit snapshot says were firing; they are sent at once.
    pub fn restore(&mut self, alerts: Vec<FiringAlert>) {
        let mut st = self.shared.lock();
        for a in alerts {
            insert(&mut st, a.key.clone(), a.labels, a.annotations, a.starts_at);
            if let Some(alert) = st.alerts.get_mut(&a.key) {
                alert.opened_at = a.opened_at;
            }
        }
        self.changed(&st);
    }

    /// An anomaly's alert labels and annotations.
    fn anomaly_alert(
        &self,
        a: &AnomalyRecord,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let kind = a.kind.as_str();
        let where_ = place(&a.charge_point_id, a.connector_id, &a.site_id);
        let annotations = BTreeMap::from([
            (
                "summary".to_string(),
                format!("{} on {where_}", sentence_case(kind)),
            ),
            ("anomaly_id".to_string(), a.id.clone()),
            ("event_time".to_string(), format_rfc3339(a.event_time)),
            ("details".to_string(), a.details.to_string()),
        ]);
        let labels = self.labels(
            &camel_case(kind),
            a.severity,
            &a.charge_point_id,
            &a.site_id,
            a.connector_id,
            kind,
        );
        (labels, annotations)
    }

    pub fn out_of_order(&mut self, n: &NotificationRecord) {
        if n.kind != NotificationKind::StationOutOfOrder || n.audience != Audience::Operator {
            return;
        }
        let status = n.facts.get("status").and_then(|s| s.as_str());
        let severity = if status == Some("Faulted") {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let kind = NotificationKind::StationOutOfOrder.as_str();
        let mut annotations = BTreeMap::new();
        let where_ = place(&n.charge_point_id, n.connector_id, &n.site_id);
        let summary = match status {
            Some(s) => format!("{} is out of order ({s})", sentence_case(&where_)),
            None => format!("{} is out of order", sentence_case(&where_)),
        };
        annotations.insert("summary".to_string(), summary);
        annotations.insert("notification_id".to_string(), n.id.clone());
        annotations.insert("event_time".to_string(), format_rfc3339(n.event_time));
        annotations.insert("details".to_string(), n.facts.to_string());
        let key = AlertKey::OutOfOrder(n.charge_point_id.to_string(), n.connector_id);
        let mut st = self.shared.lock();
        match st.alerts.get_mut(&key) {
            Some(a) if a.resolved_at.is_none() => {
                a.annotations = annotations;
                a.opened_at = a.opened_at.max(n.event_time);
                touch(&mut st, &key);
            }
            _ => {
                let labels = self.labels(
                    "StationOutOfOrder",
                    severity,
                    &n.charge_point_id,
                    &n.site_id,
                    n.connector_id,
                    kind,
                );
                let starts_at = n.event_time.min(http::now_millis());
                insert(&mut st, key.clone(), labels, annotations, starts_at);
                if let Some(a) = st.alerts.get_mut(&key) {
                    a.opened_at = n.event_time;
                }
            }
        }
        self.changed(&st);
    }

    /// The (charger, connector) is back in order: resolves its `StationOutOfOrder` alert at
    /// `at` (no-op if none is firing). `connector_id: None` is the charger-level alert only.
    pub fn back_in_order(&mut self, charge_point_id: &str, connector_id: Option<u32>, at: Millis) {
        let key = AlertKey::OutOfOrder(charge_point_id.to_string(), connector_id);
        let mut st = self.shared.lock();
        // The station went out of order again after this: the alert stays.
        if st.alerts.get(&key).is_some_and(|a| a.opened_at > at) {
            return;
        }
        if resolve(&mut st, &key, at.min(http::now_millis())) {
            self.changed(&st);
        }
    }

    /// Pushes what is pending (resolutions above all) within `max_wait`, then stops.
    pub fn drain(mut self, max_wait: Duration) -> AlertDrainReport {
        self.shared.lock().flush_now = true;
        self.shared.changed.notify_all();
        {
            let route = &self.route;
            self.shared.wait_settled(
                max_wait,
                PROGRESS_EVERY,
                |st| st.pending(),
                |st, waiting| {
                    tracing::info!(
                        "alertmanager route {route}: {waiting} change(s) waiting; last error: {}",
                        st.last_error.as_deref().unwrap_or("none")
                    )
                },
            );
        }
        self.stop();
        let st = self.shared.lock();
        let report = AlertDrainReport {
            posted: st.posted,
            pending: st.pending(),
        };
        if report.pending > 0 {
            tracing::warn!(
                "alertmanager route {}: {} alert change(s) not pushed within {max_wait:?}; last error: {}",
                self.route,
                report.pending,
                st.last_error.as_deref().unwrap_or("none")
            );
        }
        report
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.lock().stop = true;
            self.shared.changed.notify_all();
            if t.join().is_err() {
                tracing::error!(
                    "alertmanager route {}: the pushing thread panicked",
                    self.route
                );
            }
        }
    }

    fn labels(
        &self,
        alertname: &str,
        severity: Severity,
        charge_point_id: &str,
        site_id: &str,
        connector_id: Option<u32>,
        kind: &str,
    ) -> BTreeMap<String, String> {
        let mut l = self.static_labels.clone();
        l.insert("alertname".into(), alertname.into());
        l.insert("severity".into(), severity_str(severity).into());
        l.insert("charge_point_id".into(), charge_point_id.into());
        l.insert("site_id".into(), site_id.into());
        if let Some(c) = connector_id {
            l.insert("connector_id".into(), c.to_string());
        }
        l.insert("kind".into(), kind.into());
        l
    }

    fn changed(&self, st: &State) {
        self.update_gauges(st);
        self.shared.changed.notify_all();
    }

    fn update_gauges(&self, st: &State) {
        update_gauges(&self.metrics, &self.route, st);
    }
}

impl Drop for AlertmanagerSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn update_gauges(metrics: &Metrics, route: &str, st: &State) {
    let firing = st
        .alerts
        .values()
        .filter(|a| a.resolved_at.is_none())
        .count();
    metrics
        .alerts_firing
        .get_or_create(&label("route", route))
        .set(firing as i64);
    metrics
        .delivery_backlog
        .get_or_create(&labels2("sink", SINK, "route", route))
        .set(st.pending() as i64);
}

/// Marks `key` changed.
fn touch(st: &mut State, key: &AlertKey) {
    let v = st.next_version;
    if let Some(a) = st.alerts.get_mut(key) {
        a.version = v;
        st.next_version += 1;
        st.dirty_since.get_or_insert_with(Instant::now);
    }
}

/// A firing alert (replacing whatever `key` was).
fn insert(
    st: &mut State,
    key: AlertKey,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Millis,
) {
    let acked = st.alerts.get(&key).map_or(0, |a| a.acked);
    st.alerts.insert(
        key.clone(),
        Alert {
            labels,
            annotations,
            starts_at,
            resolved_at: None,
            opened_at: starts_at,
            version: 0,
            acked,
            last_sent: None,
        },
    );
    touch(st, &key);
}

/// Resolves `key` at `at` (never before its start); false if it is not firing.
fn resolve(st: &mut State, key: &AlertKey, at: Millis) -> bool {
    match st.alerts.get_mut(key) {
        Some(a) if a.resolved_at.is_none() => {
            a.resolved_at = Some(at.max(a.starts_at));
            touch(st, key);
            true
        }
        _ => false,
    }
}

fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// `connector_faulted` → `ConnectorFaulted`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `connector_faulted` → `Connector faulted`.
fn sentence_case(text: &str) -> String {
    let text = text.replace('_', " ");
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => text,
    }
}

/// `charger CP-1 connector 2 at site S-1`.
fn place(charge_point_id: &str, connector_id: Option<u32>, site_id: &str) -> String {
    match connector_id {
        Some(c) => format!("charger {charge_point_id} connector {c} at site {site_id}"),
        None => format!("charger {charge_point_id} at site {site_id}"),
    }
}

/// The pushing thread.
struct Pusher {
    route: String,
    endpoint: String,
    generator_url: Option<String>,
    resend: Duration,
    agent: ureq::Agent,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl Pusher {
    fn run(self) {
        let mut failures = 0u32;
        let mut retry_at: Option<Instant> = None;
        loop {
            let batch = {
                let mut st = self.shared.lock();
                if st.stop {
                    break;
                }
                match self.next_batch(&mut st, retry_at) {
                    Ok(batch) => batch,
                    Err(wait) => {
                        let _ = self.shared.changed.wait_timeout(st, wait);
                        continue;
                    }
                }
            };
            let sent_at = Instant::now();
            let now_ms = http::now_millis();
            let body: Vec<serde_json::Value> =
                batch.iter().map(|(_, _, a)| self.json(a, now_ms)).collect();
            let body = serde_json::Value::Array(body).to_string();
            let outcome = http::post_json(&self.agent, &self.endpoint, &[], body.as_bytes());
            let rejected = matches!(outcome, http::Outcome::Status { code: 400, .. });
            self.metrics
                .delivery_attempts
                .get_or_create(&vec![
                    ("sink", SINK.to_string()),
                    ("route", self.route.clone()),
                    (
                        "outcome",
                        if outcome.is_success() { "ok" } else { "failed" }.to_string(),
                    ),
                ])
                .inc();
            let mut st = self.shared.lock();
            match outcome.error() {
                Some(err) if !rejected => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(
                            "alertmanager route {}: {}: {err}; retrying with backoff",
                            self.route,
                            self.endpoint
                        );
                    }
                    let wait = http::backoff(BACKOFF_INITIAL, BACKOFF_MAX, failures, &self.route);
                    retry_at = Some(Instant::now() + wait);
                    st.last_error = Some(err);
                    // What was taken stays pending (its version is not acknowledged).
                    st.dirty_since.get_or_insert(sent_at);
                }
                result => {
                    if let Some(err) = result {
                        tracing::error!(
                            "alertmanager route {}: {} rejected {} alert(s), not retried: {err}",
                            self.route,
                            self.endpoint,
                            batch.len()
                        );
                        st.last_error = Some(err);
                    } else {
                        if failures > 0 {
                            tracing::info!("alertmanager route {}: pushing again", self.route);
                        }
                        self.metrics
                            .delivered
                            .get_or_create(&labels2("sink", SINK, "route", &self.route))
                            .inc_by(batch.len() as u64);
                        st.posted += batch.len() as u64;
                    }
                    failures = 0;
                    retry_at = None;
                    for (key, version, _) in &batch {
                        let done = match st.alerts.get_mut(key) {
                            Some(a) => {
                                a.acked = a.acked.max(*version);
                                a.last_sent = Some(sent_at);
                                a.resolved_at.is_some() && a.acked >= a.version
                            }
                            None => false,
                        };
                        if done {
                            // Resolved and acknowledged: forgotten.
                            st.alerts.remove(key);
                        }
                    }
                }
            }
            update_gauges(&self.metrics, &self.route, &st);
            self.shared.changed.notify_all();
        }
    }

    /// The alerts to POST now (changed ones first, then firing ones due for a resend), or how
    /// long to wait.
    fn next_batch(&self, st: &mut State, retry_at: Option<Instant>) -> Result<Batch, Duration> {
        let now = Instant::now();
        if let Some(t) = retry_at.filter(|t| *t > now) {
            let wait = t - now;
            return Err(if st.flush_now {
                wait.min(DRAIN_RETRY_MAX)
            } else {
                wait
            });
        }
        let dirty = st.pending() > 0;
        if dirty {
            if let Some(since) = st.dirty_since {
                let age = now.saturating_duration_since(since);
                if !st.flush_now && age < BATCH_WINDOW {
                    return Err(BATCH_WINDOW - age);
                }
            }
        }
        // Resends are due `resend` after the last send; take those due within the batch window
        // too, so that they go together.
        let due = |a: &Alert| {
            a.resolved_at.is_none()
                && a.last_sent
                    .is_none_or(|t| t + self.resend <= now + BATCH_WINDOW)
        };
        let mut batch: Batch = Vec::new();
        for (k, a) in st.alerts.iter().filter(|(_, a)| a.version > a.acked) {
            if batch.len() == MAX_BATCH {
                break;
            }
            batch.push((k.clone(), a.version, AlertSnapshot::of(a)));
        }
        for (k, a) in st
            .alerts
            .iter()
            .filter(|(_, a)| a.version <= a.acked && due(a))
        {
            if batch.len() == MAX_BATCH {
                break;
            }
            batch.push((k.clone(), a.version, AlertSnapshot::of(a)));
        }
        if batch.is_empty() {
            let next_resend = st
                .alerts
                .values()
                .filter(|a| a.resolved_at.is_none())
                .filter_map(|a| {
                    a.last_sent
                        .map(|t| (t + self.resend).saturating_duration_since(now))
                })
                .min();
            return Err(next_resend
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(10)));
        }
        st.dirty_since = None;
        Ok(batch)
    }

    /// One alert as Alertmanager's `postableAlert`.
    fn json(&self, a: &AlertSnapshot, now_ms: Millis) -> serde_json::Value {
        let ends_at = match a.resolved_at {
            Some(t) => t,
            None => now_ms + 4 * self.resend.as_millis() as Millis,
        };
        let mut alert = json!({
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": format_rfc3339(a.starts_at),
            "endsAt": format_rfc3339(ends_at.max(a.starts_at)),
        });
        if let (Some(g), Some(obj)) = (&self.generator_url, alert.as_object_mut()) {
            obj.insert("generatorURL".into(), g.clone().into());
        }
        alert
    }
}

/// The alerts of one POST: key, version taken, state.
type Batch = Vec<(AlertKey, u64, AlertSnapshot)>;

/// An alert's state as taken for one POST (the lock is not held while posting).
struct AlertSnapshot {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Millis,
    resolved_at: Option<Millis>,
}

impl AlertSnapshot {
    fn of(a: &Alert) -> AlertSnapshot {
        AlertSnapshot {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: a.starts_at,
            resolved_at: a.resolved_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use super::*;
    use crate::model::AnomalyKind;
    use crate::sinks::http::test_server::{free_port, Request, Server};
    use crate::time::parse_rfc3339;

    fn anomaly(state: AnomalyState, event_time: Millis) -> AnomalyRecord {
        AnomalyRecord {
            id: "a-1".into(),
            kind: AnomalyKind::ConnectorFaulted,
            state,
            charge_point_id: StdArc::from("CP-1"),
            site_id: StdArc::from("site-1"),
            connector_id: Some(2),
            event_time,
            severity: Severity::Critical,
            during_maintenance: false,
            details: serde_json::json!({"error_code": "GroundFailure", "status": "Faulted"}),
        }
    }

    fn out_of_order(event_time: Millis, status: &str, audience: Audience) -> NotificationRecord {
        NotificationRecord {
            id: "n-1".into(),
            kind: NotificationKind::StationOutOfOrder,
            audience,
            recipient: StdArc::from("operator"),
            charge_point_id: StdArc::from("CP-2"),
            site_id: StdArc::from("site-1"),
            connector_id: None,
            event_time,
            facts: serde_json::json!({"status": status}),
            held_until: None,
        }
    }

    #[test]
    fn a_back_in_order_older_than_the_latest_fault_does_not_resolve() {
        let mut sink = AlertmanagerSink::start(
            "t",
            &AlertmanagerConfig::new("http://127.0.0.1:9"),
            Metrics::new(),
        )
        .expect("sink");
        let t0 = http::now_millis() - 600_000;
        sink.out_of_order(&out_of_order(t0, "Faulted", Audience::Operator));
        // Back at t0 + 60 s and out again at t0 + 120 s, seen in the other order.
        sink.out_of_order(&out_of_order(t0 + 120_000, "Faulted", Audience::Operator));
        sink.back_in_order("CP-2", None, t0 + 60_000);
        let firing = |s: &AlertmanagerSink| {
            s.shared
                .lock()
                .alerts
                .values()
                .filter(|a| a.resolved_at.is_none())
                .count()
        };
        assert_eq!(firing(&sink), 1);
        sink.back_in_order("CP-2", None, t0 + 180_000);
        assert_eq!(firing(&sink), 0);
    }

    fn alerts(r: &Request) -> Vec<serde_json::Value> {
        serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).expect("a JSON array")
    }

    fn all_alerts(s: &Server) -> Vec<serde_json::Value> {
        s.requests().iter().flat_map(alerts).collect()
    }

    fn time(v: &serde_json::Value) -> Millis {
        parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
    }

    fn quick(url: &str) -> AlertmanagerConfig {
        AlertmanagerConfig {
            generator_url: Some("https://grafana.example.com/d/evflow".into()),
            labels: BTreeMap::from([("env".to_string(), "test".to_string())]),
            timeout: ConfigDuration(2_000),
            ..AlertmanagerConfig::new(url)
        }
    }

    #[test]
    fn firing_and_resolved_alerts_are_posted_as_alertmanager_expects() {
        let server = Server::start(0, |_, _| 200);
        let metrics = Metrics::new();
        let mut sink = AlertmanagerSink::start("ops", &quick(&server.url("")), metrics.clone())
            .expect("start");
        let now = http::now_millis();
        let opened = now - 600_000;
        // Not sent: scheduled maintenance, and the driver's copy of an out-of-order.
        sink.anomaly(&AnomalyRecord {
            id: "a-maint".into(),
            during_maintenance: true,
            ..anomaly(AnomalyState::Open, opened)
        });
        sink.out_of_order(&out_of_order(opened, "Faulted", Audience::Driver));
        sink.anomaly(&anomaly(AnomalyState::Open, opened));
        sink.out_of_order(&out_of_order(opened + 1000, "Faulted", Audience::Operator));
        assert!(server.wait_for(Duration::from_secs(5), |r| r.len() == 1));
        let r = &server.requests()[0];
        assert_eq!(r.path, "/api/v2/alerts");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        let posted = alerts(r);
        // Both changes of that instant in one POST, in key order (anomalies first).
        assert_eq!(posted.len(), 2, "{posted:?}");
        let (fault, ooo) = (&posted[0], &posted[1]);
        assert_eq!(
            fault["labels"],
            serde_json::json!({
                "alertname": "ConnectorFaulted", "severity": "critical", "charge_point_id": "CP-1",
                "site_id": "site-1", "connector_id": "2", "kind": "connector_faulted", "env": "test"
            })
        );
        assert_eq!(
            fault["annotations"],
            serde_json::json!({
                "summary": "Connector faulted on charger CP-1 connector 2 at site site-1",
                "anomaly_id": "a-1",
                "event_time": format_rfc3339(opened),
                "details": r#"{"error_code":"GroundFailure","status":"Faulted"}"#
            })
        );
        assert_eq!(
            fault["generatorURL"],
            "https://grafana.example.com/d/evflow"
        );
        assert_eq!(time(&fault["startsAt"]), opened);
        // Firing: ends 4 × resend_interval (60 s) after the POST.
        let ends = time(&fault["endsAt"]);
        assert!(
            (now + 240_000..now + 250_000).contains(&ends),
            "{}",
            ends - now
        );
        assert_eq!(
            ooo["labels"],
            serde_json::json!({
                "alertname": "StationOutOfOrder", "severity": "critical", "charge_point_id": "CP-2",
                "site_id": "site-1", "kind": "station_out_of_order", "env": "test"
            })
        );
        assert_eq!(
            ooo["annotations"]["summary"],
            "Charger CP-2 at site site-1 is out of order (Faulted)"
        );
        assert_eq!(ooo["annotations"]["notification_id"], "n-1");
        assert_eq!(ooo["annotations"]["details"], r#"{"status":"Faulted"}"#);
        assert_eq!(time(&ooo["startsAt"]), opened + 1000);
        assert_eq!(
            metrics
                .alerts_firing
                .get_or_create(&label("route", "ops"))
                .get(),
            2
        );

        // Resolve both: the anomaly at its event time, the station "in the future" (clamped
        // to now); the connector-level key of the charger is not the charger-level one.
        let resolved = now - 60_000;
        sink.back_in_order("CP-2", Some(1), now);
        sink.anomaly(&anomaly(AnomalyState::Resolved, resolved));
        sink.back_in_order("CP-2", None, now + 3_600_000);
        assert!(server.wait_for(Duration::from_secs(5), |r| r.len() == 2));
        let after = http::now_millis();
        let posted = alerts(&server.requests()[1]);
        assert_eq!(posted.len(), 2, "{posted:?}");
        assert_eq!(posted[0]["labels"], fault["labels"]);
        assert_eq!(posted[0]["annotations"], fault["annotations"]);
        assert_eq!(time(&posted[0]["startsAt"]), opened);
        assert_eq!(time(&posted[0]["endsAt"]), resolved);
        assert_eq!(posted[1]["labels"], ooo["labels"]);
        let ends = time(&posted[1]["endsAt"]);
        assert!(
            ends >= time(&posted[1]["startsAt"]) && ends <= after,
            "{posted:?}"
        );
        assert_eq!(
            metrics
                .alerts_firing
                .get_or_create(&label("route", "ops"))
                .get(),
            0
        );

        // Forgotten once acknowledged: resolving again sends nothing.
        std::thread::sleep(Duration::from_millis(100));
        sink.back_in_order("CP-2", None, now);
        let report = sink.drain(Duration::from_secs(5));
        assert_eq!(
            report,
            AlertDrainReport {
                posted: 4,
                pending: 0
            }
        );
        assert_eq!(server.requests().len(), 2);
        assert_eq!(
            metrics
                .delivery_backlog
                .get_or_create(&labels2("sink", SINK, "route", "ops"))
                .get(),
            0
        );
    }

    #[test]
    fn firing_alerts_carry_over_a_restore() {
        let port = free_port();
        let server = Server::start(port, |_, _| 200);
        let cfg = quick(&format!("http://127.0.0.1:{port}"));
        let now = http::now_millis();
        let mut before = AlertmanagerSink::start("r", &cfg, Metrics::new()).expect("start");
        before.anomaly(&anomaly(AnomalyState::Open, now - 1_000));
        let saved = before.firing();
        assert_eq!(saved.len(), 1);
        let bytes = bincode::serialize(&saved).expect("save");
        assert!(server.wait_for(Duration::from_secs(5), |r| !r.is_empty()));
        // A crash: the process (and its sink) is gone without resolving anything.
        drop(before);
        let seen = server.requests().len();

        let mut after = AlertmanagerSink::start("r", &cfg, Metrics::new()).expect("restart");
        after.restore(bincode::deserialize(&bytes).expect("restore"));
        assert!(server.wait_for(Duration::from_secs(5), |r| r.len() > seen));
        let resent = all_alerts(&server).pop().expect("an alert");
        assert_eq!(resent["labels"]["alertname"], "ConnectorFaulted");
        assert_eq!(time(&resent["startsAt"]), now - 1_000);
        assert!(time(&resent["endsAt"]) > http::now_millis(), "still firing");
        // Its anomaly resolving after the restart resolves it.
        after.anomaly(&anomaly(AnomalyState::Resolved, now));
        assert_eq!(after.drain(Duration::from_secs(5)).pending, 0);
        let last = all_alerts(&server).pop().expect("an alert");
        assert_eq!(time(&last["endsAt"]), now);
    }

    #[test]
    fn a_down_alertmanager_keeps_changes_pending_until_it_comes_up() {
        let port = free_port();
        let metrics = Metrics::new();
        let cfg = AlertmanagerConfig {
            resend_interval: ConfigDuration(1_000),
            ..quick(&format!("http://127.0.0.1:{port}"))
        };
        let mut sink = AlertmanagerSink::start("down", &cfg, metrics.clone()).expect("start");
        let now = http::now_millis();
        sink.anomaly(&anomaly(AnomalyState::Open, now - 1_000));
        std::thread::sleep(Duration::from_millis(800));
        let backlog = || {
            metrics
                .delivery_backlog
                .get_or_create(&labels2("sink", SINK, "route", "down"))
                .get()
        };
        let failed = vec![
            ("sink", SINK.to_string()),
            ("route", "down".to_string()),
            ("outcome", "failed".to_string()),
        ];
        assert_eq!(backlog(), 1);
        assert!(metrics.delivery_attempts.get_or_create(&failed).get() >= 1);

        let server = Server::start(port, |_, _| 200);
        assert!(server.wait_for(Duration::from_secs(10), |r| !r.is_empty()));
        let first = all_alerts(&server);
        assert_eq!(first[0]["labels"]["alertname"], "ConnectorFaulted");
        assert_eq!(time(&first[0]["startsAt"]), now - 1_000);
        // Firing alerts are re-sent every resend_interval (1 s here), with a later endsAt.
        assert!(server.wait_for(Duration::from_secs(5), |r| r.len() >= 3));
        let resent = all_alerts(&server);
        assert!(resent.iter().all(|a| a["labels"] == first[0]["labels"]));
        assert!(time(&resent[2]["endsAt"]) > time(&resent[0]["endsAt"]));
        assert_eq!(backlog(), 0);

        sink.anomaly(&anomaly(AnomalyState::Resolved, now));
        let report = sink.drain(Duration::from_secs(5));
        assert_eq!(report.pending, 0);
        let last = all_alerts(&server).pop().expect("an alert");
        assert_eq!(time(&last["endsAt"]), now);
    }

    #[test]
    fn drain_gives_up_after_max_wait_when_alertmanager_stays_down() {
        let cfg = quick(&format!("http://127.0.0.1:{}", free_port()));
        let mut sink = AlertmanagerSink::start("gone", &cfg, Metrics::new()).expect("start");
        sink.anomaly(&anomaly(AnomalyState::Open, http::now_millis()));
        let t = Instant::now();
        let report = sink.drain(Duration::from_millis(700));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(
            report,
            AlertDrainReport {
                posted: 0,
                pending: 1
            }
        );
    }

    #[test]
    fn config_defaults_and_checks() {
        let cfg: AlertmanagerConfig =
            toml::from_str("url = \"http://127.0.0.1:9093\"").expect("toml");
        assert_eq!((cfg.resend_interval.0, cfg.timeout.0), (60_000, 10_000));
        assert!(cfg.generator_url.is_none() && cfg.labels.is_empty());
        let cfg: AlertmanagerConfig = toml::from_str(
            "url = \"http://am:9093/\"\nresend_interval = \"5m\"\nlabels = { env = \"prod\" }",
        )
        .expect("toml");
        assert_eq!(
            cfg.validate("r").expect("valid"),
            "http://am:9093/api/v2/alerts"
        );
        assert!(
            toml::from_str::<AlertmanagerConfig>("url = \"http://x\"\nresend = \"1m\"").is_err()
        );
        let own = AlertmanagerConfig {
            labels: BTreeMap::from([("severity".into(), "x".into())]),
            ..cfg.clone()
        };
        assert!(own.validate("r").is_err());
        let bad = AlertmanagerConfig {
            labels: BTreeMap::from([("env-name".into(), "x".into())]),
            ..cfg.clone()
        };
        assert!(bad.validate("r").is_err());
        assert!(AlertmanagerConfig::new("am:9093").validate("r").is_err());
        assert_eq!(
            camel_case("power_delivery_degraded"),
            "PowerDeliveryDegraded"
        );
    }
}
