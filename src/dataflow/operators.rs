//! The timely operators of the evflow graph. Each is a thin shell: it buffers input by timely
//! time, waits for the frontier, and calls the pure stage code in a deterministic order.
//! No I/O happens here except in [`sink`], which hands records to `sinks`.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHasher;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use super::watermark::{Mark, Watermark};
use crate::config::NotificationConfig;
use crate::metrics::{label, Metrics};
use crate::model::{
    Event, HealthLevel, HealthRow, LeakageRecord, Millis, Output, PaymentEvent, SessionRecord,
};
use crate::sinks::{OutputSinks, Summary};
use crate::stages::billing::Billing;
use crate::stages::charger::{Arrival, ChargerStages, StagesSnapshot};
use crate::stages::fleet::FleetDetectors;
use crate::stages::health::site_row;
use crate::stages::leakage::{LeakageLedger, SessionFacts};
use crate::stages::notifications::NotificationRouter;
use crate::stages::revenue::RevenueWindows;
use crate::stages::Reference;

/// Routes a charge point to a worker.
pub fn charge_point_hash(id: &str) -> u64 {
    let mut h = FxHasher::default();
    id.hash(&mut h);
    h.finish()
}

/// The earliest incomplete time of several inputs; `None` once all have ended.
fn frontier_min(frontiers: &[&MutableAntichain<u64>]) -> Option<u64> {
    frontiers
        .iter()
        .filter_map(|f| f.frontier().first().copied())
        .min()
}

/// An operator's input buffered by timely time, and the watermark from the marks. Both
/// operators below work through complete times in order with it.
struct TimeBuffer<D> {
    stash: BTreeMap<u64, Vec<D>>,
    watermark: Watermark,
}

impl<D> TimeBuffer<D> {
    fn new(out_of_orderness: Millis) -> Self {
        TimeBuffer {
            stash: BTreeMap::new(),
            watermark: Watermark::new(out_of_orderness),
        }
    }

    fn stash(&mut self, time: Option<&u64>, data: &mut Vec<D>) {
        if let Some(t) = time {
            self.stash.entry(*t).or_default().append(data);
        }
    }

    fn mark(&mut self, time: Option<&u64>, marks: &mut Vec<Mark>) {
        if let Some(t) = time {
            for m in marks.drain(..) {
                self.watermark.observe(*t, m);
            }
        }
    }

    /// Every time with data or marks that the frontier has passed, in order.
    fn complete_times(&self, frontier: Option<u64>) -> Vec<u64> {
        let complete = |t: &u64| frontier.is_none_or(|f| *t < f);
        let mut times: Vec<u64> = self.stash.keys().copied().take_while(complete).collect();
        times.extend(self.watermark.pending_times().take_while(complete));
        times.sort_unstable();
        times.dedup();
        times
    }

    fn take(&mut self, time: u64) -> Vec<D> {
        self.stash.remove(&time).unwrap_or_default()
    }
}

/// The state of the charger stage on one worker: everything a commit snapshot must hold
/// (see `dataflow::commit`). Shared with the worker loop, which snapshots it at commit
/// boundaries, when no input is buffered by timely time.
pub struct ChargerStageState {
    pub stages: ChargerStages,
    buffer: TimeBuffer<Event>,
    /// Events waiting for the watermark, in (event time, seq, arrival) order.
    reorder: ReorderBuffer,
    arrival: u64,
    timers_checked: Millis,
    counted_chargers: i64,
}

impl ChargerStageState {
    pub fn new(stages: ChargerStages, out_of_orderness: Millis) -> Self {
        ChargerStageState {
            stages,
            buffer: TimeBuffer::new(out_of_orderness),
            reorder: ReorderBuffer::default(),
            arrival: 0,
            timers_checked: Millis::MIN,
            counted_chargers: 0,
        }
    }

    pub fn save(&self, w: &mut impl std::io::Write) -> bincode::Result<()> {
        self.stages.save(w)?;
        let events: Vec<(&(Millis, u64, u64), &Event)> = self.reorder.iter().collect();
        bincode::serialize_into(
            w,
            &(
                &self.buffer.watermark,
                events,
                self.arrival,
                self.timers_checked,
            ),
        )
    }

