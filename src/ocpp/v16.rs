//! OCPP 1.6J payloads → normalised events.
//!
//! Owns: the 1.6 action list and the payload shapes evflow reads. Fields evflow does not use
//! are skipped without being materialised.

use std::borrow::Cow;

use serde::Deserialize;

use super::sample::SampleFold;
use super::units::{parse_value, Measurand};
use super::{ActionOutcome, DecodeError, Interner, Partial};
use crate::model::{
    ConnectorStatus, DeadLetterReason, ErrorCode, EventKind, MessageId, MeterSample, TransactionId,
    OCPP16_ERROR_CODES,
};
use crate::time::parse_rfc3339;

/// Every OCPP 1.6J action (core, smart charging, firmware, reservation, local list, remote
/// trigger and the security extension). An action not listed here, nor in 2.0.1's list, is not
/// OCPP and is dead-lettered.
pub const ACTIONS: &[&str] = &[
    "Authorize",
    "BootNotification",
    "CancelReservation",
    "CertificateSigned",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "DeleteCertificate",
    "DiagnosticsStatusNotification",
    "ExtendedTriggerMessage",
    "FirmwareStatusNotification",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetInstalledCertificateIds",
    "GetLocalListVersion",
    "GetLog",
    "Heartbeat",
    "InstallCertificate",
    "LogStatusNotification",
    "MeterValues",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SecurityEventNotification",
    "SendLocalList",
    "SetChargingProfile",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "SignedUpdateFirmware",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
];

/// Deviations from OCPP 1.6 seen on real chargers that evflow accepts and counts
/// (`evflow_ocpp_quirks_total{quirk}`); docs/ocpp-quirks.md says why each is tolerated.
pub mod quirk {
    /// StatusNotification `errorCode` outside ChargePointErrorCode (Legrand GreenUp sends
    /// "Error"): kept verbatim as `ErrorCode::Other`.
    pub const ERROR_CODE_NOT_IN_ENUM: &str = "error_code_not_in_enum";
    /// StatusNotification `Faulted` with errorCode `NoError` (MicroOcpp re-sends a fault
    /// without its code): still a fault.
    pub const FAULTED_WITH_NO_ERROR: &str = "faulted_with_no_error";
    /// Every quirk label, for metrics that exist from the start.
    pub const ALL: &[&str] = &[ERROR_CODE_NOT_IN_ENUM, FAULTED_WITH_NO_ERROR];
}

/// An optional free-text field as evflow keeps it: chargers send `""` (or blanks) for "none"
/// (Wallbox: `"info": "", "vendorErrorCode": ""`), which must not become an empty tag, detail
/// or recipient.
fn non_blank<'a>(s: Option<&'a Cow<'a, str>>) -> Option<&'a str> {
    s.map(|s| s.as_ref()).filter(|s| !s.trim().is_empty())
}

/// Connector id of meter values that belong to a transaction but name no connector
/// (StopTransaction's transactionData): the stage resolves it from the transaction id.
pub const TRANSACTION_CONNECTOR: u32 = u32::MAX;

fn bad_payload(action: &str, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(DeadLetterReason::BadPayload, format!("{action}: {e}"))
}

fn timestamp(s: &str) -> Result<i64, DecodeError> {
    parse_rfc3339(s).map_err(|e| DecodeError::new(DeadLetterReason::BadTimestamp, e.to_string()))
}

