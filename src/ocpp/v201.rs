//! OCPP 2.0.1 payloads → the same normalised events as 1.6.
//!
//! Owns: the 2.0.1 action list and the payload shapes evflow reads, and how 2.0.1 concepts map
//! onto evflow's event model (docs/ocpp.md has the full table):
//!
//! - an EVSE is evflow's connector: `evseId` / `evse.id` becomes `connector_id` (0 = the whole
//!   charging station); the `connectorId` within an EVSE is not used;
//! - a TransactionEvent becomes TransactionStart (Started), TransactionAuthorized (an idToken
//!   in Updated), TransactionStop (Ended), Meter events for its meterValues and a Status for
//!   its `chargingState`; the start and stop registers are the Energy.Active.Import.Register
//!   values sampled in the Transaction.Begin / Transaction.End context;
//! - NotifyEvent on a Problem/Tripped/Fault variable becomes a Fault; on a Temperature
//!   variable, a Meter event with only `temperature_c`;
//! - sampled values are JSON numbers with a `unitOfMeasure {unit, multiplier}`, folded by the
//!   same rules as 1.6 (`sample::SampleFold`).
//!
//! Fields evflow does not use are skipped without being materialised. Like the 1.6 decoder,
//! only the fields evflow uses are required: a payload without them (or with a value of the
//! wrong type, or outside its enumeration) is `bad_payload`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::sample::SampleFold;
use super::units::{parse_scaled_value, Measurand};
use super::v16::TRANSACTION_CONNECTOR;
use super::{ActionOutcome, DecodeError, Interner, Partial};
use crate::model::{
    ConnectorStatus, DeadLetterReason, ErrorCode, EventKind, MessageId, MeterSample, SampleContext,
    TransactionId,
};
use crate::time::parse_rfc3339;

/// Every OCPP 2.0.1 action (the official schemas' `*Request` files). An action in neither
/// this list nor 1.6's is not OCPP and is dead-lettered as `unknown_action`.
pub const ACTIONS: &[&str] = &[
    "Authorize",
    "BootNotification",
    "CancelReservation",
    "CertificateSigned",
    "ChangeAvailability",
    "ClearCache",
    "ClearChargingProfile",
    "ClearDisplayMessage",
    "ClearVariableMonitoring",
    "ClearedChargingLimit",
    "CostUpdated",
    "CustomerInformation",
    "DataTransfer",
    "DeleteCertificate",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetBaseReport",
    "GetCertificateStatus",
    "GetChargingProfiles",
    "GetCompositeSchedule",
    "GetDisplayMessages",
    "GetInstalledCertificateIds",
    "GetLocalListVersion",
    "GetLog",
    "GetMonitoringReport",
    "GetReport",
    "GetTransactionStatus",
    "GetVariables",
    "Heartbeat",
    "InstallCertificate",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmware",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "RequestStartTransaction",
    "RequestStopTransaction",
    "ReservationStatusUpdate",
    "ReserveNow",
    "Reset",
    "SecurityEventNotification",
    "SendLocalList",
    "SetChargingProfile",
    "SetDisplayMessage",
    "SetMonitoringBase",
    "SetMonitoringLevel",
    "SetNetworkProfile",
    "SetVariableMonitoring",
    "SetVariables",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
    "TriggerMessage",
    "UnlockConnector",
    "UnpublishFirmware",
    "UpdateFirmware",
];

/// The 2.0.1-only actions this decoder turns into events. Sent by a charge point that speaks
/// 1.6 (by the envelope or the registry), they are `bad_payload`.
pub const DECODED_V201_ONLY: &[&str] = &["NotifyEvent", "TransactionEvent"];

/// NotifyEvent variables that report a fault: `actualValue` "true" (or anything but
/// "false"/"0") raises it, "false"/"0" or `cleared: true` clears it. `Problem` is the
/// standard device-model variable, `Tripped` the one of breakers and RCDs; `Fault` is what
/// some chargers use instead.
pub const FAULT_VARIABLES: &[&str] = &["Problem", "Tripped", "Fault"];

fn bad_payload(action: &str, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(DeadLetterReason::BadPayload, format!("{action}: {e}"))
}

fn timestamp(s: &str) -> Result<i64, DecodeError> {
    parse_rfc3339(s).map_err(|e| DecodeError::new(DeadLetterReason::BadTimestamp, e.to_string()))
}

fn parse<'a, T: Deserialize<'a>>(action: &str, payload: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(payload).map_err(|e| bad_payload(action, e))
}

