//! Charging sessions: from StartTransaction to StopTransaction, with their energy and price.
//!
//! Owns: the session state of a connector and the energy rule. Pricing itself is `tariff`'s.
//!
//! Energy rule (`energy_wh`, whole Wh):
//! - `registers`: meterStop − meterStart, when both are known, the difference is ≥ 0, plausible for the session's
//!   duration at the charger's rated power (see `anomalies::max_plausible_wh`), and no
//!   meter error was seen during the session;
//! - `samples`: otherwise, the sum of the plausible increments between consecutive
//!   Energy.Active.Import.Register readings (meterStart, the samples, meterStop), skipping the
//!   steps where the register went backwards or jumped — so one bad reading cannot bill a
//!   driver for a megawatt-hour.

use std::sync::Arc;

use crate::model::{EnergySource, MessageId, Millis, PeriodRecord, TransactionId};
use crate::stages::anomalies::{check_register, max_plausible_wh, RegisterCheck};

/// An open session on a connector.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpenSession {
    pub message_id: MessageId,
    pub transaction_id: Option<TransactionId>,
    /// Unknown until the driver is identified (2.0.1 may identify them after the start).
    pub id_tag: Option<Arc<str>>,
    pub start_time: Millis,
    /// The start register, when the charger reported one.
    pub meter_start_wh: Option<i64>,
    /// Last register reading and its time.
    last_register: Option<(Millis, f64)>,
    /// Sum of plausible increments so far, Wh.
    pub sample_energy_wh: f64,
    pub saw_meter_error: bool,
    /// Register readings folded in (besides the start register).
    pub register_readings: u32,
    pub peak_power_w: f64,
    /// Last SoC reading, for the time-to-full estimate.
    pub last_soc: Option<(Millis, f32)>,
    pub soc_rate_per_ms: Option<f64>,
    pub almost_complete_sent: bool,
    /// Charging periods so far (the last one open).
    periods: Vec<PeriodAcc>,
    /// Charging (else connected but not charging), since `state_since`.
    charging: bool,
    state_since: Millis,
    /// Which of the tariff's power bounds the power is between.
    power_bucket: usize,
    /// Charging samples seen so far (for the fleet's delivery judgement).
    pub delivery_samples: u32,
    /// The best of them: (share of rated power, SoC band, W).
    pub delivery_best: Option<(f64, u8, f64)>,
}

/// A charging period being accumulated.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PeriodAcc {
    start: Millis,
    /// Plausible register increments in the period, Wh.
    energy_wh: f64,
    charging_ms: i64,
    parking_ms: i64,
    max_power_w: Option<f64>,
}

impl PeriodAcc {
    fn new(start: Millis) -> Self {
        PeriodAcc {
            start,
            energy_wh: 0.0,
            charging_ms: 0,
            parking_ms: 0,
            max_power_w: None,
        }
    }
}

impl OpenSession {
    pub fn new(
        message_id: MessageId,
        id_tag: Option<Arc<str>>,
        start_time: Millis,
        meter_start_wh: Option<i64>,
    ) -> Self {
        OpenSession {
            message_id,
            transaction_id: None,
            id_tag,
            start_time,
            meter_start_wh,
            last_register: meter_start_wh.map(|m| (start_time, m as f64)),
            sample_energy_wh: 0.0,
            saw_meter_error: false,
            register_readings: 0,
            peak_power_w: 0.0,
            last_soc: None,
            soc_rate_per_ms: None,
            almost_complete_sent: false,
            periods: vec![PeriodAcc::new(start_time)],
            charging: true,
            state_since: start_time,
            power_bucket: 0,
            delivery_samples: 0,
            delivery_best: None,
        }
    }

    /// Adds the time since the last change to the current period's charging or parking time.
    fn accrue(&mut self, at: Millis) {
        if at <= self.state_since {
            return;
        }
        let dt = at - self.state_since;
        if let Some(p) = self.periods.last_mut() {
            if self.charging {
                p.charging_ms += dt;
            } else {
                p.parking_ms += dt;
            }
        }
        self.state_since = at;
    }

