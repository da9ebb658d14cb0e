//! Session pricing with exact decimals.
//!
//! Owns: the tariff model the pipeline prices with, and the rounding rules. Pure: no I/O,
//! no dataflow state.
//!
//! Every tariff is an OCPI 2.2.1 Tariff ([`ocpi`]): those loaded from `revenue.ocpi_tariffs`
//! as they are, and the dataflow's simple `[[tariffs]]` converted by [`from_simple`] (an
//! `ENERGY` component at `energy_per_kwh`, a `FLAT` one at `session_fee`, both with
//! `vat_pct`). One code path, [`ocpi::price_periods`], prices every session.
//!
//! Rounding rules (the one place they are written down; `docs/pricing.md` has the long form):
//! 1. Energy is measured in whole Wh and priced exactly (`kWh = Wh / 1000`).
//! 2. Every amount is computed exactly (decimal), per component: `excl = quantity × price`,
//!    `incl = excl × (1 + vat / 100)`.
//! 3. Each reported amount — the session's total and each dimension's total, excl. and incl.
//!    VAT — is its exact value rounded **once** to the currency's minor unit (2 decimals for
//!    EUR, USD, GBP…, 0 for JPY, KRW…, 3 for BHD, KWD…), half away from zero
//!    ([`round_to_minor`]). `vat = total_incl_vat − total_excl_vat` (both already rounded).
//! 4. A subscription discount (the share of the energy cost covered by the account's
//!    allowance) is rounded the same way, excl. and incl. VAT, and subtracted from the totals.
//! 5. A payment fee is `round(total_incl_vat × percent / 100 + fixed)`; `net =
//!    total_excl_vat − payment_fee`.
//!
//! Rounding per session (not per window) means a revenue window's total is exactly the sum of
//! its sessions' totals: data teams can recompute it from `sessions/` to the cent.

pub mod ocpi;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::TariffConfig;
use ocpi::{PriceComponent, Tariff, TariffDimensionType, TariffElement};

/// A simple `[[tariffs]]` entry as an OCPI tariff.
pub fn from_simple(c: &TariffConfig) -> Tariff {
    let vat = Some(c.vat_pct.0);
    let mut components = vec![PriceComponent {
        kind: TariffDimensionType::Energy,
        price: c.energy_per_kwh.0,
        vat,
        step_size: 0,
    }];
    if !c.session_fee.0.is_zero() {
        components.push(PriceComponent {
            kind: TariffDimensionType::Flat,
            price: c.session_fee.0,
            vat,
            step_size: 0,
        });
    }
    Tariff {
        id: c.id.clone(),
        currency: c.currency.clone(),
        min_price: None,
        max_price: None,
        elements: vec![TariffElement {
            price_components: components,
            restrictions: None,
        }],
        start_date_time: None,
        end_date_time: None,
    }
}

/// The tariff used when a dataflow defines none: free, so that revenue is visibly zero
/// rather than invented.
pub fn free(id: &str) -> Tariff {
    Tariff {
        id: id.to_string(),
        currency: "EUR".to_string(),
        min_price: None,
        max_price: None,
        elements: Vec::new(),
        start_date_time: None,
        end_date_time: None,
    }
}

