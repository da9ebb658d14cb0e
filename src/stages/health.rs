//! Health scores per connector, charger and site.
//!
//! Owns: the health components, their accumulation over a window of event time, and the
//! score formula. The score (0–100) of a window is
//!
//! ```text
//! score = 100 × (0.35·availability + 0.20·heartbeat_regularity + 0.15·session_success
//!                + 0.10·error_free + 0.20·anomaly_free)
//! ```
//!
//! with every component in [0, 1]:
//! - `availability`: share of the window the connector was operative (status not Faulted or
//!   Unavailable, the charger's connector 0 not either, and the charger online — no open
//!   `communication_lost`);
//! - `heartbeat_regularity`: share of the window's heartbeat slots (the charger's heartbeat
//!   interval) in which the charger sent at least one message;
//! - `session_success`: share of the sessions that ended in the window that delivered at least
//!   100 Wh and did not stop for an error reason (EmergencyStop, PowerLoss, HardReset,
//!   SoftReset, Reboot); 1 when no session ended;
//! - `error_free`: 0.5 ^ (error reports in the window: status notifications with an error code
//!   other than NoError, and CALLERROR frames);
//! - `anomaly_free`: share of the window without an open anomaly on the connector or charger.
//!
//! A charger's row averages its connectors' components (its heartbeat regularity is its own);
//! a site's row averages its chargers' rows (computed by `dataflow`'s aggregator).

use std::sync::Arc;

use crate::model::{ConnectorStatus, HealthComponent, HealthLevel, HealthRow, Millis};

pub const WEIGHTS: [f64; 5] = [0.35, 0.20, 0.15, 0.10, 0.20];

/// Stop reasons that count as a failed session.
pub const ERROR_STOP_REASONS: [&str; 5] = [
    "EmergencyStop",
    "PowerLoss",
    "HardReset",
    "SoftReset",
    "Reboot",
];

pub fn score(availability: f64, heartbeat: f64, sessions: f64, errors: f64, anomalies: f64) -> f64 {
    let s = 100.0
        * (WEIGHTS[0] * availability
            + WEIGHTS[1] * heartbeat
            + WEIGHTS[2] * sessions
            + WEIGHTS[3] * errors
            + WEIGHTS[4] * anomalies);
    (s * 100.0).round() / 100.0
}

/// The component that cost the most points, `None` for a perfect score. Ties go to the
/// component listed first in [`HealthComponent::ALL`] (availability first: it says most).
pub fn main_cause(components: [f64; 5]) -> Option<HealthComponent> {
    let mut best: Option<(HealthComponent, f64)> = None;
    for (i, c) in HealthComponent::ALL.into_iter().enumerate() {
        let loss = WEIGHTS[i] * (1.0 - components[i]);
        if loss > 1e-9 && best.is_none_or(|(_, l)| loss > l + 1e-12) {
            best = Some((c, loss));
        }
    }
    best.map(|(c, _)| c)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectorHealth {
    pub connector_id: u32,
    pub status: ConnectorStatus,
    /// A fault reported outside the status (2.0.1 NotifyEvent) is active.
    pub fault_active: bool,
    operative_ms: i64,
    anomaly_ms: i64,
    sessions: u32,
    sessions_ok: u32,
    errors: u32,
}

impl ConnectorHealth {
    pub fn new(connector_id: u32) -> Self {
        ConnectorHealth {
            connector_id,
            status: ConnectorStatus::Available,
            fault_active: false,
            operative_ms: 0,
            anomaly_ms: 0,
            sessions: 0,
            sessions_ok: 0,
            errors: 0,
        }
    }

    pub fn session_ended(&mut self, energy_wh: i64, stop_reason: &str) {
        self.sessions += 1;
        if energy_wh >= 100 && !ERROR_STOP_REASONS.contains(&stop_reason) {
            self.sessions_ok += 1;
        }
    }

    pub fn error_reported(&mut self) {
        self.errors += 1;
    }
}

/// What the health accumulator needs to know about the charger at a point in time.
pub struct Conditions<'a> {
    pub online: bool,
    pub charger_operative: bool,
    /// Open anomalies affecting connector `c` (charger-wide ones included).
    pub open_anomalies: &'a dyn Fn(u32) -> usize,
}

