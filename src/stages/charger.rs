//! Per-charger processing: one state per charge point, events applied in event-time order.
//!
//! Owns: the per-charger state and the order in which the stages see an event. Event time
//! moves forward per charger; timers (heartbeat silence, stuck sessions, health window ends,
//! maintenance notices) fire at their exact event time, before any later event is applied, so
//! the outcome does not depend on how events were batched.
//!
//! Two entry points: [`ChargerStages::on_arrival`] (in arrival order: CALLRESULTs, which carry
//! the backend's transaction id and heartbeat interval, are correlated with their CALL by
//! message id as soon as they arrive) and [`ChargerStages::process`] (in event-time order,
//! once the watermark has passed the event).

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::anomalies::{in_maintenance, AnomalyBook, SampleDetectors, Subject};
use super::health::{ChargerHealth, Conditions};
use super::link::{ClockWatch, ErrorWatch, Verdict};
use super::notifications::{back_in_order, out_of_order, trigger, RecentUsers};
use super::sessions::OpenSession;
use super::uptime::{
    exclusion_windows, Down, DownCause, ExclusionReason, ExclusionWindow, PortUptime, UptimeContext,
};
use super::{Reference, StageConfig, StationRef};
use crate::config::MaintenanceWindow;
use crate::model::{
    AnomalyKind, AuditFacts, ConnectorStatus, CostPair, ErrorCode, Event, EventKind,
    FleetObservation, MessageId, Millis, NotificationKind, NotificationTrigger, Observed, Output,
    SessionRecord, Severity, TransactionId,
};
use crate::ocpp::v16::TRANSACTION_CONNECTOR;

/// The uptime context of a charger: its fields, not the whole state, so that its ports can
/// be borrowed beside it.
macro_rules! uptime_context {
    ($st:expr, $cfg:expr) => {
        UptimeContext {
            charge_point_id: &$st.id,
            site_id: &$st.station.site_id,
            time_zone: $st.station.time_zone,
            windows: &$st.exclusion_windows,
            // Communication loss is confirmed this long after the last message and then
            // counted from it: a day stays open until then.
            grace: ($st.heartbeat_interval as f64 * $cfg.anomalies.missed_heartbeats) as Millis
                + 60_000,
        }
    };
}

/// A gap between a charger's messages longer than this is remembered (a charger in a
/// session sends a sample every minute or so): a PowerLoss stop reports the last one.
const NOTABLE_SILENCE: Millis = 90_000;

/// Stop reason of a session ended by a new transaction on the same connector.
pub const SUPERSEDED: &str = "Superseded";

/// The id tag of a session whose driver was never identified.
pub const UNKNOWN_DRIVER: &str = "unknown";
use crate::time::{format_rfc3339, window_start};

#[derive(Debug, Default, Serialize, Deserialize)]
struct ConnectorState {
    id: u32,
    status: Option<ConnectorStatus>,
    session: Option<OpenSession>,
    detectors: SampleDetectors,
    /// Since when an open, Charging session has delivered no power.
    no_power_since: Option<Millis>,
    last_available_notice: Option<Millis>,
    /// Anomalies opened by an error code (resolved by a NoError status).
    opened_by_code: Vec<AnomalyKind>,
    /// A fault reported outside StatusNotification (2.0.1 NotifyEvent) is active.
    fault_active: bool,
    /// Consecutive failed sessions, and when the first of them started.
    failed_run: u32,
    failed_since: Millis,
    /// Whether the fleet detectors were last told this connector is usable.
    usable_reported: Option<bool>,
    /// Uptime of the port (NEVI); created with the connector (0: none).
    uptime: Option<PortUptime>,
    /// What the last error code says about who caused a fault (grid, vehicle).
    fault_exclusion: Option<ExclusionReason>,
}

impl ConnectorState {
    /// Out of order: Faulted or Unavailable, or a reported fault not cleared.
    fn is_down(&self) -> bool {
        self.fault_active || self.status.is_some_and(|s| !s.is_operative())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ChargerState {
    id: Arc<str>,
    /// Reference data: not in snapshots, bound again from the configuration on restore.
    #[serde(skip, default = "StationRef::unbound")]
    station: StationRef,
    #[serde(skip)]
    maintenance: Vec<MaintenanceWindow>,
    /// Maintenance windows and declared exclusions, for uptime.
    #[serde(skip)]
    exclusion_windows: Vec<ExclusionWindow>,
    maintenance_notified: Vec<bool>,
    now: Millis,
    /// When the charger was first seen (for notices due before that).
    first_seen: Millis,
    last_seen: Millis,
    heartbeat_interval: Millis,
    pending_boot: Option<MessageId>,
    /// Transaction ids from CALLRESULTs whose StartTransaction has not been processed yet.
    tx_by_message: Vec<(MessageId, i64)>,
    /// (frame hash, seq) of the charger's recent frames, to drop repeats.
    recent_frames: std::collections::VecDeque<(u64, u64)>,
    charger_status: ConnectorStatus,
    /// A fault of the whole charger reported by NotifyEvent is active.
    charger_fault_active: bool,
    connectors: Vec<ConnectorState>,
    book: AnomalyBook,
    health: ChargerHealth,
    recent: RecentUsers,
    /// Vendor and model from the BootNotification (the fleet learns delivery per model).
    model: Option<Arc<str>>,
    clock: ClockWatch,
    errors: ErrorWatch,
    /// The last boot after a silence: (last message before it, boot time).
    rebooted: Option<(Millis, Millis)>,
    /// The last silence of more than [`NOTABLE_SILENCE`]: (last message before, first after).
    last_silence: Option<(Millis, Millis)>,
}

/// What arrival-order handling decided about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Fully handled on arrival (a CALLRESULT).
    Consumed,
    /// A verbatim repeat of a frame already seen from this charger: dropped, counted.
    Duplicate,
    /// To be processed in event-time order.
    Process,
}

/// How many recent frames per charger are remembered to recognise repeats.
const RECENT_FRAMES: usize = 64;

/// Counters the dataflow turns into metrics.
#[derive(Debug, Default, Clone)]
pub struct StageStats {
    /// StopTransactions for a transaction evflow never saw start.
    pub orphan_stops: u64,
}

/// The chargers of a commit snapshot, not yet handed to their workers.
pub struct StagesSnapshot {
    watermark: Millis,
    chargers: Vec<ChargerState>,
}

pub struct ChargerStages {
    cfg: Arc<StageConfig>,
    reference: Arc<Reference>,
    chargers: FxHashMap<Arc<str>, ChargerState>,
    pub stats: StageStats,
    /// The last watermark seen (`Millis::MIN` before the first).
    watermark: Millis,
}

fn connector(list: &mut Vec<ConnectorState>, id: u32) -> &mut ConnectorState {
    let i = match list.binary_search_by_key(&id, |c| c.id) {
        Ok(i) => i,
        Err(i) => {
            list.insert(
                i,
                ConnectorState {
                    id,
                    ..Default::default()
                },
            );
            i
        }
    };
    &mut list[i]
}

/// The next timer of a charger.
enum Timer {
    HealthWindow(Millis),
    CommunicationLost(Millis),
    Stuck(Millis, u32),
    MaintenanceNotice(Millis, usize),
}

impl Timer {
    fn at(&self) -> Millis {
        match *self {
            Timer::HealthWindow(t)
            | Timer::CommunicationLost(t)
            | Timer::Stuck(t, _)
            | Timer::MaintenanceNotice(t, _) => t,
        }
    }
}

impl ChargerStages {
    pub fn new(cfg: Arc<StageConfig>, reference: Arc<Reference>) -> Self {
        ChargerStages {
            cfg,
            reference,
            chargers: FxHashMap::default(),
            stats: StageStats::default(),
            watermark: Millis::MIN,
        }
    }