/// The powers (W) at which some element of `tariff` starts or stops applying: where the
/// pipeline must start a new charging period.
pub fn power_bounds_w(tariff: &Tariff) -> Vec<f64> {
    use rust_decimal::prelude::ToPrimitive;
    let mut out: Vec<f64> = tariff
        .elements
        .iter()
        .filter_map(|e| e.restrictions.as_ref())
        .flat_map(|r| [r.min_power, r.max_power])
        .flatten()
        .filter_map(|kw| (kw * Decimal::from(1000)).to_f64())
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

pub fn round_to_minor(amount: Decimal, currency: &str) -> Decimal {
    amount.round_dp_with_strategy(
        minor_unit_digits(currency),
        RoundingStrategy::MidpointAwayFromZero,
    )
}

/// A payment fee (rule 5): `percent` of the amount incl. VAT plus `fixed`; nothing is
/// charged on a zero amount.
pub fn payment_fee(
    total_incl_vat: Decimal,
    percent: Decimal,
    fixed: Decimal,
    currency: &str,
) -> Decimal {
    if total_incl_vat.is_zero() {
        return Decimal::ZERO;
    }
    round_to_minor(
        total_incl_vat * percent / Decimal::ONE_HUNDRED + fixed,
        currency,
    )
}

/// The share `covered_wh / energy_wh` of an energy cost (rule 4), rounded.
pub fn share_of(cost: Decimal, covered_wh: i64, energy_wh: i64, currency: &str) -> Decimal {
    if energy_wh <= 0 || covered_wh <= 0 {
        return Decimal::ZERO;
    }
    let covered = covered_wh.min(energy_wh);
    round_to_minor(
        cost * Decimal::from(covered) / Decimal::from(energy_wh),
        currency,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn simple(kwh: &str, fee: &str, vat: &str, cur: &str) -> Tariff {
        let c: TariffConfig = toml::from_str(&format!(
            "id = \"t\"\ncurrency = \"{cur}\"\nenergy_per_kwh = \"{kwh}\"\n\
             session_fee = \"{fee}\"\nvat_pct = \"{vat}\"\n"
        ))
        .unwrap();
        from_simple(&c)
    }

    fn price(t: &Tariff, wh: i64) -> (Decimal, Decimal) {
        let session = ocpi::Session {
            start: 0,
            end: 3_600_000,
            time_zone: chrono_tz::UTC,
            periods: vec![ocpi::ChargingPeriod {
                start: 0,
                energy_kwh: Decimal::new(wh, 3),
                charging_secs: Decimal::from(3600),
                ..Default::default()
            }],
        };
        let p = ocpi::price_periods(t, &session).unwrap();
        (p.costs.total.excl_vat, p.costs.total.incl_vat)
    }

    #[test]
    fn simple_tariffs_price_exactly_and_round_once_half_away_from_zero() {
        // 12.345 kWh × 0.39 = 4.81455, + 1.00 = 5.81455 → 5.81; × 1.19 = 6.9193145 → 6.92
        assert_eq!(
            price(&simple("0.39", "1.00", "19", "EUR"), 12_345),
            (d("5.81"), d("6.92"))
        );
        // exactly half a cent rounds up: 0.5 kWh × 0.01 = 0.005 → 0.01
        assert_eq!(price(&simple("0.01", "0", "0", "EUR"), 500).0, d("0.01"));
        // zero-decimal currency: 472.5 → 473, × 1.1 = 519.75 → 520
        assert_eq!(
            price(&simple("45", "0", "10", "JPY"), 10_500),
            (d("473"), d("520"))
        );
    }

    #[test]
    fn fees_and_shares_round_once() {
        assert_eq!(
            payment_fee(d("10.00"), d("1.4"), d("0.25"), "EUR"),
            d("0.39")
        );
        assert_eq!(payment_fee(d("0"), d("1.4"), d("0.25"), "EUR"), d("0"));
        // a third of 1.00 → 0.33; all of it at most
        assert_eq!(share_of(d("1.00"), 1, 3, "EUR"), d("0.33"));
        assert_eq!(share_of(d("1.00"), 5, 3, "EUR"), d("1.00"));
        assert_eq!(share_of(d("1.00"), 0, 3, "EUR"), d("0"));
    }

    #[test]
    fn power_bounds_come_from_restrictions() {
        let t: Tariff = serde_json::from_str(
            r#"{"currency":"EUR","elements":[
              {"price_components":[{"type":"ENERGY","price":0.5,"step_size":1}],
               "restrictions":{"min_power":32.0}},
              {"price_components":[{"type":"ENERGY","price":0.3,"step_size":1}],
               "restrictions":{"max_power":32.0, "min_power": 3.7}}]}"#,
        )
        .unwrap();
        assert_eq!(power_bounds_w(&t), vec![3700.0, 32000.0]);
    }
}
