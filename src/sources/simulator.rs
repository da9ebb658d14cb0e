//! The fleet simulator: a deterministic, seeded model of an EV charger network that emits
//! OCPP 1.6J traffic in evflow's input format, with ground-truth labels for injected faults.
//!
//! Owns: the fleet layout (sites, chargers, drivers → [`Fleet::registry`]), the plan of every
//! charger's run (sessions, maintenance, faults → [`Fleet::labels`]), and the rendering of
//! that plan into envelope lines ([`SimulatorSource`], [`write_all`]).
//!
//! How it works: [`Fleet::new`] plans everything up front — which driver arrives when, how
//! much each EV charges, when it leaves, which fault hits which charger — because the labels
//! must be known before any traffic is produced, and because a plan is a few hundred bytes
//! per session while the traffic is a few hundred bytes per *minute* of session. Emission then
//! walks each charger's plan lazily, slice by slice, re-running the same charging arithmetic
//! the planner ran (so `meterStop` and the samples agree bit for bit).
//!
//! Determinism: every random choice comes from a SplitMix64 stream keyed by `(seed, purpose,
//! index)`: the layout and fault placement by the seed, a charger's plan by `(seed, charger)`,
//! the details of its newer fault kinds and its healthy noise (clock offset, heartbeat lapses,
//! stray error frames) by `(seed, charger)` on streams of their own, its latencies by `(seed,
//! charger)` on a separate stream, a session's measurement noise by `(seed, transaction id)`.
//! A charger's lines therefore do not depend on which worker simulates it, nor on the slice
//! width.
//!
//! Line format: `{"timestamp":"<receive time>","charge_point_id":"CP-0001","message":[…]}`
//! where the receive time is the event time plus 50–400 ms of simulated latency (kept
//! strictly increasing per charger, as over one websocket), and the backend's CALLRESULTs for
//! BootNotification and StartTransaction follow their CALL 2–25 ms later. Lines are in
//! receive-time (= event-time) order; the timestamps *inside* payloads are the charger's
//! clock: the true time plus a static offset of up to ±30 s per charger, plus the jump of a
//! `clock_skew` fault while it lasts.
//!
//! Healthy noise (also without faults), kept ≥ 30 min away from the injected faults of the
//! same charger and below every detector's threshold: 4 % of sessions deliver nearly nothing,
//! 10 % have an in-band voltage excursion and a temperature swing, some EVs charge slowly;
//! the grid frequency wanders by ±0.05 Hz; each charger's clock is off by U(−30 s, +30 s);
//! each charger sends about one CALLERROR per 2 days and one malformed frame per 4 days (never
//! two within an hour); 10 % of chargers delay a heartbeat a few times a day (a silence of
//! 1.0–1.5 heartbeat intervals while idle).
//!
//! Live (`until_stopped`): when the simulated range ends, the same fleet (layout, registry,
//! tokens, clocks) goes on with the next range of `hours`, planned anew with a seed derived
//! from the range number: each range's sessions end 10 min before its end, registers carry
//! over, transaction ids get `range × 10¹²` added, and no charger reboots at a range start.
//! Chunk times (and so seqs) keep counting across ranges. [`stop`] ends the source at the
//! next chunk (the binary calls it on Ctrl-C/SIGTERM), so the run ends as a bounded one does.
//!
//! Sequence numbers: `seq = slice << 40 | charger_index << 20 | k`, where `k` counts the
//! charger's lines within the slice in emission order. Unique over the run and independent of
//! the number of workers; limits: < 2²⁴ slices, < 2²⁰ chargers, < 2²⁰ lines per charger per
//! slice. Seqs break ties only; lines within a chunk are ordered by receive time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Chunk, Poll, Source, SourceError, SourceProgress};
use crate::config::{MaintenanceWindow, Registry, SimulatorConfig, Station, Token};
use crate::model::{AnomalyKind, ConnectorStatus, Millis};
use crate::time::civil_from_days;

const SECOND: Millis = 1_000;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// Slice width used by [`write_all`].
pub const DEFAULT_SLICE_MS: Millis = 60_000;
/// Chargers beyond this are not simulated (the seq scheme has 20 bits for the charger).
pub const MAX_CHARGERS: u32 = (1 << 20) - 1;
const SEQ_CHARGER_SHIFT: u32 = 20;
const SEQ_SLICE_SHIFT: u32 = 40;
/// Live mode: added to transaction ids per range (a range's ids stay below it).
const TX_PER_RANGE: i64 = 1_000_000_000_000;
/// Live mode: sessions end this long before the end of their range, so that none spans two
/// independently planned ranges.
const RANGE_END_QUIET: Millis = 10 * MINUTE;

/// Set by [`stop`]: every simulator source ends at its next chunk.
static STOP: AtomicBool = AtomicBool::new(false);

/// Ends every simulator source of this process at its next chunk: the run then finishes as
/// a bounded run does (windows flushed, outputs written, summary). For Ctrl-C/SIGTERM.
pub fn stop() {
    STOP.store(true, Ordering::Relaxed);
}

fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, good enough statistically, and trivially seekable by key.
#[derive(Clone, Debug)]
struct Rng(u64);

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent stream for `(seed, purpose, index)`.
fn stream(seed: u64, purpose: u64, index: u64) -> Rng {
    Rng(mix64(
        mix64(seed ^ purpose.wrapping_mul(0xA076_1D64_78BD_642F)) ^ index,
    ))
}

const PURPOSE_LAYOUT: u64 = 1;
const PURPOSE_FAULTS: u64 = 2;
const PURPOSE_PLAN: u64 = 3;
const PURPOSE_LINK: u64 = 4;
const PURPOSE_NOISE: u64 = 5;
/// A charger's healthy noise: clock offset, heartbeat lapses, stray error frames.
const PURPOSE_CHATTER: u64 = 6;
/// The details of a charger's clock_skew, message_errors and power-loss faults.
const PURPOSE_FAULT_DETAIL: u64 = 7;
const PURPOSE_WATCHES: u64 = 8;

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Uniform in [0, n); 0 when n is 0.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in [lo, hi], inclusive.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64 + 1) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Log-normal with the given median, clamped to [lo, hi] ms.
    fn lognormal_ms(&mut self, median: Millis, sigma: f64, lo: Millis, hi: Millis) -> Millis {
        let v = (median as f64 * (sigma * self.normal()).exp()) as Millis;
        v.clamp(lo, hi)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet layout
// ---------------------------------------------------------------------------------------------

/// A charger model: what BootNotification says and what the hardware can do.
struct Model {
    vendor: &'static str,
    model: &'static str,
    firmware: &'static str,
    serial_prefix: &'static str,
    dc: bool,
    power_w: f64,
    /// Grid phases the meter reports (DC chargers report their three-phase supply).
    phases: usize,
    min_connectors: u32,
    max_connectors: u32,
    weight: u32,
}

const MODELS: [Model; 5] = [
    Model {
        vendor: "Wallbox",
        model: "Commander 2",
        firmware: "5.17.8",
        serial_prefix: "WB",
        dc: false,
        power_w: 7_400.0,
        phases: 1,
        min_connectors: 2,
        max_connectors: 2,
        weight: 20,
    },
    Model {
        vendor: "Alfen",
        model: "Eve Double Pro-line",
        firmware: "6.4.0-4187",
        serial_prefix: "ACE",
        dc: false,
        power_w: 11_000.0,
        phases: 3,
        min_connectors: 2,
        max_connectors: 2,
        weight: 30,
    },
    Model {
        vendor: "ABB",
        model: "Terra AC W22-T-RD",
        firmware: "1.8.30",
        serial_prefix: "TACW",
        dc: false,
        power_w: 22_000.0,
        phases: 3,
        min_connectors: 2,
        max_connectors: 2,
        weight: 20,
    },
    Model {
        vendor: "ABB",
        model: "Terra 54 CJG",
        firmware: "1.6.12",
        serial_prefix: "T54",
        dc: true,
        power_w: 50_000.0,
        phases: 3,
        min_connectors: 1,
        max_connectors: 2,
        weight: 18,
    },
    Model {
        vendor: "Alpitronic",
        model: "HYC150",
        firmware: "2.3.1",
        serial_prefix: "HYC",
        dc: true,
        power_w: 150_000.0,
        phases: 3,
        min_connectors: 1,
        max_connectors: 2,
        weight: 12,
    },
];

/// Relative arrival rate by UTC hour: quiet nights, a morning and an evening peak.
const HOURLY_WEIGHT: [f64; 24] = [
    0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.7, 1.4, 1.8, 1.6, 1.2, 1.1, 1.2, 1.2, 1.1, 1.2, 1.5, 1.8,
    1.8, 1.5, 1.0, 0.7, 0.4, 0.25,
];

const FAULT_CODES: [&str; 5] = [
    "GroundFailure",
    "PowerSwitchFailure",
    "ConnectorLockFailure",
    "OverCurrentFailure",
    "InternalError",
];

/// CALLERROR codes (OCPP-J 1.6 §4.2.3) a charger answers a backend request with, and their
/// descriptions.
const CALL_ERRORS: [(&str, &str); 5] = [
    ("InternalError", "An internal error occurred and the receiver was not able to process the requested Action successfully"),
    ("NotImplemented", "Requested Action is not known by receiver"),
    ("FormationViolation", "Payload for Action is syntactically incorrect"),
    ("GenericError", "Any other error not covered by the previous ones"),
    ("NotSupported", "Requested Action is recognized but not supported by the receiver"),
];

/// Stop reasons of a failed session (`session_failures`).
const FAILED_REASONS: [&str; 4] = ["EmergencyStop", "Other", "EVDisconnected", "Local"];

/// How many malformed frame shapes the simulator writes ([`write_malformed`]).
const MALFORMED_VARIANTS: u8 = 3;

/// The simulated fleet's subscription plan: 25 kWh a month included, 9.99 EUR.
pub const SUBSCRIPTION_PLAN: &str = "flex-25";
/// The simulated sites' time zone (OCPI tariffs' times of day are local).
pub const SITE_TIME_ZONE: &str = "Europe/Berlin";

struct Driver {
    id_tag: String,
    payment_method: &'static str,
    /// Unknown tokens are emitted but left out of the registry (evflow treats them as ad hoc).
    known: bool,
}

/// A ground-truth fault label (one line of the labels JSONL, `schemas/labels.schema.json`).
///
/// `connector_id` is `None` for charger-wide faults (`communication_lost`, `underused`,
/// `clock_skew`, `message_errors`). `start`/`end` are event (true) times:
/// - `communication_lost` — from when the charger falls silent to its new BootNotification;
/// - `connector_faulted` — the Faulted and the Available StatusNotification;
/// - `power_supply` — voltage (all phases, or one phase of a three-phase charger) or grid
///   frequency out of band: the first out-of-range sample and the first sample back in range;
///   a power loss during a session: the start of the charger's silence and the StopTransaction
///   (reason `PowerLoss`) it sends after rebooting;
/// - `over_temperature` — the first out-of-range sample and the first sample back in range;
/// - `meter_error` — the sample with the jump and the transaction's stop (the transaction's
///   registers are wrong until then);
/// - `stuck_session` — the first sample with no power and the StopTransaction;
/// - `power_delivery_degraded` — the first of three consecutive capped sessions' start
///   (StartTransaction) and the third one's stop;
/// - `session_failures` — the first of 3–5 consecutive failed sessions' start and the last
///   one's stop;
/// - `underused` — the span without any session on the charger (arrivals suppressed; the
///   charger stays online and Available);
/// - `clock_skew` — the clock's jump and its resynchronisation;
/// - `message_errors` — the first and the last error frame (CALLERROR or malformed CALL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub kind: AnomalyKind,
    pub charge_point_id: String,
    pub connector_id: Option<u32>,
    #[serde(with = "crate::time::rfc3339")]
    pub start: Millis,
    #[serde(with = "crate::time::rfc3339")]
    pub end: Millis,
}

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

/// What an EV does on a charger: how much it takes and how fast.
#[derive(Clone, Copy, Debug)]
struct Ev {
    cap_wh: f64,
    soc0: f64,
    target: f64,
    /// min(charger, EV), W.
    p_max: f64,
    dc: bool,
}

/// Charging power at a state of charge: DC constant-current to 80 % then a linear taper to
/// 10 % at 100 %; AC nearly flat until 95 %.
fn power_at(ev: &Ev, soc: f64) -> f64 {
    if ev.dc {
        if soc < 80.0 {
            ev.p_max
        } else {
            ev.p_max * (1.0 - 0.9 * (soc - 80.0) / 20.0)
        }
    } else if soc < 95.0 {
        ev.p_max
    } else {
        ev.p_max * (1.0 - 0.7 * (soc - 95.0) / 5.0)
    }
}

/// The charging integrator. The planner and the emitter call [`Charge::advance`] with the
/// same sequence of times, so their results are identical.
#[derive(Clone, Copy, Debug)]
struct Charge {
    t: Millis,
    soc: f64,
    e_wh: f64,
    full_at: Option<Millis>,
}

impl Charge {
    fn new(t: Millis, soc: f64) -> Charge {
        Charge {
            t,
            soc,
            e_wh: 0.0,
            full_at: None,
        }
    }

    /// One Euler step to `to`; no energy flows once the target is reached or after `halt`.
    fn advance(&mut self, ev: &Ev, to: Millis, halt: Millis) {
        if to <= self.t {
            return;
        }
        if self.full_at.is_none() && self.t < halt {
            let until = to.min(halt);
            let p = power_at(ev, self.soc);
            let e = p * (until - self.t) as f64 / 3.6e6;
            let need = (ev.target - self.soc).max(0.0) / 100.0 * ev.cap_wh;
            if p > 0.0 && e >= need {
                self.full_at = Some(self.t + (need / p * 3.6e6) as Millis);
                self.e_wh += need;
                self.soc = ev.target;
            } else {
                self.e_wh += e;
                self.soc += e / ev.cap_wh * 100.0;
            }
        }
        self.t = to;
    }
}

#[derive(Clone, Copy, Debug)]
enum SessionFault {
    None,
    /// Samples `from .. from + n` report `level` V on every phase, or on `phase` (0-based)
    /// only.
    Voltage {
        from: u32,
        n: u32,
        level: f64,
        phase: Option<u8>,
    },
    /// Samples `from .. from + n` report a grid frequency of about `level` Hz.
    Frequency {
        from: u32,
        n: u32,
        level: f64,
    },
    /// Samples `from .. from + n` report about `level` °C.
    Temperature {
        from: u32,
        n: u32,
        level: f64,
    },
    /// From sample `k` on, the register is off by `delta` Wh.
    MeterJump {
        k: u32,
        delta: f64,
    },
    /// The charger loses power at `at` (no energy, no lines from then), reboots at `back` and
    /// stops the transaction with reason `PowerLoss` at the session's stop.
    PowerLoss {
        at: Millis,
    },
}

#[derive(Clone, Debug)]
struct SessionPlan {
    arrive: Millis,
    preparing: Millis,
    start: Millis,
    charging: Millis,
    stop: Millis,
    finishing: Millis,
    available: Millis,
    tx_id: i64,
    driver: u32,
    /// Register at the start, Wh (fractional: the meter counts continuously).
    reg0: f64,
    ev: Ev,
    /// Power stops flowing here (stuck session, power loss); `Millis::MAX` otherwise.
    halt: Millis,
    /// No samples nor status changes from here to the stop (power loss); `Millis::MAX`
    /// otherwise.
    mute: Millis,
    /// When the target was reached, if before the stop (→ SuspendedEV).
    full_at: Option<Millis>,
    fault: SessionFault,
    /// Healthy noise: samples `from .. from + n` have an in-band voltage excursion and a
    /// temperature swing.
    noisy: Option<(u32, u32)>,
    reason: &'static str,
    /// EV battery voltage, for the DC output current.
    dc_voltage: f64,
}

#[derive(Clone, Debug)]
enum Episode {
    Session(SessionPlan),
    Faulted {
        start: Millis,
        end: Millis,
        code: &'static str,
    },
}