    pub fn read_snapshot(r: &mut impl std::io::Read) -> bincode::Result<StageSnapshot> {
        let stages = ChargerStages::read_snapshot(r)?;
        let (watermark, events, arrival, timers_checked) = bincode::deserialize_from(r)?;
        Ok(StageSnapshot {
            stages,
            watermark,
            events,
            arrival,
            timers_checked,
        })
    }

    /// Takes over this worker's share of a snapshot (charge points `keep` selects); the
    /// watermark and counters are the same in every worker's snapshot.
    pub fn restore(&mut self, snapshot: &mut StageSnapshot, keep: impl Fn(&str) -> bool) {
        self.stages.restore(&mut snapshot.stages, &keep);
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut snapshot.events)
            .into_iter()
            .partition(|(_, e)| keep(&e.charge_point_id));
        snapshot.events = rest;
        for (key, ev) in mine {
            self.reorder.insert(key, ev);
        }
        self.buffer.watermark = snapshot.watermark.clone();
        self.arrival = self.arrival.max(snapshot.arrival);
        self.timers_checked = self.timers_checked.max(snapshot.timers_checked);
    }
}

/// A worker's charger stage as read from a commit snapshot.
pub struct StageSnapshot {
    stages: StagesSnapshot,
    watermark: Watermark,
    events: Vec<((Millis, u64, u64), Event)>,
    arrival: u64,
    timers_checked: Millis,
}

/// Per-charger stages: arrival-order correlation, then event-time order via the watermark.
pub fn charger_stage<'s>(
    events: StreamVec<'s, u64, Event>,
    marks: StreamVec<'s, u64, Mark>,
    state: Rc<RefCell<ChargerStageState>>,
    metrics: Metrics,
) -> StreamVec<'s, u64, Output> {
    events.binary_frontier(
        marks,
        Exchange::new(|e: &Event| charge_point_hash(&e.charge_point_id)),
        Pipeline,
        "ChargerStages",
        move |cap, _info| {
            let mut cap = Some(cap);
            let mut out: Vec<Output> = Vec::new();
            move |(ev_in, ev_frontier), (mk_in, mk_frontier), output| {
                let mut guard = state.borrow_mut();
                let ChargerStageState {
                    stages,
                    buffer,
                    reorder,
                    arrival,
                    timers_checked,
                    counted_chargers,
                } = &mut *guard;
                ev_in.for_each(|c, data| buffer.stash(c.least(), data));
                mk_in.for_each(|c, data| buffer.mark(c.least(), data));
                let Some(held) = cap.as_mut() else { return };
                let frontier = frontier_min(&[ev_frontier, mk_frontier]);
                let times = buffer.complete_times(frontier);
                let mut late_by_action: BTreeMap<&'static str, u64> = BTreeMap::new();
                let mut duplicates = 0u64;
                for t in times {
                    let before = buffer.watermark.current();
                    let mut batch = buffer.take(t);
                    {
                        // Exchange interleaves senders; seq restores the input's order.
                        batch.sort_by_key(|e| e.seq);
                        for ev in batch {
                            match stages.on_arrival(&ev) {
                                Arrival::Consumed => continue,
                                Arrival::Duplicate => {
                                    duplicates += 1;
                                    continue;
                                }
                                Arrival::Process => {}
                            }
                            if ev.event_time < before {
                                // Late: applied at once, as of the charger's current time.
                                *late_by_action.entry(ev.kind.name()).or_default() += 1;
                                stages.process(&ev, &mut out);
                            } else {
                                *arrival += 1;
                                reorder.insert((ev.event_time, ev.seq, *arrival), ev);
                            }
                        }
                    }
                    let w = buffer.watermark.advance_through(t);
                    release(reorder, stages, w, &mut out);
                    // Timers of chargers without events are checked once per second of event
                    // time (not per chunk: a live feed makes a chunk of every line). They still
                    // carry the exact event time at which they were due. No watermark yet (a
                    // partition not heard from): no timer is due.
                    if w > Millis::MIN && w.div_euclid(1000) > timers_checked.div_euclid(1000) {
                        stages.advance_all(w, &mut out);
                        *timers_checked = w;
                    }
                    if !out.is_empty() {
                        output
                            .session(&held.delayed(&t))
                            .give_iterator(out.drain(..));
                    }
                }
                metrics.duplicate_frames.inc_by(duplicates);
                metrics
                    .orphan_stops
                    .inc_by(std::mem::take(&mut stages.stats.orphan_stops));
                for (action, n) in late_by_action {
                    metrics
                        .late_events
                        .get_or_create(&label("action", action))
                        .inc_by(n);
                }
                match frontier {
                    Some(f) => held.downgrade(&f),
                    None => {
                        // End of input: timers fire up to the final watermark, and every
                        // event still held is processed — even one beyond it (a wild
                        // timestamp the watermark was not allowed to follow).
                        let w = buffer.watermark.finish();
                        release(reorder, stages, w, &mut out);
                        if w > Millis::MIN {
                            stages.advance_all(w, &mut out);
                        }
                        release(reorder, stages, Millis::MAX, &mut out);
                        stages.finish(w, &mut out);
                        metrics.orphan_stops.inc_by(stages.stats.orphan_stops);
                        stages.stats.orphan_stops = 0;
                        if !out.is_empty() {
                            output.session(&*held).give_iterator(out.drain(..));
                        }
                        cap = None;
                    }
                }
                // Each worker adds its own chargers to the shared gauge.
                let n = stages.chargers() as i64;
                metrics.chargers.inc_by(n - *counted_chargers);
                *counted_chargers = n;
            }
        },
    )
}

