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

use crate::model::{EnergySource, MessageId, Millis, TransactionId};
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
    pub peak_power_w: f64,
    /// Last SoC reading, for the time-to-full estimate.
    pub last_soc: Option<(Millis, f32)>,
    pub soc_rate_per_ms: Option<f64>,
    pub almost_complete_sent: bool,
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
            peak_power_w: 0.0,
            last_soc: None,
            soc_rate_per_ms: None,
            almost_complete_sent: false,
        }
    }

    /// Folds a register reading into the sample-based energy.
    pub fn observe_register(&mut self, at: Millis, wh: f64, max_power_w: f64) {
        if self.last_register.is_some_and(|(t0, _)| at < t0) {
            // Older than the last reading (delivered late): only the register rule can use it.
            return;
        }
        match check_register(self.last_register, at, wh, max_power_w) {
            RegisterCheck::Ok(d) => self.sample_energy_wh += d,
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
    fn eta_from_soc_trend() {
        let mut s = OpenSession::new(MessageId(1), None, 0, Some(0));
        s.observe_soc(0, 70.0);
        s.observe_soc(60_000, 71.0);
        assert_eq!(s.eta_minutes().map(|m| m.round()), Some(29.0));
    }
}
