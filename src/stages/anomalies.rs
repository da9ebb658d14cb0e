//! Fault detectors and the book of open anomalies of one charger.
//!
//! Owns: the per-sample detection rules (documented below and in `docs/detectors.md`),
//! anomaly ids and the open/resolved life cycle. An anomaly opens once and resolves at most
//! once (one still open at the end of the input has no resolved record), with the same
//! deterministic id (derived from kind, charger, connector and the event time at which the
//! condition first held), so consumers can deduplicate on (`id`, `state`). A record stamped
//! inside one of the charger's scheduled maintenance windows is marked `during_maintenance`.
//!
//! The per-charger detectors (this module, `link` and `charger`):
//!
//! | kind | opens when | resolves when |
//! |---|---|---|
//! | `communication_lost` | no message for `missed_heartbeats` × the charger's heartbeat interval (from its BootNotification's CALLRESULT; event time = last message + that span) | the next message |
//! | `connector_faulted` | StatusNotification `Faulted` (any error code), or a 2.0.1 NotifyEvent problem | a non-Faulted status / the problem cleared |
//! | `power_supply` | `confirm_samples` consecutive samples with any phase voltage outside the station's nominal ± `voltage_band_pct`, or the frequency outside nominal ± `frequency_band_pct`; error code UnderVoltage/OverVoltage; a `PowerLoss` stop (from the last message before the reboot to the reboot) | as many in-band samples / a NoError status / the reboot |
//! | `over_temperature` | `confirm_samples` consecutive samples above `max_temperature_c`, or error code HighTemperature | as many samples below / a NoError status |
//! | `meter_error` | the energy register goes backwards, or rises faster than the charger's rated power allows | the next consistent sample |
//! | `stuck_session` | open transaction, status Charging, no power (< `idle_power_w`) for `stuck_after` | power returns, the status changes, or the transaction stops |
//! | `session_failures` | `failed_sessions_run` consecutive sessions on a connector delivered < `failed_session_wh` or stopped for EmergencyStop/HardReset/SoftReset/Reboot (at the last one's end) | a session that delivered |
//! | `clock_skew` | the freshest of the last frames' timestamps is more than `clock_skew_threshold` off receive time, `confirm_samples` frames in a row (`link`) | as many frames in step |
//! | `message_errors` | `message_errors_min` CALLERRORs or rejected frames within `message_errors_window` (`link`) | a window without one |
//!
//! `power_delivery_degraded` and `underused` compare a charger with the fleet: `fleet`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::{AnomalyConfig, MaintenanceWindow};
use crate::model::{
    stable_id, AnomalyKind, AnomalyRecord, AnomalyState, MeterSample, Millis, Output, Severity,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct OpenAnomaly {
    kind: AnomalyKind,
    severity: Severity,
    connector_id: Option<u32>,
    id: String,
    since: Millis,
}

/// Open anomalies of one charger.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct AnomalyBook {
    open: Vec<OpenAnomaly>,
}

/// Who the anomaly is about; copied into every record.
pub struct Subject<'a> {
    pub charge_point_id: &'a Arc<str>,
    pub site_id: &'a Arc<str>,
    /// The charger's scheduled maintenance windows: records stamped inside one are marked
    /// `during_maintenance`.
    pub maintenance: &'a [MaintenanceWindow],
}

impl Subject<'_> {
    pub fn in_maintenance(&self, at: Millis) -> bool {
        in_maintenance(self.maintenance, at)
    }
}

/// Whether `t` falls in one of the windows (start inclusive, end exclusive).
pub fn in_maintenance(windows: &[MaintenanceWindow], t: Millis) -> bool {
    windows.iter().any(|m| m.start.0 <= t && t < m.end.0)
}

impl AnomalyBook {
    pub fn is_open(&self, kind: AnomalyKind, connector_id: Option<u32>) -> bool {
        self.open
            .iter()
            .any(|a| a.kind == kind && a.connector_id == connector_id)
    }

    /// The kind of every open anomaly.
    pub fn open_kinds(&self) -> impl Iterator<Item = AnomalyKind> + '_ {
        self.open.iter().map(|a| a.kind)
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Open anomalies affecting a connector (its own and the charger-wide ones).
    pub fn open_for_connector(&self, connector_id: u32) -> usize {
        self.open
            .iter()
            .filter(|a| a.connector_id.is_none() || a.connector_id == Some(connector_id))
            .count()
    }

