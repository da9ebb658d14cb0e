//! Session pricing with exact decimals.
//!
//! Owns: tariffs and the rounding rules. Pure: no I/O, no dataflow state.
//!
//! Rounding rules (the one place they are written down):
//! 1. Energy is billed in whole Wh: `energy_kwh = energy_wh / 1000`, exact.
//! 2. `total_excl_vat = energy_kwh × energy_per_kwh + session_fee`, computed exactly and then
//!    rounded once to the currency's minor unit (2 decimals for EUR, USD, GBP…, 0 for JPY,
//!    KRW…, 3 for BHD, KWD…) half away from zero (commercial rounding).
//! 3. `vat = total_excl_vat × vat_pct / 100`, rounded the same way.
//! 4. `total_incl_vat = total_excl_vat + vat` (exact: both are already rounded).
//!
//! Rounding per session (not per window) means a revenue window's total is exactly the sum of
//! its sessions' totals: data teams can recompute it from `sessions/` to the cent.
//!
//! [`ocpi`] prices sessions with OCPI 2.2.1 tariffs (time-of-day, power, duration and kWh
//! restrictions, step sizes, min/max price); it rounds with [`round_to_minor`] too.

pub mod ocpi;

use std::sync::Arc;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::TariffConfig;
use crate::model::Money;

#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    pub id: Arc<str>,
    pub currency: Arc<str>,
    pub energy_per_kwh: Decimal,
    pub session_fee: Decimal,
    pub vat_pct: Decimal,
}

impl From<&TariffConfig> for Tariff {
    fn from(c: &TariffConfig) -> Self {
        Tariff {
            id: Arc::from(c.id.as_str()),
            currency: Arc::from(c.currency.as_str()),
            energy_per_kwh: c.energy_per_kwh.0,
            session_fee: c.session_fee.0,
            vat_pct: c.vat_pct.0,
        }
    }
}

impl Tariff {
    /// The tariff used when a dataflow defines none: free, so that revenue is visibly zero
    /// rather than invented.
    pub fn free(id: &str) -> Tariff {
        Tariff {
            id: Arc::from(id),
            currency: Arc::from("EUR"),
            energy_per_kwh: Decimal::ZERO,
            session_fee: Decimal::ZERO,
            vat_pct: Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub total_excl_vat: Money,
    pub vat: Money,
    pub total_incl_vat: Money,
}

/// Decimal places of a currency's minor unit (ISO 4217).
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Rounds an amount to the currency's minor unit, half away from zero.
pub fn round_to_minor(amount: Decimal, currency: &str) -> Decimal {
    amount.round_dp_with_strategy(
        minor_unit_digits(currency),
        RoundingStrategy::MidpointAwayFromZero,
    )
}

/// Prices a session of `energy_wh` (negative energy is billed as zero).
pub fn price_session(tariff: &Tariff, energy_wh: i64) -> Price {
    let kwh = Decimal::new(energy_wh.max(0), 3);
    let excl = round_to_minor(
        kwh * tariff.energy_per_kwh + tariff.session_fee,
        &tariff.currency,
    );
    let vat = round_to_minor(
        excl * tariff.vat_pct / Decimal::ONE_HUNDRED,
        &tariff.currency,
    );
    Price {
        total_excl_vat: excl,
        vat,
        total_incl_vat: excl + vat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tariff(kwh: &str, fee: &str, vat: &str, cur: &str) -> Tariff {
        Tariff {
            id: "t".into(),
            currency: cur.into(),
            energy_per_kwh: d(kwh),
            session_fee: d(fee),
            vat_pct: d(vat),
        }
    }

    #[test]
    fn prices_exactly_and_rounds_once_half_away_from_zero() {
        // 12.345 kWh × 0.39 = 4.81455 → + 1.00 = 5.81455 → 5.81; VAT 19 % = 1.1039 → 1.10
        let p = price_session(&tariff("0.39", "1.00", "19", "EUR"), 12_345);
        assert_eq!(p.total_excl_vat, d("5.81"));
        assert_eq!(p.vat, d("1.10"));
        assert_eq!(p.total_incl_vat, d("6.91"));
        // exactly half a cent rounds up: 0.5 kWh × 0.01 = 0.005 → 0.01
        let p = price_session(&tariff("0.01", "0", "0", "EUR"), 500);
        assert_eq!(p.total_excl_vat, d("0.01"));
    }

    #[test]
    fn zero_decimal_currencies_and_negative_energy() {
        let p = price_session(&tariff("45", "0", "10", "JPY"), 10_500);
        assert_eq!(p.total_excl_vat, d("473")); // 472.5 → 473
        assert_eq!(p.vat, d("47")); // 47.3 → 47
        let p = price_session(&tariff("0.39", "1", "0", "EUR"), -5);
        assert_eq!(p.total_excl_vat, d("1.00"));
    }

    #[test]
    fn f64_would_have_been_wrong() {
        // 0.1 + 0.2 style drift: 3 × 0.1 kWh at 0.1/kWh summed stays exact
        let t = tariff("0.10", "0", "0", "EUR");
        let sum: Decimal = (0..3).map(|_| price_session(&t, 1000).total_excl_vat).sum();
        assert_eq!(sum, d("0.30"));
    }
}
