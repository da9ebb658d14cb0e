//! Fleet-wide detectors: `power_delivery_degraded` and `underused`, the two faults that can
//! only be told from normal by comparing a charger with the rest of the fleet.
//!
//! Owns: the learned baselines (delivery per charger model, demand per hour of week, per
//! charger and per site) and the anomalies these two detectors open. Runs on worker 0 (the
//! aggregator) over [`FleetObservation`]s that the charger stage emits, so every charger is
//! judged against the same fleet whatever the number of workers. Observations are applied in
//! event-time order once the watermark is [`SETTLE`] past them, so the outcome does not
//! depend on how the input was batched. Pure: no I/O, no timely.
//!
//! **`power_delivery_degraded`.** Each session reports the best power among its first
//! `delivery_samples` charging samples, with the state-of-charge band it was seen in (a DC car
//! above 80 % tapers by design). Per (charger model, SoC band) the fleet keeps a decayed
//! histogram of those powers (log-spaced bins, watts), judged once it holds
//! `min_model_sessions`. A session is *weak* when its power is below both `weak_fraction` ×
//! the model's median and the model's `weak_quantile` quantile: a car that only takes 3.7 kW
//! on a 22 kW charger is normal for the fleet (it happens to a few percent of sessions), a
//! connector that gives every car a tenth of its rating is not. `degraded_sessions` weak
//! sessions in a row on a connector open the anomaly (stamped at the judgement of the last
//! one); a session that is not weak resolves it. A run's weak sessions teach the model only
//! once the run breaks.
//!
//! **`underused`.** The demand model is a Poisson rate per usable connector-hour for each of
//! the 168 hours of the local week, learned from the fleet's session starts and usable hours,
//! shrunk towards the same hour of the day pooled over all days (learned within a day), and
//! that towards `prior_sessions_per_day` shaped by `prior_hourly_profile` (each worth
//! [`PRIOR_HOURS`] connector-hours). A charger's level (how busy it is relative to that rate)
//! is a Gamma posterior: its own visits over its own expected sessions, with
//! [`PRIOR_SESSIONS`] pseudo-sessions at its class's level (rated power) × its site's effect.
//! While a charger has a usable connector (Available, online, operative, no session) and no
//! session starts, −ln of the predictive probability of no session so far grows; at
//! `underused_min_expected` nats it opens, provided its site peers started at least
//! `underused_min_peer_sessions` sessions meanwhile (peers idle too: the site is quiet, not
//! this charger) and the charger is not in scheduled maintenance. Its next session, or
//! losing every usable connector, resolves it. A start within [`RETRY_WITHIN`] of the last on
//! the same connector is a retry, not demand; a silent spell counts towards the charger's own
//! level only once it ends normally. All counts decay with `baseline_half_life`.
//! Warm-up: the priors and the class give thresholds from the first hour; after a day the
//! levels are mostly the chargers' own.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::anomalies::{AnomalyBook, Subject};
use super::Reference;
use crate::config::FleetDetectorConfig;
use crate::model::{AnomalyKind, FleetObservation, Millis, Observed, Output, Severity};
use crate::time::format_rfc3339;

/// Observations are applied once the watermark is this far past them: a charger's late
/// event can be stamped up to a second before the watermark it was processed under.
pub const SETTLE: Millis = 60_000;
/// Demand is integrated in steps of this much event time.
pub const STEP: Millis = 5 * 60_000;
/// Weight of the demand prior, connector-hours per hour of the week.
pub const PRIOR_HOURS: f64 = 50.0;
/// A session starting this soon after the last one on the same connector is the same visit
/// retried (a failing charger, a driver trying again): it is not counted as demand.
pub const RETRY_WITHIN: Millis = 30 * 60_000;
/// Pseudo-sessions that shrink a charger's level towards its site's, and a site's towards 1.
pub const PRIOR_SESSIONS: f64 = 3.0;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
const BINS: usize = 80;
/// Bins of a twentieth of a decade (12 %) from 100 W to 1 MW.
const BIN_DECADES: f64 = 0.05;
const LOWEST_W: f64 = 100.0;

