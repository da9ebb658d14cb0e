//! OCPP-J decoding: envelope lines → normalised [`Event`]s or [`DeadLetter`]s.
//!
//! Owns: the envelope format, OCPP-J frame parsing, per-version payload decoding (`v16`; 2.0.1
//! slots in beside it), unit normalisation, and the decode statistics. Pure: no I/O, no
//! dataflow state. Everything borrowed from the input line is copied out only where an event
//! must own it (interned ids and tags), so decoding allocates almost nothing per event.
//!
//! Every line ends up as exactly one of: one or more events, a counted ignored action (an
//! OCPP action evflow has no use for), or a dead letter with its reason.

pub mod frame;
pub mod units;
pub mod v16;

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{DeadLetter, DeadLetterReason, Event, EventKind, MessageId, Millis};
use crate::time::parse_rfc3339;

pub use frame::Frame;

/// The envelope of one line: `{"timestamp": …, "charge_point_id": …, "message": [...]}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    charge_point_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

/// Interns strings that recur (charge point ids, id tags, vendors) so events share them.
#[derive(Default)]
pub struct Interner {
    set: FxHashSet<Arc<str>>,
}

impl Interner {
    /// Upper bound on distinct strings kept; past it the table is cleared (a stream of
    /// garbage ids must not grow memory without bound; clearing only costs re-allocation).
    const MAX: usize = 1 << 20;

    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= Self::MAX {
            self.set.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }
}

pub fn message_id(s: &str) -> MessageId {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    MessageId(h.finish())
}

/// What a decode error says: the dead-letter reason and a human-readable message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct DecodeError {
    pub reason: DeadLetterReason,
    pub message: String,
}

impl DecodeError {
    pub fn new(reason: DeadLetterReason, message: impl Into<String>) -> Self {
        DecodeError {
            reason,
            message: message.into(),
        }
    }
}

/// Counts of what decoding saw, per chunk; folded into metrics by the caller.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub lines: u64,
    pub events_by_action: FxHashMap<&'static str, u64>,
    pub ignored_by_action: FxHashMap<String, u64>,
    pub dead_by_reason: FxHashMap<DeadLetterReason, u64>,
    /// Events whose charger timestamp was replaced by the receive time (clock skew).
    pub clock_skew: u64,
    pub max_event_time: Option<Millis>,
}

impl DecodeStats {
    pub fn clear(&mut self) {
        self.lines = 0;
        self.events_by_action.clear();
        self.ignored_by_action.clear();
        self.dead_by_reason.clear();
        self.clock_skew = 0;
        self.max_event_time = None;
    }
}

/// Decoding options that come from the dataflow configuration.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// How far a charger timestamp may be ahead of the receive time.
    pub max_clock_skew: Millis,
    /// How far it may be behind (chargers queue messages while offline and deliver them
    /// later: their own timestamps are then the right event times).
    pub max_delivery_delay: Millis,
}

/// Decodes lines; one per worker (it holds the interner).
pub struct Decoder {
    pub options: DecodeOptions,
    pub interner: Interner,
    /// Reused between lines so that decoding does not allocate a vector per line.
    scratch: Vec<Partial>,
}

/// What a CALL's payload decoder hands back: events without the envelope's fields filled in.
pub(crate) struct Partial {
    /// Charger timestamp, if the payload has one.
    pub event_time: Option<Millis>,
    pub kind: EventKind,
}

/// The result of a payload decoder for one action.
pub(crate) enum ActionOutcome {
    Events,
    /// A valid OCPP action that evflow does not use.
    Ignored,
}

impl Decoder {
    pub fn new(options: DecodeOptions) -> Self {
        Decoder {
            options,
            interner: Interner::default(),
            scratch: Vec::new(),
        }
    }

    /// Decodes one line, appending its events to `events` or a dead letter to `dead`.
    pub fn decode_line(
        &mut self,
        seq: u64,
        line: &[u8],
        events: &mut Vec<Event>,
        dead: &mut Vec<DeadLetter>,
        stats: &mut DecodeStats,
    ) {
        stats.lines += 1;
        let before = events.len();
        match self.decode_inner(seq, line, events, stats) {
            Ok(()) => {
                for e in &events[before..] {
                    *stats.events_by_action.entry(e.kind.name()).or_default() += 1;
                    stats.max_event_time = Some(
                        stats
                            .max_event_time
                            .map_or(e.event_time, |m| m.max(e.event_time)),
                    );
                }
            }
            Err(err) => {
                events.truncate(before);
                *stats.dead_by_reason.entry(err.reason).or_default() += 1;
                dead.push(DeadLetter {
                    seq,
                    reason: err.reason,
                    error: err.message,
                    line: String::from_utf8_lossy(line).into_owned(),
                });
            }
        }
    }

