//! OCPP 1.6J payloads → normalised events.
//!
//! Owns: the 1.6 action list and the payload shapes evflow reads. Fields evflow does not use
//! are skipped without being materialised.

use std::borrow::Cow;

use serde::Deserialize;

use super::units::{phase_index, to_base, Measurand};
use super::{ActionOutcome, DecodeError, Interner, Partial};
use crate::model::{
    ConnectorStatus, DeadLetterReason, ErrorCode, EventKind, MessageId, MeterSample, SampleContext,
    TransactionId,
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

/// OCPP 2.0.1 actions not in 1.6. Until the 2.0.1 decoder lands they are counted as ignored.
pub const ACTIONS_V201_ONLY: &[&str] = &[
    "ClearDisplayMessage",
    "ClearVariableMonitoring",
    "ClearedChargingLimit",
    "CostUpdated",
    "CustomerInformation",
    "Get15118EVCertificate",
    "GetBaseReport",
    "GetCertificateStatus",
    "GetChargingProfiles",
    "GetDisplayMessages",
    "GetMonitoringReport",
    "GetReport",
    "GetTransactionStatus",
    "GetVariables",
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
    "SetDisplayMessage",
    "SetMonitoringBase",
    "SetMonitoringLevel",
    "SetNetworkProfile",
    "SetVariableMonitoring",
    "SetVariables",
    "TransactionEvent",
    "UnpublishFirmware",
];

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
    #[serde(default)]
    transaction_id: Option<i64>,
    #[serde(default)]
    interval: Option<u32>,
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
        "StatusNotification" => {
            let p: StatusNotification = parse(action, payload)?;
            let status = ConnectorStatus::parse(&p.status)
                .ok_or_else(|| bad_payload(action, format!("unknown status {:?}", p.status)))?;
            let event_time = p.timestamp.as_deref().map(timestamp).transpose()?;
            let detail = match (p.info.as_deref(), p.vendor_error_code.as_deref()) {
                (Some(i), Some(v)) if !i.is_empty() && !v.is_empty() => {
                    Some(interner.intern(&format!("{i}; {v}")))
                }
                (Some(s), _) | (_, Some(s)) if !s.is_empty() => Some(interner.intern(s)),
                _ => None,
            };
            out.push(Partial {
                event_time,
                kind: EventKind::Status {
                    connector_id: p.connector_id,
                    status,
                    error_code: ErrorCode::parse(&p.error_code),
                    vendor_detail: detail,
                },
            });
        }
        "MeterValues" => {
            let p: MeterValues = parse(action, payload)?;
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
                    id_tag: Some(interner.intern(&p.id_tag)),
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
                    // 1.6: an absent reason means Local.
                    reason: interner.intern(p.reason.as_deref().unwrap_or("Local")),
                    id_tag: p.id_tag.as_deref().map(|t| interner.intern(t)),
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
        a if ACTIONS.contains(&a) || ACTIONS_V201_ONLY.contains(&a) => {
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

/// Folds one meterValue's sampled values into a [`MeterSample`].
///
/// Rules: per-phase power and current are summed unless a total (no phase) is present;
/// voltage is kept per phase; for the energy register, a periodic/clock sample wins over a
/// Transaction.Begin/End sample in the same meterValue (real chargers mix them); signed data
/// is skipped.
fn meter_sample(action: &str, mv: &MeterValue) -> Result<MeterSample, DecodeError> {
    let mut s = MeterSample::default();
    let mut power_phases: Option<f64> = None;
    let mut current_phases: Option<f64> = None;
    let mut energy_tx: Option<f64> = None;
    let mut contexts = (0u32, 0u32); // (transaction begin/end, other)
    for sv in &mv.sampled_value {
        if sv.format.as_deref() == Some("SignedData") {
            continue;
        }
        let Some(m) = Measurand::parse(sv.measurand.as_deref()) else {
            continue;
        };
        // Rust parses "NaN" and "inf"; a meter reading is never either.
        let raw: f64 = sv
            .value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                bad_payload(
                    action,
                    format!("sampled value {:?} is not a number", sv.value),
                )
            })?;
        let v = to_base(m, sv.unit.as_deref(), raw).map_err(|e| bad_payload(action, e))?;
        let tx_context = match sv.context.as_deref() {
            Some("Transaction.Begin") => {
                contexts.0 += 1;
                Some(SampleContext::TransactionBegin)
            }
            Some("Transaction.End") => {
                contexts.0 += 1;
                Some(SampleContext::TransactionEnd)
            }
            _ => {
                contexts.1 += 1;
                None
            }
        };
        let phase = sv.phase.as_deref();
        match m {
            Measurand::EnergyImportRegister => {
                if tx_context.is_some() {
                    energy_tx = Some(v);
                } else {
                    s.energy_wh = Some(v);
                }
                if let Some(c) = tx_context {
                    s.context = c;
                }
            }
            Measurand::PowerImport => match phase {
                None => s.power_w = Some(v),
                Some(p) if phase_index(p).is_some() => {
                    power_phases = Some(power_phases.unwrap_or(0.0) + v)
                }
                Some(_) => {}
            },
            Measurand::CurrentImport => match phase {
                None => s.current_a = Some(v),
                Some(p) if phase_index(p).is_some() => {
                    current_phases = Some(current_phases.unwrap_or(0.0) + v)
                }
                Some(_) => {}
            },
            Measurand::Voltage => {
                let i = phase.map_or(Some(0), phase_index);
                if let Some(i) = i {
                    s.voltage_v[i] = Some(v as f32);
                }
            }
            Measurand::Frequency => s.frequency_hz = Some(v as f32),
            Measurand::SoC => s.soc_pct = Some(v as f32),
            Measurand::Temperature => {
                let t = v as f32;
                s.temperature_c = Some(s.temperature_c.map_or(t, |o| o.max(t)));
            }
        }
    }
    if s.power_w.is_none() {
        s.power_w = power_phases;
    }
    if s.current_a.is_none() {
        s.current_a = current_phases;
    }
    if s.energy_wh.is_none() {
        s.energy_wh = energy_tx;
    }
    // A meterValue is a transaction boundary sample only if all its values say so.
    if contexts.1 > 0 {
        s.context = SampleContext::Periodic;
    }
    Ok(s)
}