/// A decayed histogram of the best session powers of one charger model (log-spaced bins:
/// a share of rated power would need every charger's rating, which the registry may lack).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryModel {
    bins: Vec<f64>,
    updated: Millis,
}

impl DeliveryModel {
    fn new(at: Millis) -> Self {
        DeliveryModel {
            bins: vec![0.0; BINS],
            updated: at,
        }
    }

    fn sessions(&self) -> f64 {
        self.bins.iter().sum()
    }

    fn decay(&mut self, cfg: &FleetDetectorConfig, at: Millis) {
        let f = decay_factor(cfg, at - self.updated);
        if f < 1.0 {
            self.bins.iter_mut().for_each(|b| *b *= f);
        }
        self.updated = self.updated.max(at);
    }

    /// The power at quantile `q`: the lower edge of the bin where the cumulative weight
    /// reaches it (conservative: judges fewer sessions weak).
    fn quantile(&self, q: f64) -> f64 {
        let total: f64 = self.bins.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        let mut acc = 0.0;
        for (i, b) in self.bins.iter().enumerate() {
            acc += b;
            if acc >= q * total {
                return edge(i);
            }
        }
        edge(BINS - 1)
    }

    fn add(&mut self, power_w: f64) {
        self.bins[bin(power_w)] += 1.0;
    }
}

fn bin(power_w: f64) -> usize {
    let decades = (power_w.max(LOWEST_W) / LOWEST_W).log10();
    ((decades / BIN_DECADES) as usize).min(BINS - 1)
}

/// The lower edge of bin `i`, W.
fn edge(i: usize) -> f64 {
    LOWEST_W * 10f64.powf(i as f64 * BIN_DECADES)
}

fn decay_factor(cfg: &FleetDetectorConfig, dt: Millis) -> f64 {
    let h = cfg.baseline_half_life.0;
    if dt <= 0 || h <= 0 {
        1.0
    } else {
        0.5f64.powf(dt as f64 / h as f64)
    }
}

/// Sessions and expected sessions (under the fleet's rate), decayed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counts {
    sessions: f64,
    expected: f64,
}

impl Counts {
    fn decay(&mut self, f: f64) {
        self.sessions *= f;
        self.expected *= f;
    }
}

/// One connector as the fleet detectors see it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Port {
    usable: bool,
    weak_run: u32,
    weak_since: Millis,
    /// When a session last started here: a start soon after it is a retry of the same visit.
    last_start: Option<Millis>,
    /// The shares of the current weak run: they teach the model only once the run breaks
    /// (a connector's own streak must not make itself look normal).
    held_back: Vec<f64>,
}

/// One charger's demand state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charger {
    site_id: Arc<str>,
    /// The site's time zone (reference data: bound again after a restore).
    #[serde(skip)]
    zone: Option<chrono_tz::Tz>,
    ports: BTreeMap<u32, Port>,
    /// Its demand class: the rated power, kW (a 150 kW DC charger is busier than a 7 kW
    /// wallbox wherever it stands).
    class: u32,
    counts: Counts,
    /// Since the last session start (or since the charger became usable): when, the
    /// sessions it was expected to have, and the site's session starts before it.
    gap_since: Millis,
    gap_expected: f64,
    /// −ln P(no session in the gap so far | the charger's demand), nats.
    gap_surprise: f64,
    site_starts_at_gap: u64,
    /// Expected sessions of the gap under the fleet rate: added to the charger's own counts
    /// only when the gap ends normally (a session without an `underused` before it), so a
    /// silent charger's silence does not teach it that silence is its normal.
    gap_exposure: f64,
    /// Usable time is accumulated up to here.
    accumulated_to: Millis,
    book: AnomalyBook,
}