    /// Opens an anomaly unless one of that kind is already open there. Returns the id of the
    /// anomaly that was opened.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        subject: &Subject,
        kind: AnomalyKind,
        connector_id: Option<u32>,
        at: Millis,
        severity: Severity,
        details: Value,
        out: &mut Vec<Output>,
    ) -> Option<String> {
        if self.is_open(kind, connector_id) {
            return None;
        }
        let conn = connector_id.map_or(String::new(), |c| c.to_string());
        let id = stable_id(&[
            kind.as_str(),
            subject.charge_point_id,
            &conn,
            &at.to_string(),
        ]);
        self.open.push(OpenAnomaly {
            kind,
            severity,
            connector_id,
            id: id.clone(),
            since: at,
        });
        out.push(Output::Anomaly(AnomalyRecord {
            id: id.clone(),
            kind,
            state: AnomalyState::Open,
            charge_point_id: subject.charge_point_id.clone(),
            site_id: subject.site_id.clone(),
            connector_id,
            event_time: at,
            severity,
            during_maintenance: subject.in_maintenance(at),
            details,
        }));
        Some(id)
    }

    /// Resolves the open anomaly of `kind` at `connector_id`, if there is one.
    pub fn resolve(
        &mut self,
        subject: &Subject,
        kind: AnomalyKind,
        connector_id: Option<u32>,
        at: Millis,
        details: Value,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(i) = self
            .open
            .iter()
            .position(|a| a.kind == kind && a.connector_id == connector_id)
        else {
            return false;
        };
        let a = self.open.swap_remove(i);
        let mut details = details;
        if let Value::Object(m) = &mut details {
            m.insert("duration_s".into(), json!((at - a.since).max(0) / 1000));
        }
        out.push(Output::Anomaly(AnomalyRecord {
            id: a.id,
            kind,
            state: AnomalyState::Resolved,
            charge_point_id: subject.charge_point_id.clone(),
            site_id: subject.site_id.clone(),
            connector_id,
            event_time: at.max(a.since),
            severity: a.severity,
            during_maintenance: subject.in_maintenance(at.max(a.since)),
            details,
        }));
        true
    }
}

/// Measured values in details: one decimal (sensor values arrive as f32).
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A "confirm after N consecutive samples" gate, used for voltage and temperature.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Debounce {
    bad_run: u32,
    bad_since: Millis,
    good_run: u32,
    good_since: Millis,
}

pub enum Transition {
    /// The condition has held for enough samples, since the given time.
    Opened(Millis),
    /// The condition has been clear for enough samples, since the given time.
    Cleared(Millis),
    None,
}

impl Debounce {
    pub fn observe(&mut self, bad: bool, at: Millis, confirm: u32, is_open: bool) -> Transition {
        if bad {
            if self.bad_run == 0 {
                self.bad_since = at;
            }
            self.bad_run += 1;
            self.good_run = 0;
            if !is_open && self.bad_run >= confirm {
                return Transition::Opened(self.bad_since);
            }
        } else {
            if self.good_run == 0 {
                self.good_since = at;
            }
            self.good_run += 1;
            self.bad_run = 0;
            if is_open && self.good_run >= confirm {
                return Transition::Cleared(self.good_since);
            }
        }
        Transition::None
    }
}

/// The supply as one sample shows it: every phase voltage against nominal ± band, and the
/// grid frequency against nominal ± band.
pub struct SupplyVerdict {
    /// (phase index, volts) of the phases out of band.
    bad_phases: Vec<(usize, f64)>,
    /// The phase furthest from nominal.
    worst_v: Option<f64>,
    band_v: (f64, f64),
    frequency_hz: Option<f64>,
    frequency_bad: bool,
}

const PHASES: [&str; 3] = ["L1", "L2", "L3"];

impl SupplyVerdict {
    pub fn bad(&self) -> bool {
        !self.bad_phases.is_empty() || self.frequency_bad
    }

    fn details(&self) -> Value {
        let cause = if let Some((_, v)) = self.bad_phases.first() {
            if *v < self.band_v.0 {
                "under_voltage"
            } else {
                "over_voltage"
            }
        } else if self.frequency_bad {
            "frequency"
        } else {
            "in_band"
        };
        json!({
            "cause": cause,
            "voltage_v": self.worst_v.map(round1),
            "band_v": [round1(self.band_v.0), round1(self.band_v.1)],
            "phases": self.bad_phases.iter().map(|(i, _)| PHASES[*i]).collect::<Vec<_>>(),
            "frequency_hz": self.frequency_hz.map(|f| (f * 100.0).round() / 100.0),
        })
    }
}