    fn decode_inner(
        &mut self,
        seq: u64,
        line: &[u8],
        events: &mut Vec<Event>,
        stats: &mut DecodeStats,
    ) -> Result<(), DecodeError> {
        let text = std::str::from_utf8(line).map_err(|e| {
            DecodeError::new(DeadLetterReason::InvalidJson, format!("not UTF-8: {e}"))
        })?;
        let env: Envelope = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                DecodeError::new(DeadLetterReason::BadEnvelope, e.to_string())
            } else {
                DecodeError::new(DeadLetterReason::InvalidJson, e.to_string())
            }
        })?;
        let cp = match env.charge_point_id.as_deref() {
            Some(s) if !s.trim().is_empty() => s,
            _ => {
                return Err(DecodeError::new(
                    DeadLetterReason::MissingChargePoint,
                    "envelope has no charge_point_id",
                ))
            }
        };
        let ts = env.timestamp.as_deref().ok_or_else(|| {
            DecodeError::new(DeadLetterReason::BadTimestamp, "envelope has no timestamp")
        })?;
        let receive_time = parse_rfc3339(ts)
            .map_err(|e| DecodeError::new(DeadLetterReason::BadTimestamp, e.to_string()))?;
        let message = env.message.ok_or_else(|| {
            DecodeError::new(DeadLetterReason::BadEnvelope, "envelope has no message")
        })?;
        let frame: Frame = serde_json::from_str(message.get())
            .map_err(|e| DecodeError::new(DeadLetterReason::NotAFrame, e.to_string()))?;

        let mut partials = std::mem::take(&mut self.scratch);
        partials.clear();
        let frame_hash = frame.content_hash();
        match frame {
            Frame::Call {
                message_id: id,
                action,
                payload,
            } => {
                let outcome = v16::decode_call(
                    &action,
                    message_id(&id),
                    payload.get(),
                    &mut self.interner,
                    &mut partials,
                )?;
                if let ActionOutcome::Ignored = outcome {
                    *stats
                        .ignored_by_action
                        .entry(action.into_owned())
                        .or_default() += 1;
                    return Ok(());
                }
            }
            Frame::CallResult {
                message_id: id,
                payload,
            } => {
                partials.push(v16::decode_call_result(message_id(&id), payload.get())?);
            }
            Frame::CallError {
                message_id: id,
                error_code,
            } => partials.push(Partial {
                event_time: None,
                kind: EventKind::CallError {
                    message_id: message_id(&id),
                    error_code: self.interner.intern(&error_code),
                },
            }),
        }

        let cp = self.interner.intern(cp);
        for p in partials.drain(..) {
            let o = &self.options;
            let event_time = match p.event_time {
                Some(t)
                    if t <= receive_time + o.max_clock_skew
                        && t >= receive_time - o.max_delivery_delay =>
                {
                    t
                }
                Some(_) => {
                    stats.clock_skew += 1;
                    receive_time
                }
                None => receive_time,
            };
            events.push(Event {
                seq,
                frame_hash,
                charge_point_id: cp.clone(),
                receive_time,
                event_time,
                kind: p.kind,
            });
        }
        self.scratch = partials;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectorStatus, ErrorCode, TransactionId};

    fn decode(line: &str) -> (Vec<Event>, Vec<DeadLetter>, DecodeStats) {
        let mut d = Decoder::new(DecodeOptions {
            max_clock_skew: 5 * 60_000,
            max_delivery_delay: 7 * 86_400_000,
        });
        let (mut ev, mut dl, mut st) = (vec![], vec![], DecodeStats::default());
        d.decode_line(7, line.as_bytes(), &mut ev, &mut dl, &mut st);
        (ev, dl, st)
    }

    fn dead_reason(line: &str) -> DeadLetterReason {
        let (ev, dl, _) = decode(line);
        assert!(ev.is_empty(), "{line} produced events");
        assert_eq!(dl.len(), 1, "{line}");
        dl[0].reason
    }

    #[test]
    fn status_notification() {
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:01Z","charge_point_id":"CP-1","message":[2,"a","StatusNotification",{"connectorId":2,"errorCode":"GroundFailure","status":"Faulted","timestamp":"2026-01-05T08:00:00Z","vendorErrorCode":"E7"}]}"#,
        );
        assert!(dl.is_empty());
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].event_time,
            parse_rfc3339("2026-01-05T08:00:00Z").unwrap()
        );
        assert_eq!(ev[0].seq, 7);
        match &ev[0].kind {
            EventKind::Status {
                connector_id,
                status,
                error_code,
                vendor_detail,
            } => {
                assert_eq!(*connector_id, 2);
                assert_eq!(*status, ConnectorStatus::Faulted);
                assert_eq!(error_code.as_str(), "GroundFailure");
                assert!(matches!(error_code, ErrorCode::Known(_)));
                assert_eq!(vendor_detail.as_deref(), Some("E7"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_stop_and_call_result() {
        let (ev, _, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:01Z","charge_point_id":"CP-1","message":[2,"m1","StartTransaction",{"connectorId":1,"idTag":"TAG","meterStart":1000,"timestamp":"2026-01-05T08:00:00Z"}]}"#,
        );
        assert!(
            matches!(&ev[0].kind, EventKind::TransactionStart { meter_start_wh: Some(1000), connector_id: 1, id_tag: Some(id_tag), message_id: m, transaction_id: None } if &**id_tag == "TAG" && *m == message_id("m1"))
        );
        let (ev, _, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:01.2Z","charge_point_id":"CP-1","message":[3,"m1",{"transactionId":42,"idTagInfo":{"status":"Accepted"}}]}"#,
        );
        assert!(matches!(
            &ev[0].kind,
            EventKind::CallResult {
                transaction_id: Some(42),
                ..
            }
        ));
        let (ev, _, _) = decode(
            r#"{"timestamp":"2026-01-05T09:00:01Z","charge_point_id":"CP-1","message":[2,"m2","StopTransaction",{"transactionId":42,"meterStop":21000,"timestamp":"2026-01-05T09:00:00Z","reason":"EVDisconnected"}]}"#,
        );
        assert!(matches!(
            &ev[0].kind,
            EventKind::TransactionStop {
                transaction_id: TransactionId::Int(42),
                meter_stop_wh: Some(21000),
                ..
            }
        ));
    }

    #[test]
    fn meter_values_normalise_units_and_sum_phases() {
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:01:00Z","charge_point_id":"CP-1","message":[2,"a","MeterValues",{"connectorId":1,"transactionId":42,"meterValue":[{"timestamp":"2026-01-05T08:01:00Z","sampledValue":[
              {"value":"12.5","measurand":"Energy.Active.Import.Register","unit":"kWh"},
              {"value":"3.7","measurand":"Power.Active.Import","unit":"kW","phase":"L1"},
              {"value":"3700","measurand":"Power.Active.Import","unit":"W","phase":"L2"},
              {"value":"231.0","measurand":"Voltage","phase":"L1-N","unit":"V"},
              {"value":"229.0","measurand":"Voltage","phase":"L2-N","unit":"V"},
              {"value":"55","measurand":"SoC","unit":"Percent"},
              {"value":"104","measurand":"Temperature","unit":"Fahrenheit"}]}]}]}"#,
        );
        assert!(dl.is_empty(), "{dl:?}");
        let EventKind::Meter {
            sample,
            transaction_id,
            ..
        } = &ev[0].kind
        else {
            panic!()
        };
        assert_eq!(*transaction_id, Some(TransactionId::Int(42)));
        assert_eq!(sample.energy_wh, Some(12_500.0));
        assert_eq!(sample.power_w, Some(7_400.0));
        assert_eq!(sample.voltage_v, [Some(231.0), Some(229.0), None]);
        assert_eq!(sample.soc_pct, Some(55.0));
        assert_eq!(sample.temperature_c, Some(40.0));
    }

    #[test]
    fn every_kind_of_bad_line_is_dead_lettered_with_its_reason() {
        use DeadLetterReason::*;
        assert_eq!(dead_reason("{not json"), InvalidJson);
        assert_eq!(dead_reason("[1,2,3]"), BadEnvelope);
        assert_eq!(
            dead_reason(r#"{"timestamp":"2026-01-05T08:00:00Z","message":[2,"a","Heartbeat",{}]}"#),
            MissingChargePoint
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"","message":[2,"a","Heartbeat",{}]}"#
            ),
            MissingChargePoint
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"yesterday","charge_point_id":"CP","message":[2,"a","Heartbeat",{}]}"#
            ),
            BadTimestamp
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":{"action":"Heartbeat"}}"#
            ),
            NotAFrame
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[9,"a"]}"#
            ),
            NotAFrame
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","MakeCoffee",{}]}"#
            ),
            UnknownAction
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","StatusNotification",{"connectorId":"one"}]}"#
            ),
            BadPayload
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Exploded"}]}"#
            ),
            BadPayload
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":5,"timestamp":"noon"}]}"#
            ),
            BadTimestamp
        );
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[{"value":"NaN"}]}]}]}"#
            ),
            BadPayload
        );
        assert_eq!(dead_reason("\u{1}\u{2}"), InvalidJson);
    }

    #[test]
    fn unused_actions_are_counted_not_dead_lettered() {
        let (ev, dl, st) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","DataTransfer",{"vendorId":"x"}]}"#,
        );
        assert!(ev.is_empty() && dl.is_empty());
        assert_eq!(st.ignored_by_action.get("DataTransfer"), Some(&1));
    }

    #[test]
    fn delayed_delivery_keeps_the_charger_timestamp() {
        let (ev, _, st) = decode(
            r#"{"timestamp":"2026-01-05T12:00:00Z","charge_point_id":"CP","message":[2,"a","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-01-05T08:00:00Z"}]}"#,
        );
        assert_eq!(
            ev[0].event_time,
            parse_rfc3339("2026-01-05T08:00:00Z").unwrap()
        );
        assert_eq!(st.clock_skew, 0);
    }

    #[test]
    fn skewed_charger_clock_falls_back_to_receive_time() {
        let (ev, _, st) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2019-01-01T00:00:00Z"}]}"#,
        );
        assert_eq!(ev[0].event_time, ev[0].receive_time);
        assert_eq!(st.clock_skew, 1);
    }
}