/// Events waiting for the watermark, ordered by (event time, seq, arrival). The events live
/// in a slab and the ordered map holds slot numbers: events are large, and a B-tree moves
/// its values around as it rebalances.
#[derive(Default)]
struct ReorderBuffer {
    order: BTreeMap<(Millis, u64, u64), u32>,
    slots: Vec<Option<Event>>,
    free: Vec<u32>,
}

impl ReorderBuffer {
    fn insert(&mut self, key: (Millis, u64, u64), ev: Event) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                (self.slots.len() - 1) as u32
            }
        };
        self.order.insert(key, slot);
    }

    /// The waiting events in order.
    fn iter(&self) -> impl Iterator<Item = (&(Millis, u64, u64), &Event)> {
        self.order
            .iter()
            .filter_map(|(k, slot)| Some((k, self.slots.get(*slot as usize)?.as_ref()?)))
    }

    /// Removes and returns the earliest event with event time ≤ `watermark`.
    fn pop_until(&mut self, watermark: Millis) -> Option<Event> {
        let entry = self.order.first_entry()?;
        if entry.key().0 > watermark {
            return None;
        }
        let slot = entry.remove();
        self.free.push(slot);
        self.slots[slot as usize].take()
    }
}

fn release(
    reorder: &mut ReorderBuffer,
    stages: &mut ChargerStages,
    watermark: Millis,
    out: &mut Vec<Output>,
) {
    while let Some(ev) = reorder.pop_until(watermark) {
        stages.process(&ev, out);
    }
}