    /// Starts a new period at `at` (a period that has not started yet is reused).
    fn split(&mut self, at: Millis) {
        self.accrue(at);
        if self.periods.last().is_some_and(|p| at > p.start) {
            self.periods.push(PeriodAcc::new(at));
        }
    }

    /// The connector's status changed: charging (`Charging`) or not (suspended, finishing…).
    pub fn on_status(&mut self, at: Millis, charging: bool) {
        if charging != self.charging && at >= self.state_since {
            self.split(at);
            self.charging = charging;
        }
    }

    /// A power sample: a new period starts where the power crosses one of the tariff's
    /// bounds (`power_bounds_w`, sorted), so a power restriction prices whole periods.
    pub fn on_power(&mut self, at: Millis, power_w: f64, power_bounds_w: &[f64]) {
        if at < self.state_since {
            return; // a late sample: its period is closed
        }
        let bucket = power_bounds_w.partition_point(|b| *b <= power_w);
        if bucket != self.power_bucket {
            self.split(at);
            self.power_bucket = bucket;
        }
        if let Some(p) = self.periods.last_mut() {
            p.max_power_w = Some(p.max_power_w.map_or(power_w, |m| m.max(power_w)));
        }
    }

    /// Closes the periods at `end`, sharing `energy_wh` (the session's energy) out in whole
    /// Wh in proportion to the meter increments seen in each (all to the last period when
    /// there were none), so that they add up to it exactly.
    pub fn finish_periods(&mut self, end: Millis, energy_wh: i64) -> Vec<PeriodRecord> {
        self.accrue(end);
        let total = energy_wh.max(0);
        let seen: Vec<i64> = self
            .periods
            .iter()
            .map(|p| p.energy_wh.max(0.0).round() as i64)
            .collect();
        let sum: i64 = seen.iter().sum();
        let mut shares: Vec<i64> = if sum <= total {
            seen
        } else {
            // More seen than billed (registers won over samples): scale down, in integers.
            seen.iter()
                .map(|e| ((*e as i128 * total as i128) / sum as i128) as i64)
                .collect()
        };
        let assigned: i64 = shares.iter().sum();
        if let Some(last) = shares.last_mut() {
            *last += total - assigned;
        }
        self.periods
            .iter()
            .zip(shares)
            .map(|(p, energy_wh)| PeriodRecord {
                start_time: p.start,
                energy_wh,
                charging_ms: p.charging_ms,
                parking_ms: p.parking_ms,
                max_power_w: p.max_power_w,
            })
            .collect()
    }

    /// Folds a register reading into the sample-based energy.
    pub fn observe_register(&mut self, at: Millis, wh: f64, max_power_w: f64) {
        if self.last_register.is_some_and(|(t0, _)| at < t0) {
            // Older than the last reading (delivered late): only the register rule can use it.
            return;
        }
        self.register_readings += 1;
        match check_register(self.last_register, at, wh, max_power_w) {
            RegisterCheck::Ok(d) => {
                self.sample_energy_wh += d;
                if let Some(p) = self.periods.last_mut() {
                    p.energy_wh += d;
                }
            }
            RegisterCheck::Backwards(_) | RegisterCheck::Jump(_) => self.saw_meter_error = true,
            RegisterCheck::First => {}
        }
        let last_at = self.last_register.map_or(at, |(t, _)| t.max(at));
        self.last_register = Some((last_at, wh));
    }

    pub fn observe_soc(&mut self, at: Millis, soc: f32) {
        if let Some((t0, s0)) = self.last_soc {
            if at > t0 && soc > s0 {
                self.soc_rate_per_ms = Some((soc - s0) as f64 / (at - t0) as f64);
            }
        }
        self.last_soc = Some((at, soc));
    }

    /// Energy of the session when it stops, and how it was obtained.
    pub fn final_energy(
        &mut self,
        end_time: Millis,
        meter_stop_wh: Option<i64>,
        max_power_w: f64,
    ) -> (i64, EnergySource) {
        if let Some(stop) = meter_stop_wh {
            self.observe_register(end_time, stop as f64, max_power_w);
        }
        if let (Some(start), Some(stop)) = (self.meter_start_wh, meter_stop_wh) {
            let by_registers = stop - start;
            let plausible = by_registers >= 0
                && (by_registers as f64)
                    <= max_plausible_wh(max_power_w, end_time - self.start_time);
            if plausible && !self.saw_meter_error {
                return (by_registers, EnergySource::Registers);
            }
        }
        (self.sample_energy_wh.round() as i64, EnergySource::Samples)
    }

