//! Billing: what turns a priced session into what the driver pays and the operator keeps —
//! the subscription allowance and the payment fee. Runs on worker 0 (the aggregator), where
//! every account's sessions meet.
//!
//! Owns: the allowance ledger (energy used per account and calendar month, UTC). Pure: no I/O.
//!
//! - **Allowance.** A token on a plan (`registry.plans`, `included_kwh`) draws on its account's
//!   allowance for the month of the session's end. Sessions draw in the order they reach the
//!   aggregator: on-time sessions reach it in event-time order (the watermark releases them
//!   in end-time order; ties by charge point, connector, transaction), so the allowance is
//!   consumed in event-time order. A *late* session (one that ends behind the watermark) draws
//!   on what is left when it arrives: sessions already billed are never re-billed (their CDRs
//!   are issued). The covered energy is priced at zero energy cost: the discount is the
//!   covered share of the energy cost, excl. and incl. VAT, rounded once
//!   (`tariff::share_of`), taken off the totals. A plan in another currency than the
//!   session's tariff gives no allowance.
//! - **Fee.** `payment_fee = round(total_incl_vat × percent / 100 + fixed)` for the session's
//!   payment method (`revenue.fees`), none on a zero amount; `net = total_excl_vat −
//!   payment_fee`.
//!
//! Memory: one entry per account and month; months more than two before the newest month
//! seen are forgotten.
//!
//! Not differential dataflow: re-pricing earlier sessions when a late one arrives (the one
//! correction an event-time allowance could call for) is deliberately not done — an issued
//! CDR is final — so the ledger is a small ordered map that commits snapshot as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{CostPair, SessionRecord};
use crate::stages::Reference;
use crate::tariff::{payment_fee, share_of};
use crate::time::date_string;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Billing {
    /// (account, "YYYY-MM") → Wh drawn.
    used: BTreeMap<(Arc<str>, String), i64>,
    newest_month: String,
}

impl Billing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the allowance and the fee to a priced session.
    pub fn finalize(&mut self, s: &mut SessionRecord, reference: &Reference) {
        let plan = s.plan_id.as_deref().and_then(|id| reference.plan(id));
        if let Some(plan) = plan.filter(|p| *p.currency == *s.currency) {
            let month = date_string(s.end_time)[..7].to_string();
            if month > self.newest_month {
                self.newest_month = month.clone();
                self.forget_old_months();
            }
            let used = self.used.entry((s.account.clone(), month)).or_default();
            let covered = (plan.included_wh - *used).clamp(0, s.energy_wh.max(0));
            *used += covered;
            if covered > 0 {
                let discount = CostPair {
                    excl_vat: share_of(s.energy_cost.excl_vat, covered, s.energy_wh, &s.currency),
                    incl_vat: share_of(s.energy_cost.incl_vat, covered, s.energy_wh, &s.currency),
                };
                s.included_energy_wh = covered;
                s.discount = discount;
                s.total_excl_vat -= discount.excl_vat;
                s.total_incl_vat -= discount.incl_vat;
                s.vat = s.total_incl_vat - s.total_excl_vat;
            }
        }
        let (percent, fixed) = reference.fee(&s.payment_method);
        s.payment_fee = payment_fee(s.total_incl_vat, percent, fixed, &s.currency);
        s.net = s.total_excl_vat - s.payment_fee;
    }

    fn forget_old_months(&mut self) {
        let Some((y, m)) = self
            .newest_month
            .split_once('-')
            .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<i32>().ok()?)))
        else {
            return;
        };
        let index = y * 12 + (m - 1) - 2;
        let oldest = format!(
            "{:04}-{:02}",
            index.div_euclid(12),
            index.rem_euclid(12) + 1
        );
        self.used.retain(|(_, month), _| *month >= oldest);
    }
}
