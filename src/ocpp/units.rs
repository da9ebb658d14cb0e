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
/// evflow follows the chargers). 2.0.1's power-of-ten multiplier: [`parse_scaled_value`].
pub fn to_base(m: Measurand, unit: Option<&str>, value: f64) -> Result<f64, String> {
    use Measurand::*;
    let v = match (m, unit) {
        (EnergyImportRegister, None | Some("Wh")) => value,
        (EnergyImportRegister, Some("kWh")) => value * 1000.0,
        (PowerImport, None | Some("W")) => value,
        (PowerImport, Some("kW")) => value * 1000.0,
        (CurrentImport, None | Some("A")) => value,
        (Voltage, None | Some("V")) => value,
        // "Hertz" is OCPP 1.6's unit name; 2.0.1's units are free text, usually "Hz".
        (Frequency, None | Some("Hz") | Some("Hertz")) => value,
        (SoC, None | Some("Percent")) => value,
        // "Celcius" is the OCPP 1.6 schema's own spelling; chargers send both.
        (Temperature, None | Some("Celsius") | Some("Celcius")) => value,
        (Temperature, Some("Fahrenheit")) => (value - 32.0) * 5.0 / 9.0,
        (Temperature, Some("K")) => value - 273.15,
        (m, Some(u)) => return Err(format!("unit {u:?} does not fit measurand {m:?}")),
    };
    Ok(v)
}

/// Parses an OCPP 1.6 sampled value (a decimal string) given in `unit` and converts it to the
/// base unit of `m`.
///
/// Tolerates whitespace around the number. A unit that only scales by a power of ten (kWh,
/// kW) is applied to the decimal text, not by a floating-point multiplication, so that
/// "12.345" kWh is exactly 12345 Wh (12.345 × 1000 is 12344.999999999998) and decimal
/// registers are never off by one when rounded to whole Wh. NaN, infinities and values beyond
/// what a sample can hold (f32 range) are errors, like text that is not a number.
pub fn parse_value(m: Measurand, unit: Option<&str>, text: &str) -> Result<f64, String> {
    let not_a_number = || format!("sampled value {text:?} is not a finite number");
    let text = text.trim();
    let shift = match (m, unit) {
        (Measurand::EnergyImportRegister, Some("kWh")) | (Measurand::PowerImport, Some("kW")) => 3,
        _ => 0,
    };
    let v = if shift == 0 {
        // Rust parses "NaN" and "inf"; a meter reading is never either.
        let raw: f64 = text.parse().map_err(|_| not_a_number())?;
        if !raw.is_finite() {
            return Err(not_a_number());
        }
        to_base(m, unit, raw)?
    } else {
        parse_shifted(text, shift).ok_or_else(not_a_number)?
    };
    if !v.is_finite() || v.abs() > f32::MAX as f64 {
        return Err(format!("sampled value {text:?} is out of range"));
    }
    Ok(v)
}

/// Parses an OCPP 2.0.1 sampled value — a JSON number, given as the text it was written as —
/// with its `unitOfMeasure`: value × 10^`multiplier` in `unit`, converted to the base unit of
/// `m` (the same unit table as 1.6: [`to_base`]).
///
/// The power of ten (the multiplier, plus 3 for kWh and kW) is applied to the decimal text,
/// as [`parse_value`] does for 1.6, so `{"value": 12.345, "unitOfMeasure": {"unit": "kWh"}}`
/// and `{"value": 12345, "unitOfMeasure": {"unit": "Wh"}}` and `{"value": 12.345,
/// "unitOfMeasure": {"unit": "Wh", "multiplier": 3}}` are all exactly 12345 Wh. Values beyond
/// what a sample can hold (f32 range) are errors.
pub fn parse_scaled_value(
    m: Measurand,
    unit: Option<&str>,
    multiplier: i32,
    text: &str,
) -> Result<f64, String> {
    let (shift, unit) = match (m, unit) {
        (Measurand::EnergyImportRegister, Some("kWh")) | (Measurand::PowerImport, Some("kW")) => {
            (3, None)
        }
        _ => (0, unit),
    };
    let scaled = multiplier
        .checked_add(shift)
        .and_then(|shift| parse_shifted(text.trim(), shift))
        .ok_or_else(|| format!("sampled value {text} is not a finite number"))?;
    let v = to_base(m, unit, scaled)?;
    if !v.is_finite() || v.abs() > f32::MAX as f64 {
        return Err(format!(
            "sampled value {text} × 10^{multiplier} is out of range"
        ));
    }
    Ok(v)
}

