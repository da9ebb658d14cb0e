//! Revenue leakage: priced sessions against what the payment provider captured.
//!
//! Owns: the leakage rules, leakage ids and the open/resolved life cycle of
//! [`LeakageRecord`]s. A pure ledger: no I/O and no dataflow. `dataflow` feeds it finished
//! sessions ([`LeakageLedger::on_session`]), payment events ([`LeakageLedger::on_payment`],
//! e.g. from `sources::payments`) and the watermark ([`LeakageLedger::advance`]), and hands
//! the records to the sinks.
//!
//! Payments are matched to sessions by (`charge_point_id`, `transaction_id`). Per session the
//! ledger keeps `net` = captured − refunded (incl. VAT); `failed` and `authorised` events move
//! no money and only show in `details`. An event whose `payment_id` was already counted for
//! the session is a redelivery and is ignored. Payments that arrive before their session count
//! when it arrives.
//!
//! A session is *judged* once, when the watermark reaches `end_time + grace` (a session that
//! arrives later is judged at the next `advance`, still at that event time; repeated facts of
//! a known session are ignored). The verdict:
//!
//! | kind | when |
//! |---|---|
//! | none | `amount_due` ≤ 0: such sessions never leak |
//! | `amount_mismatch` | a capture or refund is in another currency than the session (details: `payment_currency`) |
//! | `uncaptured` | `net` = 0 and `payment_method` ≠ `subscription` (a subscription session with nothing captured is fine) |
//! | `amount_mismatch` | `net` ≠ 0 and \|`net` − `amount_due`\| > `amount_tolerance` (exactly at the tolerance is fine) |
//! | `meter_mismatch` | judged at once in `on_session`, independent of payments: both energies known and \|samples − registers\| > max(`meter_tolerance_wh`, `meter_tolerance_pct` % of the register energy) |
//!
//! A leak opens with event time `end_time + grace` (`meter_mismatch`: `end_time`). After the
//! judgement every payment re-applies the verdict at once, at the payment's timestamp (never
//! before the leak opened): a payment that settles the open leak resolves it; one that
//! changes its kind (a partial capture of an `uncaptured` session) resolves it with
//! `superseded_by` and opens the new kind; one that makes a fine or settled session leak opens
//! it (`uncaptured` after a full refund, else `amount_mismatch`). `meter_mismatch` never
//! resolves. Ids are `stable_id(kind, charge_point_id, transaction_id)`: the open and the
//! resolved record share one, and a leak that re-opens after it was resolved reuses it (the
//! latest record of an id is the current state).
//!
//! Records leave in a deterministic order: `advance` emits by (event time, charge point,
//! transaction, kind); `on_payment` emits at most a resolve and then an open.
//!
//! Memory: one entry per (charge point, transaction) with a session or a payment. An entry
//! lives until its session is judged (at most `grace` after the session's end), then for
//! [`SETTLED_RETENTION`] (7 days) after its last judgement or payment if no leak is open, or
//! [`OPEN_RETENTION`] (30 days) if one is: a payment after that no longer resolves it. Payments
//! for a session never seen are kept [`ORPHAN_RETENTION`] (7 days, watermark against the
//! latest payment's timestamp) and produce no record. Retention is measured in event time, so
//! the ledger holds about `grace + 7 days` of sessions plus the leaks of the last 30 days.
//! Each entry holds the session's facts, payment counters and the ids of its payment events.
//! The whole ledger, its configuration included, is serde state for commit snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::model::{
    stable_id, AnomalyState, LeakageKind, LeakageRecord, Millis, Money, PaymentEvent,
    PaymentEventKind,
};

const DAY: Millis = 86_400_000;
/// How long a judged session without an open leak is kept for late payments.
pub const SETTLED_RETENTION: Millis = 7 * DAY;
/// How long a session with an open leak is kept waiting for the payment that settles it.
pub const OPEN_RETENTION: Millis = 30 * DAY;
/// How long payments for a session never seen are kept.
pub const ORPHAN_RETENTION: Millis = 7 * DAY;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageConfig {
    /// How long after a session's end its payment may still be captured.
    pub grace: Millis,
    /// Captured and priced amounts (incl. VAT) match within this.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_tolerance: Money,
    pub meter_tolerance_wh: i64,
    /// Percent of the register energy (2 = 2 %).
    #[serde(with = "rust_decimal::serde::str")]
    pub meter_tolerance_pct: Decimal,
    /// Whether payment events are joined at all (a payments source is configured); without
    /// them only `meter_mismatch` is judged.
    pub payments: bool,
}