impl Charger {
    fn usable_ports(&self) -> usize {
        self.ports.values().filter(|p| p.usable).count()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Site {
    counts: Counts,
    /// Session starts ever (not decayed): peers' starts during a charger's gap are the
    /// difference (its own would have ended the gap).
    starts: u64,
}

/// The fleet detectors' state (snapshotted with the aggregation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetDetectors {
    #[serde(skip)]
    cfg: FleetDetectorConfig,
    pending: BTreeMap<(Millis, Arc<str>, u32, u8, u64), FleetObservation>,
    arrivals: u64,
    /// Demand integrated up to here.
    now: Millis,
    /// Fleet rate per hour of the week: session starts and usable connector-hours …
    starts: Vec<f64>,
    hours: Vec<f64>,
    /// … and pooled per hour of the day, which a day of traffic is enough to learn.
    day_starts: Vec<f64>,
    day_hours: Vec<f64>,
    delivery: BTreeMap<(Arc<str>, u8), DeliveryModel>,
    /// Demand per class (sessions and expected sessions under the fleet rate).
    classes: BTreeMap<u32, Counts>,
    chargers: BTreeMap<Arc<str>, Charger>,
    sites: BTreeMap<Arc<str>, Site>,
}

fn rank(o: &Observed) -> u8 {
    match o {
        Observed::SessionStarted => 0,
        Observed::Delivery { .. } => 1,
        Observed::Usable(_) => 2,
    }
}

impl FleetDetectors {
    pub fn new(cfg: FleetDetectorConfig) -> Self {
        FleetDetectors {
            cfg,
            pending: BTreeMap::new(),
            arrivals: 0,
            now: Millis::MIN,
            starts: vec![0.0; 168],
            hours: vec![0.0; 168],
            day_starts: vec![0.0; 24],
            day_hours: vec![0.0; 24],
            delivery: BTreeMap::new(),
            classes: BTreeMap::new(),
            chargers: BTreeMap::new(),
            sites: BTreeMap::new(),
        }
    }

    /// Takes over a snapshot's state, keeping this configuration.
    pub fn restore(&mut self, snapshot: FleetDetectors) {
        let cfg = std::mem::take(&mut self.cfg);
        *self = snapshot;
        self.cfg = cfg;
    }

    pub fn observe(&mut self, o: FleetObservation) {
        self.arrivals += 1;
        let key = (
            o.at,
            o.charge_point_id.clone(),
            o.connector_id,
            rank(&o.what),
            self.arrivals,
        );
        self.pending.insert(key, o);
    }

    /// Applies the observations and timers up to `watermark − SETTLE`.
    pub fn advance(&mut self, watermark: Millis, reference: &Reference, out: &mut Vec<Output>) {
        if watermark == Millis::MIN {
            return;
        }
        self.run_until(watermark - SETTLE, reference, out);
    }

    /// End of input: everything pending, and timers up to the final watermark.
    pub fn finish(&mut self, watermark: Millis, reference: &Reference, out: &mut Vec<Output>) {
        let last = self.pending.keys().next_back().map(|k| k.0);
        let until = match (watermark, last) {
            (Millis::MIN, None) => return,
            (Millis::MIN, Some(l)) => l,
            (w, l) => l.map_or(w, |l| l.max(w)),
        };
        self.run_until(until, reference, out);
    }

    fn run_until(&mut self, until: Millis, reference: &Reference, out: &mut Vec<Output>) {
        loop {
            let next = match self.pending.first_key_value() {
                Some((k, _)) if k.0 <= until => k.0,
                _ => break,
            };
            self.integrate(next, reference, out);
            if let Some((_, o)) = self.pending.pop_first() {
                self.apply(o, reference, out);
            }
        }
        self.integrate(until, reference, out);
    }

    /// Integrates demand up to `to` in steps, checking `underused` at each step.
    fn integrate(&mut self, to: Millis, reference: &Reference, out: &mut Vec<Output>) {
        if self.now == Millis::MIN {
            self.now = to;
            return;
        }
        // Every charger is brought up to each step's end (in between, only a charger with an
        // observation is, up to it): the cost is per step, not per observation.
        loop {
            let step_end = self.now - self.now.rem_euclid(STEP) + STEP;
            if step_end > to {
                break;
            }
            let ids: Vec<Arc<str>> = self.chargers.keys().cloned().collect();
            for id in &ids {
                self.accumulate(id, step_end);
            }
            if step_end.rem_euclid(HOUR) == 0 {
                self.decay_hourly();
            }
            self.now = step_end;
            self.check_underused(step_end, reference, out);
        }
    }