/// An optional text as evflow keeps it: blank means absent.
fn non_blank<'a>(s: Option<&'a Cow<'a, str>>) -> Option<&'a str> {
    s.map(|s| s.as_ref()).filter(|s| !s.trim().is_empty())
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootNotification<'a> {
    #[serde(borrow)]
    charging_station: ChargingStation<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChargingStation<'a> {
    #[serde(borrow)]
    vendor_name: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdToken<'a> {
    #[serde(borrow)]
    id_token: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorize<'a> {
    #[serde(borrow)]
    id_token: IdToken<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusNotification<'a> {
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    connector_status: Cow<'a, str>,
    evse_id: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeterValues<'a> {
    evse_id: u32,
    #[serde(borrow)]
    meter_value: Vec<MeterValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeterValue<'a> {
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    sampled_value: Vec<SampledValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SampledValue<'a> {
    /// A JSON number, kept as written so that the multiplier is applied exactly.
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(borrow, default)]
    context: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    measurand: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    unit_of_measure: Option<UnitOfMeasure<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnitOfMeasure<'a> {
    /// Absent: the measurand's base unit (the schema's default is "Wh").
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
    #[serde(default)]
    multiplier: i32,
}

#[derive(Deserialize)]
struct Evse {
    id: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionEvent<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    trigger_reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    transaction_info: TransactionInfo<'a>,
    #[serde(borrow, default)]
    id_token: Option<IdToken<'a>>,
    #[serde(default)]
    evse: Option<Evse>,
    #[serde(borrow, default)]
    meter_value: Vec<MeterValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransactionInfo<'a> {
    #[serde(borrow)]
    transaction_id: Cow<'a, str>,
    #[serde(borrow, default)]
    charging_state: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stopped_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotifyEvent<'a> {
    #[serde(borrow, default)]
    generated_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_data: Vec<EventData<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actual_value: Cow<'a, str>,
    #[serde(borrow, default)]
    tech_code: Option<Cow<'a, str>>,
    #[serde(default)]
    cleared: bool,
    #[serde(borrow)]
    component: Component<'a>,
    #[serde(borrow)]
    variable: Variable<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Component<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    evse: Option<Evse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Variable<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// 2.0.1 ConnectorStatusEnumType (StatusNotification): five values, 1.6's others are errors.
fn connector_status(s: &str) -> Option<ConnectorStatus> {
    Some(match s {
        "Available" => ConnectorStatus::Available,
        "Occupied" => ConnectorStatus::Occupied,
        "Reserved" => ConnectorStatus::Reserved,
        "Unavailable" => ConnectorStatus::Unavailable,
        "Faulted" => ConnectorStatus::Faulted,
        _ => return None,
    })
}

/// TransactionEvent `chargingState` → the connector status evflow tracks. `Idle` (no EV
/// connected, or not yet) gives no status: the connector's availability is
/// StatusNotification's to report, and inventing `Available` here would announce
/// `station_available` while a transaction is open.
fn charging_status(s: &str) -> Result<Option<ConnectorStatus>, String> {
    Ok(Some(match s {
        "Charging" => ConnectorStatus::Charging,
        "SuspendedEV" => ConnectorStatus::SuspendedEV,
        "SuspendedEVSE" => ConnectorStatus::SuspendedEVSE,
        // Plugged in, not (or no longer) charging: what StatusNotification calls Occupied.
        "EVConnected" => ConnectorStatus::Occupied,
        "Idle" => return Ok(None),
        other => return Err(format!("unknown chargingState {other:?}")),
    }))
}

/// Decodes a CALL's payload. Unused OCPP actions come back as [`ActionOutcome::Ignored`].
pub(crate) fn decode_call(
    action: &str,
    message_id: MessageId,
    payload: &str,
    interner: &mut Interner,
    out: &mut Vec<Partial>,
) -> Result<ActionOutcome, DecodeError> {
    match action {
        "Heartbeat" => {
            let _: Empty = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Heartbeat,
            });
        }
        "BootNotification" => {
            let p: BootNotification = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Boot {
                    message_id,
                    vendor: interner.intern(&p.charging_station.vendor_name),
                    model: interner.intern(&p.charging_station.model),
                },
            });
        }
        "Authorize" => {
            let p: Authorize = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Authorize {
                    id_tag: interner.intern(&p.id_token.id_token),
                },
            });
        }
        "StatusNotification" => {
            let p: StatusNotification = parse(action, payload)?;
            let status = connector_status(&p.connector_status).ok_or_else(|| {
                bad_payload(
                    action,
                    format!("unknown connectorStatus {:?}", p.connector_status),
                )
            })?;
            out.push(Partial {
                event_time: Some(timestamp(&p.timestamp)?),
                kind: EventKind::Status {
                    connector_id: p.evse_id,
                    status,
                    // 2.0.1 reports no error code here: a fault's details come by NotifyEvent.
                    error_code: ErrorCode::NoError,
                    vendor_detail: None,
                },
            });
        }
        "MeterValues" => {
            let p: MeterValues = parse(action, payload)?;
            if p.meter_value.is_empty() {
                return Err(bad_payload(action, "meterValue is empty"));
            }
            meter_values(action, &p.meter_value, p.evse_id, None, out)?;
        }
        "TransactionEvent" => transaction_event(action, message_id, payload, interner, out)?,
        "NotifyEvent" => {
            if !notify_event(action, payload, interner, out)? {
                return Ok(ActionOutcome::Ignored);
            }
        }
        "StartTransaction" | "StopTransaction" => {
            return Err(bad_payload(
                action,
                "is an OCPP 1.6 action; OCPP 2.0.1 reports transactions by TransactionEvent",
            ))
        }
        a if ACTIONS.contains(&a) || super::v16::ACTIONS.contains(&a) => {
            return Ok(ActionOutcome::Ignored)
        }
        other => {
            return Err(DecodeError::new(
                DeadLetterReason::UnknownAction,
                format!("{other:?} is not an OCPP 1.6 or 2.0.1 action"),
            ))
        }
    }
    Ok(ActionOutcome::Events)
}