/// The health accumulator of one charger for the current window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChargerHealth {
    pub window_start: Millis,
    /// Event time up to which durations have been accumulated.
    cursor: Millis,
    pub connectors: Vec<ConnectorHealth>,
    charger_errors: u32,
    charger_anomaly_ms: i64,
    charger_operative_ms: i64,
    slots_seen: u32,
    last_slot: Option<i64>,
}

impl ChargerHealth {
    pub fn new(window_start: Millis) -> Self {
        ChargerHealth {
            window_start,
            cursor: window_start,
            connectors: Vec::new(),
            charger_errors: 0,
            charger_anomaly_ms: 0,
            charger_operative_ms: 0,
            slots_seen: 0,
            last_slot: None,
        }
    }

    pub fn connector(&mut self, connector_id: u32) -> &mut ConnectorHealth {
        let i = match self
            .connectors
            .binary_search_by_key(&connector_id, |c| c.connector_id)
        {
            Ok(i) => i,
            Err(i) => {
                self.connectors
                    .insert(i, ConnectorHealth::new(connector_id));
                i
            }
        };
        &mut self.connectors[i]
    }

    pub fn charger_error(&mut self) {
        self.charger_errors += 1;
    }

    /// An error report on connector `c` (0: the charger itself).
    pub fn error_reported(&mut self, c: u32) {
        if c == 0 {
            self.charger_error();
        } else {
            self.connector(c).error_reported();
        }
    }

    /// A message arrived at `at`: counts its heartbeat slot.
    pub fn message_seen(&mut self, at: Millis, heartbeat_interval: Millis) {
        let slot = at.div_euclid(heartbeat_interval.max(1000));
        if self.last_slot != Some(slot) && at >= self.window_start {
            self.slots_seen += 1;
            self.last_slot = Some(slot);
        }
    }

    /// Accumulates durations up to `to` under the conditions that held since the cursor.
    pub fn advance_to(&mut self, to: Millis, c: &Conditions) {
        let dt = to.saturating_sub(self.cursor);
        if dt <= 0 {
            return;
        }
        self.cursor = to;
        let up = c.online && c.charger_operative;
        if up {
            self.charger_operative_ms += dt;
        }
        if (c.open_anomalies)(0) > 0 {
            self.charger_anomaly_ms += dt;
        }
        for conn in &mut self.connectors {
            if up && conn.status.is_operative() && !conn.fault_active {
                conn.operative_ms += dt;
            }
            if (c.open_anomalies)(conn.connector_id) > 0 {
                conn.anomaly_ms += dt;
            }
        }
    }

    /// Closes the window ending at `end` (durations must have been advanced to `end`),
    /// appends its connector and charger rows, and starts the next window.
    pub fn close_window(
        &mut self,
        end: Millis,
        heartbeat_interval: Millis,
        charge_point_id: &Arc<str>,
        site_id: &Arc<str>,
        open_anomalies: i64,
        rows: &mut Vec<HealthRow>,
    ) {
        let width = (end - self.window_start).max(1) as f64;
        let slots = (width / heartbeat_interval.max(1000) as f64)
            .ceil()
            .max(1.0);
        let heartbeat = (self.slots_seen as f64 / slots).min(1.0);
        let row = |level, connector_id, a: f64, s: f64, e: f64, an: f64| HealthRow {
            window_start: self.window_start,
            window_end: end,
            level,
            site_id: site_id.clone(),
            charge_point_id: charge_point_id.clone(),
            connector_id,
            score: score(a, heartbeat, s, e, an),
            availability: a,
            heartbeat_regularity: heartbeat,
            session_success: s,
            error_free: e,
            anomaly_free: an,
            open_anomalies,
            main_cause: main_cause([a, heartbeat, s, e, an]),
        };
        let first = rows.len();
        for c in &self.connectors {
            if c.connector_id == 0 {
                continue;
            }
            let a = (c.operative_ms as f64 / width).min(1.0);
            let s = if c.sessions == 0 {
                1.0
            } else {
                c.sessions_ok as f64 / c.sessions as f64
            };
            let e = 0.5f64.powi((c.errors + self.charger_errors).min(64) as i32);
            let an = 1.0 - (c.anomaly_ms as f64 / width).min(1.0);
            rows.push(row(
                HealthLevel::Connector,
                Some(c.connector_id),
                a,
                s,
                e,
                an,
            ));
        }
        let n = rows.len() - first;
        let charger = if n == 0 {
            row(
                HealthLevel::Charger,
                None,
                (self.charger_operative_ms as f64 / width).min(1.0),
                1.0,
                0.5f64.powi(self.charger_errors.min(64) as i32),
                1.0 - (self.charger_anomaly_ms as f64 / width).min(1.0),
            )
        } else {
            let mean =
                |f: fn(&HealthRow) -> f64| rows[first..].iter().map(f).sum::<f64>() / n as f64;
            row(
                HealthLevel::Charger,
                None,
                mean(|r| r.availability),
                mean(|r| r.session_success),
                mean(|r| r.error_free),
                mean(|r| r.anomaly_free),
            )
        };
        rows.push(charger);

        self.window_start = end;
        self.cursor = self.cursor.max(end);
        self.charger_errors = 0;
        self.charger_anomaly_ms = 0;
        self.charger_operative_ms = 0;
        self.slots_seen = 0;
        self.last_slot = None;
        for c in &mut self.connectors {
            c.operative_ms = 0;
            c.anomaly_ms = 0;
            c.sessions = 0;
            c.sessions_ok = 0;
            c.errors = 0;
        }
    }
}

