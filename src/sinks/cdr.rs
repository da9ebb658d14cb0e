//! OCPI 2.2.1 CDR JSON: `cdrs.jsonl`, one CDR per finished session (`output.ocpi_cdrs`).
//!
//! Owns: the mapping of a [`SessionRecord`] to an OCPI `CDR` object. Pure formatting; the sink
//! writes the lines. Quantities and amounts are written as exact JSON numbers (from decimals,
//! never through floating point). Totals are the session's after its subscription discount
//! (`total_cost`); the dimension costs are the tariff's, before it, as in `sessions/`.
//! `cdr_location.time_zone` (not in OCPI, which keeps it on the Location) lets `evflow price`
//! price the CDR again: with no discount, it gives the same totals.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{stable_id, CostPair, Millis, SessionRecord};
use crate::tariff::ocpi::dec;

#[derive(Serialize)]
struct Price {
    #[serde(with = "dec")]
    excl_vat: Decimal,
    #[serde(with = "dec")]
    incl_vat: Decimal,
}

impl From<CostPair> for Price {
    fn from(c: CostPair) -> Price {
        Price {
            excl_vat: c.excl_vat.normalize(),
            incl_vat: c.incl_vat.normalize(),
        }
    }
}

#[derive(Serialize)]
struct Dimension {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(with = "dec")]
    volume: Decimal,
}

#[derive(Serialize)]
struct Period {
    start_date_time: String,
    dimensions: Vec<Dimension>,
    tariff_id: String,
}

#[derive(Serialize)]
struct Token<'a> {
    uid: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    contract_id: &'a str,
}

#[derive(Serialize)]
struct Location<'a> {
    id: &'a str,
    evse_uid: &'a str,
    evse_id: String,
    connector_id: String,
    time_zone: &'a str,
}

#[derive(Serialize)]
struct TariffRef<'a> {
    id: &'a str,
    currency: &'a str,
}

#[derive(Serialize)]
struct Cdr<'a> {
    country_code: &'a str,
    party_id: &'a str,
    id: String,
    start_date_time: String,
    end_date_time: String,
    session_id: &'a str,
    cdr_token: Token<'a>,
    auth_method: &'static str,
    cdr_location: Location<'a>,
    currency: &'a str,
    tariffs: Vec<TariffRef<'a>>,
    charging_periods: Vec<Period>,
    total_cost: Price,
    total_fixed_cost: Price,
    #[serde(with = "dec")]
    total_energy: Decimal,
    total_energy_cost: Price,
    #[serde(with = "dec")]
    total_time: Decimal,
    total_time_cost: Price,
    #[serde(with = "dec")]
    total_parking_time: Decimal,
    total_parking_cost: Price,
    last_updated: String,
}

fn hours(ms: i64) -> Decimal {
    (Decimal::new(ms, 3) / Decimal::from(3600))
        .round_dp(9)
        .normalize()
}

fn time(t: Millis) -> String {
    crate::time::format_rfc3339(t)
}

/// The OCPI CDR of a session, as one JSON line (without the newline).
pub fn cdr_json(s: &SessionRecord, country_code: &str, party_id: &str) -> String {
    let periods = s
        .periods
        .iter()
        .map(|p| {
            let mut dimensions = vec![Dimension {
                kind: "ENERGY",
                volume: Decimal::new(p.energy_wh, 3).normalize(),
            }];
            if p.charging_ms > 0 {
                dimensions.push(Dimension {
                    kind: "TIME",
                    volume: hours(p.charging_ms),
                });
            }
            if p.parking_ms > 0 {
                dimensions.push(Dimension {
                    kind: "PARKING_TIME",
                    volume: hours(p.parking_ms),
                });
            }
            if let Some(kw) = p
                .max_power_w
                .and_then(|w| Decimal::try_from(w / 1000.0).ok())
            {
                dimensions.push(Dimension {
                    kind: "MAX_POWER",
                    volume: kw.round_dp(3).normalize(),
                });
            }
            Period {
                start_date_time: time(p.start_time),
                dimensions,
                tariff_id: s.tariff_id.to_string(),
            }
        })
        .collect();
    let cdr = Cdr {
        country_code,
        party_id,
        id: stable_id(&[
            &s.charge_point_id,
            &s.connector_id.to_string(),
            &s.transaction_id,
        ]),
        start_date_time: time(s.start_time),
        end_date_time: time(s.end_time),
        session_id: &s.transaction_id,
        cdr_token: Token {
            uid: &s.id_tag,
            kind: "RFID",
            contract_id: &s.account,
        },
        auth_method: "WHITELIST",
        cdr_location: Location {
            id: &s.site_id,
            evse_uid: &s.charge_point_id,
            evse_id: format!("{}*{}", s.charge_point_id, s.connector_id),
            connector_id: s.connector_id.to_string(),
            time_zone: s.audit.time_zone.as_deref().unwrap_or("UTC"),
        },
        currency: &s.currency,
        tariffs: vec![TariffRef {
            id: &s.tariff_id,
            currency: &s.currency,
        }],
        charging_periods: periods,
        total_cost: CostPair {
            excl_vat: s.total_excl_vat,
            incl_vat: s.total_incl_vat,
        }
        .into(),
        total_fixed_cost: s.fixed_cost.into(),
        total_energy: Decimal::new(s.energy_wh, 3).normalize(),
        total_energy_cost: s.energy_cost.into(),
        total_time: hours(s.end_time - s.start_time),
        total_time_cost: s.time_cost.into(),
        total_parking_time: hours(s.parking_ms),
        total_parking_cost: s.parking_cost.into(),
        last_updated: time(s.end_time),
    };
    // Plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_string(&cdr).unwrap_or_default()
}
