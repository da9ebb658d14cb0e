//! The normalised event model and the records evflow writes.
//!
//! Owns: the types that cross module boundaries — [`Event`] (what the OCPP decoder produces,
//! whatever the protocol version) and the output records (sessions, revenue rows, health rows,
//! anomalies, notifications, dead letters). No I/O and no logic beyond small conversions live
//! here; stages compute records, sinks serialise them.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. Event time and receive time both use it.
pub type Millis = i64;

/// A charge point's identity as the backend knows it. Interned per worker (see
/// [`crate::ocpp::Interner`]) so that cloning an id in the hot path is a reference-count bump.
pub type ChargePointId = Arc<str>;

/// An OCPP message id, hashed: evflow only needs it to correlate a CALLRESULT with its CALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub u64);

/// A transaction id: an integer in OCPP 1.6, a string in 2.0.1.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TransactionId {
    Int(i64),
    Str(Arc<str>),
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionId::Int(n) => write!(f, "{n}"),
            TransactionId::Str(s) => f.write_str(s),
        }
    }
}

/// One normalised event. `seq` is the event's position in its source (the line number in a
/// file); it orders events with equal event time so that every run over the same input
/// processes them in the same order, whatever the number of workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Hash of the frame (message id, action, payload): identical frames — a backend's
    /// retries — have the same value, so repeats can be dropped per charge point.
    pub frame_hash: u64,
    pub charge_point_id: ChargePointId,
    /// When the backend received the frame (the envelope's `timestamp`).
    pub receive_time: Millis,
    /// When it happened at the charger (the payload's timestamp where it has one and it is
    /// within the configured clock-skew tolerance of `receive_time`; else `receive_time`).
    pub event_time: Millis,
    /// The charger's timestamp minus `receive_time`, ms (saturated), when the payload had
    /// one — even when it was too far off to become the event time (`clock_skew`).
    pub clock_offset_ms: Option<i32>,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// BootNotification (CALL). The accepted heartbeat interval arrives in its CALLRESULT.
    Boot {
        message_id: MessageId,
        vendor: Arc<str>,
        model: Arc<str>,
    },
    Heartbeat,
    Status {
        /// 0 means the whole charger.
        connector_id: u32,
        status: ConnectorStatus,
        error_code: ErrorCode,
        /// `info` / `vendorErrorCode`, joined, when the charger sent any.
        vendor_detail: Option<Arc<str>>,
    },
    Meter {
        connector_id: u32,
        transaction_id: Option<TransactionId>,
        sample: MeterSample,
    },
    /// A transaction started: 1.6 StartTransaction (its transaction id arrives in the
    /// CALLRESULT with the same message id) or 2.0.1 TransactionEvent Started (the id is in
    /// the event; the id token and the start register may come later or not at all).
    TransactionStart {
        message_id: MessageId,
        connector_id: u32,
        transaction_id: Option<TransactionId>,
        id_tag: Option<Arc<str>>,
        meter_start_wh: Option<i64>,
    },
    /// 2.0.1: a transaction learned its id token after it started.
    TransactionAuthorized {
        transaction_id: TransactionId,
        id_tag: Arc<str>,
    },
    TransactionStop {
        transaction_id: TransactionId,
        meter_stop_wh: Option<i64>,
        reason: Arc<str>,
        id_tag: Option<Arc<str>>,
    },
    /// A problem a charger reports outside StatusNotification (2.0.1 NotifyEvent on a
    /// Problem/Fault variable), or its clearing.
    Fault {
        /// 0 means the whole charger.
        connector_id: u32,
        /// What the charger called it: component/variable, and the techCode if any.
        code: Arc<str>,
        active: bool,
    },
    Authorize {
        id_tag: Arc<str>,
    },
    /// CALLRESULT from the backend: the fields evflow correlates with the CALL.
    CallResult {
        message_id: MessageId,
        transaction_id: Option<i64>,
        heartbeat_interval_s: Option<u32>,
    },
    /// CALLERROR, kept so that error rates can be computed.
    CallError {
        message_id: MessageId,
        error_code: Arc<str>,
    },
    /// A frame from this charger that was dead-lettered (its dead letter says why); kept so
    /// that error rates can be computed (`message_errors`).
    Rejected {
        reason: DeadLetterReason,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Boot { .. } => "BootNotification",
            EventKind::Heartbeat => "Heartbeat",
            EventKind::Status { .. } => "StatusNotification",
            EventKind::Meter { .. } => "MeterValues",
            EventKind::TransactionStart { .. } => "StartTransaction",
            EventKind::TransactionAuthorized { .. } => "TransactionAuthorized",
            EventKind::TransactionStop { .. } => "StopTransaction",
            EventKind::Fault { .. } => "Fault",
            EventKind::Authorize { .. } => "Authorize",
            EventKind::CallResult { .. } => "CALLRESULT",
            EventKind::CallError { .. } => "CALLERROR",
            EventKind::Rejected { .. } => "Rejected",
        }
    }
}