impl Episode {
    fn begin(&self) -> Millis {
        match self {
            Episode::Session(s) => s.arrive,
            Episode::Faulted { start, .. } => *start,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum SysWhat {
    Boot,
    /// A StatusNotification for connector 0 and every connector.
    AllStatus(ConnectorStatus),
    /// After a power loss: connector 0 and every connector but `skip` (whose interrupted
    /// transaction reports itself) are Available.
    Restored {
        skip: u32,
    },
}

/// A frame the backend cannot use: a CALLERROR (the charger's answer to a backend request),
/// or a CALL whose payload evflow's decoder rejects.
#[derive(Clone, Copy, Debug)]
struct ErrFrame {
    t: Millis,
    connector: u32,
    what: ErrWhat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrWhat {
    /// Index into [`CALL_ERRORS`].
    CallError(u8),
    /// A malformed frame shape, see [`write_malformed`].
    Malformed(u8),
}

/// A `clock_skew` fault: the charger's clock is off by `offset` in `[from, to)`.
#[derive(Clone, Copy, Debug)]
struct Skew {
    from: Millis,
    to: Millis,
    offset: Millis,
}

#[derive(Clone, Copy, Debug)]
struct SysEvent {
    t: Millis,
    what: SysWhat,
}

struct ChargerPlan {
    id: String,
    site: usize,
    model: &'static Model,
    connectors: u32,
    serial: String,
    ambient_c: f64,
    /// Communication losses: silent in [start, end), BootNotification at end.
    outages: Vec<(Millis, Millis)>,
    /// Charger-wide events in time order.
    sys: Vec<SysEvent>,
    boot: Millis,
    /// Episodes per connector (index = connector id − 1), in time order.
    conns: Vec<Vec<Episode>>,
    /// The static offset of the charger's clock.
    clock: Millis,
    /// `clock_skew` faults, in time order.
    skews: Vec<Skew>,
    /// Heartbeat lapses: the first heartbeat after `.0` comes `.1` after the previous one.
    lapses: Vec<(Millis, Millis)>,
    /// Error frames (noise and `message_errors` faults), in time order.
    errs: Vec<ErrFrame>,
    /// Each connector's register after its last session, Wh (where the next range starts).
    reg_end: Vec<f64>,
}

impl ChargerPlan {
    /// The charger's clock at true time `t`, minus `t`: what it adds to its timestamps.
    fn clock_at(&self, t: Millis) -> Millis {
        self.clock
            + self
                .skews
                .iter()
                .find(|s| s.from <= t && t < s.to)
                .map_or(0, |s| s.offset)
    }
}

/// How a `power_supply` fault shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PowerVariant {
    /// Voltage out of band on every phase.
    AllPhases,
    /// Voltage out of band on L2 or L3 of a three-phase charger.
    OnePhase,
    /// Grid frequency out of band.
    Frequency,
    /// The charger loses power during a session.
    PowerLoss,
}

/// A fault placed by the fleet-level planner, realised by the charger's planner.
#[derive(Clone, Copy, Debug)]
struct FaultReq {
    kind: AnomalyKind,
    charger: usize,
    connector: u32,
    t: Millis,
    /// How long an `underused` fault lasts (0 for other kinds).
    dur: Millis,
    variant: PowerVariant,
}

/// What a connector's planner must make happen at a given time.
#[derive(Clone, Copy, Debug)]
enum Force {
    /// One session carrying a fault of this kind (power_supply by sample, over_temperature,
    /// meter_error, stuck_session).
    Fault(AnomalyKind, PowerVariant),
    /// A session interrupted by a power loss (see [`SessionFault::PowerLoss`]); arrives at the
    /// forced time, stops at `stop`.
    PowerLoss { at: Millis, stop: Millis },
    /// Three capped sessions back to back (`power_delivery_degraded`).
    Degraded,
    /// 3–5 failed sessions back to back (`session_failures`).
    Failures,
    /// An ordinary session (so that a charger-wide fault shows in timestamped traffic).
    Plain,
}

/// The kind of session [`plan_session`] plans.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SessionKind {
    Natural,
    Fault(AnomalyKind, PowerVariant),
    PowerLoss { at: Millis, stop: Millis },
    Degraded,
    Failed,
    Plain,
}

/// Parameters every charger's planner shares.
struct PlanCtx {
    seed: u64,
    start: Millis,
    end: Millis,
    meter_ms: Millis,
    drivers: u64,
    weight_max: f64,
    heartbeat_ms: Millis,
    /// The fleet's seed (layout, clocks), where `seed` is this range's.
    layout_seed: u64,
    /// Range of a live run (0: the first); `live`: a next range follows.
    range: u64,
    live: bool,
}

// ---------------------------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------------------------

/// The simulated network: its layout, every charger's plan and the fault labels. Immutable
/// once built; share it between workers with an `Arc`.
pub struct Fleet {
    start: Millis,
    end: Millis,
    seed: u64,
    /// Which range of a live run this is (0: the first, or a bounded run).
    range: u64,
    /// Live mode: what the next range is planned from.
    live: Option<Arc<(SimulatorConfig, Vec<MaintenanceWindow>)>>,
    heartbeat_ms: Millis,
    meter_ms: Millis,
    sites: Vec<String>,
    chargers: Vec<ChargerPlan>,
    drivers: Vec<Driver>,
    labels: Vec<Label>,
}

impl Fleet {
    /// Builds and plans the fleet. Maintenance windows apply to a charger when their
    /// `charge_point_id` (if set) and `site_id` (if set) both match it. A fault kind is
    /// injected only if its footprint fits the run after its first 30 min: ~1.2 h for
    /// `message_errors`, ~3 h for `clock_skew` and most kinds, ~4.5 h for
    /// `power_delivery_degraded`; `underused` needs ≥ 4 h of warm-up plus 6–20 h and a
    /// busy charger with site peers (in practice a two-connector DC charger, hours ≥ 24), so
    /// a run may have none. Shorter runs get fewer kinds.
    /// Intervals are clamped to ≥ 1 s (heartbeat) and ≥ 10 s (meter), chargers to
    /// [`MAX_CHARGERS`].
    pub fn new(cfg: &SimulatorConfig, maintenance: &[MaintenanceWindow]) -> Fleet {
        Self::plan(cfg, maintenance, 0, None)
    }

    /// Live mode (`until_stopped`): the same fleet over the next `hours`, planned anew;
    /// `None` for a bounded run.
    pub fn next_range(&self) -> Option<Fleet> {
        let live = self.live.as_ref()?;
        let (cfg, maintenance) = &**live;
        Some(Self::plan(cfg, maintenance, self.range + 1, Some(self)))
    }

    /// Range `range` of the fleet (`prev`: range − 1, whose registers carry over).
    fn plan(
        cfg: &SimulatorConfig,
        maintenance: &[MaintenanceWindow],
        range: u64,
        prev: Option<&Fleet>,
    ) -> Fleet {
        let span = cfg.hours as Millis * HOUR;
        let start = cfg.start.0 + range as Millis * span;
        let end = start + span;
        // The layout (sites, models, drivers, clocks) comes from the seed; what happens in
        // a later range from a seed of its own.
        let plan_seed = if range == 0 {
            cfg.seed
        } else {
            mix64(cfg.seed ^ mix64(range))
        };
        let heartbeat_ms = cfg.heartbeat_interval.0.max(SECOND);
        let meter_ms = cfg.meter_interval.0.max(10 * SECOND);
        let n = cfg.chargers.min(MAX_CHARGERS) as usize;
        let mut layout = stream(cfg.seed, PURPOSE_LAYOUT, 0);

        // Sites of about `chargers_per_site` chargers each.
        let cps = cfg.chargers_per_site.max(1) as i64;
        let mut site_of = Vec::with_capacity(n);
        let mut sites = Vec::new();
        while site_of.len() < n {
            let size = layout.between((cps + 1) / 2, cps + cps / 2) as usize;
            let site = sites.len();
            sites.push(format!("SITE-{:03}", site + 1));
            for _ in 0..size.min(n - site_of.len()) {
                site_of.push(site);
            }
        }

        let total_weight: u32 = MODELS.iter().map(|m| m.weight).sum();
        let mut models = Vec::with_capacity(n);
        let mut connectors = Vec::with_capacity(n);
        for _ in 0..n {
            let mut w = layout.below(total_weight as u64) as u32;
            let model = MODELS
                .iter()
                .find(|m| {
                    if w < m.weight {
                        true
                    } else {
                        w -= m.weight;
                        false
                    }
                })
                .unwrap_or(&MODELS[0]);
            models.push(model);
            connectors.push(
                layout.between(model.min_connectors as i64, model.max_connectors as i64) as u32,
            );
        }

        // Drivers: ~3 per charger; a few tokens the registry does not know.
        let pool = (3 * n).max(3);
        let mut drivers = Vec::with_capacity(pool);
        for i in 0..pool {
            let r = layout.f64();
            let payment_method = if r < 0.45 {
                "card"
            } else if r < 0.80 {
                "mobile"
            } else {
                "subscription"
            };
            // About 3 % unknown, and at least one in any pool of 8 or more.
            let known = !(layout.chance(0.02) || i % 31 == 7);
            drivers.push(Driver {
                id_tag: format!("{:04X}{:08X}", i, layout.below(1 << 32)),
                payment_method,
                known,
            });
        }

        let ids: Vec<String> = (0..n).map(charger_id).collect();
        let maint: Vec<Vec<(Millis, Millis)>> = (0..n)
            .map(|i| maintenance_of(maintenance, &ids[i], &sites[site_of[i]]))
            .collect();

        let weight_max = HOURLY_WEIGHT.iter().cloned().fold(0.0, f64::max);
        let weight_mean = HOURLY_WEIGHT.iter().sum::<f64>() / 24.0;
        let basics: Vec<Basics> = (0..n)
            .map(|i| {
                let mut b = Basics::draw(cfg.seed, i, models[i], weight_max, weight_mean);
                if range > 0 {
                    b.rng = stream(plan_seed, PURPOSE_PLAN, i as u64);
                }
                b
            })
            .collect();
        let mut site_size = vec![0usize; sites.len()];
        for &s in &site_of {
            site_size[s] += 1;
        }
        let facts: Vec<Facts> = (0..n)
            .map(|i| Facts {
                connectors: connectors[i],
                phases: models[i].phases,
                per_day: basics[i].per_day * connectors[i] as f64,
                has_peers: site_size[site_of[i]] > 1,
            })
            .collect();

        let reqs = if cfg.faults {
            let ranged = SimulatorConfig {
                seed: plan_seed,
                ..cfg.clone()
            };
            place_faults(&ranged, start, end, meter_ms, &maint, &facts)
        } else {
            Vec::new()
        };

        let ctx = PlanCtx {
            seed: plan_seed,
            start,
            end,
            meter_ms,
            drivers: pool as u64,
            weight_max,
            heartbeat_ms,
            layout_seed: cfg.seed,
            range,
            live: cfg.until_stopped,
        };
        let mut labels = Vec::new();
        let mut chargers = Vec::with_capacity(n);
        for ((i, id), b) in ids.into_iter().enumerate().zip(basics) {
            let mine: Vec<FaultReq> = reqs.iter().filter(|r| r.charger == i).copied().collect();
            chargers.push(plan_charger(
                &ctx,
                i,
                id,
                site_of[i],
                models[i],
                connectors[i],
                b,
                &maint[i],
                &mine,
                prev.and_then(|p| p.chargers.get(i)).map(|c| &c.reg_end[..]),
                &mut labels,
            ));
        }
        labels.sort_by(|a, b| {
            (a.start, &a.charge_point_id, a.kind).cmp(&(b.start, &b.charge_point_id, b.kind))
        });

        Fleet {
            start,
            end,
            seed: plan_seed,
            range,
            live: cfg
                .until_stopped
                .then(|| Arc::new((cfg.clone(), maintenance.to_vec()))),
            heartbeat_ms,
            meter_ms,
            sites,
            chargers,
            drivers,
            labels,
        }
    }

    /// Stations and tokens as evflow's registry expects them. Unknown tokens are left out.
    pub fn registry(&self) -> Registry {
        let stations = self
            .chargers
            .iter()
            .map(|c| Station {
                charge_point_id: c.id.clone(),
                site_id: self.sites[c.site].clone(),
                tariff_id: Some(if c.model.dc { "dc_fast" } else { "ac_standard" }.to_string()),
                max_power_w: Some(c.model.power_w),
                connectors: Some(c.connectors),
                connector_tariffs: Default::default(),
                ocpp_version: None,
                nominal_voltage_v: None,
            })
            .collect();
        // Subscribers share accounts in pairs (a household, a company's two cars), so an
        // account's monthly allowance is consumed by two drivers' sessions in time order.
        let mut subscribers = 0;
        let tokens = self
            .drivers
            .iter()
            .filter(|d| d.known)
            .map(|d| {
                let subscriber = d.payment_method == "subscription";
                let account = subscriber.then(|| {
                    subscribers += 1;
                    format!("ACC-{:03}", (subscribers + 1) / 2)
                });
                Token {
                    id_tag: d.id_tag.clone(),
                    payment_method: d.payment_method.to_string(),
                    account,
                    plan: subscriber.then(|| SUBSCRIPTION_PLAN.to_string()),
                }
            })
            .collect();
        let sites = self
            .sites
            .iter()
            .map(|s| crate::config::Site {
                site_id: s.clone(),
                tariff_id: None,
                time_zone: Some(SITE_TIME_ZONE.to_string()),
                nominal_voltage_v: None,
            })
            .collect();
        let plans = vec![crate::config::Plan {
            id: SUBSCRIPTION_PLAN.to_string(),
            currency: "EUR".to_string(),
            monthly_fee: crate::config::Dec(rust_decimal::Decimal::new(999, 2)),
            included_kwh: crate::config::Dec(rust_decimal::Decimal::new(25, 0)),
            tariff_id: None,
        }];
        Registry {
            sites,
            stations,
            tokens,
            plans,
        }
    }

    /// Ground truth of the injected faults, ordered by start.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Writes the labels as JSONL; returns the number of lines.
    pub fn write_labels(&self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        for l in &self.labels {
            serde_json::to_writer(&mut *out, l)?;
            out.write_all(b"\n")?;
        }
        Ok(self.labels.len() as u64)
    }

    /// First simulated instant.
    pub fn start(&self) -> Millis {
        self.start
    }

    /// End of the simulated range (exclusive): start + hours.
    pub fn end(&self) -> Millis {
        self.end
    }

    pub fn charger_count(&self) -> usize {
        self.chargers.len()
    }

    /// The drivers' watches (`notifications.watches` when the source is the simulator): two
    /// local drivers watch each site, about a third of the chargers are watched by a local
    /// driver (a quarter of those only until 8 h into the run), and a tenth of the site
    /// watchers unwatch halfway. All start a day before the run. Sorted by timestamp.
    pub fn watches(&self) -> Vec<crate::model::WatchEvent> {
        use crate::model::{WatchAction, WatchEvent, WatchTarget};
        let mut rng = stream(self.seed, PURPOSE_WATCHES, 0);
        let pool = self.drivers.len() as u64;
        let before = self.start - 24 * HOUR;
        let half = self.start + (self.end - self.start) / 2;
        let watch = |driver: u64, target: WatchTarget, expires: Option<Millis>| WatchEvent {
            driver: Arc::from(self.drivers[driver as usize].id_tag.as_str()),
            action: WatchAction::Watch,
            target,
            kinds: Vec::new(),
            timestamp: before,
            expires,
        };
        let mut out = Vec::new();
        for (s, site) in self.sites.iter().enumerate() {
            for k in [0, 5] {
                let d = (s as u64 * 17 + k) % pool;
                out.push(watch(d, WatchTarget::Site(Arc::from(site.as_str())), None));
                if rng.chance(0.1) {
                    out.push(WatchEvent {
                        action: WatchAction::Unwatch,
                        timestamp: half,
                        ..watch(d, WatchTarget::Site(Arc::from(site.as_str())), None)
                    });
                }
            }
        }
        for c in &self.chargers {
            if rng.chance(0.33) {
                let d = (c.site as u64 * 17 + rng.below(12)) % pool;
                let expires = rng.chance(0.25).then_some(self.start + 8 * HOUR);
                out.push(watch(
                    d,
                    WatchTarget::ChargePoint(Arc::from(c.id.as_str())),
                    expires,
                ));
            }
        }
        out.sort_by_key(|w| w.timestamp);
        out
    }

    /// Writes [`watches`](Self::watches) as watch-event JSONL (`schemas/watch-event.schema.json`);
    /// returns the number of lines.
    pub fn write_watches(&self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        use crate::model::{WatchAction, WatchTarget};
        let watches = self.watches();
        for w in &watches {
            let mut line = serde_json::json!({
                "driver": &*w.driver,
                "action": if w.action == WatchAction::Watch { "watch" } else { "unwatch" },
                "timestamp": crate::time::format_rfc3339(w.timestamp),
            });
            match &w.target {
                WatchTarget::ChargePoint(cp) => line["charge_point_id"] = (&**cp).into(),
                WatchTarget::Site(site) => line["site_id"] = (&**site).into(),
            }
            if let Some(e) = w.expires {
                line["expires"] = crate::time::format_rfc3339(e).into();
            }
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(watches.len() as u64)
    }
}

fn charger_id(i: usize) -> String {
    format!("CP-{:04}", i + 1)
}

/// The charger's maintenance windows, merged where they overlap.
fn maintenance_of(all: &[MaintenanceWindow], cp: &str, site: &str) -> Vec<(Millis, Millis)> {
    let mut v: Vec<(Millis, Millis)> = all
        .iter()
        .filter(|w| {
            (w.charge_point_id.is_some() || w.site_id.is_some())
                && w.charge_point_id.as_deref().is_none_or(|c| c == cp)
                && w.site_id.as_deref().is_none_or(|s| s == site)
                && w.end.0 > w.start.0
        })
        .map(|w| (w.start.0, w.end.0))
        .collect();
    v.sort();
    let mut merged: Vec<(Millis, Millis)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// What the fault planner knows of a charger.
struct Facts {
    connectors: u32,
    phases: usize,
    /// Expected arrivals per day over all its connectors.
    per_day: f64,
    /// Other chargers share its site.
    has_peers: bool,
}

/// The first draws of a charger's plan stream, made before the faults are placed (the
/// `underused` placement needs the charger's arrival rate).
struct Basics {
    rng: Rng,
    boot: Millis,
    serial: String,
    ambient_c: f64,
    /// Expected arrivals per connector per day.
    per_day: f64,
    rate_per_ms_max: f64,
}

impl Basics {
    fn draw(seed: u64, idx: usize, model: &Model, weight_max: f64, weight_mean: f64) -> Basics {
        let mut rng = stream(seed, PURPOSE_PLAN, idx as u64);
        // Relative to the start; `plan_charger` adds it.
        let boot = rng.between(0, 30 * SECOND);
        let serial = format!("{}{:09}", model.serial_prefix, rng.below(1_000_000_000));
        let ambient_c = rng.range(20.0, 28.0);
        let popularity = rng.range(0.6, 1.4);
        let per_day = if model.dc { 7.0 } else { 3.0 } * popularity;
        let rate_per_ms_max = per_day * (weight_max / weight_mean) / DAY as f64;
        Basics {
            rng,
            boot,
            serial,
            ambient_c,
            per_day,
            rate_per_ms_max,
        }
    }
}

/// Space kept free around a fault: no other fault of the charger, no maintenance, no noise.
const FAULT_PAD: Millis = 30 * MINUTE;
/// An `underused` fault lasts long enough for the charger to have expected this many sessions.
const UNDERUSED_SESSIONS: f64 = 16.0;
const UNDERUSED_MIN: Millis = 6 * HOUR;
const UNDERUSED_MAX: Millis = 20 * HOUR;
/// Traffic before an `underused` or `power_delivery_degraded` fault begins, so the
/// detectors have learned the fleet: a day when the simulated range leaves room for the fault
/// after it, else 4 hours.
const UNDERUSED_WARMUP: Millis = DAY;
const UNDERUSED_SHORT_WARMUP: Millis = 4 * HOUR;

/// How long after its time a fault (and its label) is over, at most.
fn footprint(kind: AnomalyKind, dur: Millis, meter_ms: Millis) -> Millis {
    match kind {
        // Three sessions of ≤ max(50 min, 10 samples) plus ≤ 3.5 min around each, two gaps of
        // ≤ 30 min.
        AnomalyKind::PowerDeliveryDegraded => 4 * HOUR + 30 * meter_ms,
        AnomalyKind::Underused => dur,
        AnomalyKind::ClockSkew => 3 * HOUR + MINUTE,
        AnomalyKind::MessageErrors => 70 * MINUTE,
        // Every other fault (and a fault session) is over within 2.5 h plus a few samples;
        // session_failures: ≤ 5 × 7.5 min plus 4 gaps of ≤ 20 min.
        _ => 150 * MINUTE + 16 * meter_ms,
    }
}

/// Sessions a charger with `per_day` expected arrivals per day (all connectors) would have
/// seen in `[t, t + d)` under the planner's hourly profile.
fn expected_sessions(per_day: f64, t: Millis, d: Millis) -> f64 {
    let mean = HOURLY_WEIGHT.iter().sum::<f64>() / 24.0;
    let mut e = 0.0;
    let mut x = t;
    while x < t + d {
        let hour_end = (x.div_euclid(HOUR) + 1) * HOUR;
        let to = hour_end.min(t + d);
        let w = HOURLY_WEIGHT[(x.rem_euclid(DAY) / HOUR) as usize];
        e += per_day * (w / mean) * (to - x) as f64 / DAY as f64;
        x = to;
    }
    e
}

/// The shortest span from `t` (≥ 6 h, ≤ 20 h, on whole minutes) in which the charger would
/// have expected [`UNDERUSED_SESSIONS`] sessions.
fn underused_span(per_day: f64, t: Millis) -> Option<Millis> {
    let mut d = UNDERUSED_MIN;
    let mut e = expected_sessions(per_day, t, d);
    while e < UNDERUSED_SESSIONS {
        if d >= UNDERUSED_MAX {
            return None;
        }
        e += expected_sessions(per_day, t + d, MINUTE);
        d += MINUTE;
    }
    Some(d)
}

/// Chooses (charger, time) for every fault: `fault_rate` per kind per 100 chargers per day,
/// at least one of each kind whose footprint fits the run, never within 30 min of a
/// maintenance window or another fault of the same charger (so that labels do not overlap
/// and the charger is healthy around each fault). `underused` is placed first (it needs a
/// busy charger and 6–20 h), on its own random stream; the original six kinds draw from the
/// stream they always did.
fn place_faults(
    cfg: &SimulatorConfig,
    start: Millis,
    end: Millis,
    meter_ms: Millis,
    maint: &[Vec<(Millis, Millis)>],
    facts: &[Facts],
) -> Vec<FaultReq> {
    let n = facts.len();
    if n == 0 {
        return Vec::new();
    }
    let per_kind = ((cfg.fault_rate.max(0.0) * n as f64 / 100.0) * (cfg.hours as f64 / 24.0))
        .round()
        .max(1.0) as usize;
    let lo = start + 30 * MINUTE;
    let mut order: Vec<AnomalyKind> = vec![AnomalyKind::Underused];
    order.extend(
        AnomalyKind::ALL
            .iter()
            .copied()
            .filter(|k| *k != AnomalyKind::Underused),
    );
    let original = [
        AnomalyKind::CommunicationLost,
        AnomalyKind::ConnectorFaulted,
        AnomalyKind::PowerSupply,
        AnomalyKind::OverTemperature,
        AnomalyKind::MeterError,
        AnomalyKind::StuckSession,
    ];
    let mut old_rng = stream(cfg.seed, PURPOSE_FAULTS, 0);
    let mut variants = stream(cfg.seed, PURPOSE_FAULTS, 1_000);
    let mut reqs: Vec<FaultReq> = Vec::new();
    for kind in order {
        let mut own;
        let rng: &mut Rng = if original.contains(&kind) {
            &mut old_rng
        } else {
            own = stream(cfg.seed, PURPOSE_FAULTS, 100 + kind as u64);
            &mut own
        };
        let fixed = footprint(kind, 0, meter_ms);
        // The learned detectors' faults come after the warm-up (a day when there is room).
        let warmup = if end - start >= UNDERUSED_WARMUP + 12 * HOUR {
            UNDERUSED_WARMUP
        } else {
            UNDERUSED_SHORT_WARMUP
        };
        let (klo, khi) = if kind == AnomalyKind::Underused {
            (start + warmup, end - UNDERUSED_MIN - FAULT_PAD)
        } else if kind == AnomalyKind::PowerDeliveryDegraded {
            (start + warmup, end - fixed)
        } else {
            (lo, end - fixed)
        };
        if khi <= klo {
            continue;
        }
        for _ in 0..per_kind {
            for _attempt in 0..500 {
                let charger = rng.below(n as u64) as usize;
                let t = rng.between(klo, khi) / SECOND * SECOND;
                let dur = if kind == AnomalyKind::Underused {
                    if !facts[charger].has_peers {
                        continue;
                    }
                    let Some(d) = underused_span(facts[charger].per_day, t) else {
                        continue;
                    };
                    let d = (d + rng.between(0, 30 * MINUTE) / SECOND * SECOND)
                        .min(UNDERUSED_MAX)
                        .min(end - FAULT_PAD - t);
                    if expected_sessions(facts[charger].per_day, t, d) < UNDERUSED_SESSIONS {
                        continue;
                    }
                    d
                } else {
                    0
                };
                let fp = footprint(kind, dur, meter_ms);
                let clash_fault = reqs.iter().any(|r| {
                    r.charger == charger
                        && t < r.t + footprint(r.kind, r.dur, meter_ms) + FAULT_PAD
                        && r.t < t + fp + FAULT_PAD
                });
                let clash_maint = maint[charger]
                    .iter()
                    .any(|&(ws, we)| t + fp + FAULT_PAD > ws && t < we + FAULT_PAD);
                if clash_fault || clash_maint {
                    continue;
                }
                let connector = 1 + rng.below(facts[charger].connectors as u64) as u32;
                let variant = if kind == AnomalyKind::PowerSupply {
                    let r = variants.f64();
                    if r < 0.3 {
                        PowerVariant::AllPhases
                    } else if r < 0.5 {
                        if facts[charger].phases == 3 {
                            PowerVariant::OnePhase
                        } else {
                            PowerVariant::AllPhases
                        }
                    } else if r < 0.75 {
                        PowerVariant::Frequency
                    } else {
                        PowerVariant::PowerLoss
                    }
                } else {
                    PowerVariant::AllPhases
                };
                reqs.push(FaultReq {
                    kind,
                    charger,
                    connector,
                    t,
                    dur,
                    variant,
                });
                break;
            }
        }
    }
    reqs.sort_by_key(|r| (r.charger, r.t));
    reqs
}

/// Per-charger facts the session planner needs.
struct ChargerCtx<'a> {
    id: &'a str,
    site: usize,
    model: &'static Model,
    rate_per_ms_max: f64,
    /// Spans around the charger's faults (padded by [`FAULT_PAD`]) that get no session noise.
    quiet: &'a [(Millis, Millis)],
}

impl ChargerCtx<'_> {
    fn quiet(&self, from: Millis, to: Millis) -> bool {
        overlaps(self.quiet, from, to)
    }
}

/// Whether `[from, to)` overlaps one of `spans`.
fn overlaps(spans: &[(Millis, Millis)], from: Millis, to: Millis) -> bool {
    spans.iter().any(|&(s, e)| from < e && s < to)
}

#[allow(clippy::too_many_arguments)]
fn plan_charger(
    ctx: &PlanCtx,
    idx: usize,
    id: String,
    site: usize,
    model: &'static Model,
    connectors: u32,
    basics: Basics,
    maint: &[(Millis, Millis)],
    reqs: &[FaultReq],
    carry: Option<&[f64]>,
    labels: &mut Vec<Label>,
) -> ChargerPlan {
    let Basics {
        mut rng,
        boot,
        serial,
        ambient_c,
        rate_per_ms_max,
        ..
    } = basics;
    let boot = ctx.start + boot;
    let mi = ctx.meter_ms;

    let in_maint = |t: Millis| maint.iter().any(|&(s, e)| s <= t && t < e);
    let mut sys = vec![
        SysEvent {
            t: boot,
            what: SysWhat::Boot,
        },
        SysEvent {
            t: boot + SECOND,
            what: SysWhat::AllStatus(if in_maint(boot + SECOND) {
                ConnectorStatus::Unavailable
            } else {
                ConnectorStatus::Available
            }),
        },
    ];
    if ctx.range > 0 {
        // A later range of a live run continues the running charger: no reboot.
        sys.remove(0);
    }
    for &(ws, we) in maint {
        if ws > boot + SECOND && ws < ctx.end {
            sys.push(SysEvent {
                t: ws,
                what: SysWhat::AllStatus(ConnectorStatus::Unavailable),
            });
        }
        if we > boot + SECOND && we < ctx.end {
            sys.push(SysEvent {
                t: we,
                what: SysWhat::AllStatus(ConnectorStatus::Available),
            });
        }
    }

    // Blocks: periods in which a connector must be idle (padded so that sessions end well
    // before and the charger has reported its state after).
    let mut shared_blocks: Vec<(Millis, Millis)> = maint
        .iter()
        .map(|&(s, e)| (s - 10 * MINUTE, e + 2 * MINUTE))
        .collect();
    if ctx.live {
        shared_blocks.push((ctx.end - RANGE_END_QUIET, ctx.end));
    }
    let nconn = connectors as usize;
    let quiet: Vec<(Millis, Millis)> = reqs
        .iter()
        .map(|r| {
            (
                r.t - FAULT_PAD,
                r.t + footprint(r.kind, r.dur, mi) + FAULT_PAD,
            )
        })
        .collect();
    let mut detail = stream(ctx.seed, PURPOSE_FAULT_DETAIL, idx as u64);
    let mut conn_blocks: Vec<Vec<(Millis, Millis)>> = vec![Vec::new(); nconn];
    let mut faulted: Vec<Vec<Episode>> = vec![Vec::new(); nconn];
    let mut forced: Vec<Vec<(Millis, Force)>> = vec![Vec::new(); nconn];
    let mut outages = Vec::new();
    let mut skews = Vec::new();
    let mut errs = Vec::new();
    for r in reqs {
        let c = (r.connector.max(1) as usize - 1).min(nconn - 1);
        let charger_wide = |start: Millis, end: Millis| Label {
            kind: r.kind,
            charge_point_id: id.clone(),
            connector_id: None,
            start,
            end,
        };
        match r.kind {
            AnomalyKind::CommunicationLost => {
                let d = rng.between(30 * MINUTE, 90 * MINUTE) / SECOND * SECOND;
                outages.push((r.t, r.t + d));
                sys.push(SysEvent {
                    t: r.t + d,
                    what: SysWhat::Boot,
                });
                sys.push(SysEvent {
                    t: r.t + d + SECOND,
                    what: SysWhat::AllStatus(ConnectorStatus::Available),
                });
                shared_blocks.push((r.t - 10 * MINUTE, r.t + d + 2 * MINUTE));
                labels.push(charger_wide(r.t, r.t + d));
            }
            AnomalyKind::ConnectorFaulted => {
                let d = rng.between(20 * MINUTE, 60 * MINUTE) / SECOND * SECOND;
                let code = *rng.pick(&FAULT_CODES);
                faulted[c].push(Episode::Faulted {
                    start: r.t,
                    end: r.t + d,
                    code,
                });
                conn_blocks[c].push((r.t - 10 * MINUTE, r.t + d + 2 * MINUTE));
                labels.push(Label {
                    kind: r.kind,
                    charge_point_id: id.clone(),
                    connector_id: Some(c as u32 + 1),
                    start: r.t,
                    end: r.t + d,
                });
            }
            AnomalyKind::Underused => {
                // No arrivals in [t, t + dur); sessions before end by t.
                shared_blocks.push((r.t, r.t + r.dur));
                labels.push(charger_wide(r.t, r.t + r.dur));
            }
            AnomalyKind::ClockSkew => {
                let d = detail.between(HOUR, 3 * HOUR) / SECOND * SECOND;
                let size = detail.between(4 * MINUTE, 20 * MINUTE);
                let offset = if detail.chance(0.5) { size } else { -size };
                skews.push(Skew {
                    from: r.t,
                    to: r.t + d,
                    offset,
                });
                // A session soon after the jump, so that the charger sends timestamps.
                let arrive = r.t + detail.between(2 * MINUTE, 15 * MINUTE) / SECOND * SECOND;
                forced[c].push((arrive, Force::Plain));
                labels.push(charger_wide(r.t, r.t + d));
            }
            AnomalyKind::MessageErrors => {
                let d = detail.between(20 * MINUTE, 60 * MINUTE);
                let code0 = detail.below(CALL_ERRORS.len() as u64);
                let shape0 = detail.below(MALFORMED_VARIANTS as u64);
                let mut t = r.t;
                let mut last = t;
                let mut k = 0u64;
                while t <= r.t + d {
                    let what = if k.is_multiple_of(2) {
                        ErrWhat::CallError(((code0 + k / 2) % CALL_ERRORS.len() as u64) as u8)
                    } else {
                        ErrWhat::Malformed(((shape0 + k / 2) % MALFORMED_VARIANTS as u64) as u8)
                    };
                    errs.push(ErrFrame {
                        t,
                        connector: c as u32 + 1,
                        what,
                    });
                    last = t;
                    k += 1;
                    t += detail.between(20 * SECOND, 60 * SECOND);
                }
                labels.push(charger_wide(r.t, last));
            }
            AnomalyKind::PowerSupply if r.variant == PowerVariant::PowerLoss => {
                // The session arrives at t; ≥ 3 samples, then 1–4 min of silence, a reboot
                // and the interrupted transaction's stop. The other connectors stay idle.
                let at = r.t + detail.between(3 * mi + 30 * SECOND, 6 * mi);
                let back = at + detail.between(MINUTE, 4 * MINUTE);
                let stop = back + detail.between(5 * SECOND, 12 * SECOND);
                outages.push((at, back));
                sys.push(SysEvent {
                    t: back,
                    what: SysWhat::Boot,
                });
                sys.push(SysEvent {
                    t: back + SECOND,
                    what: SysWhat::Restored { skip: c as u32 + 1 },
                });
                for (o, blocks) in conn_blocks.iter_mut().enumerate() {
                    if o != c {
                        blocks.push((r.t - 10 * MINUTE, stop + 5 * MINUTE));
                    }
                }
                forced[c].push((r.t, Force::PowerLoss { at, stop }));
            }
            AnomalyKind::PowerDeliveryDegraded => forced[c].push((r.t, Force::Degraded)),
            AnomalyKind::SessionFailures => forced[c].push((r.t, Force::Failures)),
            kind => forced[c].push((r.t, Force::Fault(kind, r.variant))),
        }
    }
    sys.sort_by_key(|e| e.t);
    outages.sort();
    skews.sort_by_key(|s: &Skew| s.from);

    let cctx = ChargerCtx {
        id: &id,
        site,
        model,
        rate_per_ms_max,
        quiet: &quiet,
    };
    let mut conns: Vec<Vec<Episode>> = Vec::with_capacity(nconn);
    let mut reg_end = Vec::with_capacity(nconn);
    for c in 0..nconn {
        let mut blocks = shared_blocks.clone();
        blocks.extend_from_slice(&conn_blocks[c]);
        blocks.sort();
        forced[c].sort_by_key(|f| f.0);
        let (sessions, reg) = plan_connector(
            ctx,
            &cctx,
            &mut rng,
            c as u32 + 1,
            boot + 2 * MINUTE,
            carry.and_then(|r| r.get(c).copied()),
            &blocks,
            &forced[c],
            labels,
        );
        reg_end.push(reg);
        let mut eps: Vec<Episode> = sessions.into_iter().map(Episode::Session).collect();
        eps.append(&mut faulted[c]);
        eps.sort_by_key(|e| e.begin());
        conns.push(eps);
    }

    // Transaction ids in order of start, as a backend hands them out.
    let mut order: Vec<(Millis, usize, usize)> = Vec::new();
    for (c, eps) in conns.iter().enumerate() {
        for (i, e) in eps.iter().enumerate() {
            if let Episode::Session(s) = e {
                order.push((s.start, c, i));
            }
        }
    }
    order.sort();
    for (n, &(_, c, i)) in order.iter().enumerate() {
        if let Episode::Session(s) = &mut conns[c][i] {
            s.tx_id = ctx.range as i64 * TX_PER_RANGE + (idx as i64 + 1) * 100_000 + n as i64 + 1;
        }
    }

    // Healthy noise, on its own stream, away from the faults.
    let mut chat = stream(ctx.seed, PURPOSE_CHATTER, idx as u64);
    let clock = chat.between(-30 * SECOND, 30 * SECOND);
    // A charger keeps its clock across the ranges of a live run (a jump would make its
    // events late).
    let clock = if ctx.range == 0 {
        clock
    } else {
        stream(ctx.layout_seed, PURPOSE_CHATTER, idx as u64).between(-30 * SECOND, 30 * SECOND)
    };
    let busy: Vec<(Millis, Millis)> = conns
        .iter()
        .flatten()
        .map(|e| match e {
            Episode::Session(s) => (s.arrive, s.available + SECOND),
            Episode::Faulted { start, end, .. } => (*start, *end + SECOND),
        })
        .collect();
    let hb = ctx.heartbeat_ms;
    let mut lapses: Vec<(Millis, Millis)> = Vec::new();
    let mut lapse_spans: Vec<(Millis, Millis)> = Vec::new();
    if chat.chance(0.1) {
        // A few times a day, while idle, the heartbeat after `t` comes 1.0–1.5 intervals
        // after the previous one.
        let rate = 3.0 / DAY as f64;
        let mut t = boot + 2 * hb;
        loop {
            t += (-(1.0 - chat.f64()).ln() / rate) as Millis;
            let gap = (hb as f64 * chat.range(1.0, 1.5)) as Millis;
            if t >= ctx.end {
                break;
            }
            let (from, to) = (t - hb - 2 * MINUTE, t + gap + 2 * MINUTE);
            let clear = to < ctx.end
                && !overlaps(&busy, from, to)
                && !overlaps(&quiet, from, to)
                && !sys.iter().any(|e| from <= e.t && e.t < to)
                && lapses.last().is_none_or(|l| t - l.0 > 2 * HOUR);
            if clear {
                lapses.push((t, gap));
                lapse_spans.push((from, to));
            }
        }
    }
    // About one CALLERROR per 2 days and one malformed frame per 4 days, never two within an
    // hour.
    let mut stray: Vec<ErrFrame> = Vec::new();
    for (per_day, malformed) in [(0.5, false), (0.25, true)] {
        let rate = per_day / DAY as f64;
        let mut t = boot + 5 * MINUTE;
        loop {
            t += (-(1.0 - chat.f64()).ln() / rate) as Millis;
            if t >= ctx.end - MINUTE {
                break;
            }
            let what = if malformed {
                ErrWhat::Malformed(chat.below(MALFORMED_VARIANTS as u64) as u8)
            } else {
                ErrWhat::CallError(chat.below(CALL_ERRORS.len() as u64) as u8)
            };
            let connector = 1 + chat.below(connectors as u64) as u32;
            stray.push(ErrFrame { t, connector, what });
        }
    }
    stray.sort_by_key(|e| e.t);
    let mut last: Option<Millis> = None;
    for e in stray {
        let alone = last.is_none_or(|l| e.t - l >= HOUR);
        if alone && !overlaps(&quiet, e.t, e.t + 1) && !overlaps(&lapse_spans, e.t, e.t + 1) {
            errs.push(e);
            last = Some(e.t);
        }
    }
    errs.sort_by_key(|e| e.t);

    ChargerPlan {
        id,
        site,
        model,
        connectors,
        serial,
        ambient_c,
        outages,
        sys,
        boot,
        conns,
        clock,
        skews,
        lapses,
        errs,
        reg_end,
    }
}

/// Next arrival at or after `t` of a Poisson process with the hourly profile (thinning).
fn next_arrival(ctx: &PlanCtx, rate_max: f64, rng: &mut Rng, mut t: Millis) -> Option<Millis> {
    if rate_max <= 0.0 {
        return None;
    }
    loop {
        let gap = -(1.0 - rng.f64()).ln() / rate_max;
        t += (gap as Millis).max(1);
        if t >= ctx.end {
            return None;
        }
        let hour = (t.rem_euclid(DAY) / HOUR) as usize;
        if rng.f64() * ctx.weight_max < HOURLY_WEIGHT[hour] {
            return Some(t);
        }
    }
}

/// The first block start after `t`, or the next forced session (minus a gap).
fn deadline(blocks: &[(Millis, Millis)], next_forced: Option<Millis>, t: Millis) -> Millis {
    let b = blocks.iter().find(|b| b.0 > t).map_or(Millis::MAX, |b| b.0);
    b.min(next_forced.map_or(Millis::MAX, |f| f - 2 * MINUTE))
}

#[allow(clippy::too_many_arguments)]
fn plan_connector(
    ctx: &PlanCtx,
    ch: &ChargerCtx,
    rng: &mut Rng,
    conn: u32,
    from: Millis,
    reg0: Option<f64>,
    blocks: &[(Millis, Millis)],
    forced: &[(Millis, Force)],
    labels: &mut Vec<Label>,
) -> (Vec<SessionPlan>, f64) {
    // Drawn either way, so that a carried register changes nothing else.
    let fresh = rng.range(1.0e6, 6.0e7).floor();
    let mut reg = reg0.unwrap_or(fresh);
    let mut t = from;
    let mut fi = 0;
    let mut out = Vec::new();
    loop {
        let ta = next_arrival(ctx, ch.rate_per_ms_max, rng, t);
        if let Some(&(tf, force)) = forced.get(fi) {
            if ta.is_none_or(|ta| ta >= tf) {
                let s0 = tf.max(t);
                let dl = deadline(blocks, forced.get(fi + 1).map(|f| f.0), s0);
                let series = match force {
                    Force::Degraded => Some((
                        AnomalyKind::PowerDeliveryDegraded,
                        3,
                        SessionKind::Degraded,
                        (5 * MINUTE, 30 * MINUTE),
                    )),
                    Force::Failures => Some((
                        AnomalyKind::SessionFailures,
                        rng.between(3, 5),
                        SessionKind::Failed,
                        (3 * MINUTE, 20 * MINUTE),
                    )),
                    _ => None,
                };
                if let Some((kind, n, sk, (gap_lo, gap_hi))) = series {
                    // Sessions back to back; labelled (and kept) only if all of them fit.
                    let mut planned = Vec::new();
                    let mut r = reg;
                    let mut at = s0;
                    for _ in 0..n {
                        match plan_session(ctx, ch, rng, conn, at, sk, dl, r, labels) {
                            Some((s, r_end)) => {
                                r = r_end;
                                at = s.available + rng.between(gap_lo, gap_hi) / SECOND * SECOND;
                                planned.push(s);
                            }
                            None => break,
                        }
                    }
                    if planned.len() == n as usize {
                        labels.push(Label {
                            kind,
                            charge_point_id: ch.id.to_string(),
                            connector_id: Some(conn),
                            start: planned[0].start,
                            end: planned[planned.len() - 1].stop,
                        });
                        reg = r;
                        t = planned[planned.len() - 1].available + MINUTE;
                        out.append(&mut planned);
                    }
                } else {
                    let sk = match force {
                        Force::Fault(kind, v) => SessionKind::Fault(kind, v),
                        Force::PowerLoss { at, stop } => SessionKind::PowerLoss { at, stop },
                        _ => SessionKind::Plain,
                    };
                    if let Some((s, reg_end)) =
                        plan_session(ctx, ch, rng, conn, s0, sk, dl, reg, labels)
                    {
                        reg = reg_end;
                        t = s.available + MINUTE;
                        out.push(s);
                    }
                }
                fi += 1;
                continue;
            }
        }
        let Some(ta) = ta else { break };
        if let Some(b) = blocks.iter().find(|b| b.0 <= ta && ta < b.1) {
            t = b.1;
            continue;
        }
        let dl = deadline(blocks, forced.get(fi).map(|f| f.0), ta);
        match plan_session(
            ctx,
            ch,
            rng,
            conn,
            ta,
            SessionKind::Natural,
            dl,
            reg,
            labels,
        ) {
            Some((s, reg_end)) => {
                reg = reg_end;
                t = s.available + MINUTE;
                out.push(s);
            }
            None => t = ta,
        }
    }
    (out, reg)
}

/// When an EV would be full if nothing stopped it (sampled like the emitter samples).
fn time_to_full(ev: &Ev, start: Millis, mi: Millis) -> Millis {
    let mut ch = Charge::new(start, ev.soc0);
    for k in 1..=20_000 {
        ch.advance(ev, start + k * mi, Millis::MAX);
        if let Some(f) = ch.full_at {
            return f;
        }
    }
    Millis::MAX
}

/// Plans one session arriving at `arrive`; `None` if it cannot fit before `deadline`.
/// Returns the plan and the connector's register after it. Pushes the label of a
/// single-session fault (`SessionKind::Fault`, `SessionKind::PowerLoss`).
#[allow(clippy::too_many_arguments)]
fn plan_session(
    ctx: &PlanCtx,
    ch: &ChargerCtx,
    rng: &mut Rng,
    conn: u32,
    arrive: Millis,
    kind: SessionKind,
    deadline: Millis,
    reg0: f64,
    labels: &mut Vec<Label>,
) -> Option<(SessionPlan, f64)> {
    let mi = ctx.meter_ms;
    let model = ch.model;
    // Any session the fault planner asked for: no noise, cut rather than dropped.
    let forced = kind != SessionKind::Natural;
    // A session carrying a fault: a nearly empty, big battery so the fault happens while
    // charging.
    let (fault, power_loss) = match kind {
        SessionKind::Fault(k, v) => (Some((k, v)), None),
        SessionKind::PowerLoss { at, stop } => (
            Some((AnomalyKind::PowerSupply, PowerVariant::PowerLoss)),
            Some((at, stop)),
        ),
        _ => (None, None),
    };
    let preparing = arrive + rng.between(2 * SECOND, 6 * SECOND);
    let start = arrive + rng.between(8 * SECOND, 25 * SECOND);
    let charging = start + rng.between(800, 2 * SECOND);
    let driver = if rng.chance(0.6) {
        ((ch.site as u64 * 17 + rng.below(12)) % ctx.drivers) as u32
    } else {
        rng.below(ctx.drivers) as u32
    };

    let (cap_wh, soc0, target) = if fault.is_some() {
        (
            rng.range(70_000.0, 100_000.0),
            rng.range(10.0, 25.0),
            rng.range(95.0, 100.0),
        )
    } else if kind == SessionKind::Degraded {
        // A normal start; big enough not to be full before ≥ 5 samples at the capped power.
        (
            rng.range(60_000.0, 100_000.0),
            rng.range(10.0, 50.0),
            rng.range(90.0, 100.0),
        )
    } else {
        (
            rng.range(40_000.0, 100_000.0),
            rng.range(10.0, 60.0),
            rng.range(80.0, 100.0),
        )
    };
    let ev_power = if model.dc {
        rng.range(
            50_000.0,
            if fault.is_some() {
                150_000.0
            } else {
                250_000.0
            },
        )
    } else {
        let r = rng.f64();
        if r < 0.05 {
            3_700.0
        } else if r < 0.30 {
            7_400.0
        } else if r < 0.85 {
            11_000.0
        } else {
            22_000.0
        }
    };
    // Healthy noise: a session that delivers next to nothing (never near a fault).
    let zero = !forced && rng.chance(0.04) && !ch.quiet(arrive, start + 8 * MINUTE);
    let p_max = if zero || kind == SessionKind::Failed {
        rng.range(0.0, 30.0)
    } else if kind == SessionKind::Degraded {
        ev_power
            .min(model.power_w)
            .min(model.power_w * rng.range(0.08, 0.13))
    } else {
        ev_power.min(model.power_w)
    };
    let ev = Ev {
        cap_wh,
        soc0,
        target,
        p_max,
        dc: model.dc,
    };
    let dc_voltage = if rng.chance(0.3) {
        rng.range(650.0, 780.0)
    } else {
        rng.range(340.0, 420.0)
    };
    let dwell = if model.dc {
        rng.lognormal_ms(35 * MINUTE, 0.35, 12 * MINUTE, 90 * MINUTE)
    } else {
        rng.lognormal_ms(2 * HOUR, 0.6, 20 * MINUTE, 9 * HOUR)
    };
    let mut stop = start + dwell;
    let mut halt = Millis::MAX;
    let mut mute = Millis::MAX;
    let mut sfault = SessionFault::None;
    let mut noisy = None;
    // The last sample the fault needs (its label's end must precede the stop).
    let mut needs_until = charging;
    // Sessions that must not be cut short to fit.
    let mut whole = false;
    if zero {
        stop = start + rng.between(2 * MINUTE, 8 * MINUTE);
    } else if !forced && rng.chance(0.1) {
        let window = (rng.between(1, 10) as u32, rng.between(1, 3) as u32);
        if !ch.quiet(arrive, stop + 3 * MINUTE) {
            noisy = Some(window);
        }
    }
    match kind {
        SessionKind::Degraded => {
            stop = start + rng.between((20 * MINUTE).max(7 * mi), (50 * MINUTE).max(10 * mi));
            needs_until = start + 6 * mi;
        }
        SessionKind::Failed => {
            stop = start + rng.between(MINUTE, 4 * MINUTE);
            needs_until = stop;
            whole = true;
        }
        SessionKind::Plain => needs_until = start + 3 * mi,
        _ => {}
    }
    match fault {
        Some((AnomalyKind::PowerSupply, PowerVariant::PowerLoss)) => {
            let (at, end) = power_loss.expect("a power loss has its times");
            halt = at;
            mute = at;
            stop = end;
            sfault = SessionFault::PowerLoss { at };
            needs_until = stop;
            whole = true;
        }
        Some((AnomalyKind::PowerSupply, _)) | Some((AnomalyKind::OverTemperature, _)) => {
            let from = rng.between(2, 4) as u32;
            let n = rng.between(5, 8) as u32;
            sfault = match fault {
                Some((AnomalyKind::PowerSupply, PowerVariant::Frequency)) => {
                    let level = if rng.chance(0.5) {
                        rng.range(48.7, 49.3)
                    } else {
                        rng.range(50.7, 51.3)
                    };
                    SessionFault::Frequency { from, n, level }
                }
                Some((AnomalyKind::PowerSupply, v)) => {
                    let level = if rng.chance(0.7) {
                        rng.range(186.0, 194.0)
                    } else {
                        rng.range(258.0, 262.0)
                    };
                    let phase = (v == PowerVariant::OnePhase && model.phases == 3)
                        .then(|| 1 + rng.below(2) as u8);
                    SessionFault::Voltage {
                        from,
                        n,
                        level,
                        phase,
                    }
                }
                _ => SessionFault::Temperature {
                    from,
                    n,
                    level: rng.range(82.0, 93.0),
                },
            };
            needs_until = start + (from + n) as Millis * mi;
            stop = stop.max(needs_until + 2 * mi + rng.between(0, 20 * MINUTE));
        }
        Some((AnomalyKind::MeterError, _)) => {
            let k = rng.between(3, 8) as u32;
            let delta = if rng.chance(0.5) {
                rng.range(1.0e6, 3.0e6).floor()
            } else {
                -(rng.range(2.0e5, 2.0e6).min(reg0 * 0.8)).floor()
            };
            sfault = SessionFault::MeterJump { k, delta };
            needs_until = start + k as Millis * mi;
            stop = stop.max(needs_until + 2 * mi + rng.between(0, 20 * MINUTE));
        }
        Some((AnomalyKind::StuckSession, _)) => {
            let full = time_to_full(&ev, start, mi);
            let max_k = ((full.saturating_sub(start)) / mi - 1).max(1);
            let k = rng.between(3, 6).min(max_k);
            halt = start + k * mi;
            stop = halt + rng.between(40 * MINUTE, 90 * MINUTE);
            needs_until = stop;
            whole = true;
        }
        _ => {}
    }

    // Fit before the next block: a driver asked to leave, or no session at all.
    let latest = deadline.saturating_sub(3 * MINUTE);
    if stop > latest {
        if forced {
            if latest < needs_until + mi || whole {
                return None;
            }
            stop = latest;
        } else if latest - start >= 30 * MINUTE {
            stop = latest - rng.between(0, 10 * MINUTE);
        } else {
            return None;
        }
    }
    let finishing = stop + rng.between(SECOND, 3 * SECOND);
    let available = stop + rng.between(10 * SECOND, 3 * MINUTE);

    // Run the integrator exactly as the emitter will.
    let mut c = Charge::new(start, soc0);
    let mut k: Millis = 1;
    while start + k * mi < stop.min(mute) {
        c.advance(&ev, start + k * mi, halt);
        k += 1;
    }
    c.advance(&ev, stop, halt);
    let jump = match sfault {
        SessionFault::MeterJump { k: jk, delta } if (jk as Millis) < k => delta,
        _ => 0.0,
    };
    let reg_end = reg0 + c.e_wh + jump;

    let reason = if power_loss.is_some() {
        "PowerLoss"
    } else if kind == SessionKind::Failed {
        rng.pick(&FAILED_REASONS)
    } else if zero {
        if rng.chance(0.5) {
            "Local"
        } else {
            "EVDisconnected"
        }
    } else if halt != Millis::MAX {
        "Remote"
    } else if c.full_at.is_some() {
        if rng.chance(0.6) {
            "EVDisconnected"
        } else {
            "Local"
        }
    } else if rng.chance(0.7) {
        "Local"
    } else {
        "EVDisconnected"
    };

    if let Some((kind, _)) = fault {
        let (ls, le) = match sfault {
            SessionFault::Voltage { from, n, .. }
            | SessionFault::Frequency { from, n, .. }
            | SessionFault::Temperature { from, n, .. } => (
                start + from as Millis * mi,
                start + (from + n) as Millis * mi,
            ),
            SessionFault::MeterJump { k, .. } => (start + k as Millis * mi, stop),
            SessionFault::PowerLoss { at } => (at, stop),
            SessionFault::None => (halt, stop),
        };
        labels.push(Label {
            kind,
            charge_point_id: ch.id.to_string(),
            connector_id: Some(conn),
            start: ls,
            end: le,
        });
    }

    Some((
        SessionPlan {
            arrive,
            preparing,
            start,
            charging,
            stop,
            finishing,
            available,
            tx_id: 0,
            driver,
            reg0,
            ev,
            halt,
            mute,
            full_at: c.full_at,
            fault: sfault,
            noisy,
            reason,
            dc_voltage,
        },
        reg_end,
    ))
}

// ---------------------------------------------------------------------------------------------
// Emission
// ---------------------------------------------------------------------------------------------

/// A rendered line in the worker's scratch buffer.
#[derive(Clone, Copy, Debug)]
struct LineRef {
    recv: Millis,
    charger: u32,
    k: u32,
    start: usize,
    end: usize,
}

#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    lines: Vec<LineRef>,
}

fn push_2(b: &mut Vec<u8>, v: i64) {
    b.push(b'0' + (v / 10 % 10) as u8);
    b.push(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, like [`crate::time::format_rfc3339`] but without allocating.
fn push_ts(b: &mut Vec<u8>, t: Millis) {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let ms = t.rem_euclid(DAY);
    let s = ms / 1000;
    if (0..10_000).contains(&y) {
        push_2(b, y / 100);
        push_2(b, y % 100);
    } else {
        push_int(b, y);
    }
    b.push(b'-');
    push_2(b, m as i64);
    b.push(b'-');
    push_2(b, d as i64);
    b.push(b'T');
    push_2(b, s / 3600);
    b.push(b':');
    push_2(b, s / 60 % 60);
    b.push(b':');
    push_2(b, s % 60);
    b.push(b'.');
    b.push(b'0' + (ms % 1000 / 100) as u8);
    push_2(b, ms % 100);
    b.push(b'Z');
}

fn push_int(b: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        b.push(b'-');
    }
    b.extend_from_slice(&tmp[i..]);
}

/// A number with one decimal (`230.4`).
fn push_fixed1(b: &mut Vec<u8>, x: f64) {
    let v = (x * 10.0).round() as i64;
    if v < 0 {
        b.push(b'-');
    }
    let a = v.unsigned_abs() as i64;
    push_int(b, a / 10);
    b.push(b'.');
    b.push(b'0' + (a % 10) as u8);
}

/// A number with two decimals (`49.98`).
fn push_fixed2(b: &mut Vec<u8>, x: f64) {
    let v = (x * 100.0).round() as i64;
    if v < 0 {
        b.push(b'-');
    }
    let a = v.unsigned_abs() as i64;
    push_int(b, a / 100);
    b.push(b'.');
    push_2(b, a % 100);
}

/// A charger's connection to the backend: message ids, latencies, receive times.
struct Link {
    idx: u32,
    rng: Rng,
    msg: u64,
    last_recv: Millis,
    /// Lines of this charger in the current slice.
    k: u32,
    /// What the charger's clock adds to the true time of the event being written.
    clock: Millis,
    /// Message ids of the backend's requests the charger answers with a CALLERROR.
    backend_msg: u64,
}

impl Link {
    fn open(&mut self, out: &mut Out, cp: &str, recv: Millis) -> usize {
        let start = out.buf.len();
        let b = &mut out.buf;
        b.extend_from_slice(b"{\"timestamp\":\"");
        push_ts(b, recv);
        b.extend_from_slice(b"\",\"charge_point_id\":\"");
        b.extend_from_slice(cp.as_bytes());
        b.extend_from_slice(b"\",\"message\":");
        start
    }

    fn close(&mut self, out: &mut Out, start: usize, recv: Millis) {
        out.buf.extend_from_slice(b"]}");
        out.lines.push(LineRef {
            recv,
            charger: self.idx,
            k: self.k,
            start,
            end: out.buf.len(),
        });
        self.k += 1;
    }

    /// Writes a CALL sent at `t`; `payload` writes the payload object. Returns the message id
    /// and the receive time.
    fn call(
        &mut self,
        out: &mut Out,
        cp: &str,
        t: Millis,
        action: &str,
        payload: impl FnOnce(&mut Vec<u8>),
    ) -> (u64, Millis) {
        self.msg += 1;
        let recv = (t + self.rng.between(50, 400)).max(self.last_recv + 1);
        self.last_recv = recv;
        let start = self.open(out, cp, recv);
        let b = &mut out.buf;
        b.extend_from_slice(b"[2,\"");
        push_int(b, self.msg as i64);
        b.extend_from_slice(b"\",\"");
        b.extend_from_slice(action.as_bytes());
        b.extend_from_slice(b"\",");
        payload(b);
        self.close(out, start, recv);
        (self.msg, recv)
    }

    /// Writes the backend's CALLRESULT to message `id`, a few ms after its receipt.
    fn result(
        &mut self,
        out: &mut Out,
        cp: &str,
        id: u64,
        call_recv: Millis,
        payload: impl FnOnce(&mut Vec<u8>, Millis),
    ) {
        let recv = (call_recv + self.rng.between(2, 25)).max(self.last_recv + 1);
        self.last_recv = recv;
        let start = self.open(out, cp, recv);
        let b = &mut out.buf;
        b.extend_from_slice(b"[3,\"");
        push_int(b, id as i64);
        b.extend_from_slice(b"\",");
        payload(b, recv);
        self.close(out, start, recv);
    }

    fn status(
        &mut self,
        out: &mut Out,
        cp: &str,
        t: Millis,
        connector: u32,
        status: ConnectorStatus,
        error_code: &str,
    ) {
        let ts = t + self.clock;
        self.call(out, cp, t, "StatusNotification", |b| {
            b.extend_from_slice(b"{\"connectorId\":");
            push_int(b, connector as i64);
            b.extend_from_slice(b",\"errorCode\":\"");
            b.extend_from_slice(error_code.as_bytes());
            b.extend_from_slice(b"\",\"status\":\"");
            b.extend_from_slice(status.as_str().as_bytes());
            b.extend_from_slice(b"\",\"timestamp\":\"");
            push_ts(b, ts);
            b.extend_from_slice(b"\"}");
        });
    }

    /// Writes a CALLERROR sent at `t`: the charger's answer to a backend request.
    fn call_error(&mut self, out: &mut Out, cp: &str, t: Millis, code: usize) {
        self.backend_msg += 1;
        let recv = (t + self.rng.between(50, 400)).max(self.last_recv + 1);
        self.last_recv = recv;
        let start = self.open(out, cp, recv);
        let b = &mut out.buf;
        let (code, description) = CALL_ERRORS[code % CALL_ERRORS.len()];
        b.extend_from_slice(b"[4,\"cs-");
        push_int(b, self.backend_msg as i64);
        b.extend_from_slice(b"\",\"");
        b.extend_from_slice(code.as_bytes());
        b.extend_from_slice(b"\",\"");
        b.extend_from_slice(description.as_bytes());
        b.extend_from_slice(b"\",{}");
        self.close(out, start, recv);
    }

    /// Writes a CALL sent at `t` that evflow's decoder rejects (a firmware bug's output).
    fn malformed(&mut self, out: &mut Out, cp: &str, t: Millis, connector: u32, shape: u8) {
        let ts = t + self.clock;
        let action = if shape == 2 {
            "StatusNotification"
        } else {
            "MeterValues"
        };
        self.call(out, cp, t, action, |b| {
            write_malformed(b, shape, connector, ts)
        });
    }
}

/// The payload of a malformed CALL: 0 — MeterValues with `meterValues` for `meterValue`
/// (the required field is missing); 1 — MeterValues with a string `connectorId`; 2 — a
/// StatusNotification without `status`.
fn write_malformed(b: &mut Vec<u8>, shape: u8, connector: u32, ts: Millis) {
    match shape % MALFORMED_VARIANTS {
        0 => {
            b.extend_from_slice(b"{\"connectorId\":");
            push_int(b, connector as i64);
            b.extend_from_slice(b",\"meterValues\":[{\"timestamp\":\"");
            push_ts(b, ts);
            b.extend_from_slice(
                b"\",\"sampledValue\":[{\"value\":\"0.0\",\"measurand\":\"Power.Active.Import\",\"unit\":\"W\"}]}]}",
            );
        }
        1 => {
            b.extend_from_slice(b"{\"connectorId\":\"");
            push_int(b, connector as i64);
            b.extend_from_slice(b"\",\"meterValue\":[{\"timestamp\":\"");
            push_ts(b, ts);
            b.extend_from_slice(
                b"\",\"sampledValue\":[{\"value\":\"0.0\",\"measurand\":\"Power.Active.Import\",\"unit\":\"W\"}]}]}",
            );
        }
        _ => {
            b.extend_from_slice(b"{\"connectorId\":");
            push_int(b, connector as i64);
            b.extend_from_slice(b",\"errorCode\":\"NoError\",\"timestamp\":\"");
            push_ts(b, ts);
            b.extend_from_slice(b"\"}");
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Authorize,
    Preparing,
    Start,
    Charging,
    Run,
    Finishing,
    Available,
    FaultBegin,
    FaultEnd,
    Done,
}

/// What happens next inside a running session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunEvent {
    Suspend,
    Sample,
    Stop,
}

/// Where a connector is in its list of episodes.
struct ConnCursor {
    ep: usize,
    step: Step,
    /// Next sample index (sample k is at start + k·meter interval).
    k: u32,
    charge: Charge,
    suspended: bool,
    noise: Rng,
}

impl ConnCursor {
    fn new(eps: &[Episode], seed: u64) -> ConnCursor {
        let mut c = ConnCursor {
            ep: 0,
            step: Step::Done,
            k: 1,
            charge: Charge::new(0, 0.0),
            suspended: false,
            noise: Rng(0),
        };
        c.enter(eps, seed);
        c
    }

    fn enter(&mut self, eps: &[Episode], seed: u64) {
        match eps.get(self.ep) {
            Some(Episode::Session(s)) => {
                self.step = Step::Authorize;
                self.k = 1;
                self.charge = Charge::new(s.start, s.ev.soc0);
                self.suspended = false;
                self.noise = stream(seed, PURPOSE_NOISE, s.tx_id as u64);
            }
            Some(Episode::Faulted { .. }) => self.step = Step::FaultBegin,
            None => self.step = Step::Done,
        }
    }

    fn run_next(&self, s: &SessionPlan, mi: Millis) -> (Millis, RunEvent) {
        let mut best = (s.stop, RunEvent::Stop);
        let tk = s.start + self.k as Millis * mi;
        if tk < s.stop.min(s.mute) && tk <= best.0 {
            best = (tk, RunEvent::Sample);
        }
        if let Some(f) = s.full_at {
            if !self.suspended && f < s.stop.min(s.mute) && f <= best.0 {
                best = (f, RunEvent::Suspend);
            }
        }
        best
    }

    fn next_time(&self, eps: &[Episode], mi: Millis) -> Millis {
        match eps.get(self.ep) {
            Some(Episode::Session(s)) => match self.step {
                Step::Authorize => s.arrive,
                Step::Preparing => s.preparing,
                Step::Start => s.start,
                Step::Charging => s.charging,
                Step::Run => self.run_next(s, mi).0,
                Step::Finishing => s.finishing,
                Step::Available => s.available,
                _ => Millis::MAX,
            },
            Some(Episode::Faulted { start, end, .. }) => match self.step {
                Step::FaultBegin => *start,
                Step::FaultEnd => *end,
                _ => Millis::MAX,
            },
            None => Millis::MAX,
        }
    }
}

/// The measured values of one meter sample.
struct Sample {
    energy_wh: i64,
    power_w: f64,
    voltage: [f64; 3],
    frequency_hz: f64,
    current: [f64; 3],
    temperature_c: f64,
    soc: Option<f64>,
}

/// Emits one charger's lines in event-time order, resumable at any time boundary.
struct ChargerEmitter {
    link: Link,
    sys_i: usize,
    hb_next: Millis,
    /// Next heartbeat lapse and error frame.
    lapse_i: usize,
    err_i: usize,
    conns: Vec<ConnCursor>,
}

impl ChargerEmitter {
    fn new(fleet: &Fleet, idx: usize) -> ChargerEmitter {
        let plan = &fleet.chargers[idx];
        let mut e = ChargerEmitter {
            link: Link {
                idx: idx as u32,
                rng: stream(fleet.seed, PURPOSE_LINK, idx as u64),
                msg: 0,
                last_recv: Millis::MIN,
                k: 0,
                clock: plan.clock,
                backend_msg: 0,
            },
            sys_i: 0,
            hb_next: 0,
            lapse_i: 0,
            err_i: 0,
            conns: plan
                .conns
                .iter()
                .map(|eps| ConnCursor::new(eps, fleet.seed))
                .collect(),
        };
        e.hb_next = e.skip_outages(plan, plan.boot + fleet.heartbeat_ms, fleet.heartbeat_ms);
        e
    }

    /// Live mode: goes on with the charger's plan in the next range. The link (message ids,
    /// receive times, latencies) and the heartbeat schedule carry over.
    fn next_range(&mut self, fleet: &Fleet) {
        let plan = &fleet.chargers[self.link.idx as usize];
        self.sys_i = 0;
        self.lapse_i = 0;
        self.err_i = 0;
        self.conns = plan
            .conns
            .iter()
            .map(|eps| ConnCursor::new(eps, fleet.seed))
            .collect();
        self.hb_next = self.skip_outages(plan, self.hb_next, fleet.heartbeat_ms);
    }

    /// A heartbeat due inside an outage moves to one interval after the reboot.
    fn skip_outages(&self, plan: &ChargerPlan, mut t: Millis, hb: Millis) -> Millis {
        for &(s, e) in &plan.outages {
            if s <= t && t < e {
                t = e + hb;
            }
        }
        t
    }

    /// Emits every line with event time < `until`.
    fn emit_until(&mut self, fleet: &Fleet, until: Millis, out: &mut Out) {
        let plan = &fleet.chargers[self.link.idx as usize];
        let mi = fleet.meter_ms;
        loop {
            // Ties: charger-wide events first, then the heartbeat, then error frames, then
            // connectors in order.
            let mut best = (Millis::MAX, usize::MAX);
            if let Some(e) = plan.sys.get(self.sys_i) {
                best = (e.t, 0);
            }
            if self.hb_next < best.0 {
                best = (self.hb_next, 1);
            }
            if let Some(e) = plan.errs.get(self.err_i) {
                if e.t < best.0 {
                    best = (e.t, 2);
                }
            }
            for (c, cur) in self.conns.iter().enumerate() {
                let t = cur.next_time(&plan.conns[c], mi);
                if t < best.0 {
                    best = (t, 3 + c);
                }
            }
            let (t, which) = best;
            if t >= until {
                return;
            }
            self.link.clock = plan.clock_at(t);
            match which {
                0 => {
                    self.fire_sys(fleet, plan, out);
                    self.sys_i += 1;
                }
                1 => {
                    self.link.call(out, &plan.id, t, "Heartbeat", |b| {
                        b.extend_from_slice(b"{}")
                    });
                    let hb = fleet.heartbeat_ms;
                    let mut next = t + hb;
                    // A lapse due before the next heartbeat delays it.
                    while let Some(&(at, gap)) = plan.lapses.get(self.lapse_i) {
                        if at <= t {
                            self.lapse_i += 1;
                            continue;
                        }
                        if at <= next {
                            next = t + gap;
                            self.lapse_i += 1;
                        }
                        break;
                    }
                    self.hb_next = self.skip_outages(plan, next, hb);
                }
                2 => {
                    let e = plan.errs[self.err_i];
                    self.err_i += 1;
                    match e.what {
                        ErrWhat::CallError(code) => {
                            self.link.call_error(out, &plan.id, t, code as usize)
                        }
                        ErrWhat::Malformed(shape) => {
                            self.link.malformed(out, &plan.id, t, e.connector, shape)
                        }
                    }
                }
                c => self.fire_conn(fleet, plan, c - 3, t, out),
            }
        }
    }

    fn fire_sys(&mut self, fleet: &Fleet, plan: &ChargerPlan, out: &mut Out) {
        let e = plan.sys[self.sys_i];
        let cp = plan.id.as_str();
        match e.what {
            SysWhat::Boot => {
                let m = plan.model;
                let (id, recv) = self.link.call(out, cp, e.t, "BootNotification", |b| {
                    b.extend_from_slice(b"{\"chargePointVendor\":\"");
                    b.extend_from_slice(m.vendor.as_bytes());
                    b.extend_from_slice(b"\",\"chargePointModel\":\"");
                    b.extend_from_slice(m.model.as_bytes());
                    b.extend_from_slice(b"\",\"chargePointSerialNumber\":\"");
                    b.extend_from_slice(plan.serial.as_bytes());
                    b.extend_from_slice(b"\",\"firmwareVersion\":\"");
                    b.extend_from_slice(m.firmware.as_bytes());
                    b.extend_from_slice(b"\"}");
                });
                let interval = fleet.heartbeat_ms / SECOND;
                self.link.result(out, cp, id, recv, |b, now| {
                    b.extend_from_slice(b"{\"status\":\"Accepted\",\"currentTime\":\"");
                    push_ts(b, now);
                    b.extend_from_slice(b"\",\"interval\":");
                    push_int(b, interval);
                    b.push(b'}');
                });
            }
            SysWhat::AllStatus(status) => {
                for c in 0..=plan.connectors {
                    self.link.status(out, cp, e.t, c, status, "NoError");
                }
            }
            SysWhat::Restored { skip } => {
                for c in (0..=plan.connectors).filter(|&c| c != skip) {
                    self.link
                        .status(out, cp, e.t, c, ConnectorStatus::Available, "NoError");
                }
            }
        }
    }

    fn fire_conn(&mut self, fleet: &Fleet, plan: &ChargerPlan, c: usize, t: Millis, out: &mut Out) {
        let eps = &plan.conns[c];
        let cp = plan.id.as_str();
        let connector = c as u32 + 1;
        let cur = &mut self.conns[c];
        let link = &mut self.link;
        match &eps[cur.ep] {
            Episode::Faulted { code, .. } => {
                if cur.step == Step::FaultBegin {
                    link.status(out, cp, t, connector, ConnectorStatus::Faulted, code);
                    cur.step = Step::FaultEnd;
                } else {
                    link.status(out, cp, t, connector, ConnectorStatus::Available, "NoError");
                    cur.ep += 1;
                    cur.enter(eps, fleet.seed);
                }
            }
            Episode::Session(s) => {
                let id_tag = fleet.drivers[s.driver as usize].id_tag.as_str();
                match cur.step {
                    Step::Authorize => {
                        link.call(out, cp, t, "Authorize", |b| {
                            b.extend_from_slice(b"{\"idTag\":\"");
                            b.extend_from_slice(id_tag.as_bytes());
                            b.extend_from_slice(b"\"}");
                        });
                        cur.step = Step::Preparing;
                    }
                    Step::Preparing => {
                        link.status(out, cp, t, connector, ConnectorStatus::Preparing, "NoError");
                        cur.step = Step::Start;
                    }
                    Step::Start => {
                        let meter_start = s.reg0.floor() as i64;
                        let ts = t + link.clock;
                        let (id, recv) = link.call(out, cp, t, "StartTransaction", |b| {
                            b.extend_from_slice(b"{\"connectorId\":");
                            push_int(b, connector as i64);
                            b.extend_from_slice(b",\"idTag\":\"");
                            b.extend_from_slice(id_tag.as_bytes());
                            b.extend_from_slice(b"\",\"meterStart\":");
                            push_int(b, meter_start);
                            b.extend_from_slice(b",\"timestamp\":\"");
                            push_ts(b, ts);
                            b.extend_from_slice(b"\"}");
                        });
                        link.result(out, cp, id, recv, |b, _| {
                            b.extend_from_slice(b"{\"transactionId\":");
                            push_int(b, s.tx_id);
                            b.extend_from_slice(b",\"idTagInfo\":{\"status\":\"Accepted\"}}");
                        });
                        cur.step = Step::Charging;
                    }
                    Step::Charging => {
                        link.status(out, cp, t, connector, ConnectorStatus::Charging, "NoError");
                        cur.step = Step::Run;
                    }
                    Step::Run => match cur.run_next(s, fleet.meter_ms).1 {
                        RunEvent::Suspend => {
                            link.status(
                                out,
                                cp,
                                t,
                                connector,
                                ConnectorStatus::SuspendedEV,
                                "NoError",
                            );
                            cur.suspended = true;
                        }
                        RunEvent::Sample => {
                            let v = sample(cur, plan, s, t);
                            cur.k += 1;
                            let ts = t + link.clock;
                            link.call(out, cp, t, "MeterValues", |b| {
                                write_meter_values(b, plan.model, connector, s.tx_id, ts, &v)
                            });
                        }
                        RunEvent::Stop => {
                            cur.charge.advance(&s.ev, s.stop, s.halt);
                            let jump = match s.fault {
                                SessionFault::MeterJump { k, delta } if k < cur.k => delta,
                                _ => 0.0,
                            };
                            let meter_stop = (s.reg0 + cur.charge.e_wh + jump).floor() as i64;
                            let ts = t + link.clock;
                            link.call(out, cp, t, "StopTransaction", |b| {
                                b.extend_from_slice(b"{\"transactionId\":");
                                push_int(b, s.tx_id);
                                b.extend_from_slice(b",\"idTag\":\"");
                                b.extend_from_slice(id_tag.as_bytes());
                                b.extend_from_slice(b"\",\"meterStop\":");
                                push_int(b, meter_stop);
                                b.extend_from_slice(b",\"timestamp\":\"");
                                push_ts(b, ts);
                                b.extend_from_slice(b"\",\"reason\":\"");
                                b.extend_from_slice(s.reason.as_bytes());
                                b.extend_from_slice(b"\"}");
                            });
                            cur.step = Step::Finishing;
                        }
                    },
                    Step::Finishing => {
                        link.status(out, cp, t, connector, ConnectorStatus::Finishing, "NoError");
                        cur.step = Step::Available;
                    }
                    Step::Available => {
                        link.status(out, cp, t, connector, ConnectorStatus::Available, "NoError");
                        cur.ep += 1;
                        cur.enter(eps, fleet.seed);
                    }
                    Step::FaultBegin | Step::FaultEnd | Step::Done => cur.step = Step::Done,
                }
            }
        }
    }
}

/// Computes sample `cur.k` of session `s` at time `t`: physics plus noise plus faults.
fn sample(cur: &mut ConnCursor, plan: &ChargerPlan, s: &SessionPlan, t: Millis) -> Sample {
    let k = cur.k;
    cur.charge.advance(&s.ev, t, s.halt);
    let rng = &mut cur.noise;
    let flowing = cur.charge.full_at.is_none() && t < s.halt;
    let power_w = if flowing {
        // Noise never takes the reading above the charger's rating.
        (power_at(&s.ev, cur.charge.soc) * rng.range(0.99, 1.01)).min(plan.model.power_w)
    } else {
        0.0
    };
    let in_window = |from: u32, n: u32| k >= from && k < from + n;
    let noisy = s.noisy.is_some_and(|(f, n)| in_window(f, n));

    let model = plan.model;
    let mut voltage = [0.0; 3];
    let excursion = if noisy {
        let sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
        Some(sign * rng.range(0.04, 0.07))
    } else {
        None
    };
    for (i, v) in voltage.iter_mut().take(model.phases).enumerate() {
        *v = match (s.fault, excursion) {
            (
                SessionFault::Voltage {
                    from,
                    n,
                    level,
                    phase,
                },
                _,
            ) if in_window(from, n) && phase.is_none_or(|p| p as usize == i) => {
                level + rng.range(-1.5, 1.5)
            }
            (_, Some(x)) => 230.0 * (1.0 + x),
            _ => 230.0 * rng.range(0.98, 1.02),
        };
    }
    let frequency_hz = match s.fault {
        SessionFault::Frequency { from, n, level } if in_window(from, n) => {
            level + rng.range(-0.1, 0.1)
        }
        _ => 50.0 + rng.range(-0.05, 0.05),
    };
    let mut current = [0.0; 3];
    if model.dc {
        current[0] = power_w / s.dc_voltage;
    } else {
        for (i, a) in current.iter_mut().take(model.phases).enumerate() {
            *a = power_w / model.phases as f64 / voltage[i];
        }
    }

    let rise = if model.dc { 25.0 } else { 15.0 } * (power_w / model.power_w).min(1.0);
    let mut temperature_c = plan.ambient_c + rise + rng.range(-1.0, 1.0);
    if noisy {
        temperature_c += rng.range(5.0, 9.0);
    }
    temperature_c = temperature_c.min(55.0);
    if let SessionFault::Temperature { from, n, level } = s.fault {
        if in_window(from, n) {
            temperature_c = (level + rng.range(-2.0, 2.0)).clamp(80.0, 95.0);
        }
    }

    let jump = match s.fault {
        SessionFault::MeterJump { k: jk, delta } if k >= jk => delta,
        _ => 0.0,
    };
    Sample {
        energy_wh: (s.reg0 + cur.charge.e_wh + jump).floor() as i64,
        power_w,
        voltage,
        frequency_hz,
        current,
        temperature_c,
        soc: model.dc.then_some(cur.charge.soc),
    }
}

const PHASES: [&str; 3] = ["L1", "L2", "L3"];

fn write_meter_values(
    b: &mut Vec<u8>,
    model: &Model,
    connector: u32,
    tx_id: i64,
    t: Millis,
    v: &Sample,
) {
    b.extend_from_slice(b"{\"connectorId\":");
    push_int(b, connector as i64);
    b.extend_from_slice(b",\"transactionId\":");
    push_int(b, tx_id);
    b.extend_from_slice(b",\"meterValue\":[{\"timestamp\":\"");
    push_ts(b, t);
    b.extend_from_slice(b"\",\"sampledValue\":[{\"value\":\"");
    push_int(b, v.energy_wh);
    b.extend_from_slice(b"\",\"measurand\":\"Energy.Active.Import.Register\",\"unit\":\"Wh\"}");
    b.extend_from_slice(b",{\"value\":\"");
    push_fixed1(b, v.power_w);
    b.extend_from_slice(b"\",\"measurand\":\"Power.Active.Import\",\"unit\":\"W\"}");
    if model.dc {
        b.extend_from_slice(b",{\"value\":\"");
        push_fixed1(b, v.current[0]);
        b.extend_from_slice(
            b"\",\"measurand\":\"Current.Import\",\"location\":\"Outlet\",\"unit\":\"A\"}",
        );
    } else {
        for (i, phase) in PHASES.iter().enumerate().take(model.phases) {
            b.extend_from_slice(b",{\"value\":\"");
            push_fixed1(b, v.current[i]);
            b.extend_from_slice(b"\",\"measurand\":\"Current.Import\",\"phase\":\"");
            b.extend_from_slice(phase.as_bytes());
            b.extend_from_slice(b"\",\"unit\":\"A\"}");
        }
    }
    for (i, phase) in PHASES.iter().enumerate().take(model.phases) {
        b.extend_from_slice(b",{\"value\":\"");
        push_fixed1(b, v.voltage[i]);
        b.extend_from_slice(b"\",\"measurand\":\"Voltage\",\"phase\":\"");
        b.extend_from_slice(phase.as_bytes());
        if model.dc {
            b.extend_from_slice(b"\",\"location\":\"Inlet");
        }
        b.extend_from_slice(b"\",\"unit\":\"V\"}");
    }
    // OCPP 1.6 has no unit for hertz: Frequency goes without one.
    b.extend_from_slice(b",{\"value\":\"");
    push_fixed2(b, v.frequency_hz);
    b.extend_from_slice(b"\",\"measurand\":\"Frequency\"");
    if model.dc {
        b.extend_from_slice(b",\"location\":\"Inlet\"");
    }
    b.push(b'}');
    b.extend_from_slice(b",{\"value\":\"");
    push_fixed1(b, v.temperature_c);
    b.extend_from_slice(
        b"\",\"measurand\":\"Temperature\",\"location\":\"Body\",\"unit\":\"Celsius\"}",
    );
    if let Some(soc) = v.soc {
        b.extend_from_slice(b",{\"value\":\"");
        push_int(b, soc.round() as i64);
        b.extend_from_slice(b"\",\"measurand\":\"SoC\",\"location\":\"EV\",\"unit\":\"Percent\"}");
    }
    b.extend_from_slice(b"]}]}");
}

// ---------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------

/// The per-worker emission state, independent of how the fleet is held.
struct Worker {
    slice_ms: Millis,
    next: u64,
    /// The current range's chunks are `first..slices` (live mode: several ranges).
    first: u64,
    slices: u64,
    /// Simulated time of the ranges before the current one.
    done_before: Millis,
    emitters: Vec<ChargerEmitter>,
    out: Out,
}

/// Chunks that hold a range of `fleet`.
fn slices_of(fleet: &Fleet, slice_ms: Millis) -> u64 {
    let span = (fleet.end - fleet.start).max(0);
    ((span + slice_ms - 1) / slice_ms) as u64
}

impl Worker {
    fn new(fleet: &Fleet, worker_index: usize, peers: usize, slice_ms: Millis) -> Worker {
        let peers = peers.max(1);
        let slice_ms = slice_ms.max(1);
        let slices = slices_of(fleet, slice_ms);
        assert!(
            slices < 1 << (64 - SEQ_SLICE_SHIFT),
            "simulator: {slices} slices do not fit the seq scheme; use wider slices"
        );
        Worker {
            slice_ms,
            next: 0,
            first: 0,
            slices,
            done_before: 0,
            emitters: (0..fleet.chargers.len())
                .filter(|i| i % peers == worker_index)
                .map(|i| ChargerEmitter::new(fleet, i))
                .collect(),
            out: Out::default(),
        }
    }

    /// Live mode: the current range is done; goes on with `fleet`, the next. False when the
    /// seq scheme has no room for it (after 2²⁴ chunks: 32 years of one-minute chunks).
    fn next_range(&mut self, fleet: &Fleet) -> bool {
        let slices = self.slices + slices_of(fleet, self.slice_ms);
        if slices >= 1 << (64 - SEQ_SLICE_SHIFT) {
            return false;
        }
        self.done_before += (self.slices - self.first) as Millis * self.slice_ms;
        self.first = self.slices;
        self.slices = slices;
        for e in &mut self.emitters {
            e.next_range(fleet);
        }
        true
    }

    fn fill(&mut self, fleet: &Fleet, chunk: &mut Chunk) -> Poll {
        if self.next >= self.slices || stopping() {
            return Poll::End;
        }
        let c = self.next;
        let until = (fleet.start + ((c - self.first) as Millis + 1) * self.slice_ms).min(fleet.end);
        self.out.buf.clear();
        self.out.lines.clear();
        for e in &mut self.emitters {
            e.link.k = 0;
            e.emit_until(fleet, until, &mut self.out);
        }
        self.out
            .lines
            .sort_unstable_by_key(|l| (l.recv, l.charger, l.k));
        chunk.clear();
        chunk.time = c;
        chunk
            .data
            .reserve(self.out.buf.len() + self.out.lines.len());
        for l in &self.out.lines {
            let seq = c << SEQ_SLICE_SHIFT | (l.charger as u64) << SEQ_CHARGER_SHIFT | l.k as u64;
            chunk.push_line(seq, &self.out.buf[l.start..l.end]);
        }
        self.next += 1;
        Poll::Ready
    }

    fn progress(&self, fleet: &Fleet) -> SourceProgress {
        let span = (fleet.end - fleet.start).max(0);
        let done = ((self.next - self.first) as Millis * self.slice_ms).min(span);
        SourceProgress {
            done: ((self.done_before + done) / SECOND) as u64,
            total: fleet.live.is_none().then_some((span / SECOND) as u64),
            unit: "simulated seconds",
        }
    }
}

/// One worker's share of the fleet as a [`Source`]: the chargers whose index % `peers` ==
/// `worker_index`. Chunk `c` holds the lines with event time in
/// `[start + c·slice_ms, start + (c+1)·slice_ms)`, sorted by (receive time, charger, k);
/// every worker yields every slice (possibly empty), so chunk times agree across workers.
/// No pacing: the caller sleeps if it wants real time.
pub struct SimulatorSource {
    fleet: Arc<Fleet>,
    worker: Worker,
}

impl SimulatorSource {
    /// `slice_ms` is clamped to ≥ 1; `peers` to ≥ 1. Panics if the run has ≥ 2²⁴ slices.
    pub fn new(fleet: Arc<Fleet>, worker_index: usize, peers: usize, slice_ms: Millis) -> Self {
        let worker = Worker::new(&fleet, worker_index, peers, slice_ms);
        SimulatorSource { fleet, worker }
    }
}

impl Source for SimulatorSource {
    fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<Poll, SourceError> {
        if self.worker.next >= self.worker.slices && !stopping() {
            // Every worker plans the next range itself (the same, from the same inputs):
            // no coordination, and no fleet kept beyond the one in use.
            if let Some(next) = self.fleet.next_range() {
                if self.worker.next_range(&next) {
                    tracing::debug!(
                        "simulator: range {} from {}",
                        next.range,
                        crate::time::format_rfc3339(next.start)
                    );
                    self.fleet = Arc::new(next);
                } else {
                    tracing::warn!("simulator: the seq scheme is full; the run ends");
                }
            }
        }
        Ok(self.worker.fill(&self.fleet, chunk))
    }

    fn next_time(&self) -> u64 {
        self.worker.next
    }

    fn progress(&self) -> SourceProgress {
        self.worker.progress(&self.fleet)
    }
}

/// Writes the whole run's traffic (all chargers, slice by slice) to `out`; returns the number
/// of lines. This is what `evflow simulate` writes.
pub fn write_all(fleet: &Fleet, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    let mut worker = Worker::new(fleet, 0, 1, DEFAULT_SLICE_MS);
    let mut chunk = Chunk::default();
    let mut lines = 0u64;
    while worker.fill(fleet, &mut chunk) == Poll::Ready {
        out.write_all(&chunk.data)?;
        lines += chunk.seqs.len() as u64;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use serde_json::Value;

    use super::*;
    use crate::config::Instant;
    use crate::model::Event;
    use crate::time::parse_rfc3339;

    fn cfg(chargers: u32, hours: u32, seed: u64) -> SimulatorConfig {
        SimulatorConfig {
            chargers,
            hours,
            seed,
            chargers_per_site: 4,
            ..SimulatorConfig::default()
        }
    }

    fn traffic(fleet: &Fleet) -> Vec<u8> {
        let mut v = Vec::new();
        let n = write_all(fleet, &mut v).unwrap();
        assert_eq!(n as usize, v.iter().filter(|&&b| b == b'\n').count());
        v
    }

    /// One parsed line: receive time, charger, frame.
    struct Line {
        recv: Millis,
        cp: String,
        frame: Vec<Value>,
    }

    impl Line {
        fn action(&self) -> Option<&str> {
            (self.frame[0] == 2).then(|| self.frame[2].as_str().unwrap())
        }
        fn is_call_error(&self) -> bool {
            self.frame[0] == 4
        }
        /// A CALL the simulator malformed on purpose ([`write_malformed`]).
        fn is_malformed(&self) -> bool {
            let p = self.payload();
            match self.action() {
                Some("MeterValues") => p.get("meterValue").is_none() || !p["connectorId"].is_u64(),
                Some("StatusNotification") => p.get("status").is_none(),
                _ => false,
            }
        }
        /// A frame that counts towards `message_errors`.
        fn is_error_frame(&self) -> bool {
            self.is_call_error() || self.is_malformed()
        }
        fn payload(&self) -> &Value {
            self.frame.last().unwrap()
        }
        fn ts(&self) -> Option<Millis> {
            let p = self.payload();
            let t = p
                .get("timestamp")
                .or_else(|| p.get("meterValue").and_then(|m| m[0].get("timestamp")))?;
            Some(parse_rfc3339(t.as_str().unwrap()).unwrap())
        }
    }

    /// Parses every line, checking the envelope shape on the way.
    fn parse(bytes: &[u8]) -> Vec<Line> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                let o = v.as_object().expect("envelope is an object");
                assert_eq!(o.len(), 3, "{l}");
                let recv = parse_rfc3339(o["timestamp"].as_str().unwrap()).unwrap();
                let cp = o["charge_point_id"].as_str().unwrap().to_string();
                let frame = o["message"].as_array().unwrap().clone();
                assert!(frame[1].is_string(), "{l}");
                match frame[0].as_i64() {
                    Some(2) => {
                        assert_eq!(frame.len(), 4, "{l}");
                        assert!(frame[2].is_string() && frame[3].is_object(), "{l}");
                    }
                    Some(3) => {
                        assert_eq!(frame.len(), 3, "{l}");
                        assert!(frame[2].is_object(), "{l}");
                    }
                    Some(4) => {
                        assert_eq!(frame.len(), 5, "{l}");
                        assert!(frame[2].is_string() && frame[3].is_string(), "{l}");
                        assert!(frame[4].is_object(), "{l}");
                    }
                    _ => panic!("not a CALL, CALLRESULT or CALLERROR: {l}"),
                }
                Line { recv, cp, frame }
            })
            .collect()
    }

    fn plan_of<'a>(fleet: &'a Fleet, cp: &str) -> &'a ChargerPlan {
        &fleet.chargers[cp[3..].parse::<usize>().unwrap() - 1]
    }

    /// The true event time of a line with a payload timestamp: the timestamp minus the
    /// charger's clock offset at the time (the one that puts it just before the receipt).
    fn true_ts(fleet: &Fleet, line: &Line) -> Option<Millis> {
        let ts = line.ts()?;
        let plan = plan_of(fleet, &line.cp);
        let t = std::iter::once(0)
            .chain(plan.skews.iter().map(|s| s.offset))
            .map(|o| ts - plan.clock - o)
            .find(|&t| t <= line.recv && line.recv - t < 60 * SECOND);
        Some(t.unwrap_or_else(|| panic!("no clock offset explains {ts} at {}", line.recv)))
    }

    /// The true event time of any line.
    fn t_of(fleet: &Fleet, line: &Line) -> Millis {
        true_ts(fleet, line).unwrap_or(line.recv)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let c = cfg(10, 24, 7);
        let a = Fleet::new(&c, &[]);
        let b = Fleet::new(&c, &[]);
        assert_eq!(traffic(&a), traffic(&b));
        assert_eq!(a.labels(), b.labels());
        assert_eq!(a.registry(), b.registry());
        let other = Fleet::new(&cfg(10, 24, 8), &[]);
        assert_ne!(traffic(&a), traffic(&other));
    }

    fn collect(fleet: &Arc<Fleet>, peers: usize, slice_ms: Millis) -> BTreeMap<u64, Vec<u8>> {
        let mut all = BTreeMap::new();
        let slices = ((fleet.end() - fleet.start()) + slice_ms - 1) / slice_ms;
        for w in 0..peers {
            let mut src = SimulatorSource::new(fleet.clone(), w, peers, slice_ms);
            let mut chunk = Chunk::default();
            let mut expect = 0u64;
            loop {
                assert_eq!(src.next_time(), expect);
                chunk.clear();
                match src.next_chunk(&mut chunk).unwrap() {
                    Poll::Ready => {}
                    Poll::End => break,
                    Poll::Pending => panic!("the simulator never waits"),
                }
                assert_eq!(chunk.time, expect);
                expect += 1;
                for (seq, line) in chunk.lines() {
                    assert_eq!(seq >> SEQ_SLICE_SHIFT, chunk.time);
                    assert!(all.insert(seq, line.to_vec()).is_none(), "seq {seq} twice");
                }
            }
            assert_eq!(expect as i64, slices, "every worker yields every slice");
            let p = src.progress();
            assert_eq!(p.done, p.total.unwrap());
        }
        all
    }

    #[test]
    fn workers_partition_the_same_lines() {
        let fleet = Arc::new(Fleet::new(&cfg(7, 12, 3), &[]));
        let one = collect(&fleet, 1, 60_000);
        let three = collect(&fleet, 3, 60_000);
        assert!(one.len() > 1000);
        assert_eq!(one, three);
        // The file writer produces the same lines.
        let file = traffic(&fleet);
        let mut a: Vec<&[u8]> = file
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut b: Vec<&[u8]> = one.values().map(|l| l.as_slice()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn chunks_hold_their_slice_sorted_by_receive_time() {
        let fleet = Arc::new(Fleet::new(&cfg(6, 6, 5), &[]));
        let slice = 5 * MINUTE;
        let mut src = SimulatorSource::new(fleet.clone(), 0, 1, slice);
        let mut chunk = Chunk::default();
        while src.next_chunk(&mut chunk).unwrap() == Poll::Ready {
            let lo = fleet.start() + chunk.time as Millis * slice;
            let parsed = parse(&chunk.data);
            for w in parsed.windows(2) {
                assert!(w[0].recv <= w[1].recv);
            }
            for l in &parsed {
                if let Some(t) = true_ts(&fleet, l) {
                    assert!(lo <= t && t < lo + slice, "event time outside its slice");
                }
                assert!(l.recv >= lo);
            }
        }
    }

    /// A minimal draft-04 validator: the keywords the OCPP 1.6 schemas use.
    fn validate(v: &Value, s: &Value, path: &str) -> Result<(), String> {
        let is = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        let ok = match s.get("type") {
            Some(Value::String(t)) => is(t),
            Some(Value::Array(ts)) => ts.iter().any(|t| is(t.as_str().unwrap_or(""))),
            _ => true,
        };
        if !ok {
            return Err(format!("{path}: {v} is not {}", s["type"]));
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                return Err(format!("{path}: {v} not in enum"));
            }
        }
        if let (Some(m), Some(text)) = (s.get("maxLength").and_then(Value::as_u64), v.as_str()) {
            if text.chars().count() as u64 > m {
                return Err(format!("{path}: {v} longer than {m}"));
            }
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time") {
            parse_rfc3339(v.as_str().unwrap_or("")).map_err(|e| format!("{path}: {e}"))?;
        }
        if let Some(o) = v.as_object() {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !o.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{path}: missing {r}"));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => validate(x, ps, &format!("{path}.{k}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{path}: unexpected {k}"))
                    }
                    None => {}
                }
            }
        }
        if let Some(a) = v.as_array() {
            if let Some(m) = s.get("minItems").and_then(Value::as_u64) {
                if (a.len() as u64) < m {
                    return Err(format!("{path}: fewer than {m} items"));
                }
            }
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate(x, items, &format!("{path}[{i}]"))?;
                }
            }
        }
        Ok(())
    }

    fn schema(name: &str) -> Value {
        let path = format!(
            "{}/../shared/data/ocpp/schemas/v16/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (shared/ must be beside the repository)"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn payloads_are_valid_ocpp16() {
        let fleet = Fleet::new(&cfg(12, 24, 11), &[]);
        let lines = parse(&traffic(&fleet));
        let mut schemas: HashMap<String, Value> = HashMap::new();
        // (charger, message id) → action, to check CALLRESULTs against the response schema.
        let mut pending: HashMap<(String, String), String> = HashMap::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut excluded = 0;
        for l in &lines {
            // CALLERRORs have no schema; the malformed CALLs are invalid on purpose.
            if l.is_error_frame() {
                excluded += 1;
                continue;
            }
            let (name, key) = match l.action() {
                Some(a) => {
                    pending.insert(
                        (l.cp.clone(), l.frame[1].as_str().unwrap().into()),
                        a.into(),
                    );
                    (a.to_string(), a.to_string())
                }
                None => {
                    let a = pending
                        .get(&(l.cp.clone(), l.frame[1].as_str().unwrap().into()))
                        .expect("a CALLRESULT follows its CALL");
                    (format!("{a}Response"), format!("{a}Response"))
                }
            };
            *seen.entry(key).or_default() += 1;
            let s = schemas.entry(name.clone()).or_insert_with(|| schema(&name));
            validate(l.payload(), s, &name).unwrap();
        }
        for a in [
            "BootNotification",
            "BootNotificationResponse",
            "Heartbeat",
            "StatusNotification",
            "Authorize",
            "StartTransaction",
            "StartTransactionResponse",
            "MeterValues",
            "StopTransaction",
        ] {
            assert!(seen.get(a).copied().unwrap_or(0) > 0, "no {a} in {seen:?}");
        }
        assert!(excluded > 0, "no error frames to exclude");
    }

    /// A transaction as the traffic shows it (true times).
    #[derive(Debug)]
    struct Tx {
        cp: String,
        connector: i64,
        start: Millis,
        meter_start: i64,
        stop: Option<Millis>,
        meter_stop: Option<i64>,
        reason: String,
        /// (true time, power W) of its meter samples.
        samples: Vec<(Millis, f64)>,
    }

    /// Every transaction in the traffic, by (charger, transaction id).
    fn transactions(fleet: &Fleet, lines: &[Line]) -> BTreeMap<(String, i64), Tx> {
        let mut pending: HashMap<(String, String), Tx> = HashMap::new();
        let mut txs = BTreeMap::new();
        for l in lines.iter().filter(|l| !l.is_error_frame()) {
            let p = l.payload();
            let id = || (l.cp.clone(), l.frame[1].as_str().unwrap().to_string());
            match l.action() {
                Some("StartTransaction") => {
                    let tx = Tx {
                        cp: l.cp.clone(),
                        connector: p["connectorId"].as_i64().unwrap(),
                        start: true_ts(fleet, l).unwrap(),
                        meter_start: p["meterStart"].as_i64().unwrap(),
                        stop: None,
                        meter_stop: None,
                        reason: String::new(),
                        samples: Vec::new(),
                    };
                    pending.insert(id(), tx);
                }
                None if p.get("transactionId").is_some() => {
                    if let Some(tx) = pending.remove(&id()) {
                        txs.insert((l.cp.clone(), p["transactionId"].as_i64().unwrap()), tx);
                    }
                }
                Some("MeterValues") => {
                    let tx = txs
                        .get_mut(&(l.cp.clone(), p["transactionId"].as_i64().unwrap()))
                        .unwrap();
                    let power = measurand(l, "Power.Active.Import")[0];
                    tx.samples.push((true_ts(fleet, l).unwrap(), power));
                }
                Some("StopTransaction") => {
                    let tx = txs
                        .get_mut(&(l.cp.clone(), p["transactionId"].as_i64().unwrap()))
                        .unwrap();
                    tx.stop = true_ts(fleet, l);
                    tx.meter_stop = p["meterStop"].as_i64();
                    tx.reason = p["reason"].as_str().unwrap().to_string();
                }
                _ => {}
            }
        }
        txs
    }

    /// A fleet with labels of every kind (`underused` needs a busy charger with site peers).
    fn fault_fleet() -> Fleet {
        Fleet::new(&cfg(20, 24, 43), &[])
    }

    #[test]
    fn every_fault_kind_is_labelled_and_visible() {
        let fleet = fault_fleet();
        let kinds: BTreeSet<AnomalyKind> = fleet.labels().iter().map(|l| l.kind).collect();
        assert_eq!(kinds.len(), AnomalyKind::ALL.len(), "{:?}", fleet.labels());
        for l in fleet.labels() {
            assert!(fleet.start() < l.start && l.start < l.end && l.end < fleet.end());
        }
        // Labels of one charger do not overlap (nor come within 30 min of each other).
        for a in fleet.labels() {
            for b in fleet.labels() {
                if a != b && a.charge_point_id == b.charge_point_id {
                    assert!(a.end + FAULT_PAD <= b.start || b.end + FAULT_PAD <= a.start);
                }
            }
        }
        let label_schema: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/schemas/labels.schema.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let mut jsonl = Vec::new();
        assert_eq!(
            fleet.write_labels(&mut jsonl).unwrap(),
            fleet.labels().len() as u64
        );
        for line in std::str::from_utf8(&jsonl).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            validate(&v, &label_schema, "label").unwrap();
        }

        let lines = parse(&traffic(&fleet));
        let txs = transactions(&fleet, &lines);
        let hb = fleet.heartbeat_ms;
        let covers = |l: &Label, line: &Line, t: Millis| {
            line.cp == l.charge_point_id
                && l.start <= t
                && t < l.end
                && l.connector_id
                    .is_none_or(|c| line.payload()["connectorId"] == c)
        };
        // The sessions of a connector label that start within it.
        let sessions_in = |l: &Label| -> Vec<&Tx> {
            txs.values()
                .filter(|tx| {
                    tx.cp == l.charge_point_id
                        && Some(tx.connector as u32) == l.connector_id
                        && l.start <= tx.start
                        && tx.start <= l.end
                })
                .collect()
        };
        let mut power_loss = 0;
        for label in fleet.labels() {
            let plan = plan_of(&fleet, &label.charge_point_id);
            let mine = || lines.iter().filter(|l| l.cp == label.charge_point_id);
            let mut evidence = 0;
            match label.kind {
                AnomalyKind::PowerDeliveryDegraded => {
                    let s = sessions_in(label);
                    assert_eq!(s.len(), 3, "{label:?}: {s:?}");
                    assert_eq!(s[0].start, label.start);
                    assert_eq!(s[2].stop, Some(label.end));
                    for tx in s {
                        let charging: Vec<f64> = tx
                            .samples
                            .iter()
                            .map(|x| x.1)
                            .filter(|p| *p >= 100.0)
                            .collect();
                        assert!(charging.len() >= 5, "{tx:?}");
                        let best = charging.iter().take(3).cloned().fold(0.0, f64::max);
                        let share = best / plan.model.power_w;
                        assert!((0.078..=0.132).contains(&share), "{share}: {tx:?}");
                        evidence += 1;
                    }
                }
                AnomalyKind::SessionFailures => {
                    let s = sessions_in(label);
                    assert!((3..=5).contains(&s.len()), "{label:?}: {s:?}");
                    assert_eq!(s[0].start, label.start);
                    assert_eq!(s[s.len() - 1].stop, Some(label.end));
                    for tx in s {
                        let stop = tx.stop.unwrap();
                        assert!(tx.meter_stop.unwrap() - tx.meter_start < 50, "{tx:?}");
                        assert!(stop - tx.start >= MINUTE && stop - tx.start <= 4 * MINUTE);
                        assert!(FAILED_REASONS.contains(&tx.reason.as_str()), "{tx:?}");
                        evidence += 1;
                    }
                }
                AnomalyKind::Underused => {
                    assert!(label.end - label.start >= UNDERUSED_MIN);
                    assert!(label.end - label.start <= UNDERUSED_MAX);
                    let idx = label.charge_point_id[3..].parse::<usize>().unwrap() - 1;
                    let wmax = HOURLY_WEIGHT.iter().cloned().fold(0.0, f64::max);
                    let wmean = HOURLY_WEIGHT.iter().sum::<f64>() / 24.0;
                    let per_day = Basics::draw(fleet.seed, idx, plan.model, wmax, wmean).per_day
                        * plan.connectors as f64;
                    let expected = expected_sessions(per_day, label.start, label.end - label.start);
                    assert!(expected >= UNDERUSED_SESSIONS, "{expected}");
                    // No session in it, heartbeats all along, all Available.
                    let mut last = label.start;
                    for l in mine() {
                        let t = t_of(&fleet, l);
                        if t < label.start || t >= label.end {
                            continue;
                        }
                        assert!(
                            !matches!(l.action(), Some("StartTransaction" | "MeterValues")),
                            "a session while underused"
                        );
                        if let Some(status) = l.payload().get("status") {
                            assert_eq!(status, "Available");
                        }
                        if l.action() == Some("Heartbeat") {
                            assert!(l.recv - last <= hb + SECOND);
                            last = l.recv;
                            evidence += 1;
                        }
                    }
                    assert!(label.end - last <= hb + SECOND);
                }
                AnomalyKind::ClockSkew => {
                    for l in mine() {
                        let Some(ts) = l.ts() else { continue };
                        let off = (ts - l.recv).abs();
                        if label.start + SECOND <= l.recv && l.recv < label.end {
                            assert!(off >= 4 * MINUTE - 31 * SECOND, "{off} ms in {label:?}");
                            evidence += 1;
                        } else if (l.recv < label.start && l.recv > label.start - HOUR)
                            || (l.recv > label.end + SECOND && l.recv < label.end + HOUR)
                        {
                            assert!(off <= 31 * SECOND, "{off} ms around {label:?}");
                        }
                    }
                    assert!(evidence >= 2, "{label:?}: {evidence} timestamps");
                }
                AnomalyKind::MessageErrors => {
                    let errors: Vec<&Line> = mine()
                        .filter(|l| {
                            l.is_error_frame()
                                && label.start <= l.recv
                                && l.recv <= label.end + SECOND
                        })
                        .collect();
                    assert!(errors.len() >= 20, "{label:?}: {} frames", errors.len());
                    assert!(errors[0].recv - label.start < SECOND);
                    assert!(errors.iter().any(|l| l.is_call_error()));
                    assert!(errors.iter().any(|l| l.is_malformed()));
                    for w in errors.windows(2) {
                        assert!(w[1].recv - w[0].recv <= 61 * SECOND);
                    }
                    evidence = errors.len();
                }
                AnomalyKind::PowerSupply
                    if txs.values().any(|tx| {
                        tx.cp == label.charge_point_id
                            && tx.stop == Some(label.end)
                            && tx.reason == "PowerLoss"
                    }) =>
                {
                    // Silent from the start to the reboot, 1–4 min later; then the stop.
                    power_loss += 1;
                    let boot = mine()
                        .find(|l| l.action() == Some("BootNotification") && l.recv > label.start)
                        .unwrap();
                    assert!(boot.recv < label.end);
                    let silence = boot.recv - label.start;
                    assert!(
                        (MINUTE..=4 * MINUTE + SECOND).contains(&silence),
                        "{silence}"
                    );
                    let before = mine().rfind(|l| l.recv < label.start).unwrap();
                    assert!(boot.recv - before.recv < 2 * hb);
                    for l in mine() {
                        assert!(l.recv < label.start || l.recv >= boot.recv);
                    }
                    evidence += 1;
                }
                _ => {
                    for line in lines.iter().filter(|l| !l.is_error_frame()) {
                        let t = t_of(&fleet, line);
                        match label.kind {
                            AnomalyKind::CommunicationLost => {
                                if line.cp == label.charge_point_id
                                    && label.start < t
                                    && t < label.end
                                {
                                    panic!("{} talks while offline", line.cp);
                                }
                                if line.cp == label.charge_point_id
                                    && line.action() == Some("BootNotification")
                                    && (label.end..label.end + 400).contains(&line.recv)
                                {
                                    evidence += 1;
                                }
                            }
                            AnomalyKind::ConnectorFaulted => {
                                if covers(label, line, t) && line.payload()["status"] == "Faulted" {
                                    evidence += 1;
                                }
                            }
                            AnomalyKind::PowerSupply => {
                                if covers(label, line, t) && line.action() == Some("MeterValues") {
                                    let volts = measurand(line, "Voltage");
                                    let hz = measurand(line, "Frequency")[0];
                                    let bad_volts =
                                        volts.iter().filter(|v| **v < 200.0 || **v > 255.0);
                                    let n = bad_volts.count();
                                    let bad_hz = !(49.5..=50.5).contains(&hz);
                                    assert!(n == volts.len() || n == 1 || bad_hz, "{volts:?} {hz}");
                                    assert!(n > 0 || bad_hz, "{volts:?} {hz}");
                                    evidence += 1;
                                }
                            }
                            AnomalyKind::OverTemperature => {
                                if covers(label, line, t) && line.action() == Some("MeterValues") {
                                    assert!(measurand(line, "Temperature")[0] >= 80.0);
                                    evidence += 1;
                                }
                            }
                            AnomalyKind::StuckSession => {
                                if covers(label, line, t) && line.action() == Some("MeterValues") {
                                    assert_eq!(measurand(line, "Power.Active.Import")[0], 0.0);
                                    evidence += 1;
                                }
                                if covers(label, line, t)
                                    && line.action() == Some("StatusNotification")
                                {
                                    panic!("a stuck session changes status");
                                }
                            }
                            AnomalyKind::MeterError => {
                                if covers(label, line, t) && line.action() == Some("MeterValues") {
                                    evidence += 1;
                                }
                            }
                            _ => unreachable!(),
                        }
                    }
                    if matches!(
                        label.kind,
                        AnomalyKind::PowerSupply | AnomalyKind::OverTemperature
                    ) {
                        assert!(evidence >= 5, "{label:?}: {evidence} samples");
                    }
                    if label.kind == AnomalyKind::StuckSession {
                        assert!(label.end - label.start >= 40 * MINUTE);
                    }
                }
            }
            assert!(evidence > 0, "no trace of {label:?}");
        }
        assert!(power_loss <= 1);

        let off = Fleet::new(
            &SimulatorConfig {
                faults: false,
                ..cfg(20, 24, 43)
            },
            &[],
        );
        assert!(off.labels().is_empty());
    }

    /// Every way a power_supply fault can show: all phases, one phase, the grid frequency, a
    /// power loss.
    #[test]
    fn power_supply_faults_take_every_form() {
        let fleet = Fleet::new(
            &SimulatorConfig {
                fault_rate: 25.0,
                ..cfg(30, 24, 16)
            },
            &[],
        );
        let lines = parse(&traffic(&fleet));
        let txs = transactions(&fleet, &lines);
        let mut forms: BTreeMap<&str, usize> = BTreeMap::new();
        for label in fleet
            .labels()
            .iter()
            .filter(|l| l.kind == AnomalyKind::PowerSupply)
        {
            let plan = plan_of(&fleet, &label.charge_point_id);
            if txs.values().any(|tx| {
                tx.cp == label.charge_point_id
                    && tx.stop == Some(label.end)
                    && tx.reason == "PowerLoss"
            }) {
                *forms.entry("power_loss").or_default() += 1;
                continue;
            }
            let samples: Vec<&Line> = lines
                .iter()
                .filter(|l| {
                    l.cp == label.charge_point_id
                        && l.action() == Some("MeterValues")
                        && !l.is_malformed()
                        && l.payload()["connectorId"] == label.connector_id.unwrap()
                        && (label.start..label.end).contains(&t_of(&fleet, l))
                })
                .collect();
            assert!(samples.len() >= 5, "{label:?}");
            let form = |l: &Line| {
                let volts = measurand(l, "Voltage");
                let bad = volts.iter().filter(|v| **v < 207.0 || **v > 253.0).count();
                let hz = measurand(l, "Frequency")[0];
                match (bad, (49.5..=50.5).contains(&hz)) {
                    (0, false) => "frequency",
                    (1, true) if plan.model.phases == 3 => "one_phase",
                    (n, true) if n == volts.len() => "all_phases",
                    other => panic!("{other:?}: {volts:?} {hz}"),
                }
            };
            let f = form(samples[0]);
            assert!(samples.iter().all(|l| form(l) == f));
            *forms.entry(f).or_default() += 1;
        }
        assert_eq!(
            forms.keys().copied().collect::<Vec<_>>(),
            ["all_phases", "frequency", "one_phase", "power_loss"],
            "{forms:?}"
        );
    }

    /// Without faults, the noise stays below every detector's threshold — and is there.
    #[test]
    fn healthy_noise_stays_below_the_detectors() {
        let fleet = Fleet::new(
            &SimulatorConfig {
                faults: false,
                ..cfg(40, 48, 5)
            },
            &[],
        );
        assert!(fleet.labels().is_empty());
        let hb = fleet.heartbeat_ms;
        let lines = parse(&traffic(&fleet));
        let mut last: HashMap<&str, Millis> = HashMap::new();
        let mut last_error: HashMap<&str, Millis> = HashMap::new();
        let (mut errors, mut lapses, mut max_offset) = (0, 0, 0);
        for l in &lines {
            if let Some(ts) = l.ts() {
                let off = (ts - l.recv).abs();
                assert!(off <= 60 * SECOND, "{} off by {off} ms", l.cp);
                max_offset = max_offset.max(off);
            }
            let prev = last.insert(&l.cp, l.recv).unwrap_or(fleet.start());
            let gap = l.recv - prev;
            assert!(
                gap * 10 <= hb * 16,
                "{} silent for {gap} ms before {}",
                l.cp,
                l.recv
            );
            if gap > hb + 10 * SECOND {
                lapses += 1;
            }
            if l.is_error_frame() {
                errors += 1;
                if let Some(e) = last_error.insert(&l.cp, l.recv) {
                    assert!(
                        l.recv - e >= HOUR,
                        "{}: two error frames within an hour",
                        l.cp
                    );
                }
            }
            if l.action() == Some("MeterValues") && !l.is_malformed() {
                for v in measurand(l, "Voltage") {
                    assert!((207.0..=253.0).contains(&v), "{v} V");
                }
                let hz = measurand(l, "Frequency")[0];
                assert!((49.9..=50.1).contains(&hz), "{hz} Hz");
            }
        }
        for (cp, t) in last {
            assert!(fleet.end() - t <= hb + SECOND, "{cp} silent at the end");
        }
        // 40 chargers × 2 days: ~40 CALLERRORs, ~20 malformed frames, some lapses.
        assert!((20..=120).contains(&errors), "{errors} error frames");
        assert!(lapses > 0, "no heartbeat lapse");
        assert!(
            max_offset > 15 * SECOND,
            "clocks are too good: {max_offset} ms"
        );
    }

    /// The malformed frames are dead-lettered by evflow's decoder (and count against their
    /// charger); the CALLERRORs decode; nothing else in the traffic is rejected.
    #[test]
    fn malformed_frames_are_rejected_by_the_decoder() {
        use crate::model::{DeadLetterReason, EventKind};
        use crate::ocpp::{DecodeOptions, DecodeStats, Decoder};
        let mut decoder = Decoder::new(DecodeOptions {
            max_clock_skew: 5 * 60_000,
            max_delivery_delay: 7 * 86_400_000,
        });
        let mut link = Link {
            idx: 0,
            rng: Rng(1),
            msg: 0,
            last_recv: Millis::MIN,
            k: 0,
            clock: -12 * SECOND,
            backend_msg: 0,
        };
        let day = cfg(1, 1, 1).start.0 + 8 * HOUR;
        let mut out = Out::default();
        for shape in 0..MALFORMED_VARIANTS {
            link.malformed(
                &mut out,
                "CP-0001",
                day + shape as Millis * MINUTE,
                2,
                shape,
            );
        }
        for (i, l) in out.lines.iter().enumerate() {
            let line = &out.buf[l.start..l.end];
            let (mut events, mut dead, mut stats) = (vec![], vec![], DecodeStats::default());
            decoder.decode_line(i as u64, line, &mut events, &mut dead, &mut stats);
            let text = String::from_utf8_lossy(line);
            assert_eq!(dead.len(), 1, "{text}");
            assert_eq!(dead[0].reason, DeadLetterReason::BadPayload, "{text}");
            assert!(
                events
                    .iter()
                    .all(|e| matches!(e.kind, EventKind::Rejected { .. })),
                "{text}: {events:?}"
            );
            assert!(parse(&[line, b"\n"].concat())[0].is_malformed(), "{text}");
        }
        out.lines.clear();
        out.buf.clear();
        for code in 0..CALL_ERRORS.len() {
            link.call_error(
                &mut out,
                "CP-0001",
                day + HOUR + code as Millis * MINUTE,
                code,
            );
        }
        for (i, l) in out.lines.iter().enumerate() {
            let line = &out.buf[l.start..l.end];
            let (mut events, mut dead, mut stats) = (vec![], vec![], DecodeStats::default());
            decoder.decode_line(i as u64, line, &mut events, &mut dead, &mut stats);
            assert!(dead.is_empty(), "{dead:?}");
            assert!(matches!(
                events[..],
                [Event {
                    kind: EventKind::CallError { .. },
                    ..
                }]
            ));
        }

        // A whole fleet's traffic: exactly the deliberately malformed lines are rejected.
        let fleet = fault_fleet();
        let bytes = traffic(&fleet);
        let parsed = parse(&bytes);
        let (mut events, mut dead, mut stats) = (vec![], vec![], DecodeStats::default());
        let mut rejected = BTreeSet::new();
        for (i, line) in bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let before = dead.len();
            decoder.decode_line(i as u64, line, &mut events, &mut dead, &mut stats);
            if dead.len() > before {
                rejected.insert(i);
            }
        }
        let malformed: BTreeSet<usize> = parsed
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_malformed())
            .map(|(i, _)| i)
            .collect();
        assert!(malformed.len() > 10);
        assert_eq!(rejected, malformed, "{:?}", &dead[..dead.len().min(3)]);
    }

    fn measurand(line: &Line, name: &str) -> Vec<f64> {
        line.payload()["meterValue"][0]["sampledValue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["measurand"] == name)
            .map(|s| s["value"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn healthy_chargers_stay_in_band_and_count_up() {
        let fleet = Fleet::new(&cfg(16, 24, 9), &[]);
        let faulty: BTreeSet<&str> = fleet
            .labels()
            .iter()
            .map(|l| l.charge_point_id.as_str())
            .collect();
        let lines = parse(&traffic(&fleet));
        // Per (charger, connector): the last register seen. Lines of one charger are in
        // emission order in the file.
        let mut register: HashMap<(String, i64), i64> = HashMap::new();
        let mut tx_conn: HashMap<(String, i64), i64> = HashMap::new();
        let mut start_conn: HashMap<(String, String), i64> = HashMap::new();
        let mut samples = 0;
        for l in lines
            .iter()
            .filter(|l| !faulty.contains(l.cp.as_str()) && !l.is_error_frame())
        {
            let p = l.payload();
            let reading = match l.action() {
                Some("StartTransaction") => {
                    let c = p["connectorId"].as_i64().unwrap();
                    start_conn.insert((l.cp.clone(), l.frame[1].as_str().unwrap().into()), c);
                    Some((c, p["meterStart"].as_i64().unwrap()))
                }
                Some("MeterValues") => {
                    samples += 1;
                    for v in measurand(l, "Voltage") {
                        assert!((207.0..=253.0).contains(&v), "{v} V");
                    }
                    let temp = measurand(l, "Temperature")[0];
                    assert!((15.0..=55.0).contains(&temp), "{temp} °C");
                    let e = measurand(l, "Energy.Active.Import.Register")[0] as i64;
                    Some((p["connectorId"].as_i64().unwrap(), e))
                }
                Some("StopTransaction") => {
                    let tx = p["transactionId"].as_i64().unwrap();
                    let c = tx_conn[&(l.cp.clone(), tx)];
                    Some((c, p["meterStop"].as_i64().unwrap()))
                }
                None if p.get("transactionId").is_some() => {
                    let c = start_conn[&(l.cp.clone(), l.frame[1].as_str().unwrap().into())];
                    tx_conn.insert((l.cp.clone(), p["transactionId"].as_i64().unwrap()), c);
                    None
                }
                _ => None,
            };
            if let Some((c, wh)) = reading {
                let last = register.entry((l.cp.clone(), c)).or_insert(wh);
                assert!(wh >= *last, "{} connector {c}: {wh} after {last}", l.cp);
                *last = wh;
            }
        }
        assert!(samples > 1000);
    }

    #[test]
    fn live_ranges_continue_the_same_fleet() {
        let c = SimulatorConfig {
            until_stopped: true,
            faults: false,
            ..cfg(6, 6, 11)
        };
        let fleet = Arc::new(Fleet::new(&c, &[]));
        let mut src = SimulatorSource::new(fleet.clone(), 0, 1, MINUTE);
        assert_eq!(src.progress().total, None);
        let mut chunk = Chunk::default();
        let mut seqs = BTreeSet::new();
        let mut lines = Vec::new();
        // Three ranges and a half.
        let chunks = 3 * 6 * 60 + 30;
        for expect in 0..chunks {
            assert_eq!(src.next_chunk(&mut chunk).unwrap(), Poll::Ready);
            assert_eq!(chunk.time, expect, "chunk times keep counting");
            for (seq, _) in chunk.lines() {
                assert_eq!(seq >> SEQ_SLICE_SHIFT, expect);
                assert!(seqs.insert(seq), "seq {seq} twice");
            }
            let parsed = parse(&chunk.data);
            let lo = fleet.start() + expect as Millis * MINUTE;
            assert!(parsed
                .iter()
                .all(|l| l.recv >= lo && l.recv < lo + MINUTE + SECOND));
            lines.extend(parsed);
        }
        assert_eq!(src.progress().done, chunks * 60);
        // The same chargers throughout, booted once, their receive times increasing, their
        // message ids and transaction ids never reused, their registers counting up.
        let cps: BTreeSet<&str> = lines.iter().map(|l| l.cp.as_str()).collect();
        assert_eq!(cps.len(), 6);
        let boots = lines
            .iter()
            .filter(|l| l.action() == Some("BootNotification"))
            .count();
        assert_eq!(boots, 6);
        let mut last_recv: HashMap<&str, Millis> = HashMap::new();
        let mut ids = BTreeSet::new();
        let mut txs = BTreeSet::new();
        let mut register: HashMap<(&str, i64), i64> = HashMap::new();
        let mut late_starts = 0;
        for l in &lines {
            let prev = last_recv.insert(&l.cp, l.recv);
            assert!(prev.is_none_or(|p| p < l.recv), "{}: receive time", l.cp);
            if l.frame[0] == 2 {
                assert!(ids.insert((l.cp.clone(), l.frame[1].as_str().unwrap().to_string())));
            }
            let p = l.payload();
            if l.frame[0] == 3 {
                if let Some(tx) = p.get("transactionId").and_then(Value::as_i64) {
                    assert!(txs.insert((l.cp.clone(), tx)), "transaction {tx} twice");
                }
            }
            let reading = match l.action() {
                Some("StartTransaction") => {
                    late_starts += usize::from(l.recv > fleet.end() + HOUR);
                    Some((
                        p["connectorId"].as_i64().unwrap(),
                        p["meterStart"].as_i64().unwrap(),
                    ))
                }
                Some("MeterValues") if !l.is_malformed() => Some((
                    p["connectorId"].as_i64().unwrap(),
                    measurand(l, "Energy.Active.Import.Register")[0] as i64,
                )),
                _ => None,
            };
            if let Some((c, wh)) = reading {
                let last = register.entry((&l.cp, c)).or_insert(wh);
                assert!(wh >= *last, "{} connector {c}: {wh} after {last}", l.cp);
                *last = wh;
            }
        }
        assert!(
            late_starts > 10,
            "later ranges have sessions: {late_starts}"
        );
        assert!(txs.iter().any(|(_, tx)| *tx > 2 * TX_PER_RANGE));
        // No session spans the end of a range.
        for r in 1..=3 {
            let end = fleet.start() + r * 6 * HOUR;
            let open = lines.iter().filter(|l| {
                l.action() == Some("MeterValues")
                    && !l.is_malformed()
                    && (end - RANGE_END_QUIET + 4 * MINUTE..end).contains(&l.recv)
            });
            assert_eq!(open.count(), 0, "sessions end before the end of range {r}");
        }
        // (`stop` is process-wide, so tests/prometheus.rs checks it on the binary, not here
        // beside other simulator tests.)
    }

    #[test]
    fn maintenance_takes_chargers_out_of_service() {
        let day = cfg(8, 24, 4).start.0;
        let window = MaintenanceWindow {
            charge_point_id: None,
            site_id: Some("SITE-001".into()),
            start: Instant(day + 10 * HOUR),
            end: Instant(day + 13 * HOUR),
            reason: None,
        };
        let fleet = Fleet::new(&cfg(8, 24, 4), std::slice::from_ref(&window));
        let reg = fleet.registry();
        let site1: BTreeSet<&str> = reg
            .stations
            .iter()
            .filter(|s| s.site_id == "SITE-001")
            .map(|s| s.charge_point_id.as_str())
            .collect();
        assert!(!site1.is_empty());
        for l in fleet.labels() {
            if site1.contains(l.charge_point_id.as_str()) {
                assert!(l.end < window.start.0 || l.start > window.end.0);
            }
        }
        let lines = parse(&traffic(&fleet));
        let mut unavailable = 0;
        let mut back = 0;
        for l in lines.iter().filter(|l| site1.contains(l.cp.as_str())) {
            let Some(t) = true_ts(&fleet, l) else {
                continue;
            };
            let status = l.payload().get("status").and_then(Value::as_str);
            if t == window.start.0 && status == Some("Unavailable") {
                unavailable += 1;
            }
            if t == window.end.0 && status == Some("Available") {
                back += 1;
            }
            if window.start.0 <= t && t < window.end.0 {
                assert!(
                    !matches!(l.action(), Some("StartTransaction" | "MeterValues")),
                    "a session during maintenance on {}",
                    l.cp
                );
            }
        }
        let connectors: u32 = reg
            .stations
            .iter()
            .filter(|s| s.site_id == "SITE-001")
            .map(|s| s.connectors.unwrap() + 1)
            .sum();
        assert_eq!(unavailable, connectors);
        assert_eq!(back, connectors);
    }

    #[test]
    fn registry_describes_the_fleet() {
        let fleet = Fleet::new(&cfg(20, 24, 1), &[]);
        let reg = fleet.registry();
        assert_eq!(reg.stations.len(), 20);
        assert_eq!(reg.stations[0].charge_point_id, "CP-0001");
        for s in &reg.stations {
            let dc = s.max_power_w.unwrap() >= 50_000.0;
            let tariff = s.tariff_id.as_deref().unwrap();
            assert_eq!(tariff, if dc { "dc_fast" } else { "ac_standard" });
            assert!((1..=2).contains(&s.connectors.unwrap()));
        }
        assert!(reg.tokens.len() < 60 && reg.tokens.len() > 50);
        let methods: BTreeSet<&str> = reg
            .tokens
            .iter()
            .map(|t| t.payment_method.as_str())
            .collect();
        assert_eq!(methods, BTreeSet::from(["card", "mobile", "subscription"]));
        // Registries round-trip through their JSON form.
        let text = serde_json::to_string(&reg).unwrap();
        assert_eq!(serde_json::from_str::<Registry>(&text).unwrap(), reg);
    }

    #[test]
    fn timestamps_format_like_the_time_module() {
        for t in [0, 1_767_571_200_000, 1_767_600_000_123, 951_782_400_999] {
            let mut b = Vec::new();
            push_ts(&mut b, t);
            assert_eq!(
                String::from_utf8(b).unwrap(),
                crate::time::format_rfc3339(t)
            );
        }
        let mut b = Vec::new();
        push_fixed1(&mut b, 230.04);
        b.push(b' ');
        push_fixed1(&mut b, -0.26);
        b.push(b' ');
        push_int(&mut b, -1_234_567);
        assert_eq!(b, b"230.0 -0.3 -1234567");
    }

    /// Volume and speed of the demo fleet: `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn demo_fleet_volume() {
        let t0 = std::time::Instant::now();
        let fleet = Fleet::new(&SimulatorConfig::default(), &[]);
        let planned = t0.elapsed();
        let mut sink = std::io::sink();
        let mut counter = CountingWriter(&mut sink, 0);
        let lines = write_all(&fleet, &mut counter).unwrap();
        eprintln!(
            "300 chargers × 24 h: {lines} lines, {} MB, {} labels; plan {planned:?}, total {:?}",
            counter.1 >> 20,
            fleet.labels().len(),
            t0.elapsed()
        );
    }

    struct CountingWriter<'a, W>(&'a mut W, u64);

    impl<W: std::io::Write> std::io::Write for CountingWriter<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1 += buf.len() as u64;
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
}