    pub fn chargers(&self) -> usize {
        self.chargers.len()
    }

    /// Writes the dynamic state of every charger (not the reference data, which comes from
    /// the configuration) for a commit snapshot (`dataflow::commit`).
    pub fn save(&self, w: &mut impl std::io::Write) -> bincode::Result<()> {
        let mut chargers: Vec<&ChargerState> = self.chargers.values().collect();
        chargers.sort_by(|a, b| a.id.cmp(&b.id));
        bincode::serialize_into(w, &(self.watermark, chargers))
    }

    /// Reads what [`save`](Self::save) wrote.
    pub fn read_snapshot(r: &mut impl std::io::Read) -> bincode::Result<StagesSnapshot> {
        let (watermark, chargers) = bincode::deserialize_from(r)?;
        Ok(StagesSnapshot {
            watermark,
            chargers,
        })
    }

    /// Takes over the chargers of a snapshot that `keep` selects (this worker's share), with
    /// their reference data bound from the current configuration.
    pub fn restore(&mut self, snapshot: &mut StagesSnapshot, keep: impl Fn(&str) -> bool) {
        self.watermark = self.watermark.max(snapshot.watermark);
        let (mine, rest): (Vec<ChargerState>, Vec<ChargerState>) =
            std::mem::take(&mut snapshot.chargers)
                .into_iter()
                .partition(|c| keep(&c.id));
        snapshot.chargers = rest;
        for mut st in mine {
            st.station = self.reference.station(&st.id);
            st.maintenance = self.reference.maintenance_for(&st.id, &st.station.site_id);
            st.exclusion_windows = exclusion_windows(
                &st.maintenance,
                &self.reference.exclusions_for(&st.id, &st.station.site_id),
            );
            st.maintenance_notified.resize(st.maintenance.len(), false);
            self.chargers.insert(st.id.clone(), st);
        }
    }

    /// Open anomalies by kind over this worker's chargers (to seed the gauge on restore).
    pub fn open_anomalies(&self) -> std::collections::BTreeMap<AnomalyKind, i64> {
        let mut out = std::collections::BTreeMap::new();
        for st in self.chargers.values() {
            for kind in st.book.open_kinds() {
                *out.entry(kind).or_default() += 1;
            }
        }
        out
    }