/// Connector status: the OCPP 1.6 names, plus 2.0.1's `Occupied` (a vehicle is plugged in;
/// 2.0.1 reports the charging state separately, in TransactionEvent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectorStatus {
    Available,
    Occupied,
    Preparing,
    Charging,
    SuspendedEVSE,
    SuspendedEV,
    Finishing,
    Reserved,
    Unavailable,
    Faulted,
}

impl ConnectorStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Available" => Self::Available,
            "Occupied" => Self::Occupied,
            "Preparing" => Self::Preparing,
            "Charging" => Self::Charging,
            "SuspendedEVSE" => Self::SuspendedEVSE,
            "SuspendedEV" => Self::SuspendedEV,
            "Finishing" => Self::Finishing,
            "Reserved" => Self::Reserved,
            "Unavailable" => Self::Unavailable,
            "Faulted" => Self::Faulted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "Available",
            Self::Occupied => "Occupied",
            Self::Preparing => "Preparing",
            Self::Charging => "Charging",
            Self::SuspendedEVSE => "SuspendedEVSE",
            Self::SuspendedEV => "SuspendedEV",
            Self::Finishing => "Finishing",
            Self::Reserved => "Reserved",
            Self::Unavailable => "Unavailable",
            Self::Faulted => "Faulted",
        }
    }

    /// Whether the connector can serve a driver (counts as "up" for health).
    pub fn is_operative(self) -> bool {
        !matches!(self, Self::Unavailable | Self::Faulted)
    }
}

/// OCPP 1.6 ChargePointErrorCode; codes outside the enumeration are kept as `Other`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    NoError,
    /// Index into [`OCPP16_ERROR_CODES`].
    Known(u8),
    Other(Arc<str>),
}

pub const OCPP16_ERROR_CODES: [&str; 16] = [
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "OverVoltage",
    "WeakSignal",
];