/// Judges one sample's supply; `None` when it measures neither voltage nor frequency.
pub fn supply_check(
    cfg: &AnomalyConfig,
    nominal_voltage_v: f64,
    s: &MeterSample,
) -> Option<SupplyVerdict> {
    let lo = nominal_voltage_v * (1.0 - cfg.voltage_band_pct / 100.0);
    let hi = nominal_voltage_v * (1.0 + cfg.voltage_band_pct / 100.0);
    let mut bad_phases = Vec::new();
    let mut worst_v: Option<f64> = None;
    for (i, v) in s.voltage_v.iter().enumerate() {
        let Some(v) = v.map(f64::from) else { continue };
        if v < lo || v > hi {
            bad_phases.push((i, v));
        }
        if worst_v.is_none_or(|w| (v - nominal_voltage_v).abs() > (w - nominal_voltage_v).abs()) {
            worst_v = Some(v);
        }
    }
    let frequency_hz = s.frequency_hz.map(f64::from);
    let f_band = cfg.nominal_frequency_hz * cfg.frequency_band_pct / 100.0;
    let frequency_bad = frequency_hz.is_some_and(|f| (f - cfg.nominal_frequency_hz).abs() > f_band);
    if worst_v.is_none() && frequency_hz.is_none() {
        return None;
    }
    Some(SupplyVerdict {
        bad_phases,
        worst_v,
        band_v: (lo, hi),
        frequency_hz,
        frequency_bad,
    })
}

/// Per-connector detector state for the sample-driven detectors.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SampleDetectors {
    supply: Debounce,
    temperature: Debounce,
    /// The last register reading: (event time, receive time, Wh).
    last_register: Option<(Millis, Millis, f64)>,
}

/// The verdict on one energy register reading against the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegisterCheck {
    First,
    /// Plausible increase, Wh.
    Ok(f64),
    Backwards(f64),
    Jump(f64),
}

/// The most energy a charger of `max_power_w` can plausibly deliver in `dt_ms`, Wh: rated
/// power with 50 % headroom, plus 1 kWh for rounding and meter granularity.
pub fn max_plausible_wh(max_power_w: f64, dt_ms: Millis) -> f64 {
    max_power_w * 1.5 * (dt_ms.max(0) as f64) / 3_600_000.0 + 1000.0
}

pub fn check_register(
    prev: Option<(Millis, f64)>,
    at: Millis,
    wh: f64,
    max_power_w: f64,
) -> RegisterCheck {
    match prev {
        None => RegisterCheck::First,
        Some((t0, w0)) => {
            let d = wh - w0;
            if d < -1.0 {
                RegisterCheck::Backwards(d)
            } else if d > max_plausible_wh(max_power_w, at - t0) {
                RegisterCheck::Jump(d)
            } else {
                RegisterCheck::Ok(d.max(0.0))
            }
        }
    }
}