fn parse<'a, T: Deserialize<'a>>(action: &str, payload: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(payload).map_err(|e| bad_payload(action, e))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootNotification<'a> {
    #[serde(borrow)]
    charge_point_vendor: Cow<'a, str>,
    #[serde(borrow)]
    charge_point_model: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusNotification<'a> {
    connector_id: u32,
    #[serde(borrow)]
    error_code: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    info: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    vendor_error_code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeterValues<'a> {
    connector_id: u32,
    #[serde(default)]
    transaction_id: Option<i64>,
    #[serde(borrow)]
    meter_value: Vec<MeterValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MeterValue<'a> {
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    sampled_value: Vec<SampledValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SampledValue<'a> {
    #[serde(borrow)]
    value: Cow<'a, str>,
    #[serde(borrow, default)]
    context: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    format: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    measurand: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartTransaction<'a> {
    connector_id: u32,
    #[serde(borrow)]
    id_tag: Cow<'a, str>,
    meter_start: i64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTransaction<'a> {
    transaction_id: i64,
    meter_stop: i64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id_tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    transaction_data: Vec<MeterValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorize<'a> {
    #[serde(borrow)]
    id_tag: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallResult {
    #[serde(default, deserialize_with = "super::integer_transaction_id")]
    transaction_id: Option<i64>,
    #[serde(default)]
    interval: Option<u32>,
}

/// Decodes a CALL's payload. Unused OCPP actions come back as [`ActionOutcome::Ignored`].
/// Tolerated deviations are pushed to `quirks` (the caller counts them if the line decodes).
pub(crate) fn decode_call(
    action: &str,
    message_id: MessageId,
    payload: &str,
    interner: &mut Interner,
    out: &mut Vec<Partial>,
    quirks: &mut Vec<&'static str>,
) -> Result<ActionOutcome, DecodeError> {
    match action {
        "Heartbeat" => {
            let _: Empty = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Heartbeat,
            });
        }
        "StatusNotification" => {
            let p: StatusNotification = parse(action, payload)?;
            let status = ConnectorStatus::parse(p.status.trim())
                .ok_or_else(|| bad_payload(action, format!("unknown status {:?}", p.status)))?;
            let event_time = p.timestamp.as_deref().map(timestamp).transpose()?;
            let detail = match (
                non_blank(p.info.as_ref()),
                non_blank(p.vendor_error_code.as_ref()),
            ) {
                (Some(i), Some(v)) => Some(interner.intern(&format!("{i}; {v}"))),
                (Some(s), None) | (None, Some(s)) => Some(interner.intern(s)),
                (None, None) => None,
            };
            // A code outside the enumeration is still the charger's report of a problem: kept
            // verbatim (never dead-lettered: a Faulted status must raise connector_faulted).
            let code = p.error_code.trim();
            let error_code = if OCPP16_ERROR_CODES.contains(&code) {
                ErrorCode::parse(code)
            } else {
                quirks.push(quirk::ERROR_CODE_NOT_IN_ENUM);
                ErrorCode::Other(interner.intern(code))
            };
            if status == ConnectorStatus::Faulted && error_code == ErrorCode::NoError {
                quirks.push(quirk::FAULTED_WITH_NO_ERROR);
            }
            out.push(Partial {
                event_time,
                kind: EventKind::Status {
                    connector_id: p.connector_id,
                    status,
                    error_code,
                    vendor_detail: detail,
                },
            });
        }
        "MeterValues" => {
            let p: MeterValues = parse(action, payload)?;
            if p.meter_value.is_empty() {
                // The schema requires one; without it the line would yield nothing at all.
                return Err(bad_payload(action, "meterValue is empty"));
            }
            for mv in &p.meter_value {
                out.push(Partial {
                    event_time: Some(timestamp(&mv.timestamp)?),
                    kind: EventKind::Meter {
                        connector_id: p.connector_id,
                        transaction_id: p.transaction_id.map(TransactionId::Int),
                        sample: meter_sample(action, mv)?,
                    },
                });
            }
        }
        "StartTransaction" => {
            let p: StartTransaction = parse(action, payload)?;
            out.push(Partial {
                event_time: Some(timestamp(&p.timestamp)?),
                kind: EventKind::TransactionStart {
                    message_id,
                    connector_id: p.connector_id,
                    transaction_id: None,
                    // An empty idTag is an unidentified driver, not a driver called "".
                    id_tag: non_blank(Some(&p.id_tag)).map(|t| interner.intern(t)),
                    meter_start_wh: Some(p.meter_start),
                },
            });
        }
        "StopTransaction" => {
            let p: StopTransaction = parse(action, payload)?;
            let tx = TransactionId::Int(p.transaction_id);
            // transactionData: the transaction's meter values, sent with the stop. The
            // connector is not in the payload; the stage finds it by transaction id.
            for mv in &p.transaction_data {
                out.push(Partial {
                    event_time: Some(timestamp(&mv.timestamp)?),
                    kind: EventKind::Meter {
                        connector_id: TRANSACTION_CONNECTOR,
                        transaction_id: Some(tx.clone()),
                        sample: meter_sample(action, mv)?,
                    },
                });
            }
            out.push(Partial {
                event_time: Some(timestamp(&p.timestamp)?),
                kind: EventKind::TransactionStop {
                    transaction_id: tx,
                    meter_stop_wh: Some(p.meter_stop),
                    // 1.6: an absent reason means Local (and so does an empty one).
                    reason: interner.intern(non_blank(p.reason.as_ref()).unwrap_or("Local")),
                    id_tag: non_blank(p.id_tag.as_ref()).map(|t| interner.intern(t)),
                },
            });
        }
        "BootNotification" => {
            let p: BootNotification = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Boot {
                    message_id,
                    vendor: interner.intern(&p.charge_point_vendor),
                    model: interner.intern(&p.charge_point_model),
                },
            });
        }
        "Authorize" => {
            let p: Authorize = parse(action, payload)?;
            out.push(Partial {
                event_time: None,
                kind: EventKind::Authorize {
                    id_tag: interner.intern(&p.id_tag),
                },
            });
        }
        a if ACTIONS.contains(&a) || super::v201::ACTIONS.contains(&a) => {
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

/// Decodes a CALLRESULT: only the fields evflow correlates are read.
pub(crate) fn decode_call_result(
    message_id: MessageId,
    payload: &str,
) -> Result<Partial, DecodeError> {
    let p: CallResult = parse("CALLRESULT", payload)?;
    Ok(Partial {
        event_time: None,
        kind: EventKind::CallResult {
            message_id,
            transaction_id: p.transaction_id,
            heartbeat_interval_s: p.interval,
        },
    })
}

/// Folds one meterValue's sampled values into a [`MeterSample`] (the rules, shared with
/// 2.0.1, are `sample::SampleFold`'s); signed data is skipped.
fn meter_sample(action: &str, mv: &MeterValue) -> Result<MeterSample, DecodeError> {
    let mut fold = SampleFold::default();
    for sv in &mv.sampled_value {
        if sv.format.as_deref() == Some("SignedData") {
            continue;
        }
        let Some(m) = Measurand::parse(sv.measurand.as_deref()) else {
            continue;
        };
        let v =
            parse_value(m, sv.unit.as_deref(), &sv.value).map_err(|e| bad_payload(action, e))?;
        fold.add(m, v, sv.phase.as_deref(), sv.context.as_deref());
    }
    Ok(fold.finish())
}