/// What the ledger needs to know about a finished session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFacts {
    pub charge_point_id: Arc<str>,
    pub connector_id: u32,
    pub site_id: Arc<str>,
    pub transaction_id: String,
    pub end_time: Millis,
    /// Incl. VAT.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_due: Money,
    pub currency: Arc<str>,
    pub payment_method: Arc<str>,
    /// meterStop − meterStart, when both are known.
    pub register_energy_wh: Option<i64>,
    /// Sum of the plausible meter-value increments, when the session had samples.
    pub sample_energy_wh: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    connector_id: u32,
    site_id: Arc<str>,
    end_time: Millis,
    #[serde(with = "rust_decimal::serde::str")]
    amount_due: Money,
    currency: Arc<str>,
    payment_method: Arc<str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Payments {
    /// Captured − refunded.
    #[serde(with = "rust_decimal::serde::str")]
    net: Money,
    captures: u32,
    refunds: u32,
    failed: u32,
    authorised: u32,
    /// Currencies of captures and refunds, each once.
    currencies: Vec<Arc<str>>,
    ids: BTreeSet<String>,
    last_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct OpenLeak {
    kind: LeakageKind,
    since: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Entry {
    session: Option<Session>,
    pay: Payments,
    /// When the session was judged (`end_time + grace`).
    judged: Option<Millis>,
    open: Option<OpenLeak>,
    /// The entry's key in the ledger's expiry queue.
    expires: Option<Millis>,
}

type Queue = BTreeSet<(Millis, Arc<str>, String)>;

/// Sessions and payments by (charge point, transaction), with the queues that make
/// `advance` cost O(sessions due + entries expiring) rather than a scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageLedger {
    cfg: LeakageConfig,
    entries: BTreeMap<Arc<str>, BTreeMap<String, Entry>>,
    /// (end_time + grace, charge point, transaction) of sessions not yet judged.
    pending: Queue,
    /// (expiry time, charge point, transaction) of every entry that may be forgotten.
    expiry: Queue,
    /// Entries with an open leak.
    open: usize,
}

impl LeakageLedger {
    pub fn new(cfg: LeakageConfig) -> Self {
        LeakageLedger {
            cfg,
            entries: BTreeMap::new(),
            pending: Queue::new(),
            expiry: Queue::new(),
            open: 0,
        }
    }

    /// Number of `uncaptured` and `amount_mismatch` leaks currently open (`meter_mismatch`
    /// never resolves and is not counted).
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Number of (charge point, transaction) entries held: the memory bound to watch.
    pub fn tracked(&self) -> usize {
        self.entries.values().map(|m| m.len()).sum()
    }

    pub fn on_session(&mut self, s: SessionFacts, out: &mut Vec<LeakageRecord>) {
        let session = Session {
            connector_id: s.connector_id,
            site_id: s.site_id.clone(),
            end_time: s.end_time,
            amount_due: s.amount_due,
            currency: s.currency.clone(),
            payment_method: s.payment_method.clone(),
        };
        if !self.cfg.payments {
            // Nothing can be captured: only the meter check, and nothing to remember.
            out.extend(meter_leak(&self.cfg, &s, &session, Money::ZERO));
            return;
        }
        let cp = s.charge_point_id.clone();
        let entry = self
            .entries
            .entry(cp.clone())
            .or_default()
            .entry(s.transaction_id.clone())
            .or_default();
        if entry.session.is_some() {
            return; // repeated facts of a session already known
        }
        out.extend(meter_leak(&self.cfg, &s, &session, entry.pay.net));
        entry.session = Some(session);
        let old = entry.expires.take();
        unqueue(&mut self.expiry, old, &cp, &s.transaction_id);
        self.pending
            .insert((s.end_time + self.cfg.grace, cp, s.transaction_id));
    }

    pub fn on_payment(&mut self, p: &PaymentEvent, out: &mut Vec<LeakageRecord>) {
        let cfg = &self.cfg;
        let cp: Arc<str> = match self.entries.get_key_value(&*p.charge_point_id) {
            Some((k, _)) => k.clone(),
            None => p.charge_point_id.clone(),
        };
        let entry = self
            .entries
            .entry(cp.clone())
            .or_default()
            .entry(p.transaction_id.clone())
            .or_default();
        if !entry.pay.ids.insert(p.payment_id.clone()) {
            return;
        }
        let pay = &mut entry.pay;
        match p.kind {
            PaymentEventKind::Captured => {
                pay.net += p.amount;
                pay.captures += 1;
            }
            PaymentEventKind::Refunded => {
                pay.net -= p.amount;
                pay.refunds += 1;
            }
            PaymentEventKind::Failed => pay.failed += 1,
            PaymentEventKind::Authorised => pay.authorised += 1,
        }
        if matches!(
            p.kind,
            PaymentEventKind::Captured | PaymentEventKind::Refunded
        ) && !pay.currencies.contains(&p.currency)
        {
            pay.currencies.push(p.currency.clone());
        }
        pay.last_at = pay.last_at.max(p.timestamp);
        let tx = &p.transaction_id;

        let Some(session) = &entry.session else {
            let at = entry.pay.last_at + ORPHAN_RETENTION;
            requeue(&mut self.expiry, entry, &cp, tx, at);
            return;
        };
        let Some(judged) = entry.judged else {
            return; // counted at the judgement
        };
        let verdict = judge(cfg, session, &entry.pay);
        let current = entry.open.map(|o| o.kind);
        if verdict.as_ref().map(|v| v.0) != current {
            if let Some(o) = entry.open.take() {
                self.open -= 1;
                let at = p.timestamp.max(o.since);
                let mut d = summary(&entry.pay);
                d.insert("payment_id".into(), json!(p.payment_id));
                d.insert("duration_s".into(), json!((at - o.since) / 1000));
                if let Some((k, _)) = verdict {
                    d.insert("superseded_by".into(), json!(k.as_str()));
                }
                out.push(record(
                    o.kind,
                    AnomalyState::Resolved,
                    &cp,
                    tx,
                    session,
                    entry.pay.net,
                    at,
                    Value::Object(d),
                ));
            }
            if let Some((kind, mut d)) = verdict {
                let at = p.timestamp.max(judged);
                d.insert("payment_id".into(), json!(p.payment_id));
                out.push(record(
                    kind,
                    AnomalyState::Open,
                    &cp,
                    tx,
                    session,
                    entry.pay.net,
                    at,
                    Value::Object(d),
                ));
                entry.open = Some(OpenLeak { kind, since: at });
                self.open += 1;
            }
        }
        let at = retention_end(entry, judged);
        requeue(&mut self.expiry, entry, &cp, tx, at);
    }

    pub fn advance(&mut self, watermark: Millis, out: &mut Vec<LeakageRecord>) {
        // The queue's order (end + grace, charge point, transaction) is the output order:
        // one record per session, at end + grace.
        while let Some(first) = self.pending.first() {
            if first.0 > watermark {
                break;
            }
            let Some((due, cp, tx)) = self.pending.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&cp).and_then(|m| m.get_mut(&tx)) else {
                continue;
            };
            let Some(session) = &entry.session else {
                continue;
            };
            if let Some((kind, mut d)) = judge(&self.cfg, session, &entry.pay) {
                if kind == LeakageKind::Uncaptured {
                    d.insert("grace_s".into(), json!(self.cfg.grace / 1000));
                }
                out.push(record(
                    kind,
                    AnomalyState::Open,
                    &cp,
                    &tx,
                    session,
                    entry.pay.net,
                    due,
                    Value::Object(d),
                ));
                entry.open = Some(OpenLeak { kind, since: due });
                self.open += 1;
            }
            entry.judged = Some(due);
            let at = retention_end(entry, due);
            requeue(&mut self.expiry, entry, &cp, &tx, at);
        }
        while let Some(first) = self.expiry.first() {
            if first.0 > watermark {
                break;
            }
            let Some((_, cp, tx)) = self.expiry.pop_first() else {
                break;
            };
            if let Some(m) = self.entries.get_mut(&cp) {
                if m.remove(&tx).is_some_and(|e| e.open.is_some()) {
                    self.open -= 1;
                }
                if m.is_empty() {
                    self.entries.remove(&cp);
                }
            }
        }
    }
}

