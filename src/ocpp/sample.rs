//! Folding one meterValue's sampled values into a [`MeterSample`] — shared by OCPP 1.6 and
//! 2.0.1, so that a sample means the same downstream whatever the version.
//!
//! Owns: the folding rules. The version decoders own the payload shapes: they parse each
//! sampled value, convert it to its base unit (`units`) and hand it to [`SampleFold::add`].
//!
//! Rules: per-phase power and current are summed unless a total (no phase) is present;
//! voltage is kept per phase (an unphased value goes to L1); temperature keeps the highest;
//! for the energy register, a periodic/clock sample wins over a Transaction.Begin/End sample
//! in the same meterValue (real chargers mix them); a meterValue is a transaction boundary
//! sample only if all its values say so.

use super::units::{phase_index, Measurand};
use crate::model::{MeterSample, SampleContext};

/// Accumulates the sampled values of one meterValue.
#[derive(Debug, Default)]
pub(crate) struct SampleFold {
    s: MeterSample,
    power_phases: Option<f64>,
    current_phases: Option<f64>,
    /// The last register value sampled in a Transaction.Begin/End context.
    energy_tx: Option<f64>,
    energy_begin: Option<f64>,
    energy_end: Option<f64>,
    /// (values in a transaction begin/end context, other values)
    contexts: (u32, u32),
}

impl SampleFold {
    /// Folds in one value, already in the base unit of `m`.
    pub fn add(&mut self, m: Measurand, v: f64, phase: Option<&str>, context: Option<&str>) {
        let s = &mut self.s;
        let tx_context = match context {
            Some("Transaction.Begin") => {
                self.contexts.0 += 1;
                Some(SampleContext::TransactionBegin)
            }
            Some("Transaction.End") => {
                self.contexts.0 += 1;
                Some(SampleContext::TransactionEnd)
            }
            _ => {
                self.contexts.1 += 1;
                None
            }
        };
        match m {
            Measurand::EnergyImportRegister => match tx_context {
                Some(c) => {
                    self.energy_tx = Some(v);
                    s.context = c;
                    if c == SampleContext::TransactionBegin {
                        self.energy_begin = Some(v);
                    } else {
                        self.energy_end = Some(v);
                    }
                }
                None => s.energy_wh = Some(v),
            },
            Measurand::PowerImport => match phase {
                None => s.power_w = Some(v),
                Some(p) if phase_index(p).is_some() => {
                    self.power_phases = Some(self.power_phases.unwrap_or(0.0) + v)
                }
                Some(_) => {}
            },
            Measurand::CurrentImport => match phase {
                None => s.current_a = Some(v),
                Some(p) if phase_index(p).is_some() => {
                    self.current_phases = Some(self.current_phases.unwrap_or(0.0) + v)
                }
                Some(_) => {}
            },
            Measurand::Voltage => {
                if let Some(i) = phase.map_or(Some(0), phase_index) {
                    s.voltage_v[i] = Some(v as f32);
                }
            }
            Measurand::Frequency => s.frequency_hz = Some(v as f32),
            Measurand::SoC => s.soc_pct = Some(v as f32),
            Measurand::Temperature => {
                let t = v as f32;
                s.temperature_c = Some(s.temperature_c.map_or(t, |o| o.max(t)));
            }
        }
    }

    /// The energy register sampled in a Transaction.Begin (or .End) context, if any: the
    /// start (stop) register of a 2.0.1 transaction.
    pub fn transaction_register(&self, context: SampleContext) -> Option<f64> {
        match context {
            SampleContext::TransactionBegin => self.energy_begin,
            SampleContext::TransactionEnd => self.energy_end,
            _ => None,
        }
    }

    pub fn finish(self) -> MeterSample {
        let mut s = self.s;
        if s.power_w.is_none() {
            s.power_w = self.power_phases;
        }
        if s.current_a.is_none() {
            s.current_a = self.current_phases;
        }
        if s.energy_wh.is_none() {
            s.energy_wh = self.energy_tx;
        }
        if self.contexts.1 > 0 {
            s.context = SampleContext::Periodic;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_summed_unless_a_total_is_present() {
        let mut f = SampleFold::default();
        f.add(Measurand::PowerImport, 1000.0, Some("L1"), None);
        f.add(Measurand::PowerImport, 2000.0, Some("L2"), None);
        f.add(Measurand::CurrentImport, 5.0, Some("L1"), None);
        f.add(Measurand::CurrentImport, 16.0, None, None);
        f.add(Measurand::Voltage, 231.0, Some("L3-N"), None);
        f.add(Measurand::Voltage, 400.0, Some("L1-L2"), None);
        let s = f.finish();
        assert_eq!(s.power_w, Some(3000.0));
        assert_eq!(s.current_a, Some(16.0));
        assert_eq!(s.voltage_v, [None, None, Some(231.0)]);
    }

    #[test]
    fn periodic_register_wins_and_boundary_registers_are_kept() {
        let mut f = SampleFold::default();
        f.add(
            Measurand::EnergyImportRegister,
            900.0,
            None,
            Some("Transaction.Begin"),
        );
        f.add(
            Measurand::EnergyImportRegister,
            1000.0,
            None,
            Some("Sample.Periodic"),
        );
        assert_eq!(
            f.transaction_register(SampleContext::TransactionBegin),
            Some(900.0)
        );
        assert_eq!(f.transaction_register(SampleContext::TransactionEnd), None);
        let s = f.finish();
        assert_eq!(s.energy_wh, Some(1000.0));
        assert_eq!(s.context, SampleContext::Periodic);

        let mut f = SampleFold::default();
        f.add(
            Measurand::EnergyImportRegister,
            5000.0,
            None,
            Some("Transaction.End"),
        );
        let s = f.finish();
        assert_eq!(
            (s.energy_wh, s.context),
            (Some(5000.0), SampleContext::TransactionEnd)
        );
    }
}