impl ErrorCode {
    pub fn parse(s: &str) -> Self {
        if s == "NoError" {
            return ErrorCode::NoError;
        }
        match OCPP16_ERROR_CODES.iter().position(|c| *c == s) {
            Some(i) => ErrorCode::Known(i as u8),
            None => ErrorCode::Other(Arc::from(s)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::NoError => "NoError",
            ErrorCode::Known(i) => OCPP16_ERROR_CODES[*i as usize],
            ErrorCode::Other(s) => s,
        }
    }
}

/// One meter sample, normalised to base units (W, Wh, V, A, °C, %). Per-phase values are
/// kept per phase where the detectors need them (voltage) and summed where a total is meant
/// (power, current). `None` means the charger did not report the measurand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterSample {
    /// Energy.Active.Import.Register, Wh.
    pub energy_wh: Option<f64>,
    /// Power.Active.Import, W (sum over phases).
    pub power_w: Option<f64>,
    /// Current.Import, A (sum over phases).
    pub current_a: Option<f64>,
    /// Voltage per phase L1..L3 (L1-N etc.; an unphased value goes to L1), V.
    pub voltage_v: [Option<f32>; 3],
    /// Frequency, Hz.
    pub frequency_hz: Option<f32>,
    /// SoC, percent.
    pub soc_pct: Option<f32>,
    /// Temperature, °C (the highest reported).
    pub temperature_c: Option<f32>,
    /// Sample context was Transaction.Begin / Transaction.End.
    pub context: SampleContext,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleContext {
    #[default]
    Periodic,
    TransactionBegin,
    TransactionEnd,
    Other,
}

// ---------------------------------------------------------------------------------------------
// Output records
// ---------------------------------------------------------------------------------------------

/// Money is carried as [`Decimal`] and written as Parquet DECIMAL(18,4). Money fields of
/// serialisable types say `#[serde(with = "rust_decimal::serde::str")]`: a string in JSON,
/// and readable back from commit snapshots (bincode, which cannot guess a type).
pub type Money = Decimal;

/// A finished, priced charging session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub charge_point_id: ChargePointId,
    pub connector_id: u32,
    pub site_id: Arc<str>,
    pub transaction_id: String,
    pub id_tag: Arc<str>,
    pub start_time: Millis,
    pub end_time: Millis,
    pub energy_wh: i64,
    /// How energy_wh was obtained.
    pub energy_source: EnergySource,
    pub stop_reason: Arc<str>,
    pub payment_method: Arc<str>,
    pub tariff_id: Arc<str>,
    pub currency: Arc<str>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_excl_vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_incl_vat: Money,
    /// The session was processed after the watermark had passed its end (late data).
    pub late: bool,
    /// The billing account: the token's (`registry.tokens[].account`), else the id tag.
    pub account: Arc<str>,
    /// The token's subscription plan, if any.
    pub plan_id: Option<Arc<str>>,
    /// Time charging (OCPI TIME) and connected but not charging (PARKING_TIME), ms.
    pub charging_ms: i64,
    pub parking_ms: i64,
    /// The OCPI cost breakdown (rounded to the currency's minor unit; the parts can differ
    /// from the total by a cent, see docs/pricing.md), before the subscription discount.
    pub energy_cost: CostPair,
    pub time_cost: CostPair,
    pub parking_cost: CostPair,
    pub fixed_cost: CostPair,
    /// Energy covered by the account's monthly subscription allowance, Wh, and the discount
    /// it gave (the share of the energy cost; already taken off the totals).
    pub included_energy_wh: i64,
    pub discount: CostPair,
    /// The payment method's fee (`revenue.fees`), and `net = total_excl_vat − payment_fee`.
    #[serde(with = "rust_decimal::serde::str")]
    pub payment_fee: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub net: Money,
    /// The session's charging periods (the `charging_periods/` table), in time order.
    pub periods: Vec<PeriodRecord>,
    /// Facts for the revenue-leakage check and the OCPI CDR output (not `sessions/` columns:
    /// read back from Parquet they are empty).
    pub audit: AuditFacts,
}

/// A session's energy by registers and by meter values, and its site's time zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFacts {
    /// meterStop − meterStart, when both were reported.
    pub register_wh: Option<i64>,
    /// The sum of plausible meter-value increments, when the session had readings.
    pub samples_wh: Option<i64>,
    /// The IANA time zone the session was priced in.
    pub time_zone: Option<Arc<str>>,
}

/// An amount excl. and incl. VAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostPair {
    #[serde(with = "rust_decimal::serde::str")]
    pub excl_vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub incl_vat: Money,
}

/// One charging period of a session (OCPI CDR `charging_periods`): a new period starts
/// where charging starts or stops, and where power crosses a bound of the session's tariff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodRecord {
    pub start_time: Millis,
    pub energy_wh: i64,
    pub charging_ms: i64,
    pub parking_ms: i64,
    /// The highest power sampled in the period, W.
    pub max_power_w: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// meterStop − meterStart.
    Registers,
    /// Last − first Energy.Active.Import.Register sample of the transaction (a register was
    /// missing or implausible).
    Samples,
}

impl EnergySource {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergySource::Registers => "registers",
            EnergySource::Samples => "samples",
        }
    }
}