/// A `meter_mismatch` leak when the registers and the meter values disagree beyond the
/// tolerance (both must be known).
fn meter_leak(
    cfg: &LeakageConfig,
    s: &SessionFacts,
    session: &Session,
    captured: Money,
) -> Option<LeakageRecord> {
    let (reg, smp) = (s.register_energy_wh?, s.sample_energy_wh?);
    let tol = meter_tolerance(cfg, reg);
    if Decimal::from(smp.abs_diff(reg)) <= tol {
        return None;
    }
    let details = json!({
        "register_wh": reg,
        "samples_wh": smp,
        "difference_wh": smp - reg,
        "tolerance_wh": tol.floor().to_i64().unwrap_or(i64::MAX),
    });
    Some(record(
        LeakageKind::MeterMismatch,
        AnomalyState::Open,
        &s.charge_point_id,
        &s.transaction_id,
        session,
        captured,
        s.end_time,
        details,
    ))
}

fn meter_tolerance(cfg: &LeakageConfig, register_wh: i64) -> Decimal {
    let pct =
        Decimal::from(register_wh.unsigned_abs()) * cfg.meter_tolerance_pct / Decimal::ONE_HUNDRED;
    pct.max(Decimal::from(cfg.meter_tolerance_wh))
}

/// The payment verdict on a session (module doc), with the details of the leak.
fn judge(
    cfg: &LeakageConfig,
    s: &Session,
    pay: &Payments,
) -> Option<(LeakageKind, Map<String, Value>)> {
    if s.amount_due <= Decimal::ZERO {
        return None;
    }
    let mut d = summary(pay);
    if let Some(c) = pay.currencies.iter().find(|c| **c != s.currency) {
        d.insert("payment_currency".into(), json!(c));
        return Some((LeakageKind::AmountMismatch, d));
    }
    if pay.net.is_zero() {
        return (&*s.payment_method != "subscription").then_some((LeakageKind::Uncaptured, d));
    }
    let diff = pay.net - s.amount_due;
    if diff.abs() > cfg.amount_tolerance {
        d.insert("difference".into(), json!(diff.normalize().to_string()));
        d.insert(
            "tolerance".into(),
            json!(cfg.amount_tolerance.normalize().to_string()),
        );
        return Some((LeakageKind::AmountMismatch, d));
    }
    None
}