/// A total order on records so that sinks see the same sequence in every run.
pub fn sink_order(a: &Output, b: &Output) -> Ordering {
    fn rank(o: &Output) -> u8 {
        match o {
            Output::DeadLetter(_) => 0,
            Output::Session(_) => 1,
            Output::Anomaly(_) => 2,
            Output::Notification(_) => 3,
            Output::Health(_) => 4,
            Output::Revenue(_) => 5,
            Output::Leakage(_) => 6,
            Output::Uptime(_) => 7,
            Output::Outage(_) => 8,
            Output::Observation(_) => 9,
            Output::Trigger(_) => 10,
            Output::BackInOrder(_) => 11,
            Output::Checkpoint { .. } => 12,
        }
    }
    match (a, b) {
        (Output::DeadLetter(x), Output::DeadLetter(y)) => x.seq.cmp(&y.seq),
        (Output::Session(x), Output::Session(y)) => (
            x.end_time,
            &x.charge_point_id,
            x.connector_id,
            &x.transaction_id,
        )
            .cmp(&(
                y.end_time,
                &y.charge_point_id,
                y.connector_id,
                &y.transaction_id,
            )),
        (Output::Anomaly(x), Output::Anomaly(y)) => (
            x.event_time,
            &x.charge_point_id,
            x.connector_id,
            x.kind,
            x.state,
        )
            .cmp(&(
                y.event_time,
                &y.charge_point_id,
                y.connector_id,
                y.kind,
                y.state,
            )),
        (Output::Notification(x), Output::Notification(y)) => (
            x.event_time,
            &x.charge_point_id,
            x.connector_id,
            x.kind,
            &x.recipient,
        )
            .cmp(&(
                y.event_time,
                &y.charge_point_id,
                y.connector_id,
                y.kind,
                &y.recipient,
            )),
        (Output::Health(x), Output::Health(y)) => (
            x.window_start,
            x.level,
            &x.site_id,
            &x.charge_point_id,
            x.connector_id,
        )
            .cmp(&(
                y.window_start,
                y.level,
                &y.site_id,
                &y.charge_point_id,
                y.connector_id,
            )),
        (Output::Revenue(x), Output::Revenue(y)) => (
            x.window_start,
            &x.site_id,
            &x.charge_point_id,
            &x.payment_method,
            &x.tariff_id,
            &x.currency,
            x.revision,
        )
            .cmp(&(
                y.window_start,
                &y.site_id,
                &y.charge_point_id,
                &y.payment_method,
                &y.tariff_id,
                &y.currency,
                y.revision,
            )),
        (Output::Leakage(x), Output::Leakage(y)) => (
            x.event_time,
            &x.charge_point_id,
            &x.transaction_id,
            x.kind,
            x.state,
        )
            .cmp(&(
                y.event_time,
                &y.charge_point_id,
                &y.transaction_id,
                y.kind,
                y.state,
            )),
        (Output::Uptime(x), Output::Uptime(y)) => (
            x.period_start,
            x.period,
            &x.charge_point_id,
            x.connector_id,
        )
            .cmp(&(y.period_start, y.period, &y.charge_point_id, y.connector_id)),
        (Output::Outage(x), Output::Outage(y)) => (
            x.end,
            &x.charge_point_id,
            x.connector_id,
            x.start,
        )
            .cmp(&(y.end, &y.charge_point_id, y.connector_id, y.start)),
        (Output::Observation(x), Output::Observation(y)) => (
            x.at,
            &x.charge_point_id,
            x.connector_id,
        )
            .cmp(&(y.at, &y.charge_point_id, y.connector_id)),
        (Output::Trigger(x), Output::Trigger(y)) => (
            x.event_time,
            &x.charge_point_id,
            x.connector_id,
            x.kind,
            &x.drivers,
        )
            .cmp(&(
                y.event_time,
                &y.charge_point_id,
                y.connector_id,
                y.kind,
                &y.drivers,
            )),
        (Output::BackInOrder(x), Output::BackInOrder(y)) => (
            x.event_time,
            &x.charge_point_id,
            x.connector_id,
        )
            .cmp(&(y.event_time, &y.charge_point_id, y.connector_id)),
        (Output::Checkpoint { watermark: x }, Output::Checkpoint { watermark: y }) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The state of the fleet-wide aggregation (worker 0), for commit snapshots.
pub struct AggregateState {
    revenue: RevenueWindows,
    billing: Billing,
    leakage: LeakageLedger,
    buffer: TimeBuffer<Output>,
    last_checkpoint: Option<Millis>,
    reference: Arc<Reference>,
    /// Payment events not yet fed to the leakage ledger, by (timestamp, arrival): fed as the
    /// watermark passes them.
    payments: BTreeMap<(Millis, u64), PaymentEvent>,
    payments_added: u64,
    /// Where a Kafka payments source stands (next offset per partition) after what was added.
    pub payment_positions: BTreeMap<i32, i64>,
    /// `power_delivery_degraded` and `underused`, judged against the whole fleet.
    pub fleet: FleetDetectors,
    /// Notification triggers → notifications per recipient (watches, limits, quiet hours).
    pub router: NotificationRouter,
    notifications: NotificationConfig,
}

impl AggregateState {
    pub fn new(
        revenue: RevenueWindows,
        leakage: LeakageLedger,
        reference: Arc<Reference>,
        out_of_orderness: Millis,
        fleet: FleetDetectors,
        notifications: NotificationConfig,
    ) -> Self {
        AggregateState {
            revenue,
            billing: Billing::new(),
            leakage,
            buffer: TimeBuffer::new(out_of_orderness),
            last_checkpoint: None,
            reference,
            payments: BTreeMap::new(),
            payments_added: 0,
            payment_positions: BTreeMap::new(),
            fleet,
            router: NotificationRouter::new(),
            notifications,
        }
    }

    /// Payment events that arrived (from the file, or polled from Kafka up to `positions`).
    pub fn add_payments(
        &mut self,
        events: impl IntoIterator<Item = PaymentEvent>,
        positions: &BTreeMap<i32, i64>,
    ) {
        for p in events {
            self.payments_added += 1;
            self.payments.insert((p.timestamp, self.payments_added), p);
        }
        self.payment_positions.clone_from(positions);
    }

    pub fn save(&self, w: &mut impl std::io::Write) -> bincode::Result<()> {
        let payments: Vec<(&(Millis, u64), &PaymentEvent)> = self.payments.iter().collect();
        bincode::serialize_into(
            w,
            &(
                &self.revenue,
                &self.billing,
                &self.leakage,
                &self.buffer.watermark,
                self.last_checkpoint,
                payments,
                self.payments_added,
                &self.payment_positions,
                &self.fleet,
                &self.router,
            ),
        )
    }

    /// Replaces the state with a snapshot's.
    pub fn restore(&mut self, snapshot: AggregateSnapshot) {
        self.revenue = snapshot.revenue;
        self.billing = snapshot.billing;
        self.leakage = snapshot.leakage;
        self.buffer.watermark = snapshot.watermark;
        self.last_checkpoint = snapshot.last_checkpoint;
        self.payments = snapshot.payments.into_iter().collect();
        self.payments_added = snapshot.payments_added;
        self.payment_positions = snapshot.payment_positions;
        self.fleet.restore(snapshot.fleet);
        self.router = snapshot.router;
    }

    /// Feeds the payments up to `until` to the leakage ledger, in event-time order with the
    /// ledger's own deadlines: sessions due before a payment are judged before it (a payment
    /// exactly at a deadline is in time).
    fn feed_payments(&mut self, until: Millis, out: &mut Vec<LeakageRecord>) {
        while let Some(entry) = self.payments.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let p = entry.remove();
            self.leakage.advance(p.timestamp.saturating_sub(1), out);
            self.leakage.on_payment(&p, out);
        }
    }
}

/// The aggregation's state as read from a commit snapshot (fields in [`AggregateState::save`]'s
/// order: bincode reads a struct as the tuple it wrote).
#[derive(serde::Deserialize)]
pub struct AggregateSnapshot {
    revenue: RevenueWindows,
    billing: Billing,
    leakage: LeakageLedger,
    watermark: Watermark,
    last_checkpoint: Option<Millis>,
    payments: Vec<((Millis, u64), PaymentEvent)>,
    payments_added: u64,
    pub payment_positions: BTreeMap<i32, i64>,
    fleet: FleetDetectors,
    router: NotificationRouter,
}

impl AggregateSnapshot {
    /// Where the Kafka watch source stood at the commit.
    pub fn watch_positions(&self) -> &BTreeMap<i32, i64> {
        &self.router.watch_positions
    }
}

impl AggregateSnapshot {
    pub fn read(r: &mut impl std::io::Read) -> bincode::Result<AggregateSnapshot> {
        bincode::deserialize_from(r)
    }
}

fn session_facts(s: &SessionRecord) -> SessionFacts {
    SessionFacts {
        charge_point_id: s.charge_point_id.clone(),
        connector_id: s.connector_id,
        site_id: s.site_id.clone(),
        transaction_id: s.transaction_id.clone(),
        end_time: s.end_time,
        amount_due: s.total_incl_vat,
        currency: s.currency.clone(),
        payment_method: s.payment_method.clone(),
        register_energy_wh: s.audit.register_wh,
        sample_energy_wh: s.audit.samples_wh,
    }
}

/// Fleet-wide aggregation on worker 0: billing (subscription allowances, payment fees),
/// revenue windows, revenue leakage and site health rows. Passes every record through
/// (sessions finalised) and adds its own.
pub fn aggregate<'s>(
    records: StreamVec<'s, u64, Output>,
    marks: StreamVec<'s, u64, Mark>,
    state: Rc<RefCell<AggregateState>>,
    checkpoint_every: Millis,
    metrics: Metrics,
) -> StreamVec<'s, u64, Output> {
    records.binary_frontier(
        marks,
        Exchange::new(|_: &Output| 0),
        Pipeline,
        "Aggregate",
        move |cap, _info| {
            let mut cap = Some(cap);
            move |(rec_in, rec_frontier), (mk_in, mk_frontier), output| {
                let mut guard = state.borrow_mut();
                let st = &mut *guard;
                rec_in.for_each(|c, data| st.buffer.stash(c.least(), data));
                mk_in.for_each(|c, data| st.buffer.mark(c.least(), data));
                let Some(held) = cap.as_mut() else { return };
                let frontier = frontier_min(&[rec_frontier, mk_frontier]);
                let times = st.buffer.complete_times(frontier);
                for t in times {
                    let mut batch = st.buffer.take(t);
                    batch.sort_by(sink_order);
                    // Fleet observations stop here: the fleet detectors apply them in order.
                    // Triggers become notifications (the batch is in event-time order).
                    let mut added: Vec<Output> = Vec::new();
                    let mut batch: Vec<Output> = {
                        let mut kept = Vec::with_capacity(batch.len());
                        for r in batch {
                            match r {
                                Output::Observation(o) => st.fleet.observe(*o),
                                Output::Trigger(t) => st.router.route(
                                    &t,
                                    &st.notifications,
                                    &st.reference,
                                    &mut added,
                                ),
                                other => kept.push(other),
                            }
                        }
                        kept
                    };
                    let mut rows = Vec::new();
                    let mut leaks = Vec::new();
                    for r in &mut batch {
                        if let Output::Session(s) = r {
                            st.billing.finalize(s, &st.reference);
                            st.leakage.on_session(session_facts(s), &mut leaks);
                            if let Some(row) = st.revenue.add(s) {
                                added.push(Output::Revenue(row));
                            }
                        }
                    }
                    let mut by_site: BTreeMap<(Millis, &str), Vec<&HealthRow>> = BTreeMap::new();
                    for r in &batch {
                        if let Output::Health(h) = r {
                            if h.level == HealthLevel::Charger {
                                by_site
                                    .entry((h.window_start, &h.site_id))
                                    .or_default()
                                    .push(h);
                            }
                        }
                    }
                    added.extend(
                        by_site
                            .values()
                            .filter_map(|v| site_row(v))
                            .map(Output::Health),
                    );
                    let w = st.buffer.watermark.advance_through(t);
                    st.revenue.advance(w, &mut rows);
                    st.revenue.forget_before(30 * 86_400_000);
                    added.extend(rows.into_iter().map(Output::Revenue));
                    if w > Millis::MIN {
                        st.feed_payments(w, &mut leaks);
                        st.leakage.advance(w, &mut leaks);
                        st.fleet.advance(w, &st.reference, &mut added);
                        st.router.advance(w, &st.notifications, &mut added);
                        count_suppressed(&metrics, &mut st.router);
                        let boundary = w - w.rem_euclid(checkpoint_every);
                        if st.last_checkpoint.is_some_and(|c| boundary > c) {
                            added.push(Output::Checkpoint {
                                watermark: boundary,
                            });
                        }
                        if st.last_checkpoint.is_none_or(|c| boundary > c) {
                            st.last_checkpoint = Some(boundary);
                        }
                        metrics.watermark.set(w as f64 / 1000.0);
                        if let Some(m) = st.buffer.watermark.max_seen() {
                            metrics.watermark_lag.set((m - w) as f64 / 1000.0);
                        }
                    }
                    added.extend(leaks.into_iter().map(Output::Leakage));
                    batch.extend(added);
                    if !batch.is_empty() {
                        output
                            .session(&held.delayed(&t))
                            .give_iterator(batch.into_iter());
                    }
                }
                match frontier {
                    Some(f) => held.downgrade(&f),
                    None => {
                        let w = st.buffer.watermark.finish();
                        let mut rows = Vec::new();
                        st.revenue.flush(&mut rows);
                        // Payments and deadlines up to the final watermark; later ones
                        // belong to a later run (the commit keeps them pending).
                        let mut leaks = Vec::new();
                        st.feed_payments(w, &mut leaks);
                        st.leakage.advance(w, &mut leaks);
                        let mut fleet = Vec::new();
                        st.fleet.finish(w, &st.reference, &mut fleet);
                        st.router.advance(w, &st.notifications, &mut fleet);
                        st.router.finish(&mut fleet);
                        count_suppressed(&metrics, &mut st.router);
                        metrics.watermark.set(w as f64 / 1000.0);
                        metrics.watermark_lag.set(0.0);
                        let out: Vec<Output> = rows
                            .into_iter()
                            .map(Output::Revenue)
                            .chain(leaks.into_iter().map(Output::Leakage))
                            .chain(fleet)
                            .collect();
                        if !out.is_empty() {
                            output.session(&*held).give_iterator(out.into_iter());
                        }
                        cap = None;
                    }
                }
            }
        },
    )
}