/// Revenue of one event-time window for one (site, charger, payment method, tariff,
/// currency).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevenueRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub site_id: Arc<str>,
    pub charge_point_id: Arc<str>,
    pub payment_method: Arc<str>,
    pub tariff_id: Arc<str>,
    pub currency: Arc<str>,
    pub sessions: i64,
    pub energy_wh: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_excl_vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub vat: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_incl_vat: Money,
    /// Payment fees of the window's sessions, and `net = total_excl_vat − payment_fees`.
    #[serde(with = "rust_decimal::serde::str")]
    pub payment_fees: Money,
    #[serde(with = "rust_decimal::serde::str")]
    pub net: Money,
    /// 0 for the first write of a window; +1 for each correction by late sessions. The row
    /// with the highest revision is the current one.
    pub revision: i32,
}

/// Level of a health row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HealthLevel {
    Connector,
    Charger,
    Site,
}

impl HealthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthLevel::Connector => "connector",
            HealthLevel::Charger => "charger",
            HealthLevel::Site => "site",
        }
    }
}

/// A health snapshot at the end of a health window. Components are each in [0, 1]; the
/// score is their weighted sum scaled to 0–100 (see `stages::health`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthRow {
    pub window_start: Millis,
    pub window_end: Millis,
    pub level: HealthLevel,
    pub site_id: Arc<str>,
    /// Empty for a site row.
    pub charge_point_id: Arc<str>,
    /// Set for connector rows only.
    pub connector_id: Option<u32>,
    pub score: f64,
    pub availability: f64,
    pub heartbeat_regularity: f64,
    pub session_success: f64,
    pub error_free: f64,
    pub anomaly_free: f64,
    pub open_anomalies: i64,
    /// The component that cost the most points (weight × (1 − value)); none at 100.
    pub main_cause: Option<HealthComponent>,
}

/// The components of a health score (`stages::health`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthComponent {
    Availability,
    HeartbeatRegularity,
    SessionSuccess,
    ErrorFree,
    AnomalyFree,
}