fn summary(pay: &Payments) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("payments".into(), json!(pay.ids.len()));
    d.insert("captures".into(), json!(pay.captures));
    d.insert("refunds".into(), json!(pay.refunds));
    d.insert("failed".into(), json!(pay.failed));
    d.insert("authorised".into(), json!(pay.authorised));
    d
}

/// When a judged entry may be forgotten: after its last judgement or payment, longer while a
/// leak is open.
fn retention_end(e: &Entry, judged: Millis) -> Millis {
    let last = judged.max(e.pay.last_at);
    last + if e.open.is_some() {
        OPEN_RETENTION
    } else {
        SETTLED_RETENTION
    }
}

fn unqueue(q: &mut Queue, at: Option<Millis>, cp: &Arc<str>, tx: &str) {
    if let Some(at) = at {
        q.remove(&(at, cp.clone(), tx.to_string()));
    }
}

fn requeue(q: &mut Queue, e: &mut Entry, cp: &Arc<str>, tx: &str, at: Millis) {
    if e.expires == Some(at) {
        return;
    }
    unqueue(q, e.expires, cp, tx);
    q.insert((at, cp.clone(), tx.to_string()));
    e.expires = Some(at);
}

#[allow(clippy::too_many_arguments)]
fn record(
    kind: LeakageKind,
    state: AnomalyState,
    cp: &Arc<str>,
    tx: &str,
    s: &Session,
    net: Money,
    at: Millis,
    details: Value,
) -> LeakageRecord {
    LeakageRecord {
        id: stable_id(&[kind.as_str(), cp, tx]),
        kind,
        state,
        charge_point_id: cp.clone(),
        connector_id: s.connector_id,
        site_id: s.site_id.clone(),
        transaction_id: tx.to_string(),
        event_time: at,
        expected: s.amount_due,
        captured: net,
        currency: s.currency.clone(),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PaymentEventKind::*;

    const H: Millis = 3_600_000;

    fn cfg() -> LeakageConfig {
        LeakageConfig {
            grace: 24 * H,
            amount_tolerance: Decimal::new(1, 2),
            meter_tolerance_wh: 100,
            meter_tolerance_pct: Decimal::new(2, 0),
            payments: true,
        }
    }

    fn dec(s: &str) -> Decimal {
        s.parse().expect("test decimal")
    }

    fn session(tx: &str, due: &str, method: &str) -> SessionFacts {
        SessionFacts {
            charge_point_id: "CP-1".into(),
            connector_id: 1,
            site_id: "S".into(),
            transaction_id: tx.into(),
            end_time: 10 * H,
            amount_due: dec(due),
            currency: "EUR".into(),
            payment_method: method.into(),
            register_energy_wh: None,
            sample_energy_wh: None,
        }
    }

    fn pay(id: &str, tx: &str, kind: PaymentEventKind, amount: &str, at: Millis) -> PaymentEvent {
        PaymentEvent {
            payment_id: id.into(),
            charge_point_id: "CP-1".into(),
            transaction_id: tx.into(),
            kind,
            amount: dec(amount),
            currency: "EUR".into(),
            timestamp: at,
        }
    }

    fn kinds(out: &[LeakageRecord]) -> Vec<(LeakageKind, AnomalyState)> {
        out.iter().map(|r| (r.kind, r.state)).collect()
    }

    /// One session `tx` due 12.50 with the given payments, judged at the end of the grace.
    fn judged(payments: &[PaymentEvent], method: &str) -> Vec<LeakageRecord> {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", method), &mut out);
        for p in payments {
            l.on_payment(p, &mut out);
        }
        l.advance(34 * H - 1, &mut out);
        assert!(out.is_empty(), "judged before the grace ended");
        l.advance(34 * H, &mut out);
        out
    }

    #[test]
    fn uncaptured_opens_at_end_plus_grace() {
        let out = judged(&[pay("a", "T1", Failed, "12.50", 11 * H)], "card");
        assert_eq!(kinds(&out), [(LeakageKind::Uncaptured, AnomalyState::Open)]);
        let r = &out[0];
        assert_eq!(r.event_time, 34 * H);
        assert_eq!((r.expected, r.captured), (dec("12.50"), Decimal::ZERO));
        assert_eq!(r.details["grace_s"], 86_400);
        assert_eq!(r.details["failed"], 1);
    }

    #[test]
    fn amount_mismatch_opens() {
        let out = judged(&[pay("a", "T1", Captured, "10.00", 11 * H)], "card");
        assert_eq!(
            kinds(&out),
            [(LeakageKind::AmountMismatch, AnomalyState::Open)]
        );
        assert_eq!(out[0].details["difference"], "-2.5");
        assert_eq!(out[0].captured, dec("10.00"));
    }

    #[test]
    fn meter_mismatch_opens_at_once_and_never_resolves() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        let mut s = session("T1", "0", "card");
        // tolerance max(100, 2 % of 10 000) = 200 Wh
        s.register_energy_wh = Some(10_000);
        s.sample_energy_wh = Some(10_201);
        l.on_session(s.clone(), &mut out);
        assert_eq!(
            kinds(&out),
            [(LeakageKind::MeterMismatch, AnomalyState::Open)]
        );
        assert_eq!(out[0].event_time, 10 * H);
        assert_eq!(out[0].details["tolerance_wh"], 200);
        assert_eq!(out[0].details["difference_wh"], 201);
        l.advance(100 * H, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(l.open_count(), 0);

        // exactly at the tolerance, and below the absolute floor: fine
        for (tx, reg, smp) in [("T2", 10_000, 9_800), ("T3", 1_000, 1_100)] {
            let mut s = session(tx, "0", "card");
            s.register_energy_wh = Some(reg);
            s.sample_energy_wh = Some(smp);
            l.on_session(s, &mut out);
        }
        let mut s = session("T4", "0", "card");
        s.register_energy_wh = Some(10_000);
        l.on_session(s, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn without_payments_only_meters_are_judged_and_nothing_is_kept() {
        let mut l = LeakageLedger::new(LeakageConfig {
            payments: false,
            ..cfg()
        });
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        let mut bad_meter = session("T2", "5.00", "card");
        bad_meter.register_energy_wh = Some(10_000);
        bad_meter.sample_energy_wh = Some(5_000);
        l.on_session(bad_meter, &mut out);
        l.advance(100 * H, &mut out);
        assert_eq!(
            kinds(&out),
            [(LeakageKind::MeterMismatch, AnomalyState::Open)]
        );
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn capture_after_grace_resolves_uncaptured() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.advance(40 * H, &mut out);
        assert_eq!(l.open_count(), 1);
        l.on_payment(&pay("a", "T1", Captured, "12.50", 50 * H), &mut out);
        assert_eq!(
            kinds(&out),
            [
                (LeakageKind::Uncaptured, AnomalyState::Open),
                (LeakageKind::Uncaptured, AnomalyState::Resolved)
            ]
        );
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[1].event_time, 50 * H);
        assert_eq!(out[1].captured, dec("12.50"));
        assert_eq!(out[1].details["duration_s"], 16 * 3600);
        assert_eq!(l.open_count(), 0);
    }

    #[test]
    fn partial_capture_supersedes_uncaptured_and_late_capture_mismatches() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.on_session(session("T2", "5.00", "card"), &mut out);
        l.on_payment(&pay("b", "T2", Captured, "5.00", 11 * H), &mut out);
        l.advance(40 * H, &mut out);
        l.on_payment(&pay("a", "T1", Captured, "10.00", 41 * H), &mut out);
        // a second capture of T2 after it was judged fine
        l.on_payment(&pay("c", "T2", Captured, "5.00", 42 * H), &mut out);
        assert_eq!(
            kinds(&out),
            [
                (LeakageKind::Uncaptured, AnomalyState::Open),
                (LeakageKind::Uncaptured, AnomalyState::Resolved),
                (LeakageKind::AmountMismatch, AnomalyState::Open),
                (LeakageKind::AmountMismatch, AnomalyState::Open),
            ]
        );
        assert_eq!(out[1].details["superseded_by"], "amount_mismatch");
        assert_eq!(out[2].event_time, 41 * H);
        assert_eq!((&*out[3].transaction_id, out[3].event_time), ("T2", 42 * H));
        assert_eq!(l.open_count(), 2);
    }

    #[test]
    fn refunds_count() {
        let full_refund = judged(
            &[
                pay("a", "T1", Captured, "12.50", 11 * H),
                pay("b", "T1", Refunded, "12.50", 12 * H),
            ],
            "card",
        );
        assert_eq!(
            kinds(&full_refund),
            [(LeakageKind::Uncaptured, AnomalyState::Open)]
        );
        assert_eq!(full_refund[0].details["refunds"], 1);

        let overcharge_refunded = judged(
            &[
                pay("a", "T1", Captured, "15.00", 11 * H),
                pay("b", "T1", Refunded, "2.50", 12 * H),
            ],
            "card",
        );
        assert!(overcharge_refunded.is_empty());

        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.on_payment(&pay("a", "T1", Captured, "12.50", 11 * H), &mut out);
        l.advance(40 * H, &mut out);
        l.on_payment(&pay("b", "T1", Refunded, "4.00", 45 * H), &mut out);
        assert_eq!(
            kinds(&out),
            [(LeakageKind::AmountMismatch, AnomalyState::Open)]
        );
        assert_eq!(out[0].captured, dec("8.50"));
    }

    #[test]
    fn redelivered_payment_counts_once() {
        let p = pay("a", "T1", Captured, "12.50", 11 * H);
        assert!(judged(&[p.clone(), p], "card").is_empty());
    }

    #[test]
    fn payment_before_session_counts() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_payment(&pay("a", "T1", Captured, "12.50", 9 * H), &mut out);
        l.advance(9 * H, &mut out);
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.advance(40 * H, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn orphan_payments_are_forgotten() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_payment(&pay("a", "T9", Captured, "12.50", 9 * H), &mut out);
        l.advance(9 * H + ORPHAN_RETENTION - 1, &mut out);
        assert_eq!(l.tracked(), 1);
        l.advance(9 * H + ORPHAN_RETENTION, &mut out);
        assert_eq!(l.tracked(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn judged_sessions_are_forgotten_after_retention() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.on_session(session("T2", "12.50", "card"), &mut out);
        l.on_payment(&pay("a", "T2", Captured, "12.50", 11 * H), &mut out);
        l.advance(34 * H, &mut out);
        l.advance(34 * H + SETTLED_RETENTION, &mut out);
        assert_eq!(l.tracked(), 1, "the open leak is kept longer");
        l.advance(34 * H + OPEN_RETENTION, &mut out);
        assert_eq!((l.tracked(), l.open_count()), (0, 0));
    }

    #[test]
    fn subscription_sessions_are_not_uncaptured() {
        assert!(judged(&[], "subscription").is_empty());
        // but a wrong capture on one is still a mismatch
        let out = judged(&[pay("a", "T1", Captured, "1.00", 11 * H)], "subscription");
        assert_eq!(
            kinds(&out),
            [(LeakageKind::AmountMismatch, AnomalyState::Open)]
        );
    }

    #[test]
    fn zero_amount_sessions_never_leak() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "0.00", "card"), &mut out);
        l.advance(40 * H, &mut out);
        l.on_payment(&pay("a", "T1", Captured, "3.00", 41 * H), &mut out);
        l.on_payment(&pay("b", "T1", Refunded, "3.00", 42 * H), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn amount_tolerance_edges() {
        for (captured, leak) in [
            ("12.49", false),
            ("12.51", false),
            ("12.48", true),
            ("12.52", true),
        ] {
            let out = judged(&[pay("a", "T1", Captured, captured, 11 * H)], "card");
            assert_eq!(out.len(), usize::from(leak), "captured {captured}");
        }
    }

    #[test]
    fn currency_mismatch_is_amount_mismatch() {
        let mut p = pay("a", "T1", Captured, "12.50", 11 * H);
        p.currency = "USD".into();
        let out = judged(&[p], "card");
        assert_eq!(
            kinds(&out),
            [(LeakageKind::AmountMismatch, AnomalyState::Open)]
        );
        assert_eq!(out[0].details["payment_currency"], "USD");
    }

    #[test]
    fn ids_are_deterministic_and_output_ordered() {
        let run = || {
            let mut l = LeakageLedger::new(cfg());
            let mut out = vec![];
            for (cp, tx, end) in [("CP-2", "T1", 10), ("CP-1", "T2", 10), ("CP-1", "T1", 9)] {
                let mut s = session(tx, "1.00", "card");
                s.charge_point_id = cp.into();
                s.end_time = end * H;
                l.on_session(s, &mut out);
            }
            l.advance(40 * H, &mut out);
            out
        };
        let out = run();
        assert_eq!(out, run());
        let order: Vec<(&str, &str)> = out
            .iter()
            .map(|r| (&*r.charge_point_id, &*r.transaction_id))
            .collect();
        assert_eq!(order, [("CP-1", "T1"), ("CP-1", "T2"), ("CP-2", "T1")]);
        assert_eq!(out[0].id, stable_id(&["uncaptured", "CP-1", "T1"]));
        assert_ne!(out[0].id, out[1].id);
    }

    #[test]
    fn bincode_round_trip() {
        let mut l = LeakageLedger::new(cfg());
        let mut out = vec![];
        l.on_session(session("T1", "12.50", "card"), &mut out);
        l.on_session(session("T2", "12.50", "card"), &mut out);
        l.on_payment(&pay("a", "T2", Captured, "10.00", 11 * H), &mut out);
        l.on_payment(&pay("b", "T3", Authorised, "7.00", 11 * H), &mut out);
        l.advance(34 * H, &mut out);
        let bytes = bincode::serialize(&l).expect("serialize");
        let mut back: LeakageLedger = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, l);
        assert_eq!(back.open_count(), 2);
        let (mut a, mut b) = (vec![], vec![]);
        l.on_payment(&pay("c", "T1", Captured, "12.50", 35 * H), &mut a);
        back.on_payment(&pay("c", "T1", Captured, "12.50", 35 * H), &mut b);
        assert_eq!((a.len(), a), (1, b));
    }
}