/// What the meterValues of one frame said about the transaction's registers.
#[derive(Default)]
struct Registers {
    /// The first Energy.Active.Import.Register sampled in the Transaction.Begin context.
    begin: Option<f64>,
    /// The last one sampled in the Transaction.End context.
    end: Option<f64>,
}

/// One Meter partial per meterValue, in order.
fn meter_values(
    action: &str,
    values: &[MeterValue],
    connector_id: u32,
    transaction_id: Option<&TransactionId>,
    out: &mut Vec<Partial>,
) -> Result<Registers, DecodeError> {
    let mut registers = Registers::default();
    for mv in values {
        let event_time = Some(timestamp(&mv.timestamp)?);
        let mut fold = SampleFold::default();
        for sv in &mv.sampled_value {
            let Some(m) = Measurand::parse(sv.measurand.as_deref()) else {
                continue;
            };
            let text = sv.value.get();
            if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return Err(bad_payload(
                    action,
                    format!("sampled value {text} is not a number"),
                ));
            }
            let (unit, multiplier) = sv
                .unit_of_measure
                .as_ref()
                .map_or((None, 0), |u| (u.unit.as_deref(), u.multiplier));
            let v = parse_scaled_value(m, unit, multiplier, text)
                .map_err(|e| bad_payload(action, e))?;
            fold.add(m, v, sv.phase.as_deref(), sv.context.as_deref());
        }
        registers.begin = registers
            .begin
            .or(fold.transaction_register(SampleContext::TransactionBegin));
        if let Some(e) = fold.transaction_register(SampleContext::TransactionEnd) {
            registers.end = Some(e);
        }
        out.push(Partial {
            event_time,
            kind: EventKind::Meter {
                connector_id,
                transaction_id: transaction_id.cloned(),
                sample: fold.finish(),
            },
        });
    }
    Ok(registers)
}

/// TransactionEvent → its partials, in the order the stage should apply those with equal event
/// times: Started: TransactionStart, Status, Meter…; Updated: TransactionAuthorized, Status,
/// Meter…; Ended: Meter…, TransactionStop, Status. So a start exists before its samples, a
/// sample is judged under the charging state it came with, and the end samples are counted
/// before the session closes.
fn transaction_event(
    action: &str,
    message_id: MessageId,
    payload: &str,
    interner: &mut Interner,
    out: &mut Vec<Partial>,
) -> Result<(), DecodeError> {
    let p: TransactionEvent = parse(action, payload)?;
    let at = Some(timestamp(&p.timestamp)?);
    let info = &p.transaction_info;
    let tx = TransactionId::Str(interner.intern(&info.transaction_id));
    let evse = p.evse.as_ref().map(|e| e.id);
    let id_tag = p
        .id_token
        .as_ref()
        .and_then(|t| non_blank(Some(&t.id_token)))
        .map(|t| interner.intern(t));
    // Without an EVSE (2.0.1 names it once per transaction), samples go to the transaction's
    // connector, which the stage finds by transaction id.
    let meter_connector = evse.unwrap_or(TRANSACTION_CONNECTOR);
    let status = match info.charging_state.as_deref() {
        Some(s) => charging_status(s).map_err(|e| bad_payload(action, e))?,
        None => None,
    };
    // A status needs a connector; without the EVSE it is dropped (docs/ocpp.md).
    let status = evse.zip(status).map(|(connector_id, status)| Partial {
        event_time: at,
        kind: EventKind::Status {
            connector_id,
            status,
            error_code: ErrorCode::NoError,
            vendor_detail: None,
        },
    });
    match p.event_type.as_ref() {
        "Started" => {
            let first = out.len();
            let registers = meter_values(action, &p.meter_value, meter_connector, Some(&tx), out)?;
            let start = Partial {
                event_time: at,
                kind: EventKind::TransactionStart {
                    message_id,
                    // Started before an EV chose an EVSE (authorised first): the station.
                    connector_id: evse.unwrap_or(0),
                    transaction_id: Some(tx),
                    id_tag,
                    meter_start_wh: registers.begin.map(|wh| wh.round() as i64),
                },
            };
            out.insert(first, start);
            if let Some(s) = status {
                out.insert(first + 1, s);
            }
        }
        "Updated" => {
            // The idToken of a StopAuthorized/Deauthorized update is whoever stopped (or
            // revoked) the transaction, not its driver.
            let stopping = matches!(
                p.trigger_reason.as_deref(),
                Some("StopAuthorized" | "Deauthorized")
            );
            if let Some(id_tag) = id_tag.filter(|_| !stopping) {
                out.push(Partial {
                    event_time: at,
                    kind: EventKind::TransactionAuthorized {
                        transaction_id: tx.clone(),
                        id_tag,
                    },
                });
            }
            out.extend(status);
            meter_values(action, &p.meter_value, meter_connector, Some(&tx), out)?;
        }
        "Ended" => {
            let registers = meter_values(action, &p.meter_value, meter_connector, Some(&tx), out)?;
            out.push(Partial {
                event_time: at,
                kind: EventKind::TransactionStop {
                    transaction_id: tx,
                    meter_stop_wh: registers.end.map(|wh| wh.round() as i64),
                    // 2.0.1: stoppedReason may only be omitted when it is Local.
                    reason: interner
                        .intern(non_blank(info.stopped_reason.as_ref()).unwrap_or("Local")),
                    id_tag,
                },
            });
            out.extend(status);
        }
        other => return Err(bad_payload(action, format!("unknown eventType {other:?}"))),
    }
    Ok(())
}