impl HealthComponent {
    pub const ALL: [HealthComponent; 5] = [
        HealthComponent::Availability,
        HealthComponent::HeartbeatRegularity,
        HealthComponent::SessionSuccess,
        HealthComponent::ErrorFree,
        HealthComponent::AnomalyFree,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthComponent::Availability => "availability",
            HealthComponent::HeartbeatRegularity => "heartbeat_regularity",
            HealthComponent::SessionSuccess => "session_success",
            HealthComponent::ErrorFree => "error_free",
            HealthComponent::AnomalyFree => "anomaly_free",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    CommunicationLost,
    ConnectorFaulted,
    PowerSupply,
    OverTemperature,
    MeterError,
    StuckSession,
    PowerDeliveryDegraded,
    SessionFailures,
    Underused,
    ClockSkew,
    MessageErrors,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 11] = [
        AnomalyKind::CommunicationLost,
        AnomalyKind::ConnectorFaulted,
        AnomalyKind::PowerSupply,
        AnomalyKind::OverTemperature,
        AnomalyKind::MeterError,
        AnomalyKind::StuckSession,
        AnomalyKind::PowerDeliveryDegraded,
        AnomalyKind::SessionFailures,
        AnomalyKind::Underused,
        AnomalyKind::ClockSkew,
        AnomalyKind::MessageErrors,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::CommunicationLost => "communication_lost",
            AnomalyKind::ConnectorFaulted => "connector_faulted",
            AnomalyKind::PowerSupply => "power_supply",
            AnomalyKind::OverTemperature => "over_temperature",
            AnomalyKind::MeterError => "meter_error",
            AnomalyKind::StuckSession => "stuck_session",
            AnomalyKind::PowerDeliveryDegraded => "power_delivery_degraded",
            AnomalyKind::SessionFailures => "session_failures",
            AnomalyKind::Underused => "underused",
            AnomalyKind::ClockSkew => "clock_skew",
            AnomalyKind::MessageErrors => "message_errors",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyState {
    Open,
    Resolved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// An anomaly record: written once when it opens and once when it resolves, with the same id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyRecord {
    pub id: String,
    pub kind: AnomalyKind,
    pub state: AnomalyState,
    pub charge_point_id: ChargePointId,
    pub site_id: Arc<str>,
    pub connector_id: Option<u32>,
    #[serde(with = "crate::time::rfc3339")]
    pub event_time: Millis,
    pub severity: Severity,
    /// The charger was in a scheduled maintenance window: recorded, but no fault
    /// notification went out.
    #[serde(default)]
    pub during_maintenance: bool,
    pub details: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    StationAvailable,
    ChargingAlmostComplete,
    StationOutOfOrder,
    MaintenanceUpcoming,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::StationAvailable,
        NotificationKind::ChargingAlmostComplete,
        NotificationKind::StationOutOfOrder,
        NotificationKind::MaintenanceUpcoming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::StationAvailable => "station_available",
            NotificationKind::ChargingAlmostComplete => "charging_almost_complete",
            NotificationKind::StationOutOfOrder => "station_out_of_order",
            NotificationKind::MaintenanceUpcoming => "maintenance_upcoming",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Driver,
    Operator,
}

/// One notification for one recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: String,
    pub kind: NotificationKind,
    pub audience: Audience,
    /// The driver's id tag, `operator`, or `public` (the app's availability feed).
    pub recipient: Arc<str>,
    pub charge_point_id: ChargePointId,
    pub site_id: Arc<str>,
    pub connector_id: Option<u32>,
    #[serde(with = "crate::time::rfc3339")]
    pub event_time: Millis,
    /// What the message needs: e.g. soc_pct, eta_minutes, window start/end, error code.
    pub facts: serde_json::Value,
    /// Held for the recipient's quiet hours: deliver at (not before) this time. `None`:
    /// deliver now.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub held_until: Option<Millis>,
}

/// Something happened that someone should hear about: emitted by the charger stage, turned
/// into [`NotificationRecord`]s for its recipients by `stages::notifications` on worker 0,
/// which knows the driver watches, rate limits and quiet hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationTrigger {
    pub kind: NotificationKind,
    pub charge_point_id: ChargePointId,
    pub site_id: Arc<str>,
    pub connector_id: Option<u32>,
    pub event_time: Millis,
    pub facts: serde_json::Value,
    /// The drivers of the sessions concerned (charging_almost_complete; a connector, or the
    /// whole charger, going out of order under sessions in progress).
    pub drivers: Vec<Arc<str>>,
    /// Drivers who used the charger recently (maintenance_upcoming), sorted.
    pub recent_users: Vec<Arc<str>>,
}

/// A connector (or, `connector_id: None`, the whole charger) that went out of order is back
/// in order: what resolves a `StationOutOfOrder` alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackInOrder {
    pub charge_point_id: ChargePointId,
    pub site_id: Arc<str>,
    pub connector_id: Option<u32>,
    pub event_time: Millis,
}