    fn decay_hourly(&mut self) {
        let f = decay_factor(&self.cfg, HOUR);
        for v in [
            &mut self.starts,
            &mut self.hours,
            &mut self.day_starts,
            &mut self.day_hours,
        ] {
            v.iter_mut().for_each(|x| *x *= f);
        }
        for c in self.chargers.values_mut() {
            c.counts.decay(f);
        }
        for c in self.classes.values_mut() {
            c.decay(f);
        }
        for s in self.sites.values_mut() {
            s.counts.decay(f);
        }
    }

    /// The fleet's rate (sessions per usable connector-hour) in hour-of-week `b`.
    fn rate(&self, b: usize) -> f64 {
        let shape = &self.cfg.prior_hourly_profile;
        let mean = if shape.is_empty() {
            1.0
        } else {
            shape.iter().sum::<f64>() / shape.len() as f64
        };
        let weight = if shape.is_empty() || mean <= 0.0 {
            1.0
        } else {
            shape[(b % 24) % shape.len()] / mean
        };
        let prior = self.cfg.prior_sessions_per_day / 24.0 * weight;
        // Hour of the week, shrunk towards the hour of the day, shrunk towards the prior.
        let h = b % 24;
        let daily = (self.day_starts[h] + PRIOR_HOURS * prior) / (self.day_hours[h] + PRIOR_HOURS);
        (self.starts[b] + PRIOR_HOURS * daily) / (self.hours[b] + PRIOR_HOURS)
    }

    /// How busy its class of chargers is relative to the fleet rate.
    fn class_level(&self, class: u32) -> f64 {
        self.classes.get(&class).map_or(1.0, |k| {
            (k.sessions + PRIOR_SESSIONS) / (k.expected + PRIOR_SESSIONS)
        })
    }

    /// How busy a charger is relative to the fleet rate: its own sessions against what the
    /// rate predicts, shrunk towards its class's level × its site's effect (sessions at the
    /// site against what its chargers' classes predict).
    fn level(&self, c: &Charger) -> f64 {
        let (a, b) = self.demand_posterior(c);
        a / b
    }

    /// The charger's demand level as a Gamma(a, b) posterior: its own sessions `a − 3·prior`
    /// over its own expected sessions `b − 3`, with [`PRIOR_SESSIONS`] pseudo-sessions at its
    /// class's level × its site's effect.
    fn demand_posterior(&self, c: &Charger) -> (f64, f64) {
        let site = self.sites.get(&c.site_id).map_or(1.0, |s| {
            (s.counts.sessions + PRIOR_SESSIONS) / (s.counts.expected + PRIOR_SESSIONS)
        });
        let prior = self.class_level(c.class) * site;
        (
            c.counts.sessions + PRIOR_SESSIONS * prior,
            c.counts.expected + PRIOR_SESSIONS,
        )
    }

    /// Brings one charger's usable connector-time up to `to` (never across a step's end, so
    /// within one hour of the week).
    fn accumulate(&mut self, id: &Arc<str>, to: Millis) {
        {
            let from = {
                let Some(c) = self.chargers.get_mut(id) else {
                    return;
                };
                if c.accumulated_to >= to {
                    return;
                }
                std::mem::replace(&mut c.accumulated_to, to)
            };
            let Some(c) = self.chargers.get(id) else {
                return;
            };
            let hours = (to - from) as f64 / HOUR as f64;
            let n = c.usable_ports();
            if n == 0 {
                return;
            }
            let b = hour_of_week(from, c.zone.unwrap_or(chrono_tz::UTC));
            let rate = self.rate(b);
            let level = self.level(c);
            let (post_a, post_b) = self.demand_posterior(c);
            let class_level = self.class_level(c.class);
            let class = c.class;
            let expected = rate * n as f64 * hours;
            self.hours[b] += n as f64 * hours;
            self.day_hours[b % 24] += n as f64 * hours;
            if let Some(c) = self.chargers.get_mut(id) {
                c.gap_exposure += expected;
                c.gap_expected += level * expected;
                // The predictive probability of no session (negative binomial): a charger
                // whose demand is little known is not called silent as soon as a known one.
                c.gap_surprise = post_a * (1.0 + c.gap_exposure / post_b).ln();
                let site = self.sites.entry(c.site_id.clone()).or_default();
                site.counts.expected += class_level * expected;
                self.classes.entry(class).or_default().expected += expected;
            }
        }
    }