fn count_suppressed(metrics: &Metrics, router: &mut NotificationRouter) {
    for ((kind, why), n) in router.take_suppressed() {
        metrics
            .notifications_suppressed
            .get_or_create(&crate::metrics::labels2(
                "kind",
                kind.as_str(),
                "reason",
                why.as_str(),
            ))
            .inc_by(n);
    }
}

/// The sink: on worker 0, writes each completed time's records in deterministic order.
///
/// Its (empty) output stream passes a time only once every record of that time has been
/// written: a probe on it tells the worker loop what has been fully processed (commits wait
/// for it). At the end of the input the sinks are flushed and left in `sinks` for the final
/// commit; the run's summary (or the first output error) goes to `summary`.
pub fn sink<'s>(
    records: StreamVec<'s, u64, Output>,
    sinks: Rc<RefCell<Option<OutputSinks>>>,
    summary: Arc<Mutex<Option<Result<Summary, String>>>>,
) -> StreamVec<'s, u64, ()> {
    let mut stash: BTreeMap<u64, Vec<Output>> = BTreeMap::new();
    let mut failed: Option<String> = None;
    records.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|_: &Output| 0),
        "Sinks",
        move |cap, _info| {
            let mut cap = Some(cap);
            move |(input, frontier), _output| {
                input.for_each(|c, data| {
                    if let Some(t) = c.least() {
                        stash.entry(*t).or_default().append(data);
                    }
                });
                let Some(held) = cap.as_mut() else { return };
                let mut guard = sinks.borrow_mut();
                let f = frontier.frontier().first().copied();
                while let Some(entry) = stash.first_entry() {
                    if f.is_some_and(|f| *entry.key() >= f) {
                        break;
                    }
                    let mut batch = entry.remove();
                    batch.sort_by(sink_order);
                    if let (Some(s), None) = (guard.as_mut(), &failed) {
                        if let Err(e) = s.write(batch) {
                            tracing::error!("output failed: {e}");
                            failed = Some(e.to_string());
                            // Known at once: nothing more may be committed.
                            if let Ok(mut slot) = summary.lock() {
                                *slot = Some(Err(e.to_string()));
                            }
                        }
                    }
                }
                match f {
                    Some(f) => held.downgrade(&f),
                    None => {
                        if let Some(s) = guard.as_mut() {
                            let result = match (s.flush(), failed.take()) {
                                (_, Some(e)) => Err(e),
                                (Err(e), None) => Err(e.to_string()),
                                (Ok(()), None) => Ok(s.summary.clone()),
                            };
                            if let Ok(mut slot) = summary.lock() {
                                *slot = Some(result);
                            }
                        }
                        cap = None;
                    }
                }
            }
        },
    )
}