/// NotifyEvent → Fault and temperature Meter partials. Returns whether any eventData was used
/// (a NotifyEvent with none is counted as an ignored action).
fn notify_event(
    action: &str,
    payload: &str,
    interner: &mut Interner,
    out: &mut Vec<Partial>,
) -> Result<bool, DecodeError> {
    let p: NotifyEvent = parse(action, payload)?;
    let before = out.len();
    for d in &p.event_data {
        let variable = d.variable.name.as_ref();
        let is_fault = FAULT_VARIABLES.contains(&variable);
        if !is_fault && variable != "Temperature" {
            continue;
        }
        let event_time = d
            .timestamp
            .as_deref()
            .or(p.generated_at.as_deref())
            .map(timestamp)
            .transpose()?;
        let connector_id = d.component.evse.as_ref().map_or(0, |e| e.id);
        let value = d.actual_value.trim();
        let kind = if is_fault {
            let active = !(d.cleared || value.eq_ignore_ascii_case("false") || value == "0");
            let component = d.component.name.as_ref();
            let code = match non_blank(d.tech_code.as_ref()) {
                Some(tc) => interner.intern_concat(&[component, "/", variable, ":", tc]),
                None => interner.intern_concat(&[component, "/", variable]),
            };
            EventKind::Fault {
                connector_id,
                code,
                active,
            }
        } else {
            // The device model's Temperature is in degrees Celsius.
            let t: f64 = value
                .parse()
                .ok()
                .filter(|t: &f64| t.is_finite() && t.abs() <= f32::MAX as f64)
                .ok_or_else(|| {
                    bad_payload(
                        action,
                        format!(
                            "Temperature actualValue {:?} is not a number",
                            d.actual_value
                        ),
                    )
                })?;
            EventKind::Meter {
                connector_id,
                transaction_id: None,
                sample: MeterSample {
                    temperature_c: Some(t as f32),
                    ..MeterSample::default()
                },
            }
        };
        out.push(Partial { event_time, kind });
    }
    Ok(out.len() > before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;
    use crate::ocpp::schema::SchemaSet;
    use crate::ocpp::OcppVersion;
    use serde_json::{json, Value};

    fn ts(s: &str) -> Millis {
        parse_rfc3339(s).unwrap()
    }

    /// Decodes a CALL payload that must be valid against the official 2.0.1 request schema.
    fn decode(action: &str, payload: Value) -> (ActionOutcome, Vec<Partial>) {
        let text = payload.to_string();
        if let Err(e) = SchemaSet::embedded().validate_call(OcppVersion::V201, action, &text) {
            panic!("test payload is not valid OCPP 2.0.1 {action}: {e}\n{text}");
        }
        let mut out = Vec::new();
        let outcome = decode_call(
            action,
            MessageId(7),
            &text,
            &mut Interner::default(),
            &mut out,
        )
        .unwrap_or_else(|e| panic!("{action}: {e}"));
        (outcome, out)
    }

    fn events(action: &str, payload: Value) -> Vec<Partial> {
        let (outcome, out) = decode(action, payload);
        assert!(matches!(outcome, ActionOutcome::Events), "{action} ignored");
        out
    }

    fn error(action: &str, payload: Value) -> DecodeError {
        match decode_call(
            action,
            MessageId(7),
            &payload.to_string(),
            &mut Interner::default(),
            &mut Vec::new(),
        ) {
            Err(e) => e,
            Ok(_) => panic!("{action} {payload} decoded"),
        }
    }

    fn tx(s: &str) -> TransactionId {
        TransactionId::Str(s.into())
    }

    #[test]
    fn boot_heartbeat_authorize() {
        let ev = events(
            "BootNotification",
            json!({"reason": "PowerUp", "chargingStation": {"model": "Terra AC W22-T-RD-M",
                "vendorName": "ABB", "serialNumber": "TACW2244321T0456", "firmwareVersion": "1.8.21",
                "modem": {"iccid": "8931440400012345678", "imsi": "204043726354821"}}}),
        );
        assert!(
            matches!(&ev[..], [Partial { event_time: None, kind: EventKind::Boot { message_id: MessageId(7), vendor, model } }]
                if &**vendor == "ABB" && &**model == "Terra AC W22-T-RD-M")
        );
        let ev = events("Heartbeat", json!({}));
        assert!(matches!(ev[0].kind, EventKind::Heartbeat));
        let ev = events(
            "Authorize",
            json!({"idToken": {"idToken": "04A2B3C4D5E680", "type": "ISO14443"}}),
        );
        assert!(
            matches!(&ev[0].kind, EventKind::Authorize { id_tag } if &**id_tag == "04A2B3C4D5E680")
        );
    }

    #[test]
    fn status_notification_reports_the_evse_as_connector() {
        let ev = events(
            "StatusNotification",
            json!({"timestamp": "2026-01-05T08:00:00.000Z", "connectorStatus": "Faulted",
                "evseId": 2, "connectorId": 1}),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event_time, Some(ts("2026-01-05T08:00:00Z")));
        assert!(matches!(
            &ev[0].kind,
            EventKind::Status {
                connector_id: 2,
                status: ConnectorStatus::Faulted,
                error_code: ErrorCode::NoError,
                vendor_detail: None
            }
        ));
        for (s, want) in [
            ("Available", ConnectorStatus::Available),
            ("Occupied", ConnectorStatus::Occupied),
            ("Reserved", ConnectorStatus::Reserved),
            ("Unavailable", ConnectorStatus::Unavailable),
        ] {
            let ev = events(
                "StatusNotification",
                json!({"timestamp": "2026-01-05T08:00:00Z", "connectorStatus": s, "evseId": 0, "connectorId": 0}),
            );
            assert!(
                matches!(ev[0].kind, EventKind::Status { status, connector_id: 0, .. } if status == want)
            );
        }
        // 1.6's statuses are not 2.0.1 connector statuses.
        let e = error(
            "StatusNotification",
            json!({"timestamp": "2026-01-05T08:00:00Z", "connectorStatus": "Charging", "evseId": 1, "connectorId": 1}),
        );
        assert_eq!(e.reason, DeadLetterReason::BadPayload);
        assert!(e.message.contains("connectorStatus"), "{e}");
    }

    #[test]
    fn meter_values_apply_units_multipliers_and_the_1_6_folding_rules() {
        let ev = events(
            "MeterValues",
            json!({"evseId": 1, "meterValue": [{"timestamp": "2026-01-05T08:01:00Z", "sampledValue": [
                {"value": 12.345, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic",
                    "location": "Outlet", "unitOfMeasure": {"unit": "kWh"}},
                {"value": 3680, "measurand": "Power.Active.Import", "phase": "L1", "unitOfMeasure": {"unit": "W"}},
                {"value": 3.68, "measurand": "Power.Active.Import", "phase": "L2", "unitOfMeasure": {"unit": "kW"}},
                {"value": 368, "measurand": "Power.Active.Import", "phase": "L3", "unitOfMeasure": {"unit": "W", "multiplier": 1}},
                {"value": 230.1, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}},
                {"value": 2291, "measurand": "Voltage", "phase": "L2-N", "unitOfMeasure": {"unit": "V", "multiplier": -1}},
                {"value": 16, "measurand": "Current.Import", "unitOfMeasure": {"unit": "A"}},
                {"value": 49.98, "measurand": "Frequency"},
                {"value": 55, "measurand": "SoC", "location": "EV", "unitOfMeasure": {"unit": "Percent"}},
                {"value": 1.2, "measurand": "Power.Reactive.Import", "unitOfMeasure": {"unit": "kvar"}}
            ]}, {"timestamp": "2026-01-05T08:02:00Z", "sampledValue": [{"value": 12400}]}]}),
        );
        assert_eq!(ev.len(), 2);
        let EventKind::Meter {
            connector_id: 1,
            transaction_id: None,
            sample,
        } = &ev[0].kind
        else {
            panic!("{:?}", ev[0].kind)
        };
        assert_eq!(ev[0].event_time, Some(ts("2026-01-05T08:01:00Z")));
        assert_eq!(sample.energy_wh, Some(12_345.0));
        assert_eq!(sample.power_w, Some(11_040.0));
        assert_eq!(sample.voltage_v, [Some(230.1), Some(229.1), None]);
        assert_eq!(sample.current_a, Some(16.0));
        assert_eq!(sample.frequency_hz, Some(49.98));
        assert_eq!(sample.soc_pct, Some(55.0));
        assert_eq!(sample.context, SampleContext::Periodic);
        // No measurand, no unit: the energy register in Wh.
        assert!(
            matches!(&ev[1].kind, EventKind::Meter { sample, .. } if sample.energy_wh == Some(12_400.0))
        );
    }

    #[test]
    fn bad_sampled_values_are_bad_payload() {
        for (sv, what) in [
            (json!({"value": "12.5"}), "not a number"),
            (
                json!({"value": 230, "measurand": "Voltage", "unitOfMeasure": {"unit": "kWh"}}),
                "does not fit",
            ),
            (
                json!({"value": 1, "unitOfMeasure": {"unit": "Wh", "multiplier": 400}}),
                "out of range",
            ),
        ] {
            let e = error(
                "MeterValues",
                json!({"evseId": 1, "meterValue": [{"timestamp": "2026-01-05T08:01:00Z", "sampledValue": [sv]}]}),
            );
            assert_eq!(e.reason, DeadLetterReason::BadPayload);
            assert!(e.message.contains(what), "{e}");
        }
        let e = error("MeterValues", json!({"evseId": 1, "meterValue": []}));
        assert_eq!(e.reason, DeadLetterReason::BadPayload);
    }

    #[test]
    fn transaction_started_updated_ended() {
        let started = events(
            "TransactionEvent",
            json!({"eventType": "Started", "timestamp": "2026-01-05T08:00:05Z", "triggerReason": "CablePluggedIn",
                "seqNo": 0, "transactionInfo": {"transactionId": "f3a1c2d4-0001", "chargingState": "EVConnected"},
                "idToken": {"idToken": "04A2B3C4D5E680", "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": "2026-01-05T08:00:05Z", "sampledValue": [
                    {"value": 1000.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.Begin",
                        "unitOfMeasure": {"unit": "Wh"}}]}]}),
        );
        assert_eq!(started.len(), 3, "start, status, sample");
        let t0 = Some(ts("2026-01-05T08:00:05Z"));
        assert!(started.iter().all(|p| p.event_time == t0));
        assert!(
            matches!(&started[0].kind, EventKind::TransactionStart { message_id: MessageId(7), connector_id: 1,
                transaction_id: Some(t), id_tag: Some(tag), meter_start_wh: Some(1000) }
                if *t == tx("f3a1c2d4-0001") && &**tag == "04A2B3C4D5E680")
        );
        assert!(matches!(
            started[1].kind,
            EventKind::Status {
                connector_id: 1,
                status: ConnectorStatus::Occupied,
                ..
            }
        ));
        assert!(
            matches!(&started[2].kind, EventKind::Meter { connector_id: 1, transaction_id: Some(t), sample }
                if *t == tx("f3a1c2d4-0001") && sample.energy_wh == Some(1000.0)
                    && sample.context == SampleContext::TransactionBegin)
        );

        // The EVSE is named once per transaction: later samples go to the transaction's
        // connector, and a charging state without an EVSE has no connector to go to.
        let updated = events(
            "TransactionEvent",
            json!({"eventType": "Updated", "timestamp": "2026-01-05T08:15:00Z", "triggerReason": "MeterValuePeriodic",
                "seqNo": 2, "transactionInfo": {"transactionId": "f3a1c2d4-0001", "chargingState": "Charging"},
                "meterValue": [{"timestamp": "2026-01-05T08:15:00Z", "sampledValue": [
                    {"value": 3.75, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic",
                        "unitOfMeasure": {"unit": "kWh"}},
                    {"value": 11.0, "measurand": "Power.Active.Import", "context": "Sample.Periodic",
                        "unitOfMeasure": {"unit": "kW"}}]}]}),
        );
        assert_eq!(updated.len(), 1);
        assert!(
            matches!(&updated[0].kind, EventKind::Meter { connector_id: TRANSACTION_CONNECTOR, transaction_id: Some(_), sample }
                if sample.energy_wh == Some(3750.0) && sample.power_w == Some(11_000.0))
        );
        // With the EVSE: the charging state first, then the samples taken in it.
        let updated = events(
            "TransactionEvent",
            json!({"eventType": "Updated", "timestamp": "2026-01-05T08:00:10Z", "triggerReason": "ChargingStateChanged",
                "seqNo": 1, "transactionInfo": {"transactionId": "f3a1c2d4-0001", "chargingState": "Charging"},
                "evse": {"id": 1},
                "meterValue": [{"timestamp": "2026-01-05T08:00:10Z", "sampledValue": [
                    {"value": 11000, "measurand": "Power.Active.Import", "context": "Trigger"}]}]}),
        );
        assert!(matches!(
            updated[..],
            [
                Partial {
                    kind: EventKind::Status {
                        connector_id: 1,
                        status: ConnectorStatus::Charging,
                        ..
                    },
                    ..
                },
                Partial {
                    kind: EventKind::Meter {
                        connector_id: 1,
                        ..
                    },
                    ..
                }
            ]
        ));

        let ended = events(
            "TransactionEvent",
            json!({"eventType": "Ended", "timestamp": "2026-01-05T09:00:00Z", "triggerReason": "EVCommunicationLost",
                "seqNo": 5, "transactionInfo": {"transactionId": "f3a1c2d4-0001", "chargingState": "Idle",
                    "stoppedReason": "EVDisconnected", "timeSpentCharging": 3500},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": "2026-01-05T09:00:00Z", "sampledValue": [
                    {"value": 12.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.End",
                        "unitOfMeasure": {"unit": "Wh", "multiplier": 3}}]}]}),
        );
        // Idle gives no status: the connector's availability is StatusNotification's.
        assert_eq!(ended.len(), 2, "sample, stop");
        assert!(
            matches!(&ended[0].kind, EventKind::Meter { connector_id: 1, sample, .. } if sample.energy_wh == Some(12_000.0))
        );
        assert!(
            matches!(&ended[1].kind, EventKind::TransactionStop { transaction_id, meter_stop_wh: Some(12_000), reason, id_tag: None }
                if *transaction_id == tx("f3a1c2d4-0001") && &**reason == "EVDisconnected")
        );
        assert_eq!(ended[1].event_time, Some(ts("2026-01-05T09:00:00Z")));
    }

    #[test]
    fn transaction_ended_without_reason_is_local_and_keeps_the_stopping_token() {
        let ended = events(
            "TransactionEvent",
            json!({"eventType": "Ended", "timestamp": "2026-01-05T09:00:00Z", "triggerReason": "StopAuthorized",
                "seqNo": 9, "transactionInfo": {"transactionId": "TX-9", "chargingState": "EVConnected"},
                "idToken": {"idToken": "MASTER-01", "type": "Central"}, "evse": {"id": 2}}),
        );
        assert!(matches!(&ended[..], [
                Partial { kind: EventKind::TransactionStop { meter_stop_wh: None, reason, id_tag: Some(tag), .. }, .. },
                Partial { kind: EventKind::Status { connector_id: 2, status: ConnectorStatus::Occupied, .. }, .. },
            ] if &**reason == "Local" && &**tag == "MASTER-01"));
    }

    #[test]
    fn a_token_after_the_start_authorises_the_transaction_unless_it_stops_it() {
        let ev = events(
            "TransactionEvent",
            json!({"eventType": "Updated", "timestamp": "2026-01-05T08:01:00Z", "triggerReason": "Authorized",
                "seqNo": 1, "transactionInfo": {"transactionId": "TX-2"},
                "idToken": {"idToken": "DRIVER-7", "type": "eMAID"}}),
        );
        assert!(
            matches!(&ev[..], [Partial { kind: EventKind::TransactionAuthorized { transaction_id, id_tag }, .. }]
                if *transaction_id == tx("TX-2") && &**id_tag == "DRIVER-7")
        );
        let (_, ev) = decode(
            "TransactionEvent",
            json!({"eventType": "Updated", "timestamp": "2026-01-05T08:30:00Z", "triggerReason": "StopAuthorized",
                "seqNo": 4, "transactionInfo": {"transactionId": "TX-2"},
                "idToken": {"idToken": "MASTER-01", "type": "Central"}}),
        );
        assert!(
            ev.is_empty(),
            "{:?}",
            ev.iter().map(|p| &p.kind).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_transaction_started_before_an_evse_was_chosen_starts_on_the_station() {
        let ev = events(
            "TransactionEvent",
            json!({"eventType": "Started", "timestamp": "2026-01-05T08:00:00Z", "triggerReason": "Authorized",
                "seqNo": 0, "transactionInfo": {"transactionId": "TX-3", "chargingState": "Idle"},
                "idToken": {"idToken": "NO-AUTH", "type": "NoAuthorization"}}),
        );
        assert!(matches!(
            &ev[..],
            [Partial {
                kind: EventKind::TransactionStart {
                    connector_id: 0,
                    meter_start_wh: None,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn bad_transaction_events_are_bad_payload() {
        let base = json!({"eventType": "Started", "timestamp": "2026-01-05T08:00:00Z", "triggerReason": "Authorized",
            "seqNo": 0, "transactionInfo": {"transactionId": "TX-3"}});
        let mut unknown_type = base.clone();
        unknown_type["eventType"] = json!("Paused");
        let mut unknown_state = base.clone();
        unknown_state["transactionInfo"]["chargingState"] = json!("Finishing");
        let mut numeric_id = base.clone();
        numeric_id["transactionInfo"]["transactionId"] = json!(42);
        for p in [unknown_type, unknown_state, numeric_id] {
            assert_eq!(
                error("TransactionEvent", p).reason,
                DeadLetterReason::BadPayload
            );
        }
        let mut bad_time = base;
        bad_time["timestamp"] = json!("noon");
        assert_eq!(
            error("TransactionEvent", bad_time).reason,
            DeadLetterReason::BadTimestamp
        );
        // 1.6's transaction messages are not 2.0.1.
        let e = error(
            "StartTransaction",
            json!({"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-05T08:00:00Z"}),
        );
        assert_eq!(e.reason, DeadLetterReason::BadPayload);
        assert!(e.message.contains("TransactionEvent"), "{e}");
    }

    #[test]
    fn notify_event_faults_and_temperatures() {
        let ev = events(
            "NotifyEvent",
            json!({"generatedAt": "2026-01-05T10:00:01Z", "seqNo": 0, "tbc": false, "eventData": [
                {"eventId": 101, "timestamp": "2026-01-05T10:00:00Z", "trigger": "Delta", "actualValue": "true",
                    "techCode": "E-LOCK-02", "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "Problem"}},
                {"eventId": 102, "timestamp": "2026-01-05T10:00:00Z", "trigger": "Alerting", "actualValue": "72.5",
                    "eventNotificationType": "PreconfiguredMonitor", "variableMonitoringId": 3,
                    "component": {"name": "ChargingStation"}, "variable": {"name": "Temperature"}},
                {"eventId": 103, "timestamp": "2026-01-05T10:00:00Z", "trigger": "Delta", "actualValue": "Occupied",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"}},
                {"eventId": 104, "timestamp": "2026-01-05T10:05:00Z", "trigger": "Delta", "actualValue": "false",
                    "cleared": true, "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "Problem"}},
                {"eventId": 105, "timestamp": "2026-01-05T10:06:00Z", "trigger": "Alerting", "actualValue": "true",
                    "cleared": true, "eventNotificationType": "HardWiredMonitor",
                    "component": {"name": "RCD", "evse": {"id": 2}}, "variable": {"name": "Tripped"}}
            ]}),
        );
        assert_eq!(ev.len(), 4, "AvailabilityState is not used");
        assert!(
            matches!(&ev[0].kind, EventKind::Fault { connector_id: 1, code, active: true }
                if &**code == "ConnectorPlugRetentionLock/Problem:E-LOCK-02")
        );
        assert_eq!(ev[0].event_time, Some(ts("2026-01-05T10:00:00Z")));
        assert!(
            matches!(&ev[1].kind, EventKind::Meter { connector_id: 0, transaction_id: None, sample }
                if *sample == MeterSample { temperature_c: Some(72.5), ..MeterSample::default() })
        );
        assert!(
            matches!(&ev[2].kind, EventKind::Fault { connector_id: 1, code, active: false }
                if &**code == "ConnectorPlugRetentionLock/Problem")
        );
        assert!(
            matches!(&ev[3].kind, EventKind::Fault { connector_id: 2, code, active: false } if &**code == "RCD/Tripped")
        );
    }

    #[test]
    fn notify_event_without_fault_or_temperature_is_ignored() {
        let (outcome, ev) = decode(
            "NotifyEvent",
            json!({"generatedAt": "2026-01-05T10:00:01Z", "seqNo": 0, "eventData": [
                {"eventId": 7, "timestamp": "2026-01-05T10:00:00Z", "trigger": "Periodic", "actualValue": "-67",
                    "eventNotificationType": "CustomMonitor", "component": {"name": "DataLink"},
                    "variable": {"name": "SignalStrength"}}]}),
        );
        assert!(matches!(outcome, ActionOutcome::Ignored) && ev.is_empty());
        let e = error(
            "NotifyEvent",
            json!({"generatedAt": "2026-01-05T10:00:01Z", "seqNo": 0, "eventData": [
                {"eventId": 7, "timestamp": "2026-01-05T10:00:00Z", "trigger": "Periodic", "actualValue": "hot",
                    "eventNotificationType": "CustomMonitor", "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Temperature"}}]}),
        );
        assert_eq!(e.reason, DeadLetterReason::BadPayload);
    }

    #[test]
    fn unused_actions_are_ignored_and_others_unknown() {
        for (action, payload) in [
            (
                "NotifyReport",
                json!({"requestId": 1, "generatedAt": "2026-01-05T10:00:00Z", "seqNo": 0}),
            ),
            (
                "SecurityEventNotification",
                json!({"type": "StartupOfTheDevice", "timestamp": "2026-01-05T10:00:00Z"}),
            ),
            ("FirmwareStatusNotification", json!({"status": "Installed"})),
        ] {
            let (outcome, ev) = decode(action, payload);
            assert!(
                matches!(outcome, ActionOutcome::Ignored) && ev.is_empty(),
                "{action}"
            );
        }
        assert_eq!(
            error("MakeCoffee", json!({})).reason,
            DeadLetterReason::UnknownAction
        );
    }
}