/// A driver starts or stops watching a charger or a site (`schemas/watch-event.schema.json`):
/// watchers receive `station_available`, `station_out_of_order` and `maintenance_upcoming`
/// for what they watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The driver's token as the notification service knows it (an OCPP id tag or an app
    /// user id); it becomes the notifications' `recipient`.
    pub driver: Arc<str>,
    pub action: WatchAction,
    pub target: WatchTarget,
    /// The kinds wanted; empty means every kind a watcher can get.
    pub kinds: Vec<NotificationKind>,
    /// When the driver (un)watched: applied in event-time order with the charger traffic.
    #[serde(with = "crate::time::rfc3339")]
    pub timestamp: Millis,
    /// A watch ends by itself at this time (e.g. "tell me within the next hour").
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub expires: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchAction {
    Watch,
    Unwatch,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchTarget {
    ChargePoint(Arc<str>),
    Site(Arc<str>),
}

/// A payment provider's event about a charging session (`schemas/payment-event.schema.json`):
/// what revenue leakage is judged against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The provider's id of this event (a capture and its refund have different ids).
    pub payment_id: String,
    pub charge_point_id: Arc<str>,
    /// The OCPP transaction id of the session paid for (as in `sessions/`).
    pub transaction_id: String,
    #[serde(rename = "type")]
    pub kind: PaymentEventKind,
    /// Amount, incl. VAT, in `currency` (decimal string).
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Money,
    pub currency: Arc<str>,
    #[serde(with = "crate::time::rfc3339")]
    pub timestamp: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEventKind {
    Authorised,
    Captured,
    Failed,
    Refunded,
}

/// Money lost or at risk on one session (`schemas/leakage.schema.json`), with a
/// deterministic `id`; `state` goes `open` → `resolved` when a later payment settles it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakageRecord {
    pub id: String,
    pub kind: LeakageKind,
    pub state: AnomalyState,
    pub charge_point_id: Arc<str>,
    pub connector_id: u32,
    pub site_id: Arc<str>,
    pub transaction_id: String,
    /// When the leak was established (session end + grace period, or the mismatching
    /// event), or resolved.
    #[serde(with = "crate::time::rfc3339")]
    pub event_time: Millis,
    /// What the session was priced at, incl. VAT.
    #[serde(with = "rust_decimal::serde::str")]
    pub expected: Money,
    /// Captured minus refunded, incl. VAT.
    #[serde(with = "rust_decimal::serde::str")]
    pub captured: Money,
    pub currency: Arc<str>,
    pub details: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakageKind {
    /// Energy was delivered and priced, but no capture arrived within the grace period.
    Uncaptured,
    /// Captured (net of refunds) differs from the priced amount.
    AmountMismatch,
    /// The session's registers (meterStop − meterStart) disagree with the sum of its meter
    /// values beyond the tolerance.
    MeterMismatch,
}

impl LeakageKind {
    pub const ALL: [LeakageKind; 3] = [
        LeakageKind::Uncaptured,
        LeakageKind::AmountMismatch,
        LeakageKind::MeterMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeakageKind::Uncaptured => "uncaptured",
            LeakageKind::AmountMismatch => "amount_mismatch",
            LeakageKind::MeterMismatch => "meter_mismatch",
        }
    }
}

/// A line evflow could not use, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub seq: u64,
    pub reason: DeadLetterReason,
    /// Human-readable detail (the parser's message).
    pub error: String,
    /// The raw line, lossily decoded as UTF-8.
    pub line: String,
}

/// Why a line was dead-lettered. The serialised names are stable: consumers filter on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The line is not valid JSON, or not valid UTF-8.
    InvalidJson,
    /// The line is JSON but not an envelope object with `timestamp`, `charge_point_id`, `message`.
    BadEnvelope,
    /// `charge_point_id` is missing or empty.
    MissingChargePoint,
    /// `timestamp` (or a payload timestamp) is not RFC 3339.
    BadTimestamp,
    /// `message` is not an OCPP-J frame (`[2,id,action,payload]`, `[3,id,payload]`, `[4,…]`).
    NotAFrame,
    /// The action is not an OCPP action.
    UnknownAction,
    /// The payload does not have the shape the action requires.
    BadPayload,
    /// Strict mode: the CALL's payload violates its action's official OCPP JSON schema.
    SchemaViolation,
    /// A line of the payment events (`revenue.payments`) that is not a payment event
    /// (`seq` is its line number in that file).
    BadPaymentEvent,
    /// A line of the driver watches (`notifications.watches`) that is not a watch event
    /// (`seq` is its line number in that file, or its Kafka offset).
    BadWatchEvent,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 10] = [
        DeadLetterReason::InvalidJson,
        DeadLetterReason::BadEnvelope,
        DeadLetterReason::MissingChargePoint,
        DeadLetterReason::BadTimestamp,
        DeadLetterReason::NotAFrame,
        DeadLetterReason::UnknownAction,
        DeadLetterReason::BadPayload,
        DeadLetterReason::SchemaViolation,
        DeadLetterReason::BadPaymentEvent,
        DeadLetterReason::BadWatchEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::InvalidJson => "invalid_json",
            DeadLetterReason::BadEnvelope => "bad_envelope",
            DeadLetterReason::MissingChargePoint => "missing_charge_point",
            DeadLetterReason::BadTimestamp => "bad_timestamp",
            DeadLetterReason::NotAFrame => "not_a_frame",
            DeadLetterReason::UnknownAction => "unknown_action",
            DeadLetterReason::BadPayload => "bad_payload",
            DeadLetterReason::SchemaViolation => "schema_violation",
            DeadLetterReason::BadPaymentEvent => "bad_payment_event",
            DeadLetterReason::BadWatchEvent => "bad_watch_event",
        }
    }
}