impl SampleDetectors {
    /// Runs the voltage, temperature and meter detectors over one sample. Returns the register
    /// verdict so the session can decide which increments to count.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        cfg: &AnomalyConfig,
        book: &mut AnomalyBook,
        subject: &Subject,
        connector_id: u32,
        at: Millis,
        received: Millis,
        s: &MeterSample,
        max_power_w: f64,
        nominal_voltage_v: f64,
        out: &mut Vec<Output>,
    ) -> Option<RegisterCheck> {
        // Connector 0 is the charger itself.
        let conn = (connector_id > 0).then_some(connector_id);
        if let Some(verdict) = supply_check(cfg, nominal_voltage_v, s) {
            let open = book.is_open(AnomalyKind::PowerSupply, conn);
            match self
                .supply
                .observe(verdict.bad(), at, cfg.confirm_samples, open)
            {
                Transition::Opened(since) => {
                    book.open(
                        subject,
                        AnomalyKind::PowerSupply,
                        conn,
                        since,
                        Severity::Critical,
                        verdict.details(),
                        out,
                    );
                }
                Transition::Cleared(since) => {
                    book.resolve(
                        subject,
                        AnomalyKind::PowerSupply,
                        conn,
                        since,
                        verdict.details(),
                        out,
                    );
                }
                Transition::None => {}
            }
        }
        if let Some(t) = s.temperature_c {
            let t = t as f64;
            let open = book.is_open(AnomalyKind::OverTemperature, conn);
            match self
                .temperature
                .observe(t > cfg.max_temperature_c, at, cfg.confirm_samples, open)
            {
                Transition::Opened(since) => {
                    book.open(
                        subject,
                        AnomalyKind::OverTemperature,
                        conn,
                        since,
                        Severity::Warning,
                        json!({"temperature_c": round1(t), "max_c": cfg.max_temperature_c}),
                        out,
                    );
                }
                Transition::Cleared(since) => {
                    book.resolve(
                        subject,
                        AnomalyKind::OverTemperature,
                        conn,
                        since,
                        json!({"temperature_c": round1(t)}),
                        out,
                    );
                }
                Transition::None => {}
            }
        }
        let wh = s.energy_wh?;
        // Older by either clock: a reading delivered late, or one stamped by a clock that
        // jumped back, says nothing about the register's continuity.
        if self
            .last_register
            .is_some_and(|(t0, r0, _)| at < t0 || received < r0)
        {
            // An older reading delivered late says nothing about the register's continuity.
            return None;
        }
        // The time between the readings by whichever clock says more: a backlog arrives all
        // at once (receive time says nothing), a skewed clock stamps readings too close.
        let check = check_register(
            self.last_register
                .map(|(t0, r0, w0)| (at - (at - t0).max(received - r0), w0)),
            at,
            wh,
            max_power_w,
        );
        self.last_register = Some((at, received, wh));
        match check {
            RegisterCheck::Backwards(d) | RegisterCheck::Jump(d) => {
                let cause = if d < 0.0 {
                    "register_backwards"
                } else {
                    "register_jump"
                };
                book.open(
                    subject,
                    AnomalyKind::MeterError,
                    conn,
                    at,
                    Severity::Warning,
                    json!({"cause": cause, "delta_wh": d.round() as i64, "register_wh": wh.round() as i64}),
                    out,
                );
            }
            RegisterCheck::Ok(_) | RegisterCheck::First => {
                book.resolve(
                    subject,
                    AnomalyKind::MeterError,
                    conn,
                    at,
                    json!({"register_wh": wh.round() as i64}),
                    out,
                );
            }
        }
        Some(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_needs_consecutive_samples() {
        let mut d = Debounce::default();
        assert!(matches!(d.observe(true, 1, 2, false), Transition::None));
        assert!(matches!(d.observe(false, 2, 2, false), Transition::None));
        assert!(matches!(d.observe(true, 3, 2, false), Transition::None));
        assert!(matches!(
            d.observe(true, 4, 2, false),
            Transition::Opened(3)
        ));
        assert!(matches!(d.observe(false, 5, 2, true), Transition::None));
        assert!(matches!(
            d.observe(false, 6, 2, true),
            Transition::Cleared(5)
        ));
    }

    #[test]
    fn register_checks() {
        assert_eq!(check_register(None, 0, 5.0, 1e4), RegisterCheck::First);
        assert_eq!(
            check_register(Some((0, 100.0)), 60_000, 200.0, 1e4),
            RegisterCheck::Ok(100.0)
        );
        assert!(matches!(
            check_register(Some((0, 100.0)), 60_000, 50.0, 1e4),
            RegisterCheck::Backwards(_)
        ));
        // 11 kW for one minute is ~183 Wh; 1 MWh in a minute is impossible
        assert!(matches!(
            check_register(Some((0, 100.0)), 60_000, 1e6, 11_000.0),
            RegisterCheck::Jump(_)
        ));
    }

    #[test]
    fn book_opens_once_and_resolves_with_the_same_id() {
        let cp: Arc<str> = "CP".into();
        let site: Arc<str> = "S".into();
        let subject = Subject {
            charge_point_id: &cp,
            site_id: &site,
            maintenance: &[],
        };
        let mut book = AnomalyBook::default();
        let mut out = vec![];
        let id = book.open(
            &subject,
            AnomalyKind::ConnectorFaulted,
            Some(1),
            10,
            Severity::Critical,
            json!({}),
            &mut out,
        );
        assert!(id.is_some());
        assert!(book
            .open(
                &subject,
                AnomalyKind::ConnectorFaulted,
                Some(1),
                20,
                Severity::Critical,
                json!({}),
                &mut out
            )
            .is_none());
        assert!(book.resolve(
            &subject,
            AnomalyKind::ConnectorFaulted,
            Some(1),
            30_000,
            json!({}),
            &mut out
        ));
        assert!(!book.resolve(
            &subject,
            AnomalyKind::ConnectorFaulted,
            Some(1),
            40_000,
            json!({}),
            &mut out
        ));
        assert_eq!(out.len(), 2);
        let (Output::Anomaly(a), Output::Anomaly(b)) = (&out[0], &out[1]) else {
            panic!()
        };
        assert_eq!(a.id, b.id);
        assert_eq!(
            (a.state, b.state),
            (AnomalyState::Open, AnomalyState::Resolved)
        );
        assert_eq!(b.details["duration_s"], 29);
    }
}
