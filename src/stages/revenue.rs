//! Revenue windows: priced sessions aggregated in event-time tumbling windows.
//!
//! Owns: the window assignment and the revision rule. A session belongs to the window that
//! contains its `end_time` (UTC, windows aligned to the epoch, so daily windows start at UTC
//! midnight); rows are per (window, site, payment method, currency).
//!
//! A window is written (revision 0) once the watermark passes its end. A session that arrives
//! after that (late data) is added to the window and the window's row is written again with
//! `revision + 1` and the new totals — never dropped, never double counted: the current value
//! of a window is its row with the highest revision. Because the watermark is a function of
//! the input (see `dataflow`), revisions depend only on the input, not on timing.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Millis, Money, RevenueRow, SessionRecord};
use crate::time::window_start;

/// (window start, site, charger, payment method, tariff, currency).
type Key = (Millis, Arc<str>, Arc<str>, Arc<str>, Arc<str>, Arc<str>);

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Acc {
    sessions: i64,
    energy_wh: i64,
    #[serde(with = "rust_decimal::serde::str")]
    excl: Money,
    #[serde(with = "rust_decimal::serde::str")]
    vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    incl: Money,
    #[serde(with = "rust_decimal::serde::str")]
    fees: Money,
    #[serde(with = "rust_decimal::serde::str")]
    net: Money,
    /// `None` until first written.
    revision: Option<i32>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RevenueWindows {
    width: Millis,
    windows: BTreeMap<Key, Acc>,
    watermark: Millis,
}

impl RevenueWindows {
    pub fn new(width: Millis) -> Self {
        RevenueWindows {
            width,
            windows: BTreeMap::new(),
            watermark: Millis::MIN,
        }
    }

    fn row(&self, k: &Key, a: &Acc, revision: i32) -> RevenueRow {
        RevenueRow {
            window_start: k.0,
            window_end: k.0 + self.width,
            site_id: k.1.clone(),
            charge_point_id: k.2.clone(),
            payment_method: k.3.clone(),
            tariff_id: k.4.clone(),
            currency: k.5.clone(),
            sessions: a.sessions,
            energy_wh: a.energy_wh,
            total_excl_vat: a.excl,
            vat: a.vat,
            total_incl_vat: a.incl,
            payment_fees: a.fees,
            net: a.net,
            revision,
        }
    }

    /// Adds a session; if its window was already written, returns the corrected row.
    pub fn add(&mut self, s: &SessionRecord) -> Option<RevenueRow> {
        let k: Key = (
            window_start(s.end_time, self.width),
            s.site_id.clone(),
            s.charge_point_id.clone(),
            s.payment_method.clone(),
            s.tariff_id.clone(),
            s.currency.clone(),
        );
        let a = self.windows.entry(k.clone()).or_default();
        a.sessions += 1;
        a.energy_wh += s.energy_wh;
        a.excl += s.total_excl_vat;
        a.vat += s.vat;
        a.incl += s.total_incl_vat;
        a.fees += s.payment_fee;
        a.net += s.net;
        let written = a.revision.is_some() || k.0 + self.width <= self.watermark;
        if written {
            let rev = a.revision.map_or(0, |r| r + 1);
            a.revision = Some(rev);
            let a = a.clone();
            return Some(self.row(&k, &a, rev));
        }
        None
    }

    /// Advances the watermark; returns the rows of windows that closed.
    pub fn advance(&mut self, watermark: Millis, rows: &mut Vec<RevenueRow>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let width = self.width;
        let mut closed = Vec::new();
        for (k, a) in self.windows.iter_mut() {
            if k.0 + width > watermark {
                // Keys are ordered by window start: nothing later can have closed.
                break;
            }
            if a.revision.is_none() {
                a.revision = Some(0);
                closed.push((k.clone(), a.clone()));
            }
        }
        for (k, a) in closed {
            rows.push(self.row(&k, &a, 0));
        }
    }

    /// End of input: writes every window not yet written. The watermark stays where it is,
    /// so that a later run resuming from this state (see `dataflow::commit`) revises these
    /// windows rather than writing them again from revision 0.
    pub fn flush(&mut self, rows: &mut Vec<RevenueRow>) {
        let mut closed = Vec::new();
        for (k, a) in self.windows.iter_mut() {
            if a.revision.is_none() {
                a.revision = Some(0);
                closed.push((k.clone(), a.clone()));
            }
        }
        for (k, a) in closed {
            rows.push(self.row(&k, &a, 0));
        }
    }

    /// Forgets windows that ended more than `retention` before the watermark.
    pub fn forget_before(&mut self, retention: Millis) {
        let limit = self.watermark.saturating_sub(retention);
        let width = self.width;
        self.windows.retain(|k, _| k.0 + width > limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CostPair, EnergySource};
    use rust_decimal::Decimal;

    fn session(end: Millis, excl: i64) -> SessionRecord {
        SessionRecord {
            charge_point_id: "CP".into(),
            connector_id: 1,
            site_id: "S".into(),
            transaction_id: "1".into(),
            id_tag: "T".into(),
            start_time: end - 1000,
            end_time: end,
            energy_wh: 1000,
            energy_source: EnergySource::Registers,
            stop_reason: "Local".into(),
            payment_method: "card".into(),
            tariff_id: "t".into(),
            currency: "EUR".into(),
            total_excl_vat: Decimal::new(excl, 2),
            vat: Decimal::ZERO,
            total_incl_vat: Decimal::new(excl, 2),
            late: false,
            account: "T".into(),
            plan_id: None,
            charging_ms: 1000,
            parking_ms: 0,
            energy_cost: CostPair::default(),
            time_cost: CostPair::default(),
            parking_cost: CostPair::default(),
            fixed_cost: CostPair::default(),
            included_energy_wh: 0,
            discount: CostPair::default(),
            payment_fee: Decimal::new(excl / 10, 2),
            net: Decimal::new(excl - excl / 10, 2),
            periods: vec![],
            audit: Default::default(),
        }
    }

    #[test]
    fn windows_close_at_the_watermark_and_late_sessions_revise() {
        let mut w = RevenueWindows::new(3_600_000);
        assert!(w.add(&session(1_000, 150)).is_none());
        assert!(w.add(&session(3_599_999, 250)).is_none());
        assert!(w.add(&session(3_600_000, 100)).is_none()); // next window
        let mut rows = vec![];
        w.advance(3_600_000, &mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].sessions, rows[0].total_excl_vat, rows[0].revision),
            (2, Decimal::new(400, 2), 0)
        );
        // fees and net add up like the totals: 0.15 + 0.25
        assert_eq!(
            (rows[0].payment_fees, rows[0].net),
            (Decimal::new(40, 2), Decimal::new(360, 2))
        );
        // a late session for the closed window: revision 1 with the full new totals
        let r = w.add(&session(5_000, 100)).unwrap();
        assert_eq!(
            (r.sessions, r.total_excl_vat, r.revision),
            (3, Decimal::new(500, 2), 1)
        );
        rows.clear();
        w.flush(&mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].window_start, 3_600_000);
    }
}
