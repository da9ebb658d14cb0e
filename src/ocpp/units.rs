//! Measurands and units: OCPP sampled values → evflow's base units (Wh, W, A, V, Hz, °C, %).
//!
//! Owns: the unit table. A value in a unit that does not fit its measurand is an error (the
//! caller dead-letters the frame) rather than a silently wrong number.

/// The measurands evflow uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurand {
    EnergyImportRegister,
    PowerImport,
    CurrentImport,
    Voltage,
    Frequency,
    SoC,
    Temperature,
}

impl Measurand {
    /// `None` for measurands evflow does not use (reactive power, export, offered, …).
    /// An absent measurand means Energy.Active.Import.Register (OCPP 1.6 §7.31).
    pub fn parse(s: Option<&str>) -> Option<Measurand> {
        Some(match s {
            None | Some("Energy.Active.Import.Register") => Measurand::EnergyImportRegister,
            Some("Power.Active.Import") => Measurand::PowerImport,
            Some("Current.Import") => Measurand::CurrentImport,
            Some("Voltage") => Measurand::Voltage,
            Some("Frequency") => Measurand::Frequency,
            Some("SoC") => Measurand::SoC,
            Some("Temperature") => Measurand::Temperature,
            Some(_) => return None,
        })
    }
}

/// Converts `value` in `unit` to the base unit of `m`. An absent unit means the measurand's
/// base unit (1.6 says Wh for every measurand, which real chargers ignore for V, A, % and °C;
/// evflow follows the chargers). `multiplier` is the 2.0.1 power-of-ten multiplier.
pub fn to_base(m: Measurand, unit: Option<&str>, value: f64) -> Result<f64, String> {
    use Measurand::*;
    let v = match (m, unit) {
        (EnergyImportRegister, None | Some("Wh")) => value,
        (EnergyImportRegister, Some("kWh")) => value * 1000.0,
        (PowerImport, None | Some("W")) => value,
        (PowerImport, Some("kW")) => value * 1000.0,
        (CurrentImport, None | Some("A")) => value,
        (Voltage, None | Some("V")) => value,
        (Frequency, None | Some("Hz")) => value,
        (SoC, None | Some("Percent")) => value,
        // "Celcius" is the OCPP 1.6 schema's own spelling; chargers send both.
        (Temperature, None | Some("Celsius") | Some("Celcius")) => value,
        (Temperature, Some("Fahrenheit")) => (value - 32.0) * 5.0 / 9.0,
        (Temperature, Some("K")) => value - 273.15,
        (m, Some(u)) => return Err(format!("unit {u:?} does not fit measurand {m:?}")),
    };
    Ok(v)
}

/// Index 0..3 of a phase for per-phase values; `None` for neutral and line-to-line phases.
pub fn phase_index(phase: &str) -> Option<usize> {
    match phase {
        "L1" | "L1-N" => Some(0),
        "L2" | "L2-N" => Some(1),
        "L3" | "L3-N" => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_units() {
        assert_eq!(
            to_base(Measurand::EnergyImportRegister, Some("kWh"), 1.5),
            Ok(1500.0)
        );
        assert_eq!(to_base(Measurand::PowerImport, Some("kW"), 7.4), Ok(7400.0));
        assert_eq!(
            to_base(Measurand::Temperature, Some("Celcius"), 30.0),
            Ok(30.0)
        );
        assert_eq!(
            to_base(Measurand::Temperature, Some("K"), 300.0),
            Ok(300.0 - 273.15)
        );
        assert!(to_base(Measurand::Voltage, Some("kWh"), 1.0).is_err());
        assert_eq!(
            Measurand::parse(None),
            Some(Measurand::EnergyImportRegister)
        );
        assert_eq!(Measurand::parse(Some("Power.Reactive.Import")), None);
        assert_eq!(phase_index("L2-N"), Some(1));
        assert_eq!(phase_index("L1-L2"), None);
    }
}
