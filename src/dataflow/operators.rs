//! The timely operators of the evflow graph. Each is a thin shell: it buffers input by timely
//! time, waits for the frontier, and calls the pure stage code in a deterministic order.
//! No I/O happens here except in [`sink`], which hands records to `sinks`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHasher;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use super::watermark::{Mark, Watermark};
use crate::metrics::{label, Metrics};
use crate::model::{Event, HealthLevel, HealthRow, Millis, Output};
use crate::sinks::{OutputSinks, Summary};
use crate::stages::charger::{Arrival, ChargerStages};
use crate::stages::health::site_row;
use crate::stages::revenue::RevenueWindows;

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

/// Per-charger stages: arrival-order correlation, then event-time order via the watermark.
pub fn charger_stage<'s>(
    events: StreamVec<'s, u64, Event>,
    marks: StreamVec<'s, u64, Mark>,
    mut stages: ChargerStages,
    out_of_orderness: Millis,
    metrics: Metrics,
) -> StreamVec<'s, u64, Output> {
    events.binary_frontier(
        marks,
        Exchange::new(|e: &Event| charge_point_hash(&e.charge_point_id)),
        Pipeline,
        "ChargerStages",
        move |cap, _info| {
            let mut cap = Some(cap);
            let mut buffer: TimeBuffer<Event> = TimeBuffer::new(out_of_orderness);
            // Events waiting for the watermark, in (event time, seq, arrival) order.
            let mut reorder = ReorderBuffer::default();
            let mut arrival = 0u64;
            let mut counted_chargers = 0i64;
            let mut timers_checked = Millis::MIN;
            let mut out: Vec<Output> = Vec::new();
            move |(ev_in, ev_frontier), (mk_in, mk_frontier), output| {
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
                                arrival += 1;
                                reorder.insert((ev.event_time, ev.seq, arrival), ev);
                            }
                        }
                    }
                    let w = buffer.watermark.advance_through(t);
                    release(&mut reorder, &mut stages, w, &mut out);
                    // Timers of chargers without events are checked once per second of event
                    // time (not per chunk: a live feed makes a chunk of every line). They still
                    // carry the exact event time at which they were due. No watermark yet (a
                    // partition not heard from): no timer is due.
                    if w > Millis::MIN && w.div_euclid(1000) > timers_checked.div_euclid(1000) {
                        stages.advance_all(w, &mut out);
                        timers_checked = w;
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
                        release(&mut reorder, &mut stages, w, &mut out);
                        if w > Millis::MIN {
                            stages.advance_all(w, &mut out);
                        }
                        release(&mut reorder, &mut stages, Millis::MAX, &mut out);
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
                metrics.chargers.inc_by(n - counted_chargers);
                counted_chargers = n;
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
            Output::Checkpoint { .. } => 6,
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
            &x.payment_method,
            &x.currency,
            x.revision,
        )
            .cmp(&(
                y.window_start,
                &y.site_id,
                &y.payment_method,
                &y.currency,
                y.revision,
            )),
        (Output::Checkpoint { watermark: x }, Output::Checkpoint { watermark: y }) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Fleet-wide aggregation on worker 0: revenue windows and site health rows. Passes every
/// record through and adds its own.
pub fn aggregate<'s>(
    records: StreamVec<'s, u64, Output>,
    marks: StreamVec<'s, u64, Mark>,
    mut revenue: RevenueWindows,
    out_of_orderness: Millis,
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
            let mut buffer: TimeBuffer<Output> = TimeBuffer::new(out_of_orderness);
            let mut last_checkpoint: Option<Millis> = None;
            move |(rec_in, rec_frontier), (mk_in, mk_frontier), output| {
                rec_in.for_each(|c, data| buffer.stash(c.least(), data));
                mk_in.for_each(|c, data| buffer.mark(c.least(), data));
                let Some(held) = cap.as_mut() else { return };
                let frontier = frontier_min(&[rec_frontier, mk_frontier]);
                let times = buffer.complete_times(frontier);
                for t in times {
                    let mut batch = buffer.take(t);
                    batch.sort_by(sink_order);
                    let mut added: Vec<Output> = Vec::new();
                    let mut rows = Vec::new();
                    let mut by_site: BTreeMap<(Millis, &str), Vec<&HealthRow>> = BTreeMap::new();
                    for r in &batch {
                        match r {
                            Output::Session(s) => {
                                if let Some(row) = revenue.add(s) {
                                    added.push(Output::Revenue(row));
                                }
                            }
                            Output::Health(h) if h.level == HealthLevel::Charger => {
                                by_site
                                    .entry((h.window_start, &h.site_id))
                                    .or_default()
                                    .push(h);
                            }
                            _ => {}
                        }
                    }
                    added.extend(
                        by_site
                            .values()
                            .filter_map(|v| site_row(v))
                            .map(Output::Health),
                    );
                    let w = buffer.watermark.advance_through(t);
                    revenue.advance(w, &mut rows);
                    revenue.forget_before(30 * 86_400_000);
                    added.extend(rows.into_iter().map(Output::Revenue));
                    if w > Millis::MIN {
                        let boundary = w - w.rem_euclid(checkpoint_every);
                        if last_checkpoint.is_some_and(|c| boundary > c) {
                            added.push(Output::Checkpoint {
                                watermark: boundary,
                            });
                        }
                        if last_checkpoint.is_none_or(|c| boundary > c) {
                            last_checkpoint = Some(boundary);
                        }
                        metrics.watermark.set(w as f64 / 1000.0);
                        if let Some(m) = buffer.watermark.max_seen() {
                            metrics.watermark_lag.set((m - w) as f64 / 1000.0);
                        }
                    }
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
                        let w = buffer.watermark.finish();
                        let mut rows = Vec::new();
                        revenue.flush(&mut rows);
                        metrics.watermark.set(w as f64 / 1000.0);
                        metrics.watermark_lag.set(0.0);
                        let out: Vec<Output> = rows.into_iter().map(Output::Revenue).collect();
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

/// The sink: on worker 0, writes each completed time's records in deterministic order.
///
/// Its (empty) output stream passes a time only once every record of that time has been
/// written: a probe on it tells the sources what has been fully processed (the Kafka source
/// commits its offsets by it).
pub fn sink<'s>(
    records: StreamVec<'s, u64, Output>,
    mut sinks: Option<OutputSinks>,
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
                let f = frontier.frontier().first().copied();
                while let Some(entry) = stash.first_entry() {
                    if f.is_some_and(|f| *entry.key() >= f) {
                        break;
                    }
                    let mut batch = entry.remove();
                    batch.sort_by(sink_order);
                    if let (Some(s), None) = (sinks.as_mut(), &failed) {
                        if let Err(e) = s.write(batch) {
                            tracing::error!("output failed: {e}");
                            failed = Some(e.to_string());
                            // Known at once: sources must not commit what was not written.
                            if let Ok(mut slot) = summary.lock() {
                                *slot = Some(Err(e.to_string()));
                            }
                        }
                    }
                }
                match f {
                    Some(f) => {
                        if let Some(c) = cap.as_mut() {
                            c.downgrade(&f);
                        }
                    }
                    None => {
                        if let Some(mut s) = sinks.take() {
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