/// A stable 64-bit hash (FNV-1a) of the parts, as 16 hex digits: deterministic ids for
/// anomalies and notifications that do not change between runs, machines or versions.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0x1f)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What the per-charger stages and the aggregator emit towards the sinks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// Boxed: a session record is several times larger than the other records, and every
    /// record (health rows are the many) would otherwise be moved at its size.
    Session(Box<SessionRecord>),
    Revenue(RevenueRow),
    Health(HealthRow),
    Anomaly(AnomalyRecord),
    Notification(NotificationRecord),
    /// Turned into notifications on worker 0 (`stages::notifications`); never written.
    Trigger(Box<NotificationTrigger>),
    /// Passed to the Alertmanager sinks; never written.
    BackInOrder(BackInOrder),
    DeadLetter(DeadLetter),
    Leakage(LeakageRecord),
    /// Uptime of one port over one day or month (NEVI, 23 CFR 680.116).
    Uptime(UptimeRow),
    /// One outage of one port, written when it ends.
    Outage(OutageRecord),
    /// A per-charger fact for the fleet-wide detectors on worker 0 (`stages::fleet`);
    /// consumed there, never written.
    Observation(Box<FleetObservation>),
    /// The watermark crossed a flush boundary: sinks may close their files.
    Checkpoint {
        watermark: Millis,
    },
}

/// The period of an uptime row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UptimePeriod {
    Day,
    Month,
}

impl UptimePeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            UptimePeriod::Day => "day",
            UptimePeriod::Month => "month",
        }
    }
}

/// Uptime of one port (connector) over one local calendar day or month of its site.
/// `uptime_pct = 100 × (minutes − (outage_minutes − excluded_minutes)) / minutes`, where
/// `minutes` are the period's minutes from when evflow first saw the charger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UptimeRow {
    pub charge_point_id: Arc<str>,
    pub site_id: Arc<str>,
    pub connector_id: u32,
    pub period: UptimePeriod,
    #[serde(with = "crate::time::rfc3339")]
    pub period_start: Millis,
    #[serde(with = "crate::time::rfc3339")]
    pub period_end: Millis,
    pub minutes: f64,
    pub outage_minutes: f64,
    pub excluded_minutes: f64,
    pub uptime_pct: f64,
}

/// One outage of a port: from when it stopped being operational to when it was again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageRecord {
    pub id: String,
    pub charge_point_id: Arc<str>,
    pub site_id: Arc<str>,
    pub connector_id: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub start: Millis,
    #[serde(with = "crate::time::rfc3339")]
    pub end: Millis,
    /// What took the port down: `faulted`, `unavailable`, `fault_reported`,
    /// `charger_down`, `communication_lost`.
    pub cause: Arc<str>,
    pub outage_minutes: f64,
    /// Minutes of the outage outside the operator's control.
    pub excluded_minutes: f64,
    /// Why minutes were excluded (`scheduled_maintenance`, `grid_power`, `vehicle`, or a
    /// configured exclusion's reason); empty when none were.
    pub exclusion: Arc<str>,
}

/// What a charger tells the fleet-wide detectors (worker 0). `at` is the charger's event
/// time when it was observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetObservation {
    pub at: Millis,
    pub charge_point_id: Arc<str>,
    pub site_id: Arc<str>,
    pub connector_id: u32,
    pub what: Observed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Observed {
    /// The connector can (or can no longer) take a session: Available, charger online and
    /// operative, not in maintenance.
    Usable(bool),
    /// A session started.
    SessionStarted,
    /// A session's delivery so far: the best power among its first charging samples, as a
    /// share of the charger's rated power, and the state-of-charge band it was seen in.
    Delivery {
        model: Arc<str>,
        ratio: f64,
        soc_band: u8,
        power_w: f64,
    },
}