    /// Estimated minutes until the battery is full, from the SoC trend.
    pub fn eta_minutes(&self) -> Option<f64> {
        let (_, soc) = self.last_soc?;
        let rate = self.soc_rate_per_ms?;
        (rate > 0.0).then(|| (100.0 - soc as f64) / rate / 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_when_consistent() {
        let mut s = OpenSession::new(MessageId(1), Some("T".into()), 0, Some(1_000));
        s.observe_register(60_000, 1_100.0, 11_000.0);
        s.observe_register(120_000, 1_250.0, 11_000.0);
        assert_eq!(
            s.final_energy(180_000, Some(1_400), 11_000.0),
            (400, EnergySource::Registers)
        );
    }

    #[test]
    fn samples_when_the_register_jumps() {
        let mut s = OpenSession::new(MessageId(1), Some("T".into()), 0, Some(1_000));
        s.observe_register(60_000, 1_100.0, 11_000.0);
        s.observe_register(120_000, 1_001_100.0, 11_000.0); // jump: not counted
        s.observe_register(180_000, 1_001_200.0, 11_000.0);
        let (e, src) = s.final_energy(240_000, Some(1_001_300), 11_000.0);
        assert_eq!((e, src), (300, EnergySource::Samples));
    }

    #[test]
    fn samples_when_a_register_is_missing() {
        // 2.0.1 without Transaction.Begin/End values: only the samples tell the energy.
        let mut s = OpenSession::new(MessageId(1), None, 0, None);
        s.observe_register(60_000, 5_000.0, 11_000.0);
        s.observe_register(120_000, 5_150.0, 11_000.0);
        assert_eq!(
            s.final_energy(180_000, None, 11_000.0),
            (150, EnergySource::Samples)
        );
    }

    #[test]
    fn periods_split_at_status_and_power_bounds_and_add_up() {
        let bounds = [22_000.0];
        let mut s = OpenSession::new(MessageId(1), None, 0, Some(0));
        s.on_power(0, 50_000.0, &bounds); // above 22 kW from the start
        s.observe_register(600_000, 8_000.0, 150_000.0);
        s.on_power(600_000, 11_000.0, &bounds); // below: a new period
        s.observe_register(1_200_000, 9_900.0, 150_000.0);
        s.on_status(1_200_000, false); // suspended: parking, a new period
        s.on_power(1_300_000, 0.0, &bounds); // same bucket: no split
        let periods = s.finish_periods(1_800_000, 10_000);
        let got: Vec<(i64, i64, i64, i64)> = periods
            .iter()
            .map(|p| (p.start_time, p.energy_wh, p.charging_ms, p.parking_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 8_000, 600_000, 0),
                (600_000, 1_900, 600_000, 0),
                // the 100 Wh no sample accounted for go to the last period
                (1_200_000, 100, 0, 600_000),
            ]
        );
        assert_eq!(periods[0].max_power_w, Some(50_000.0));
        assert_eq!(periods[2].max_power_w, Some(0.0));
    }

    #[test]
    fn periods_scale_down_to_the_billed_energy() {
        let mut s = OpenSession::new(MessageId(1), None, 0, Some(0));
        s.observe_register(60_000, 600.0, 150_000.0);
        s.on_status(60_000, false);
        s.on_status(120_000, true);
        s.observe_register(180_000, 1_200.0, 150_000.0);
        let periods = s.finish_periods(180_000, 1_000);
        let energy: Vec<i64> = periods.iter().map(|p| p.energy_wh).collect();
        assert_eq!(energy.iter().sum::<i64>(), 1_000);
        assert_eq!(energy, vec![500, 0, 500]);
    }

    #[test]
    fn eta_from_soc_trend() {
        let mut s = OpenSession::new(MessageId(1), None, 0, Some(0));
        s.observe_soc(0, 70.0);
        s.observe_soc(60_000, 71.0);
        assert_eq!(s.eta_minutes().map(|m| m.round()), Some(29.0));
    }
}