    fn check_underused(&mut self, at: Millis, reference: &Reference, out: &mut Vec<Output>) {
        let min_expected = self.cfg.underused_min_expected;
        let min_peers = self.cfg.underused_min_peer_sessions as u64;
        for (id, c) in self.chargers.iter_mut() {
            if c.gap_surprise < min_expected || c.book.is_open(AnomalyKind::Underused, None) {
                continue;
            }
            let site = self.sites.get(&c.site_id);
            let peers = site.map_or(0, |s| s.starts - c.site_starts_at_gap);
            if peers < min_peers {
                continue;
            }
            let maintenance = reference.maintenance_for(id, &c.site_id);
            let subject = Subject {
                charge_point_id: id,
                site_id: &c.site_id,
                maintenance: &maintenance,
            };
            if subject.in_maintenance(at) {
                continue;
            }
            c.book.open(
                &subject,
                AnomalyKind::Underused,
                None,
                at,
                Severity::Warning,
                json!({
                    "idle_since": format_rfc3339(c.gap_since),
                    "expected_sessions": (c.gap_expected * 10.0).round() / 10.0,
                    "surprise_nats": (c.gap_surprise * 10.0).round() / 10.0,
                    "site_peer_sessions": peers,
                }),
                out,
            );
        }
    }

    fn charger<'a>(
        chargers: &'a mut BTreeMap<Arc<str>, Charger>,
        sites: &BTreeMap<Arc<str>, Site>,
        reference: &Reference,
        o: &FleetObservation,
    ) -> &'a mut Charger {
        let c = chargers
            .entry(o.charge_point_id.clone())
            .or_insert_with(|| Charger {
                site_id: o.site_id.clone(),
                zone: None,
                ports: BTreeMap::new(),
                class: (reference.station(&o.charge_point_id).max_power_w / 1000.0).round() as u32,
                counts: Counts::default(),
                gap_since: o.at,
                gap_expected: 0.0,
                gap_surprise: 0.0,
                site_starts_at_gap: sites.get(&o.site_id).map_or(0, |s| s.starts),
                gap_exposure: 0.0,
                accumulated_to: o.at,
                book: AnomalyBook::default(),
            });
        if c.zone.is_none() {
            c.zone = Some(reference.station(&o.charge_point_id).time_zone);
        }
        c
    }

    fn apply(&mut self, o: FleetObservation, reference: &Reference, out: &mut Vec<Output>) {
        self.accumulate(&o.charge_point_id, o.at);
        let maintenance = reference.maintenance_for(&o.charge_point_id, &o.site_id);
        let subject = Subject {
            charge_point_id: &o.charge_point_id,
            site_id: &o.site_id,
            maintenance: &maintenance,
        };
        match &o.what {
            Observed::Usable(usable) => {
                let c = Self::charger(&mut self.chargers, &self.sites, reference, &o);
                let before = c.usable_ports();
                c.ports.entry(o.connector_id).or_default().usable = *usable;
                let after = c.usable_ports();
                if before == 0 && after > 0 {
                    // Usable again: a new gap starts (an out-of-order charger is not idle).
                    if !c.book.is_open(AnomalyKind::Underused, None) {
                        c.counts.expected += c.gap_exposure;
                    }
                    c.gap_exposure = 0.0;
                    c.gap_since = o.at;
                    c.gap_expected = 0.0;
                    c.gap_surprise = 0.0;
                    c.site_starts_at_gap = self.sites.get(&c.site_id).map_or(0, |s| s.starts);
                } else if after == 0 {
                    c.book.resolve(
                        &subject,
                        AnomalyKind::Underused,
                        None,
                        o.at,
                        json!({"cause": "not_usable"}),
                        out,
                    );
                }
            }
            Observed::SessionStarted => {
                let b = {
                    let c = Self::charger(&mut self.chargers, &self.sites, reference, &o);
                    let port = c.ports.entry(o.connector_id).or_default();
                    let visit = port.last_start.is_none_or(|t| o.at - t >= RETRY_WITHIN);
                    port.last_start = Some(o.at);
                    let demand = if visit { 1.0 } else { 0.0 };
                    c.counts.sessions += demand;
                    if !c.book.is_open(AnomalyKind::Underused, None) {
                        c.counts.expected += c.gap_exposure;
                    }
                    c.gap_exposure = 0.0;
                    let class = c.class;
                    c.gap_since = o.at;
                    c.gap_expected = 0.0;
                    c.gap_surprise = 0.0;
                    c.book.resolve(
                        &subject,
                        AnomalyKind::Underused,
                        None,
                        o.at,
                        json!({"cause": "session_started"}),
                        out,
                    );
                    (
                        hour_of_week(o.at, c.zone.unwrap_or(chrono_tz::UTC)),
                        class,
                        demand,
                    )
                };
                let (b, class, demand) = b;
                self.classes.entry(class).or_default().sessions += demand;
                self.starts[b] += demand;
                self.day_starts[b % 24] += demand;
                let site = self.sites.entry(o.site_id.clone()).or_default();
                site.counts.sessions += demand;
                site.starts += 1;
                let starts = site.starts;
                if let Some(c) = self.chargers.get_mut(&o.charge_point_id) {
                    c.site_starts_at_gap = starts;
                }
            }
            Observed::Delivery {
                model,
                ratio,
                soc_band,
                power_w,
            } => {
                let cfg = &self.cfg;
                let m = self
                    .delivery
                    .entry((model.clone(), *soc_band))
                    .or_insert_with(|| DeliveryModel::new(o.at));
                m.decay(cfg, o.at);
                let median = m.quantile(0.5);
                let low = m.quantile(cfg.weak_quantile);
                // Judged once the model has been seen enough (warm-up).
                let weak = m.sessions() >= cfg.min_model_sessions
                    && *power_w < cfg.weak_fraction * median
                    && *power_w < low;
                if !weak {
                    m.add(*power_w);
                }
                let degraded_after = cfg.degraded_sessions.max(1);
                let c = Self::charger(&mut self.chargers, &self.sites, reference, &o);
                let port = c.ports.entry(o.connector_id).or_default();
                let facts = json!({
                    "model": &**model,
                    "power_w": power_w.round(),
                    "share_of_rated": (ratio * 1000.0).round() / 1000.0,
                    "model_median_w": median.round(),
                    "model_low_w": low.round(),
                    "soc_band": soc_band,
                });
                if weak {
                    if port.weak_run == 0 {
                        port.weak_since = o.at;
                    }
                    port.weak_run += 1;
                    if port.weak_run < degraded_after {
                        port.held_back.push(*power_w);
                    } else {
                        port.held_back.clear();
                    }
                    if port.weak_run >= degraded_after {
                        let mut details = facts;
                        details["weak_sessions"] = json!(port.weak_run);
                        details["since"] = json!(format_rfc3339(port.weak_since));
                        c.book.open(
                            &subject,
                            AnomalyKind::PowerDeliveryDegraded,
                            Some(o.connector_id),
                            o.at,
                            Severity::Warning,
                            details,
                            out,
                        );
                    }
                } else {
                    port.weak_run = 0;
                    if let Some(m) = self.delivery.get_mut(&(model.clone(), *soc_band)) {
                        for r in port.held_back.drain(..) {
                            m.add(r);
                        }
                    }
                    c.book.resolve(
                        &subject,
                        AnomalyKind::PowerDeliveryDegraded,
                        Some(o.connector_id),
                        o.at,
                        facts,
                        out,
                    );
                }
            }
        }
    }

    /// Open anomalies by kind (to seed the gauge on restore).
    pub fn open_anomalies(&self) -> BTreeMap<AnomalyKind, i64> {
        let mut out = BTreeMap::new();
        for c in self.chargers.values() {
            for kind in c.book.open_kinds() {
                *out.entry(kind).or_default() += 1;
            }
        }
        out
    }
}