    /// The state of a charger, created on its first event. A new charger's clock starts at
    /// the watermark (or, before the first watermark, the bound before its first event), so
    /// its first windows line up with everyone else's and an outlying first timestamp cannot
    /// make it replay years of empty windows.
    fn state<'a>(
        chargers: &'a mut FxHashMap<Arc<str>, ChargerState>,
        cfg: &StageConfig,
        reference: &Reference,
        id: &Arc<str>,
        first_seen: Millis,
        watermark: Millis,
    ) -> &'a mut ChargerState {
        chargers.entry(id.clone()).or_insert_with(|| {
            let start = if watermark == Millis::MIN {
                first_seen.saturating_sub(cfg.out_of_orderness)
            } else {
                watermark
            };
            let station = reference.station(id);
            let maintenance = reference.maintenance_for(id, &station.site_id);
            let exclusion_windows = exclusion_windows(
                &maintenance,
                &reference.exclusions_for(id, &station.site_id),
            );
            ChargerState {
                exclusion_windows,
                id: id.clone(),
                maintenance_notified: vec![false; maintenance.len()],
                maintenance,
                station,
                now: start,
                first_seen: start.max(first_seen),
                last_seen: start.max(first_seen),
                heartbeat_interval: cfg.anomalies.heartbeat_interval.0,
                pending_boot: None,
                tx_by_message: Vec::new(),
                recent_frames: std::collections::VecDeque::new(),
                charger_status: ConnectorStatus::Available,
                charger_fault_active: false,
                connectors: Vec::new(),
                book: AnomalyBook::default(),
                health: ChargerHealth::new(window_start(start, cfg.health_window)),
                recent: RecentUsers::default(),
                model: None,
                clock: ClockWatch::default(),
                errors: ErrorWatch::default(),
                rebooted: None,
                last_silence: None,
            }
        })
    }

    /// Handles what must be handled in arrival order: repeats of a frame already seen are
    /// dropped, and CALLRESULTs are correlated with their CALL here.
    pub fn on_arrival(&mut self, ev: &Event) -> Arrival {
        let st = Self::state(
            &mut self.chargers,
            &self.cfg,
            &self.reference,
            &ev.charge_point_id,
            ev.event_time,
            self.watermark,
        );
        // Events of one frame share its seq; the same frame at another seq is a repeat.
        match st.recent_frames.iter().find(|(h, _)| *h == ev.frame_hash) {
            Some((_, seq)) if *seq != ev.seq => return Arrival::Duplicate,
            Some(_) => {}
            None => {
                if st.recent_frames.len() >= RECENT_FRAMES {
                    st.recent_frames.pop_front();
                }
                st.recent_frames.push_back((ev.frame_hash, ev.seq));
            }
        }
        // The backend answers a BootNotification at once, usually before the Boot itself
        // leaves the reorder buffer: remember its message id on arrival.
        if let EventKind::Boot { message_id, .. } = &ev.kind {
            st.pending_boot = Some(*message_id);
        }
        let EventKind::CallResult {
            message_id,
            transaction_id,
            heartbeat_interval_s,
        } = &ev.kind
        else {
            return Arrival::Process;
        };
        if let Some(tx) = transaction_id {
            let pending = st
                .connectors
                .iter_mut()
                .filter_map(|c| c.session.as_mut())
                .find(|s| s.message_id == *message_id && s.transaction_id.is_none());
            match pending {
                Some(s) => s.transaction_id = Some(TransactionId::Int(*tx)),
                None => {
                    // Bounded: a charger has few StartTransactions in flight.
                    if st.tx_by_message.len() >= 16 {
                        st.tx_by_message.remove(0);
                    }
                    st.tx_by_message.push((*message_id, *tx));
                }
            }
        }
        if let (Some(secs), Some(boot)) = (heartbeat_interval_s, st.pending_boot) {
            if boot == *message_id && *secs > 0 {
                st.heartbeat_interval = *secs as Millis * 1000;
                st.pending_boot = None;
            }
        }
        Arrival::Consumed
    }

    /// Fires every charger's timers up to `now` (the watermark).
    pub fn advance_all(&mut self, now: Millis, out: &mut Vec<Output>) {
        if now == Millis::MIN {
            return; // no watermark yet
        }
        self.watermark = self.watermark.max(now);
        let cfg = &*self.cfg;
        // Any order: the sinks put records in a deterministic order.
        for st in self.chargers.values_mut() {
            advance(st, cfg, now, out);
        }
    }

    /// Applies one event (in event-time order).
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Output>) {
        let cfg = &*self.cfg;
        let reference = &*self.reference;
        let st = Self::state(
            &mut self.chargers,
            cfg,
            reference,
            &ev.charge_point_id,
            ev.event_time,
            self.watermark,
        );
        advance(st, cfg, ev.event_time, out);
        // A late event is applied as of the charger's current time.
        let t = ev.event_time.max(st.now);
        link_checks(st, cfg, ev, t, out);
        let subject = Subject {
            charge_point_id: &st.id,
            site_id: &st.station.site_id,
            maintenance: &st.maintenance,
        };

        // Only these can change whether a port is usable or down: the per-port views below
        // need not be recomputed for every sample and heartbeat.
        let reconnected = st.book.is_open(AnomalyKind::CommunicationLost, None);
        let ports_may_change = reconnected
            || matches!(
                ev.kind,
                EventKind::Status { .. }
                    | EventKind::Fault { .. }
                    | EventKind::TransactionStart { .. }
                    | EventKind::TransactionStop { .. }
            );
        if reconnected {
            st.book.resolve(
                &subject,
                AnomalyKind::CommunicationLost,
                None,
                t,
                json!({}),
                out,
            );
            // Back in order, unless the charger itself (connector 0) is still down.
            if !st.connectors.iter().any(|c| c.id == 0 && c.is_down()) {
                back_in_order(&st.id, &st.station.site_id, None, t, out);
            }
        }
        let previously_seen = st.last_seen;
        if t - previously_seen > NOTABLE_SILENCE && !matches!(ev.kind, EventKind::CallResult { .. })
        {
            st.last_silence = Some((previously_seen, t));
        }
        // Everything but the backend's CALLRESULTs shows the charger is alive (a CALLERROR in
        // a charger's traffic is its answer to a backend CALL).
        if !matches!(ev.kind, EventKind::CallResult { .. }) {
            st.last_seen = st.last_seen.max(t);
            st.health.message_seen(t, st.heartbeat_interval);
        }

        match &ev.kind {
            EventKind::Boot { vendor, model, .. } => {
                let name = format!("{vendor} {model}");
                if st.model.as_deref() != Some(name.as_str()) {
                    st.model = Some(Arc::from(name));
                }
                st.rebooted = Some((previously_seen, t));
            }
            EventKind::Heartbeat | EventKind::Authorize { .. } | EventKind::CallResult { .. } => {}
            EventKind::CallError { .. } | EventKind::Rejected { .. } => st.health.charger_error(),
            EventKind::Status {
                connector_id,
                status,
                error_code,
                vendor_detail,
            } => {
                let c = *connector_id;
                let conn_key = (c > 0).then_some(c);
                if *error_code != ErrorCode::NoError || *status == ConnectorStatus::Faulted {
                    st.health.error_reported(c);
                }
                // A whole charger going down concerns every session on it.
                let charger_drivers = if c == 0 {
                    session_drivers(&st.connectors)
                } else {
                    Vec::new()
                };
                let cs = connector(&mut st.connectors, c);
                // Who caused a fault, for uptime: the grid, or the vehicle (23 CFR 680.116).
                cs.fault_exclusion = match error_code.as_str() {
                    "UnderVoltage" | "OverVoltage" => Some(ExclusionReason::GridPower),
                    "EVCommunicationError" => Some(ExclusionReason::Vehicle),
                    _ => None,
                };
                // Charging or not, for the charging periods. `Occupied` (2.0.1: plugged in)
                // and the rest say nothing about it.
                let charging = match status {
                    ConnectorStatus::Charging => Some(true),
                    ConnectorStatus::SuspendedEV
                    | ConnectorStatus::SuspendedEVSE
                    | ConnectorStatus::Finishing => Some(false),
                    _ => None,
                };
                if let (Some(session), Some(charging)) = (cs.session.as_mut(), charging) {
                    session.on_status(t, charging);
                }
                // Error codes that name a supply or temperature problem open those anomalies;
                // a later NoError status resolves what they opened.
                let by_code = match error_code.as_str() {
                    "UnderVoltage" | "OverVoltage" => {
                        Some((AnomalyKind::PowerSupply, Severity::Critical))
                    }
                    "HighTemperature" => Some((AnomalyKind::OverTemperature, Severity::Warning)),
                    _ => None,
                };
                if let Some((kind, severity)) = by_code {
                    let details = json!({"error_code": error_code.as_str()});
                    if st
                        .book
                        .open(&subject, kind, conn_key, t, severity, details, out)
                        .is_some()
                    {
                        cs.opened_by_code.push(kind);
                    }
                } else if *error_code == ErrorCode::NoError && *status != ConnectorStatus::Faulted {
                    // A Faulted status re-sent without its code (real firmware does) is not a
                    // clearance.
                    for kind in cs.opened_by_code.drain(..) {
                        st.book.resolve(&subject, kind, conn_key, t, json!({}), out);
                    }
                }
                let faulted = *status == ConnectorStatus::Faulted;
                // A fault the charger reported by NotifyEvent stays open until it clears it.
                if faulted || !cs.fault_active {
                    let details = if faulted {
                        json!({"error_code": error_code.as_str(), "vendor_detail": vendor_detail.as_deref()})
                    } else {
                        json!({"status": status.as_str()})
                    };
                    set_faulted(&mut st.book, &subject, conn_key, t, faulted, details, out);
                }
                let was_down = cs.is_down();
                let prev = cs.status.replace(*status);
                if cs.is_down() && !was_down && !in_maintenance(&st.maintenance, t) {
                    let facts = json!({"status": status.as_str(), "error_code": error_code.as_str(), "vendor_detail": vendor_detail.as_deref()});
                    let mut drivers = charger_drivers;
                    drivers.extend(cs.session.as_ref().and_then(|s| s.id_tag.clone()));
                    out_of_order(
                        &st.id,
                        &st.station.site_id,
                        conn_key,
                        t,
                        facts,
                        drivers,
                        out,
                    );
                } else if was_down && !cs.is_down() {
                    back_in_order(&st.id, &st.station.site_id, conn_key, t, out);
                }
                if c == 0 {
                    st.charger_status = *status;
                } else {
                    st.health.connector(c).status = *status;
                    if *status == ConnectorStatus::Available
                        && prev.is_some_and(|p| p != ConnectorStatus::Available)
                        && cs.last_available_notice.is_none_or(|n| {
                            t - n >= self.cfg.notifications.available_min_interval.0
                        })
                    {
                        cs.last_available_notice = Some(t);
                        let trigger = trigger(
                            NotificationKind::StationAvailable,
                            &st.id,
                            &st.station.site_id,
                            Some(c),
                            t,
                            json!({"status": "Available"}),
                        );
                        out.push(Output::Trigger(Box::new(trigger)));
                    }
                }
                if *status != ConnectorStatus::Charging {
                    cs.no_power_since = None;
                    st.book.resolve(
                        &subject,
                        AnomalyKind::StuckSession,
                        conn_key,
                        t,
                        json!({"status": status.as_str()}),
                        out,
                    );
                }
            }
            EventKind::Meter {
                connector_id,
                transaction_id,
                sample,
            } => {
                let c = if *connector_id == TRANSACTION_CONNECTOR {
                    // transactionData names no connector: the transaction's, if open.
                    match st.connectors.iter().find(|c| {
                        c.session
                            .as_ref()
                            .is_some_and(|s| s.transaction_id == *transaction_id)
                    }) {
                        Some(cs) => cs.id,
                        None => return,
                    }
                } else {
                    *connector_id
                };
                st.health.connector(c);
                let max_power = st.station.max_power_w;
                // Borrowed, not cloned: this runs for every meter sample.
                let power_bounds_w = &st.station.tariff_for(c).power_bounds_w;
                let cs = connector(&mut st.connectors, c);
                // Samples are judged at their own time: a backlog delivered late (a charger
                // that was offline, transactionData) keeps its spacing.
                let at = ev.event_time;
                let check = cs.detectors.observe(
                    &cfg.anomalies,
                    &mut st.book,
                    &subject,
                    c,
                    at,
                    ev.receive_time,
                    sample,
                    max_power,
                    st.station.nominal_voltage_v,
                    out,
                );
                let session = cs.session.as_mut().filter(|s| {
                    transaction_id.is_none()
                        || s.transaction_id.is_none()
                        || s.transaction_id == *transaction_id
                });
                if let Some(s) = session {
                    if let Some(wh) = sample.energy_wh {
                        s.observe_register(at, wh, max_power);
                    }
                    if let Some(p) = sample.power_w {
                        s.peak_power_w = s.peak_power_w.max(p);
                        s.on_power(at, p, power_bounds_w);
                        let fleet = &cfg.anomalies.fleet;
                        if p >= cfg.anomalies.idle_power_w
                            && max_power > 0.0
                            && s.delivery_samples < fleet.delivery_samples
                        {
                            s.delivery_samples += 1;
                            let ratio = p / max_power;
                            if s.delivery_best.is_none_or(|(r, _, _)| ratio > r) {
                                s.delivery_best = Some((ratio, soc_band(sample.soc_pct), p));
                            }
                            if s.delivery_samples == fleet.delivery_samples {
                                if let Some((ratio, soc_band, power_w)) = s.delivery_best {
                                    let model = st.model.clone().unwrap_or_else(|| {
                                        Arc::from(format!("rated {max_power:.0} W"))
                                    });
                                    out.push(Output::Observation(Box::new(FleetObservation {
                                        at: t,
                                        charge_point_id: st.id.clone(),
                                        site_id: st.station.site_id.clone(),
                                        connector_id: c,
                                        what: Observed::Delivery {
                                            model,
                                            ratio,
                                            soc_band,
                                            power_w,
                                        },
                                    })));
                                }
                            }
                        }
                    }
                    if let Some(soc) = sample.soc_pct {
                        s.observe_soc(t, soc);
                    }
                    // charging_almost_complete, once per session
                    if !s.almost_complete_sent {
                        let n = &cfg.notifications;
                        let eta = s.eta_minutes();
                        let by_soc = sample
                            .soc_pct
                            .is_some_and(|soc| soc as f64 >= n.almost_complete_soc_pct)
                            || eta.is_some_and(|m| m * 60_000.0 <= n.almost_complete_eta.0 as f64);
                        let by_taper = sample.soc_pct.is_none()
                            && s.peak_power_w >= 1000.0
                            && sample.power_w.is_some_and(|p| {
                                p >= cfg.anomalies.idle_power_w && p < 0.4 * s.peak_power_w
                            });
                        if by_soc || by_taper {
                            s.almost_complete_sent = true;
                            let facts = json!({
                                "soc_pct": sample.soc_pct,
                                "eta_minutes": eta.map(|m| m.round() as i64),
                                "power_w": sample.power_w,
                                "energy_wh": s.sample_energy_wh.round() as i64,
                                "basis": if by_soc { "soc" } else { "power_taper" },
                            });
                            // A session nobody identified has nobody to tell.
                            let drivers: Vec<Arc<str>> = s.id_tag.iter().cloned().collect();
                            let trigger = NotificationTrigger {
                                drivers,
                                ..trigger(
                                    NotificationKind::ChargingAlmostComplete,
                                    &st.id,
                                    &st.station.site_id,
                                    Some(c),
                                    t,
                                    facts,
                                )
                            };
                            out.push(Output::Trigger(Box::new(trigger)));
                        }
                    }
                    // stuck_session bookkeeping: the timer fires in `advance`
                    let measures_delivery = sample.power_w.is_some() || sample.energy_wh.is_some();
                    if measures_delivery && cs.status == Some(ConnectorStatus::Charging) {
                        let delivering = match sample.power_w {
                            Some(p) => p >= cfg.anomalies.idle_power_w,
                            None => {
                                matches!(check, Some(super::anomalies::RegisterCheck::Ok(d)) if d >= 1.0)
                            }
                        };
                        if delivering {
                            cs.no_power_since = None;
                            st.book.resolve(
                                &subject,
                                AnomalyKind::StuckSession,
                                Some(c),
                                t,
                                json!({"power_w": sample.power_w}),
                                out,
                            );
                        } else if cs.no_power_since.is_none() {
                            cs.no_power_since = Some(t);
                        }
                    }
                }
            }
            EventKind::TransactionStart {
                message_id,
                connector_id,
                transaction_id,
                id_tag,
                meter_start_wh,
            } => {
                let c = *connector_id;
                st.health.connector(c);
                if let Some(tag) = id_tag {
                    st.recent.record(t, tag);
                }
                // 1.6: the id came in a CALLRESULT that may have arrived already.
                let tx = transaction_id.clone().or_else(|| {
                    st.tx_by_message
                        .iter()
                        .position(|(m, _)| m == message_id)
                        .map(|i| TransactionId::Int(st.tx_by_message.remove(i).1))
                });
                let cs = connector(&mut st.connectors, c);
                if cs
                    .session
                    .as_ref()
                    .is_some_and(|s| s.transaction_id.is_some() && s.transaction_id == tx)
                {
                    // The same transaction announced again (a retried or re-sent start).
                    return;
                }
                out.push(Output::Observation(Box::new(FleetObservation {
                    at: t,
                    charge_point_id: st.id.clone(),
                    site_id: st.station.site_id.clone(),
                    connector_id: c,
                    what: Observed::SessionStarted,
                })));
                let mut s =
                    OpenSession::new(*message_id, id_tag.clone(), ev.event_time, *meter_start_wh);
                s.transaction_id = tx;
                if let Some(old) = cs.session.replace(s) {
                    // A new transaction on a busy connector ends the old one where it stood.
                    let stop = old
                        .meter_start_wh
                        .map(|m| m + old.sample_energy_wh.round() as i64);
                    close_session(
                        st,
                        cfg,
                        reference,
                        c,
                        old,
                        ev.event_time,
                        stop,
                        &Arc::from(SUPERSEDED),
                        ev,
                        out,
                    );
                }
            }
            EventKind::TransactionAuthorized {
                transaction_id,
                id_tag,
            } => {
                st.recent.record(t, id_tag);
                if let Some(s) = st
                    .connectors
                    .iter_mut()
                    .filter_map(|c| c.session.as_mut())
                    .find(|s| s.transaction_id.as_ref() == Some(transaction_id))
                {
                    s.id_tag = Some(id_tag.clone());
                }
            }
            EventKind::Fault {
                connector_id,
                code,
                active,
            } => {
                let c = *connector_id;
                let conn_key = (c > 0).then_some(c);
                if *active {
                    st.health.error_reported(c);
                }
                let charger_drivers = if c == 0 && *active {
                    session_drivers(&st.connectors)
                } else {
                    Vec::new()
                };
                let cs = connector(&mut st.connectors, c);
                let was_down = cs.is_down();
                cs.fault_active = *active;
                if *active {
                    let details = json!({"error_code": code.as_ref(), "source": "NotifyEvent"});
                    set_faulted(&mut st.book, &subject, conn_key, t, true, details, out);
                    if !was_down && !in_maintenance(&st.maintenance, t) {
                        let mut drivers = charger_drivers;
                        drivers.extend(cs.session.as_ref().and_then(|s| s.id_tag.clone()));
                        let facts = json!({"error_code": code.as_ref(), "source": "NotifyEvent"});
                        out_of_order(
                            &st.id,
                            &st.station.site_id,
                            conn_key,
                            t,
                            facts,
                            drivers,
                            out,
                        );
                    }
                } else if cs.status != Some(ConnectorStatus::Faulted) {
                    // Cleared, and the status does not say Faulted either.
                    set_faulted(
                        &mut st.book,
                        &subject,
                        conn_key,
                        t,
                        false,
                        json!({"cleared": code.as_ref()}),
                        out,
                    );
                }
                if was_down && !cs.is_down() {
                    back_in_order(&st.id, &st.station.site_id, conn_key, t, out);
                }
                if c == 0 {
                    st.charger_fault_active = *active;
                } else {
                    st.health.connector(c).fault_active = *active;
                }
            }
            EventKind::TransactionStop {
                transaction_id,
                meter_stop_wh,
                reason,
                ..
            } => {
                let found = st
                    .connectors
                    .iter()
                    .position(|c| {
                        c.session
                            .as_ref()
                            .is_some_and(|s| s.transaction_id.as_ref() == Some(transaction_id))
                    })
                    .or_else(|| {
                        // The CALLRESULT with the id never arrived: a lone unidentified session.
                        let open: Vec<usize> = st
                            .connectors
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| {
                                c.session
                                    .as_ref()
                                    .is_some_and(|s| s.transaction_id.is_none())
                            })
                            .map(|(i, _)| i)
                            .collect();
                        (open.len() == 1).then(|| open[0])
                    });
                match found {
                    Some(i) => {
                        let c = st.connectors[i].id;
                        if let Some(mut s) = st.connectors[i].session.take() {
                            s.transaction_id
                                .get_or_insert_with(|| transaction_id.clone());
                            st.connectors[i].no_power_since = None;
                            // Records keep the event's own time, even when it is late.
                            let end = ev.event_time.max(s.start_time);
                            close_session(
                                st,
                                cfg,
                                reference,
                                c,
                                s,
                                end,
                                *meter_stop_wh,
                                reason,
                                ev,
                                out,
                            );
                        }
                    }
                    None => self.stats.orphan_stops += 1,
                }
            }
        }
        if ports_may_change {
            report_usable(st, t, out);
            update_uptime(st, cfg, t, out);
        }
        st.now = st.now.max(t);
    }

    /// End of input: every charger's uptime periods that ended by `now` are written.
    pub fn finish(&mut self, now: Millis, out: &mut Vec<Output>) {
        if now == Millis::MIN {
            return;
        }
        for st in self.chargers.values_mut() {
            let ctx = uptime_context!(st, self.cfg);
            for cs in st.connectors.iter_mut() {
                if let Some(u) = cs.uptime.as_mut() {
                    u.finish(now, &ctx, out);
                }
            }
        }
    }
}