/// Averages charger rows of one site and window into the site's row.
pub fn site_row(chargers: &[&HealthRow]) -> Option<HealthRow> {
    let first = chargers.first()?;
    let n = chargers.len() as f64;
    let mean = |f: fn(&HealthRow) -> f64| chargers.iter().map(|r| f(r)).sum::<f64>() / n;
    let (a, h, s, e, an) = (
        mean(|r| r.availability),
        mean(|r| r.heartbeat_regularity),
        mean(|r| r.session_success),
        mean(|r| r.error_free),
        mean(|r| r.anomaly_free),
    );
    Some(HealthRow {
        window_start: first.window_start,
        window_end: first.window_end,
        level: HealthLevel::Site,
        site_id: first.site_id.clone(),
        charge_point_id: Arc::from(""),
        connector_id: None,
        score: score(a, h, s, e, an),
        availability: a,
        heartbeat_regularity: h,
        session_success: s,
        error_free: e,
        anomaly_free: an,
        open_anomalies: chargers.iter().map(|r| r.open_anomalies).sum(),
        main_cause: main_cause([a, h, s, e, an]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_charger_scores_100_and_faults_lower_it() {
        let cp: Arc<str> = "CP".into();
        let site: Arc<str> = "S".into();
        let none = |_c: u32| 0usize;
        let ok = Conditions {
            online: true,
            charger_operative: true,
            open_anomalies: &none,
        };
        let mut h = ChargerHealth::new(0);
        h.connector(1);
        for i in 0..3 {
            h.message_seen(i * 300_000 + 1, 300_000);
        }
        h.advance_to(900_000, &ok);
        let mut rows = vec![];
        h.close_window(900_000, 300_000, &cp, &site, 0, &mut rows);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].score, 100.0);

        // faulted for half of the next window, one error report, anomaly open meanwhile
        let one = |_c: u32| 1usize;
        let bad = Conditions {
            online: true,
            charger_operative: true,
            open_anomalies: &one,
        };
        h.connector(1).status = ConnectorStatus::Faulted;
        h.connector(1).error_reported();
        for i in 3..6 {
            h.message_seen(i * 300_000 + 1, 300_000);
        }
        h.advance_to(1_350_000, &bad);
        h.connector(1).status = ConnectorStatus::Available;
        h.advance_to(1_800_000, &ok);
        rows.clear();
        h.close_window(1_800_000, 300_000, &cp, &site, 0, &mut rows);
        let r = &rows[0];
        assert_eq!(r.availability, 0.5);
        assert_eq!(r.error_free, 0.5);
        assert_eq!(r.anomaly_free, 0.5);
        assert_eq!(r.score, score(0.5, 1.0, 1.0, 0.5, 0.5));
        assert!(r.score < 70.0);
        let site_r = site_row(&[&rows[1], &rows[1]]).unwrap();
        assert_eq!(site_r.score, rows[1].score);
    }
}