/// Hour of the local week, Monday 00:00–01:00 = 0.
pub fn hour_of_week(t: Millis, tz: chrono_tz::Tz) -> usize {
    let offset = match DateTime::from_timestamp_millis(t) {
        Some(dt) if tz != chrono_tz::UTC => {
            tz.offset_from_utc_datetime(&dt.naive_utc())
                .fix()
                .local_minus_utc() as i64
                * 1000
        }
        _ => 0,
    };
    let local = t + offset;
    // 1970-01-01 was a Thursday (day 3 of a Monday-based week).
    let day = (local.div_euclid(DAY) + 3).rem_euclid(7);
    let hour = local.rem_euclid(DAY) / HOUR;
    (day * 24 + hour) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DataflowConfig, Registry};
    use crate::model::AnomalyRecord;

    const MIN: Millis = 60_000;
    /// 2026-03-02T00:00:00Z, a Monday.
    const T0: Millis = 1_772_409_600_000;

    fn reference() -> Reference {
        let cfg: DataflowConfig = toml::from_str(
            "[source]\nkind = \"file\"\npath = \"x\"\n[registry]\ndefault_time_zone = \"UTC\"",
        )
        .expect("config");
        Reference::new(&cfg, &Registry::default(), vec![]).expect("reference")
    }

    fn obs(at: Millis, cp: &str, site: &str, connector: u32, what: Observed) -> FleetObservation {
        FleetObservation {
            at,
            charge_point_id: Arc::from(cp),
            site_id: Arc::from(site),
            connector_id: connector,
            what,
        }
    }

    fn delivery(ratio: f64) -> Observed {
        Observed::Delivery {
            model: Arc::from("ACME AC22"),
            ratio,
            soc_band: 0,
            power_w: ratio * 22_000.0,
        }
    }

    fn anomalies(out: &[Output]) -> Vec<&AnomalyRecord> {
        out.iter()
            .filter_map(|o| match o {
                Output::Anomaly(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn weak_cars_are_normal_and_a_connector_that_starves_every_car_is_degraded() {
        let r = reference();
        let mut f = FleetDetectors::new(FleetDetectorConfig::default());
        let mut out = Vec::new();
        // 300 sessions of the model: mostly 11 kW cars (0.5), some 22 kW (1.0), 5 % 3.7 kW.
        for i in 0..300 {
            let ratio = match i % 20 {
                0 => 0.168,
                1..=4 => 1.0,
                _ => 0.5,
            };
            f.observe(obs(
                T0 + i * MIN,
                &format!("CP-{}", i % 30),
                "S",
                1,
                delivery(ratio),
            ));
        }
        // Three 3.7 kW cars in a row on one connector: not degraded.
        for k in 0..3 {
            f.observe(obs(T0 + (400 + k) * MIN, "CP-A", "S", 1, delivery(0.168)));
        }
        // A connector that gives every car a tenth of its rating.
        for k in 0..3 {
            f.observe(obs(
                T0 + (500 + k * 60) * MIN,
                "CP-B",
                "S",
                2,
                delivery(0.1),
            ));
        }
        f.observe(obs(T0 + 800 * MIN, "CP-B", "S", 2, delivery(0.5)));
        f.finish(T0 + 900 * MIN, &r, &mut out);
        let got = anomalies(&out);
        let degraded: Vec<_> = got
            .iter()
            .filter(|a| a.kind == AnomalyKind::PowerDeliveryDegraded)
            .collect();
        assert_eq!(degraded.len(), 2, "{degraded:#?}");
        assert_eq!(&*degraded[0].charge_point_id, "CP-B");
        assert_eq!(degraded[0].connector_id, Some(2));
        assert_eq!(degraded[0].event_time, T0 + 620 * MIN);
        assert_eq!(degraded[0].details["weak_sessions"], 3);
        assert_eq!(degraded[1].event_time, T0 + 800 * MIN);
        assert_eq!(degraded[0].id, degraded[1].id);
    }

    /// A site of six chargers with a session on each about every two hours by day; one of
    /// them stops getting sessions at noon.
    fn busy_site(silent_from: Millis, days: i64) -> Vec<Output> {
        let r = reference();
        let mut f = FleetDetectors::new(FleetDetectorConfig::default());
        let mut out = Vec::new();
        for c in 0..6 {
            f.observe(obs(T0, &format!("CP-{c}"), "S", 1, Observed::Usable(true)));
        }
        let end = T0 + days * DAY;
        let mut t = T0;
        let mut k = 0;
        while t < end {
            let hour = t.rem_euclid(DAY) / HOUR;
            for c in 0..6i64 {
                let cp = format!("CP-{c}");
                let day_time = (7..21).contains(&hour);
                if day_time && (k + c) % 4 == 0 && !(c == 0 && t >= silent_from) {
                    f.observe(obs(t + c * MIN, &cp, "S", 1, Observed::SessionStarted));
                    f.observe(obs(t + c * MIN, &cp, "S", 1, Observed::Usable(false)));
                    f.observe(obs(
                        t + c * MIN + 40 * MIN,
                        &cp,
                        "S",
                        1,
                        Observed::Usable(true),
                    ));
                }
            }
            f.advance(t, &r, &mut out);
            t += 30 * MIN;
            k += 1;
        }
        f.finish(end, &r, &mut out);
        out
    }

    #[test]
    fn a_charger_without_sessions_while_its_peers_are_busy_is_underused() {
        let silent = T0 + DAY + 12 * HOUR;
        let out = busy_site(silent, 3);
        let got = anomalies(&out);
        let underused: Vec<_> = got
            .iter()
            .filter(|a| a.kind == AnomalyKind::Underused)
            .collect();
        assert!(!underused.is_empty(), "no underused anomaly");
        assert!(
            underused.iter().all(|a| &*a.charge_point_id == "CP-0"),
            "{underused:#?}"
        );
        let opened = underused[0].event_time;
        // Its last session started just before noon; about 7 sessions' worth later.
        // A small site teaches the fleet little: its level carries the prior's shape. Its
        // last session was just before noon; the night counts for little.
        assert!(
            opened > silent && opened < silent + 24 * HOUR,
            "{}",
            format_rfc3339(opened)
        );
        assert!(
            underused[0].details["expected_sessions"]
                .as_f64()
                .unwrap_or(0.0)
                >= 7.0
        );
    }

    #[test]
    fn a_busy_site_raises_nothing() {
        let out = busy_site(Millis::MAX, 3);
        assert!(anomalies(&out).is_empty(), "{:#?}", anomalies(&out));
    }

    #[test]
    fn hours_of_the_week_are_local() {
        assert_eq!(hour_of_week(T0, chrono_tz::UTC), 0);
        assert_eq!(hour_of_week(T0 + 25 * HOUR, chrono_tz::UTC), 25);
        // Berlin is UTC+1 in March before the switch: Monday 01:00 local.
        assert_eq!(hour_of_week(T0, chrono_tz::Europe::Berlin), 1);
        // Sunday 23:00 UTC is Monday 00:00 in Berlin.
        assert_eq!(hour_of_week(T0 - HOUR, chrono_tz::Europe::Berlin), 0);
        assert_eq!(hour_of_week(T0 - HOUR, chrono_tz::UTC), 167);
    }

    #[test]
    fn state_round_trips_through_a_snapshot() {
        let mut f = FleetDetectors::new(FleetDetectorConfig::default());
        f.observe(obs(T0, "CP", "S", 1, delivery(0.4)));
        let bytes = bincode::serialize(&f).expect("serialise");
        let back: FleetDetectors = bincode::deserialize(&bytes).expect("deserialise");
        let mut g = FleetDetectors::new(FleetDetectorConfig::default());
        g.restore(back);
        assert_eq!(g.pending.len(), 1);
    }
}