/// The drivers of the sessions in progress on a charger, sorted.
fn session_drivers(connectors: &[ConnectorState]) -> Vec<Arc<str>> {
    let mut v: Vec<Arc<str>> = connectors
        .iter()
        .filter_map(|c| c.session.as_ref().and_then(|s| s.id_tag.clone()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Opens (`faulted`) or resolves `connector_faulted` on a connector (None: the charger).
fn set_faulted(
    book: &mut AnomalyBook,
    subject: &Subject,
    connector: Option<u32>,
    at: Millis,
    faulted: bool,
    details: serde_json::Value,
    out: &mut Vec<Output>,
) {
    if faulted {
        book.open(
            subject,
            AnomalyKind::ConnectorFaulted,
            connector,
            at,
            Severity::Critical,
            details,
            out,
        );
    } else {
        book.resolve(
            subject,
            AnomalyKind::ConnectorFaulted,
            connector,
            at,
            details,
            out,
        );
    }
}

/// Ends a session: energy, price, the session record, health and anomaly bookkeeping.
#[allow(clippy::too_many_arguments)]
fn close_session(
    st: &mut ChargerState,
    cfg: &StageConfig,
    reference: &Reference,
    c: u32,
    mut s: OpenSession,
    end: Millis,
    meter_stop_wh: Option<i64>,
    reason: &Arc<str>,
    ev: &Event,
    out: &mut Vec<Output>,
) {
    connector(&mut st.connectors, c).no_power_since = None;
    let readings_before_stop = s.register_readings;
    let (energy_wh, energy_source) = s.final_energy(end, meter_stop_wh, st.station.max_power_w);
    // The plausible increments, up to the stop register (what final_energy folded in last).
    let samples_wh = s.sample_energy_wh.round() as i64;
    let token = reference.token(s.id_tag.as_deref().unwrap_or(""));
    // The plan's own tariff, else the connector's, else the station's (site's, default).
    let tariff = token
        .plan
        .as_ref()
        .and_then(|p| p.tariff.clone())
        .unwrap_or_else(|| st.station.tariff_for(c).clone());
    let periods = s.finish_periods(end, energy_wh);
    // A transaction replaced before it delivered anything (a start the charger retried with
    // a new transaction id) is recorded but not billed, not even its session fee.
    let billed = !(energy_wh == 0 && reason.as_ref() == SUPERSEDED);
    let priced = if billed {
        price(&tariff, &st.station, s.start_time, end, &periods)
    } else {
        None
    };
    let costs = priced.as_ref().map(|p| p.costs).unwrap_or_default();
    let pair = |a: crate::tariff::ocpi::Amount| CostPair {
        excl_vat: a.excl_vat,
        incl_vat: a.incl_vat,
    };
    st.health.connector(c).session_ended(energy_wh, reason);
    let subject = Subject {
        charge_point_id: &st.id,
        site_id: &st.station.site_id,
        maintenance: &st.maintenance,
    };
    st.book.resolve(
        &subject,
        AnomalyKind::StuckSession,
        Some(c),
        end,
        json!({"stopped": reason.as_ref()}),
        out,
    );
    let tx_id = s.transaction_id.as_ref().map(|t| t.to_string());
    if reason.as_ref() != SUPERSEDED {
        session_outcome(
            st,
            cfg,
            c,
            s.start_time,
            end,
            energy_wh,
            reason,
            &tx_id,
            out,
        );
    }
    let (charging_ms, parking_ms) = periods
        .iter()
        .fold((0, 0), |(c, p), x| (c + x.charging_ms, p + x.parking_ms));
    out.push(Output::Session(Box::new(SessionRecord {
        charge_point_id: st.id.clone(),
        connector_id: c,
        site_id: st.station.site_id.clone(),
        transaction_id: s.transaction_id.as_ref().map_or_else(
            || format!("unconfirmed-{}", s.message_id.0),
            |t| t.to_string(),
        ),
        payment_method: token.payment_method.clone(),
        id_tag: s.id_tag.unwrap_or_else(|| Arc::from(UNKNOWN_DRIVER)),
        start_time: s.start_time,
        end_time: end,
        energy_wh,
        energy_source,
        stop_reason: reason.clone(),
        tariff_id: tariff.id.clone(),
        currency: tariff.currency.clone(),
        total_excl_vat: costs.total.excl_vat,
        vat: costs.total.incl_vat - costs.total.excl_vat,
        total_incl_vat: costs.total.incl_vat,
        late: ev.event_time < st.now,
        account: token.account.clone(),
        plan_id: token.plan.as_ref().map(|p| p.id.clone()),
        charging_ms,
        parking_ms,
        energy_cost: pair(costs.energy),
        time_cost: pair(costs.time),
        parking_cost: pair(costs.parking),
        fixed_cost: pair(costs.fixed),
        included_energy_wh: 0,
        discount: CostPair::default(),
        payment_fee: rust_decimal::Decimal::ZERO,
        net: costs.total.excl_vat,
        periods,
        audit: AuditFacts {
            register_wh: s.meter_start_wh.zip(meter_stop_wh).map(|(a, b)| b - a),
            samples_wh: (readings_before_stop > 0).then_some(samples_wh),
            time_zone: Some(Arc::from(st.station.time_zone.name())),
        },
    })));
}

/// The state-of-charge band a delivery sample is judged in: 0 unknown, 1 below 80 %,
/// 2 from 80 to 95 % (DC tapering), 3 above.
pub fn soc_band(soc_pct: Option<f32>) -> u8 {
    match soc_pct {
        None => 0,
        Some(s) if s < 80.0 => 1,
        Some(s) if s < 95.0 => 2,
        Some(_) => 3,
    }
}

/// Stop reasons that say a session failed (a power loss is the supply's, not the session's).
pub const FAILURE_STOP_REASONS: [&str; 4] = ["EmergencyStop", "HardReset", "SoftReset", "Reboot"];

/// What a session's end says about the connector: `session_failures` (a run of sessions
/// that delivered almost nothing or stopped for a failure reason) and a `PowerLoss` stop
/// (`power_supply`, from the last message before the charger's reboot to the reboot).
#[allow(clippy::too_many_arguments)]
fn session_outcome(
    st: &mut ChargerState,
    cfg: &StageConfig,
    c: u32,
    start: Millis,
    end: Millis,
    energy_wh: i64,
    reason: &Arc<str>,
    transaction_id: &Option<String>,
    out: &mut Vec<Output>,
) {
    let a = &cfg.anomalies;
    let subject = Subject {
        charge_point_id: &st.id,
        site_id: &st.station.site_id,
        maintenance: &st.maintenance,
    };
    let cs = connector(&mut st.connectors, c);
    let failed = energy_wh < a.failed_session_wh || FAILURE_STOP_REASONS.contains(&reason.as_ref());
    if failed {
        // Failures far apart are bad luck, not a failing connector: a run starts again.
        if cs.failed_run == 0 || start - cs.failed_since > a.failed_sessions_within.0 {
            cs.failed_run = 0;
            cs.failed_since = start;
        }
        cs.failed_run += 1;
        if cs.failed_run >= a.failed_sessions_run.max(1) {
            st.book.open(
                &subject,
                AnomalyKind::SessionFailures,
                Some(c),
                end,
                Severity::Warning,
                json!({"failed_sessions": cs.failed_run, "since": format_rfc3339(cs.failed_since), "energy_wh": energy_wh, "stop_reason": reason.as_ref(), "transaction_id": transaction_id}),
                out,
            );
        }
    } else {
        cs.failed_run = 0;
        st.book.resolve(
            &subject,
            AnomalyKind::SessionFailures,
            Some(c),
            end,
            json!({"energy_wh": energy_wh, "transaction_id": transaction_id}),
            out,
        );
    }
    if reason.as_ref() == "PowerLoss" {
        // The charger reports the loss once it is back: the outage is behind it.
        // A stop stamped by the charger's clock may sort before the reboot it follows: then
        // the silence before the stop itself is the outage.
        let (from, to) = match (st.rebooted, st.last_silence) {
            (Some((silent, boot)), _) if boot >= start && boot <= end => (silent.max(start), boot),
            (_, Some((silent, back))) if back >= start && back <= end => (silent.max(start), back),
            _ => (end, end),
        };
        let details = json!({"cause": "power_loss", "transaction_id": transaction_id, "power_back": format_rfc3339(to)});
        if st
            .book
            .open(
                &subject,
                AnomalyKind::PowerSupply,
                Some(c),
                from,
                Severity::Critical,
                details.clone(),
                out,
            )
            .is_some()
        {
            st.book.resolve(
                &subject,
                AnomalyKind::PowerSupply,
                Some(c),
                to,
                details,
                out,
            );
        }
    }
}

/// The fleet detectors' view of each connector: usable (Available, the charger online and
/// operative, no fault, no session) or not. Told only when it changes.
fn report_usable(st: &mut ChargerState, at: Millis, out: &mut Vec<Output>) {
    let online = !st.book.is_open(AnomalyKind::CommunicationLost, None);
    let operative = st.charger_status.is_operative() && !st.charger_fault_active;
    for cs in st.connectors.iter_mut().filter(|c| c.id > 0) {
        let usable = online
            && operative
            && cs.status == Some(ConnectorStatus::Available)
            && !cs.fault_active
            && cs.session.is_none();
        if cs.usable_reported != Some(usable) {
            cs.usable_reported = Some(usable);
            out.push(Output::Observation(Box::new(FleetObservation {
                at,
                charge_point_id: st.id.clone(),
                site_id: st.station.site_id.clone(),
                connector_id: cs.id,
                what: Observed::Usable(usable),
            })));
        }
    }
}

/// `clock_skew` and `message_errors` (`stages::link`) over one event.
fn link_checks(
    st: &mut ChargerState,
    cfg: &StageConfig,
    ev: &Event,
    t: Millis,
    out: &mut Vec<Output>,
) {
    let a = &cfg.anomalies;
    let subject = Subject {
        charge_point_id: &st.id,
        site_id: &st.station.site_id,
        maintenance: &st.maintenance,
    };
    if let Some(offset) = ev.clock_offset_ms {
        // Stamped at receive time: the charger's own clock is what is in doubt.
        match st.clock.observe(a, ev.seq, ev.receive_time, offset as i64) {
            Verdict::Open { at, value } => {
                st.book.open(
                    &subject,
                    AnomalyKind::ClockSkew,
                    None,
                    at,
                    Severity::Warning,
                    json!({"offset_s": value, "threshold_s": a.clock_skew_threshold.0 / 1000}),
                    out,
                );
            }
            Verdict::Resolve { at, value } => {
                st.book.resolve(
                    &subject,
                    AnomalyKind::ClockSkew,
                    None,
                    at,
                    json!({"offset_s": value}),
                    out,
                );
            }
            Verdict::None => {}
        }
    }
    let verdict = match &ev.kind {
        EventKind::CallError { .. } | EventKind::Rejected { .. } => st.errors.error(a, t),
        _ => st.errors.tick(a, t),
    };
    match verdict {
        Verdict::Open { at, value } => {
            let what = match &ev.kind {
                EventKind::CallError { error_code, .. } => error_code.to_string(),
                EventKind::Rejected { reason } => reason.as_str().to_string(),
                _ => String::new(),
            };
            st.book.open(
                &subject,
                AnomalyKind::MessageErrors,
                None,
                at,
                Severity::Warning,
                json!({"errors": value, "window_s": a.message_errors_window.0 / 1000, "last_error": what}),
                out,
            );
        }
        Verdict::Resolve { at, .. } => {
            st.book.resolve(
                &subject,
                AnomalyKind::MessageErrors,
                None,
                at,
                json!({}),
                out,
            );
        }
        Verdict::None => {}
    }
}

/// Prices a session's periods with its tariff, in its site's time zone. `None` (logged) if
/// the tariff cannot price it.
fn price(
    tariff: &crate::stages::TariffRef,
    station: &StationRef,
    start: Millis,
    end: Millis,
    periods: &[crate::model::PeriodRecord],
) -> Option<crate::tariff::ocpi::PricedCdr> {
    use crate::tariff::ocpi;
    use rust_decimal::prelude::FromPrimitive;
    use rust_decimal::Decimal;
    let session = ocpi::Session {
        start,
        end: end.max(start),
        time_zone: station.time_zone,
        periods: periods
            .iter()
            .map(|p| ocpi::ChargingPeriod {
                start: p.start_time,
                energy_kwh: Decimal::new(p.energy_wh, 3),
                charging_secs: Decimal::new(p.charging_ms, 3),
                parking_secs: Decimal::new(p.parking_ms, 3),
                reservation_secs: Decimal::ZERO,
                max_power_kw: p
                    .max_power_w
                    .and_then(|w| Decimal::from_f64(w / 1000.0))
                    .map(|kw| kw.round_dp(3)),
                max_current_a: None,
            })
            .collect(),
    };
    match ocpi::price_periods(&tariff.tariff, &session) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("tariff {}: cannot price a session: {e}", tariff.id);
            None
        }
    }
}

/// Fires a charger's timers due at or before `now`, in time order.
fn advance(st: &mut ChargerState, cfg: &StageConfig, now: Millis, out: &mut Vec<Output>) {
    loop {
        let mut next = Timer::HealthWindow(st.health.window_start + cfg.health_window);
        let mut consider = |t: Timer| {
            if t.at() < next.at() {
                next = t;
            }
        };
        if !st.book.is_open(AnomalyKind::CommunicationLost, None) {
            let span = (st.heartbeat_interval as f64 * cfg.anomalies.missed_heartbeats) as Millis;
            consider(Timer::CommunicationLost(st.last_seen + span));
        }
        for c in &st.connectors {
            if let Some(since) = c.no_power_since {
                if !st.book.is_open(AnomalyKind::StuckSession, Some(c.id)) {
                    consider(Timer::Stuck(since + cfg.anomalies.stuck_after.0, c.id));
                }
            }
        }
        for (i, m) in st.maintenance.iter().enumerate() {
            if !st.maintenance_notified[i] {
                consider(Timer::MaintenanceNotice(
                    m.start.0 - cfg.notifications.maintenance_lead.0,
                    i,
                ));
            }
        }
        let at = next.at();
        if at > now {
            break;
        }
        accumulate_health(st, at);
        let subject = Subject {
            charge_point_id: &st.id,
            site_id: &st.station.site_id,
            maintenance: &st.maintenance,
        };
        match next {
            Timer::HealthWindow(end) => {
                let mut rows = Vec::new();
                let open = st.book.open_count() as i64;
                st.health.close_window(
                    end,
                    st.heartbeat_interval,
                    &st.id,
                    &st.station.site_id,
                    open,
                    &mut rows,
                );
                out.extend(rows.into_iter().map(Output::Health));
            }
            Timer::CommunicationLost(at) => {
                let opened = st.book.open(
                    &subject,
                    AnomalyKind::CommunicationLost,
                    None,
                    at,
                    Severity::Critical,
                    json!({"last_message": format_rfc3339(st.last_seen), "heartbeat_interval_s": st.heartbeat_interval / 1000, "missed_heartbeats": cfg.anomalies.missed_heartbeats}),
                    out,
                );
                report_usable(st, at, out);
                // Down since its last message, not since the silence was confirmed.
                let last_seen = st.last_seen;
                update_uptime(st, cfg, last_seen, out);
                if opened.is_some() && !in_maintenance(&st.maintenance, at) {
                    let facts = json!({"cause": "communication_lost", "last_message": format_rfc3339(st.last_seen)});
                    let drivers = session_drivers(&st.connectors);
                    out_of_order(&st.id, &st.station.site_id, None, at, facts, drivers, out);
                }
            }
            Timer::Stuck(at, c) => {
                let cs = connector(&mut st.connectors, c);
                let tx = cs
                    .session
                    .as_ref()
                    .and_then(|s| s.transaction_id.as_ref())
                    .map(|t| t.to_string());
                st.book.open(
                    &subject,
                    AnomalyKind::StuckSession,
                    Some(c),
                    at,
                    Severity::Warning,
                    json!({"no_power_since": cs.no_power_since.map(format_rfc3339), "transaction_id": tx}),
                    out,
                );
            }
            Timer::MaintenanceNotice(at, i) => {
                st.maintenance_notified[i] = true;
                let m = &st.maintenance[i];
                // A charger seen only after the notice was due still gets it, when first seen,
                // as long as the window has not started.
                let at = at.max(st.first_seen);
                if at < m.start.0 {
                    let facts = json!({"start": format_rfc3339(m.start.0), "end": format_rfc3339(m.end.0), "reason": m.reason});
                    let since = at - cfg.notifications.recent_users_within.0;
                    let trigger = NotificationTrigger {
                        recent_users: st.recent.between(since, at),
                        ..trigger(
                            NotificationKind::MaintenanceUpcoming,
                            &st.id,
                            &st.station.site_id,
                            None,
                            at,
                            facts,
                        )
                    };
                    out.push(Output::Trigger(Box::new(trigger)));
                }
            }
        }
    }
    accumulate_health(st, now);
    let ctx = uptime_context!(st, cfg);
    for cs in st.connectors.iter_mut() {
        if let Some(u) = cs.uptime.as_mut() {
            u.advance(now, &ctx, out);
        }
    }
    st.now = st.now.max(now);
}

/// Brings every port's uptime state up to date at `at`: down while the charger is offline
/// or inoperative, or the connector Faulted, Unavailable or reporting a fault.
fn update_uptime(st: &mut ChargerState, cfg: &StageConfig, at: Millis, out: &mut Vec<Output>) {
    let offline = st.book.is_open(AnomalyKind::CommunicationLost, None);
    let charger_down = !st.charger_status.is_operative() || st.charger_fault_active;
    let first_seen = st.first_seen;
    let ctx = uptime_context!(st, cfg);
    for cs in st.connectors.iter_mut().filter(|c| c.id > 0) {
        let down = if offline {
            Some(Down::new(DownCause::CommunicationLost))
        } else if charger_down {
            Some(Down::new(DownCause::ChargerDown))
        } else {
            let cause = match cs.status {
                Some(ConnectorStatus::Faulted) => Some(DownCause::Faulted),
                Some(ConnectorStatus::Unavailable) => Some(DownCause::Unavailable),
                _ if cs.fault_active => Some(DownCause::FaultReported),
                _ => None,
            };
            cause.map(|c| Down {
                cause: c,
                excluded_by: cs.fault_exclusion.clone(),
            })
        };
        let uptime = cs
            .uptime
            .get_or_insert_with(|| PortUptime::new(cs.id, first_seen));
        if uptime.down() != down.as_ref() {
            uptime.set(at, down, &ctx, out);
        }
    }
}

fn accumulate_health(st: &mut ChargerState, to: Millis) {
    let book = &st.book;
    let open = |c: u32| {
        if c == 0 {
            book.open_count()
        } else {
            book.open_for_connector(c)
        }
    };
    let conditions = Conditions {
        online: !book.is_open(AnomalyKind::CommunicationLost, None),
        charger_operative: st.charger_status.is_operative() && !st.charger_fault_active,
        open_anomalies: &open,
    };
    st.health.advance_to(to, &conditions);
}