/// `text` × 10^`shift`, by moving the decimal exponent: the parse is then correctly rounded
/// for the scaled value.
fn parse_shifted(text: &str, shift: i32) -> Option<f64> {
    use std::io::Write;
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    // Only a plain decimal mantissa: "inf"/"nan" must not become "infe3"-like text that
    // parses, and a sign or digits are all a number can start with.
    if mantissa.is_empty()
        || !mantissa
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-'))
    {
        return None;
    }
    let exp = exp.checked_add(shift)?;
    let mut buf = [0u8; 64];
    let mut w = &mut buf[..];
    let v = if write!(w, "{mantissa}e{exp}").is_ok() {
        let n = 64 - w.len();
        std::str::from_utf8(&buf[..n]).ok()?.parse().ok()?
    } else {
        format!("{mantissa}e{exp}").parse().ok()?
    };
    Some(v)
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

    #[test]
    fn applies_the_2_0_1_multiplier_exactly() {
        use Measurand::*;
        let e = EnergyImportRegister;
        assert_eq!(parse_scaled_value(e, Some("kWh"), 0, "12.345"), Ok(12345.0));
        assert_eq!(parse_scaled_value(e, Some("Wh"), 3, "12.345"), Ok(12345.0));
        assert_eq!(parse_scaled_value(e, None, 0, "12345"), Ok(12345.0));
        assert_eq!(parse_scaled_value(e, Some("kWh"), -3, "12345"), Ok(12345.0));
        assert_eq!(parse_scaled_value(e, Some("Wh"), 0, "1.5E3"), Ok(1500.0));
        assert_eq!(
            parse_scaled_value(PowerImport, Some("kW"), 0, "7.4"),
            Ok(7400.0)
        );
        assert_eq!(
            parse_scaled_value(PowerImport, Some("W"), 1, "740"),
            Ok(7400.0)
        );
        assert_eq!(
            parse_scaled_value(Voltage, Some("V"), -1, "2305"),
            Ok(230.5)
        );
        assert_eq!(
            parse_scaled_value(Temperature, Some("K"), 0, "300"),
            Ok(300.0 - 273.15)
        );
        assert_eq!(
            parse_scaled_value(Temperature, Some("Celsius"), 1, "7.5"),
            Ok(75.0)
        );
        assert!(parse_scaled_value(Voltage, Some("kWh"), 0, "230").is_err());
        assert!(parse_scaled_value(e, Some("Wh"), 400, "1").is_err());
        assert!(parse_scaled_value(e, Some("Wh"), i32::MAX, "1").is_err());
        assert!(parse_scaled_value(e, Some("Wh"), 0, "\"12\"").is_err());
    }
    #[test]
    fn parses_decimal_values_exactly() {
        use Measurand::*;
        // 12.345 * 1000.0 == 12344.999999999998 in floating point.
        assert_eq!(
            parse_value(EnergyImportRegister, Some("kWh"), "12.345"),
            Ok(12345.0)
        );
        assert_eq!(
            parse_value(EnergyImportRegister, Some("kWh"), " 0.001 "),
            Ok(1.0)
        );
        assert_eq!(
            parse_value(EnergyImportRegister, Some("kWh"), "1.2e1"),
            Ok(12000.0)
        );
        assert_eq!(
            parse_value(EnergyImportRegister, Some("kWh"), "-0.5"),
            Ok(-500.0)
        );
        assert_eq!(parse_value(PowerImport, Some("kW"), "7.4"), Ok(7400.0));
        assert_eq!(
            parse_value(EnergyImportRegister, Some("Wh"), "164.5"),
            Ok(164.5)
        );
        assert_eq!(
            parse_value(EnergyImportRegister, None, "\t678\n"),
            Ok(678.0)
        );
        assert_eq!(parse_value(Temperature, Some("Celcius"), "30.0"), Ok(30.0));
        for bad in [
            "",
            " ",
            "NaN",
            "inf",
            "-infinity",
            "1e",
            "e3",
            "1,5",
            "0x10",
            "12 kWh",
        ] {
            assert!(
                parse_value(EnergyImportRegister, Some("kWh"), bad).is_err(),
                "{bad:?}"
            );
            assert!(
                parse_value(EnergyImportRegister, Some("Wh"), bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse_value(EnergyImportRegister, Some("kWh"), "1e308").is_err());
        assert!(parse_value(Voltage, Some("V"), "1e39").is_err());
        assert!(parse_value(Voltage, Some("kWh"), "230").is_err());
    }
}
