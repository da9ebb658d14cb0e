//! OCPP-J decoding: envelope lines → normalised [`Event`]s or [`DeadLetter`]s.
//!
//! Owns: the envelope format, OCPP-J frame parsing, the choice of OCPP version per frame
//! ([`OcppVersion`]), per-version payload decoding (`v16`, `v201`, sharing `sample` and
//! `units`), and the decode statistics. Pure: no I/O, no
//! dataflow state. Everything borrowed from the input line is copied out only where an event
//! must own it (interned ids and tags), so decoding allocates almost nothing per event.
//!
//! Every line ends up as exactly one of: one or more events, a counted ignored action (an
//! OCPP action evflow has no use for), or a dead letter with its reason.

pub mod frame;
pub(crate) mod sample;
pub mod schema;
pub mod units;
pub mod v16;
pub mod v201;

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
/// The frame is parsed in the same pass as the envelope (the hot path); when that fails,
/// [`classify`] parses again, slowly, to tell a bad envelope from a bad frame.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    charge_point_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Frame<'a>>,
    /// Optional: the OCPP version of the frame (`"1.6"`, `"2.0.1"`, `"ocpp1.6"`,
    /// `"ocpp2.0.1"`), as a backend that knows the WebSocket subprotocol records it.
    #[serde(borrow, default)]
    ocpp_version: Option<Cow<'a, str>>,
}

/// The envelope with its message left raw: only to classify a line that failed to parse.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

/// Tells why a line that is not a valid envelope with a valid frame failed.
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    if !err.is_data() {
        return DecodeError::new(DeadLetterReason::InvalidJson, err.to_string());
    }
    match serde_json::from_str::<RawEnvelope>(text) {
        Err(e) => DecodeError::new(DeadLetterReason::BadEnvelope, e.to_string()),
        Ok(RawEnvelope { message: Some(m) }) => match serde_json::from_str::<Frame>(m.get()) {
            Err(e) => DecodeError::new(DeadLetterReason::NotAFrame, e.to_string()),
            Ok(_) => DecodeError::new(DeadLetterReason::BadEnvelope, err.to_string()),
        },
        Ok(RawEnvelope { message: None }) => {
            DecodeError::new(DeadLetterReason::BadEnvelope, err.to_string())
        }
    }
}

/// Interns strings that recur (charge point ids, id tags, vendors) so events share them.
#[derive(Default)]
pub struct Interner {
    set: FxHashSet<Arc<str>>,
    /// Reused by [`Interner::intern_concat`].
    buf: String,
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

    /// Interns the concatenation of `parts`, without allocating when it is interned already.
    pub fn intern_concat(&mut self, parts: &[&str]) -> Arc<str> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        parts.iter().for_each(|p| buf.push_str(p));
        let a = self.intern(&buf);
        self.buf = buf;
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

    /// Says which version a payload was read as, and why, when it did not fit.
    fn in_version(mut self, version: OcppVersion, by: VersionSource) -> Self {
        if self.reason == DeadLetterReason::BadPayload {
            self.message = format!(
                "{} (read as OCPP {}, {})",
                self.message,
                version.as_str(),
                by.as_str()
            );
        }
        self
    }
}

/// The OCPP version a CALL is decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OcppVersion {
    V16 = 0,
    V201 = 1,
}

impl OcppVersion {
    /// The names accepted in the envelope's and the registry's `ocpp_version`.
    pub const NAMES: [&'static str; 4] = ["1.6", "2.0.1", "ocpp1.6", "ocpp2.0.1"];

    pub fn parse(s: &str) -> Option<OcppVersion> {
        match s {
            "1.6" | "ocpp1.6" => Some(OcppVersion::V16),
            "2.0.1" | "ocpp2.0.1" => Some(OcppVersion::V201),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OcppVersion::V16 => "1.6",
            OcppVersion::V201 => "2.0.1",
        }
    }
}

/// The OCPP version of each charge point whose version is configured (the station registry's
/// `ocpp_version`); the others are detected per frame.
pub type ChargePointVersions = FxHashMap<Box<str>, OcppVersion>;

/// Where a frame's version came from (reported in `bad_payload` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionSource {
    Envelope,
    Registry,
    Detected,
}

impl VersionSource {
    fn as_str(self) -> &'static str {
        match self {
            VersionSource::Envelope => "as the envelope's ocpp_version says",
            VersionSource::Registry => "as the station registry says",
            VersionSource::Detected => "detected from the action and payload",
        }
    }
}

/// The version of a CALL whose version nobody declared, from its action and payload: actions
/// of one version only decide; for the actions both versions share, the first top-level key
/// that only one version has (BootNotification `chargingStation`/`reason` vs
/// `chargePointVendor`/`chargePointModel`, StatusNotification `connectorStatus`/`evseId` vs
/// `status`/`errorCode`, MeterValues `evseId` vs `connectorId`/`transactionId`, Authorize
/// `idToken` vs `idTag`). Anything else — Heartbeat, the shared actions evflow ignores, a
/// payload with neither kind of key — is read as 1.6.
pub fn detect_version(action: &str, payload: &str) -> OcppVersion {
    use OcppVersion::*;
    let (v201_keys, v16_keys): (&[&str], &[&str]) = match action {
        "BootNotification" => (
            &["chargingStation", "reason"],
            &["chargePointVendor", "chargePointModel"],
        ),
        "StatusNotification" => (&["connectorStatus", "evseId"], &["status", "errorCode"]),
        "MeterValues" => (&["evseId"], &["connectorId", "transactionId"]),
        "Authorize" => (&["idToken"], &["idTag"]),
        a if v201::ACTIONS.contains(&a) && !v16::ACTIONS.contains(&a) => return V201,
        _ => return V16,
    };
    first_top_level_key(payload, |k| {
        if v201_keys.contains(&k) {
            Some(V201)
        } else if v16_keys.contains(&k) {
            Some(V16)
        } else {
            None
        }
    })
    .unwrap_or(V16)
}

/// Calls `f` on the top-level keys of a JSON object, in order, until it returns `Some`.
/// `json` is valid JSON (a payload serde_json has already checked), so a byte scan that skips
/// strings and nested values suffices: no parsing, no allocation, and it stops at the first
/// decisive key.
fn first_top_level_key<T>(json: &str, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let b = json.as_bytes();
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    // Index of the quote that ends the string whose contents start at `i`.
    let string_end = |mut i: usize| {
        while let Some(&c) = b.get(i) {
            match c {
                b'\\' => i += 2,
                b'"' => return Some(i),
                _ => i += 1,
            }
        }
        None
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = ws(i);
        if b.get(i) != Some(&b'"') {
            return None; // `}`: no more keys
        }
        let end = string_end(i + 1)?;
        if let Some(t) = f(&json[i + 1..end]) {
            return Some(t);
        }
        i = ws(end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        // Skip the value: up to the `,` or `}` of this object.
        i += 1;
        let mut depth = 0usize;
        loop {
            match *b.get(i)? {
                b'"' => i = string_end(i + 1)?,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return None,
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
}

/// CALLRESULT `transactionId`: the integer of a 1.6 StartTransaction.conf is kept; a string
/// (2.0.1's RequestStartTransaction response) correlates with nothing evflow waits for and is
/// dropped rather than dead-lettering the frame.
pub(crate) fn integer_transaction_id<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::{Error, Unexpected, Visitor};
    struct Id;
    impl Visitor<'_> for Id {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer (OCPP 1.6) or a string (OCPP 2.0.1)")
        }
        fn visit_i64<E: Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n))
        }
        fn visit_u64<E: Error>(self, n: u64) -> Result<Self::Value, E> {
            i64::try_from(n)
                .map(Some)
                .map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Id)
}

/// Counts of what decoding saw, per chunk; folded into metrics by the caller.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub lines: u64,
    pub events_by_action: ActionCounts,
    pub ignored_by_action: FxHashMap<String, u64>,
    pub dead_by_reason: FxHashMap<DeadLetterReason, u64>,
    /// Events whose charger timestamp was replaced by the receive time (clock skew).
    pub clock_skew: u64,
    /// CALL frames by the OCPP version they were read as ([`OcppVersion`] as index),
    /// dead-lettered ones included.
    pub calls_by_version: [u64; 2],
    /// Tolerated deviations from the protocol in decoded lines, by quirk (`v16::quirk`).
    pub quirks: FxHashMap<&'static str, u64>,
    /// How far this chunk moves event time (its [`Mark`](crate::dataflow::watermark::Mark)):
    /// the newest event time, where no event counts as newer than its own receive time, so
    /// that a charger clock running ahead cannot drag everyone's watermark.
    pub max_event_time: Option<Millis>,
}

impl DecodeStats {
    pub fn clear(&mut self) {
        self.lines = 0;
        self.events_by_action.clear();
        self.ignored_by_action.clear();
        self.dead_by_reason.clear();
        self.clock_skew = 0;
        self.calls_by_version = [0; 2];
        self.quirks.clear();
        self.max_event_time = None;
    }
}

/// Events per action name: a handful of names, counted per event, so a short list searched
/// by pointer beats hashing the name.
#[derive(Debug, Default, Clone)]
pub struct ActionCounts(Vec<(&'static str, u64)>);

impl ActionCounts {
    pub fn add(&mut self, name: &'static str) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| std::ptr::eq(*n, name) || *n == name)
        {
            Some((_, c)) => *c += 1,
            None => self.0.push((name, 1)),
        }
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|(_, c)| *c)
    }

    pub fn clear(&mut self) {
        self.0.clear();
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
    /// Configured OCPP versions per charge point (see [`Decoder::with_versions`]).
    versions: ChargePointVersions,
    /// Quirks of the line being decoded; counted only if it decodes.
    quirks: Vec<&'static str>,
    /// Strict mode (see [`Decoder::with_strict`]): the schemas CALL payloads must satisfy.
    strict: Option<&'static schema::SchemaSet>,
    /// Receive times after this (wall clock + 1 day, at start) are dead-lettered.
    receive_horizon: Millis,
    /// The charger and receive time of the line being decoded, once known: a frame rejected
    /// after that becomes a [`EventKind::Rejected`] event beside its dead letter.
    rejected_from: Option<(Arc<str>, Millis)>,
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
            versions: ChargePointVersions::default(),
            quirks: Vec::new(),
            strict: None,
            receive_horizon: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(Millis::MAX, |d| d.as_millis() as Millis + 86_400_000),
            rejected_from: None,
        }
    }

    /// Strict mode: every CALL's payload is validated against the official JSON schema of its
    /// action's request in the frame's OCPP version before it is decoded; a violation is
    /// dead-lettered as `schema_violation`. (CALLRESULTs and CALLERRORs are not validated: a
    /// CALLRESULT's schema depends on the CALL it answers.) Off by default.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict.then(schema::SchemaSet::embedded);
        self
    }

    /// Sets the OCPP version of the charge points the registry names one for. A frame's own
    /// `ocpp_version` (envelope) still wins; charge points in neither are detected per frame
    /// ([`detect_version`]).
    pub fn with_versions(mut self, versions: ChargePointVersions) -> Self {
        self.versions = versions;
        self
    }

    fn version_for(
        &self,
        declared: Option<OcppVersion>,
        cp: &str,
        action: &str,
        payload: &str,
    ) -> (OcppVersion, VersionSource) {
        if let Some(v) = declared {
            (v, VersionSource::Envelope)
        } else if let Some(v) = self.versions.get(cp) {
            (*v, VersionSource::Registry)
        } else {
            (detect_version(action, payload), VersionSource::Detected)
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
        self.rejected_from = None;
        self.quirks.clear();
        match self.decode_inner(seq, line, events, stats) {
            Ok(()) => {
                for q in self.quirks.drain(..) {
                    *stats.quirks.entry(q).or_default() += 1;
                }
                for e in &events[before..] {
                    stats.events_by_action.add(e.kind.name());
                    let progress = e.event_time.min(e.receive_time);
                    stats.max_event_time =
                        Some(stats.max_event_time.map_or(progress, |m| m.max(progress)));
                }
            }
            Err(err) => {
                events.truncate(before);
                // A frame rejected after its charger and receive time were known still counts
                // against that charger (and shows it is alive).
                if let Some((cp, receive_time)) = self.rejected_from.take() {
                    // The line's hash: a resent bad line is a repeat like any other.
                    let mut h = rustc_hash::FxHasher::default();
                    line.hash(&mut h);
                    events.push(Event {
                        seq,
                        frame_hash: h.finish(),
                        charge_point_id: cp,
                        receive_time,
                        event_time: receive_time,
                        clock_offset_ms: None,
                        kind: EventKind::Rejected { reason: err.reason },
                    });
                }
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
        let env: Envelope = serde_json::from_str(text).map_err(|e| classify(text, e))?;
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
        // A backend cannot have received a frame tomorrow: such a line would drag event time
        // (and every other charger's data into lateness) with it.
        if receive_time > self.receive_horizon {
            return Err(DecodeError::new(
                DeadLetterReason::BadTimestamp,
                format!("receive time {ts} is more than a day in the future"),
            ));
        }
        let frame = env.message.ok_or_else(|| {
            DecodeError::new(DeadLetterReason::BadEnvelope, "envelope has no message")
        })?;
        let cp_id = self.interner.intern(cp);
        self.rejected_from = Some((cp_id.clone(), receive_time));
        let declared = match env.ocpp_version.as_deref() {
            None => None,
            Some(s) => Some(OcppVersion::parse(s).ok_or_else(|| {
                DecodeError::new(
                    DeadLetterReason::BadEnvelope,
                    format!("ocpp_version {s:?} is not one of {:?}", OcppVersion::NAMES),
                )
            })?),
        };

        let mut partials = std::mem::take(&mut self.scratch);
        partials.clear();
        let frame_hash = frame.content_hash();
        match frame {
            Frame::Call {
                message_id: id,
                action,
                payload,
            } => {
                let (version, by) = self.version_for(declared, cp, &action, payload.get());
                stats.calls_by_version[version as usize] += 1;
                if let Some(schemas) = self.strict {
                    schema::check_call(schemas, version, &action, payload.get())?;
                }
                let outcome = match version {
                    OcppVersion::V16 if v201::DECODED_V201_ONLY.contains(&&*action) => {
                        Err(DecodeError::new(
                            DeadLetterReason::BadPayload,
                            format!("{action} is an OCPP 2.0.1 action, not OCPP 1.6"),
                        ))
                    }
                    OcppVersion::V16 => v16::decode_call(
                        &action,
                        message_id(&id),
                        payload.get(),
                        &mut self.interner,
                        &mut partials,
                        &mut self.quirks,
                    ),
                    OcppVersion::V201 => v201::decode_call(
                        &action,
                        message_id(&id),
                        payload.get(),
                        &mut self.interner,
                        &mut partials,
                    ),
                }
                .map_err(|e| e.in_version(version, by))?;
                // A valid frame that carries nothing evflow uses (e.g. a 2.0.1 TransactionEvent
                // Updated with neither samples nor a usable token) is counted like an unused
                // action: never lost without a trace.
                if matches!(outcome, ActionOutcome::Ignored) || partials.is_empty() {
                    self.scratch = partials;
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

        let cp = cp_id;
        for p in partials.drain(..) {
            let o = &self.options;
            let clock_offset_ms = p.event_time.map(|t| {
                t.saturating_sub(receive_time)
                    .clamp(i32::MIN as i64, i32::MAX as i64) as i32
            });
            let event_time = match p.event_time {
                Some(t)
                    if t <= receive_time.saturating_add(o.max_clock_skew)
                        && t >= receive_time.saturating_sub(o.max_delivery_delay) =>
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
                clock_offset_ms,
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
    use crate::model::{ConnectorStatus, ErrorCode, SampleContext, TransactionId};

    fn decode(line: &str) -> (Vec<Event>, Vec<DeadLetter>, DecodeStats) {
        let mut d = Decoder::new(DecodeOptions {
            max_clock_skew: 5 * 60_000,
            max_delivery_delay: 7 * 86_400_000,
        });
        let (mut ev, mut dl, mut st) = (vec![], vec![], DecodeStats::default());
        d.decode_line(7, line.as_bytes(), &mut ev, &mut dl, &mut st);
        (ev, dl, st)
    }

    /// The dead letter's reason. A frame rejected once its charger is known also yields one
    /// `Rejected` event with that reason (for `message_errors`), and nothing else.
    fn dead_reason(line: &str) -> DeadLetterReason {
        let (ev, dl, _) = decode(line);
        assert_eq!(dl.len(), 1, "{line}");
        assert!(ev.len() <= 1, "{line} produced events");
        for e in &ev {
            assert_eq!(
                e.kind,
                EventKind::Rejected {
                    reason: dl[0].reason
                },
                "{line}"
            );
            assert_eq!(e.event_time, e.receive_time);
        }
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
    fn a_rejected_frame_counts_against_its_charger_and_an_unattributable_line_does_not() {
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP-9","message":[2,"a","StatusNotification",{"connectorId":"one"}]}"#,
        );
        assert_eq!(dl.len(), 1);
        assert_eq!(ev.len(), 1);
        assert_eq!(&*ev[0].charge_point_id, "CP-9");
        assert_eq!(
            ev[0].receive_time,
            parse_rfc3339("2026-01-05T08:00:00Z").unwrap()
        );
        assert_eq!(
            ev[0].kind,
            EventKind::Rejected {
                reason: DeadLetterReason::BadPayload
            }
        );
        let (ev, dl, _) =
            decode(r#"{"timestamp":"2026-01-05T08:00:00Z","message":[2,"a","Heartbeat",{}]}"#);
        assert_eq!((ev.len(), dl.len()), (0, 1));
    }

    #[test]
    fn a_charger_timestamp_gives_its_clock_offset_even_when_it_is_not_used() {
        // 10 minutes ahead: beyond max_clock_skew, so event time is receive time.
        let (ev, _, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-01-05T08:10:00Z"}]}"#,
        );
        assert_eq!(ev[0].event_time, ev[0].receive_time);
        assert_eq!(ev[0].clock_offset_ms, Some(600_000));
        let (ev, _, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","Heartbeat",{}]}"#,
        );
        assert_eq!(ev[0].clock_offset_ms, None);
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
    fn a_frame_that_yields_no_event_is_counted() {
        // A 2.0.1 Updated event with a charging state but no EVSE and no samples.
        let (ev, dl, st) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[2,"a","TransactionEvent",{"eventType":"Updated","timestamp":"2026-01-05T08:00:00Z","triggerReason":"ChargingStateChanged","seqNo":3,"transactionInfo":{"transactionId":"T1","chargingState":"SuspendedEV"}}]}"#,
        );
        assert!(ev.is_empty() && dl.is_empty(), "{ev:?} {dl:?}");
        assert_eq!(st.ignored_by_action.get("TransactionEvent"), Some(&1));
    }

    #[test]
    fn a_receive_time_in_the_future_is_dead_lettered() {
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2999-01-01T00:00:00Z","charge_point_id":"CP","message":[2,"a","Heartbeat",{}]}"#
            ),
            DeadLetterReason::BadTimestamp
        );
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

    fn decoder_with(versions: &[(&str, OcppVersion)]) -> Decoder {
        Decoder::new(DecodeOptions {
            max_clock_skew: 5 * 60_000,
            max_delivery_delay: 7 * 86_400_000,
        })
        .with_versions(versions.iter().map(|(c, v)| ((*c).into(), *v)).collect())
    }

    fn decode_with(d: &mut Decoder, line: &str) -> (Vec<Event>, Vec<DeadLetter>, DecodeStats) {
        let (mut ev, mut dl, mut st) = (vec![], vec![], DecodeStats::default());
        d.decode_line(7, line.as_bytes(), &mut ev, &mut dl, &mut st);
        (ev, dl, st)
    }

    fn envelope(cp: &str, version: Option<&str>, message: serde_json::Value) -> String {
        let mut e = serde_json::json!({"timestamp": "2026-01-05T08:00:01Z", "charge_point_id": cp, "message": message});
        if let Some(v) = version {
            e["ocpp_version"] = v.into();
        }
        e.to_string()
    }

    const STATUS_16: &str = r#"{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-01-05T08:00:00Z"}"#;
    const STATUS_201: &str = r#"{"timestamp":"2026-01-05T08:00:00Z","connectorStatus":"Available","evseId":1,"connectorId":1}"#;

    fn call(action: &str, payload: &str) -> serde_json::Value {
        serde_json::json!([
            2,
            "m1",
            action,
            serde_json::from_str::<serde_json::Value>(payload).unwrap()
        ])
    }

    #[test]
    fn the_version_is_detected_from_the_action_and_payload() {
        use OcppVersion::*;
        for (action, payload, want) in [
            ("TransactionEvent", "{}", V201),
            ("NotifyEvent", "{}", V201),
            ("NotifyReport", "{}", V201),
            ("StartTransaction", "{}", V16),
            ("StopTransaction", "{}", V16),
            ("DiagnosticsStatusNotification", "{}", V16),
            ("Heartbeat", "{}", V16),
            ("DataTransfer", r#"{"vendorId":"x","evseId":1}"#, V16),
            (
                "BootNotification",
                r#"{"reason":"PowerUp","chargingStation":{}}"#,
                V201,
            ),
            (
                "BootNotification",
                r#"{"chargePointVendor":"a","chargePointModel":"b"}"#,
                V16,
            ),
            ("StatusNotification", STATUS_201, V201),
            ("StatusNotification", STATUS_16, V16),
            ("MeterValues", r#"{ "evseId" : 1, "meterValue": []}"#, V201),
            ("MeterValues", r#"{"connectorId":1,"meterValue":[]}"#, V16),
            (
                "Authorize",
                r#"{"idToken":{"idToken":"A","type":"Local"}}"#,
                V201,
            ),
            ("Authorize", r#"{"idTag":"A"}"#, V16),
            // Keys inside nested values and strings do not count; the first decisive one does.
            (
                "MeterValues",
                r#"{"meterValue":[{"evseId":1}],"x":"\"evseId\":{","connectorId":2,"evseId":1}"#,
                V16,
            ),
            (
                "Authorize",
                r#"{"customData":{"idToken":1,"a":[{"b":"}"}]},"idTag":"A"}"#,
                V16,
            ),
            // Neither kind of key: 1.6, whose decoder then says what is missing.
            ("StatusNotification", r#"{"foo":1}"#, V16),
            ("StatusNotification", "{}", V16),
        ] {
            assert_eq!(detect_version(action, payload), want, "{action} {payload}");
        }
    }

    #[test]
    fn both_versions_decode_side_by_side() {
        let mut d = decoder_with(&[]);
        let (ev, dl, st) = decode_with(
            &mut d,
            &envelope("CP-16", None, call("StatusNotification", STATUS_16)),
        );
        assert!(dl.is_empty() && ev.len() == 1);
        assert_eq!(st.calls_by_version, [1, 0]);
        let (ev2, dl, st) = decode_with(
            &mut d,
            &envelope("CP-201", None, call("StatusNotification", STATUS_201)),
        );
        assert!(dl.is_empty(), "{dl:?}");
        assert_eq!(st.calls_by_version, [0, 1]);
        // The same status change, whatever the version.
        assert_eq!(ev[0].kind, ev2[0].kind);
        assert_eq!(ev[0].event_time, ev2[0].event_time);
    }

    #[test]
    fn the_envelope_wins_over_the_registry_which_wins_over_detection() {
        let mut d = decoder_with(&[("CP-201", OcppVersion::V201)]);
        // The registry says 2.0.1: a 1.6-shaped payload does not fit.
        let (ev, dl, st) = decode_with(
            &mut d,
            &envelope("CP-201", None, call("StatusNotification", STATUS_16)),
        );
        assert!(ev
            .iter()
            .all(|e| matches!(e.kind, EventKind::Rejected { .. })));
        assert_eq!(dl[0].reason, DeadLetterReason::BadPayload);
        assert!(
            dl[0].error.contains("connectorStatus")
                && dl[0].error.contains("OCPP 2.0.1")
                && dl[0].error.contains("registry"),
            "{}",
            dl[0].error
        );
        assert_eq!(st.calls_by_version, [0, 1]);
        // … unless the frame itself says 1.6.
        for v in ["1.6", "ocpp1.6"] {
            let (ev, dl, _) = decode_with(
                &mut d,
                &envelope("CP-201", Some(v), call("StatusNotification", STATUS_16)),
            );
            assert!(dl.is_empty() && ev.len() == 1, "{v}: {dl:?}");
        }
        // The envelope's version is not second-guessed by the payload's shape.
        let (_, dl, _) = decode_with(
            &mut d,
            &envelope(
                "CP-X",
                Some("ocpp2.0.1"),
                call("StatusNotification", STATUS_16),
            ),
        );
        assert!(dl[0].error.contains("envelope"), "{}", dl[0].error);
        let (ev, dl, _) = decode_with(
            &mut d,
            &envelope(
                "CP-X",
                Some("2.0.1"),
                call("StatusNotification", STATUS_201),
            ),
        );
        assert!(dl.is_empty() && ev.len() == 1);
    }

    #[test]
    fn actions_of_the_other_version_do_not_fit() {
        let mut d = decoder_with(&[("CP-16", OcppVersion::V16), ("CP-201", OcppVersion::V201)]);
        let te = call(
            "TransactionEvent",
            r#"{"eventType":"Started","timestamp":"2026-01-05T08:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"T"}}"#,
        );
        let (_, dl, _) = decode_with(&mut d, &envelope("CP-16", None, te.clone()));
        assert_eq!(dl[0].reason, DeadLetterReason::BadPayload);
        assert!(dl[0].error.contains("2.0.1 action"), "{}", dl[0].error);
        let (ev, dl, _) = decode_with(&mut d, &envelope("CP-201", None, te));
        assert!(dl.is_empty() && ev.len() == 1);
        let start = call(
            "StartTransaction",
            r#"{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-01-05T08:00:00Z"}"#,
        );
        let (_, dl, _) = decode_with(&mut d, &envelope("CP-201", None, start));
        assert_eq!(dl[0].reason, DeadLetterReason::BadPayload);
        // Unused actions stay ignored, whichever version they belong to.
        let (ev, dl, st) =
            decode_with(&mut d, &envelope("CP-16", None, call("NotifyReport", "{}")));
        assert!(ev.is_empty() && dl.is_empty());
        assert_eq!(st.ignored_by_action.get("NotifyReport"), Some(&1));
    }

    #[test]
    fn an_unknown_envelope_version_is_a_bad_envelope() {
        for v in [r#""3.0""#, r#""2.0""#, "16"] {
            let line = format!(
                r#"{{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","ocpp_version":{v},"message":[2,"a","Heartbeat",{{}}]}}"#
            );
            assert_eq!(dead_reason(&line), DeadLetterReason::BadEnvelope, "{v}");
        }
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","ocpp_version":null,"message":[2,"a","Heartbeat",{}]}"#,
        );
        assert!(dl.is_empty() && ev.len() == 1);
    }

    #[test]
    fn call_results_are_version_agnostic() {
        // 2.0.1 BootNotification result: the heartbeat interval.
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[3,"b1",{"currentTime":"2026-01-05T08:00:00Z","interval":300,"status":"Accepted"}]}"#,
        );
        assert!(dl.is_empty());
        assert!(matches!(
            ev[0].kind,
            EventKind::CallResult {
                heartbeat_interval_s: Some(300),
                transaction_id: None,
                ..
            }
        ));
        // 2.0.1 RequestStartTransaction result: a string transaction id, nothing to correlate.
        let (ev, dl, _) = decode(
            r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[3,"r1",{"status":"Accepted","transactionId":"f3a1c2d4-0001"}]}"#,
        );
        assert!(dl.is_empty(), "{dl:?}");
        assert!(matches!(
            ev[0].kind,
            EventKind::CallResult {
                transaction_id: None,
                ..
            }
        ));
        assert_eq!(
            dead_reason(
                r#"{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP","message":[3,"r1",{"transactionId":4.5}]}"#
            ),
            DeadLetterReason::BadPayload
        );
    }

    #[test]
    fn a_2_0_1_session_decodes_to_the_events_of_a_1_6_session() {
        // What the stages need from a session — connector, start, energy registers, samples,
        // stop — is the same; only the transaction id's type (and its CALLRESULT) differ.
        let mut d = decoder_with(&[]);
        let lines_16 = [
            envelope(
                "CP",
                None,
                call(
                    "StartTransaction",
                    r#"{"connectorId":1,"idTag":"TAG","meterStart":1000,"timestamp":"2026-01-05T08:00:00Z"}"#,
                ),
            ),
            envelope(
                "CP",
                None,
                call(
                    "MeterValues",
                    r#"{"connectorId":1,"transactionId":5,"meterValue":[{"timestamp":"2026-01-05T08:30:00Z","sampledValue":[{"value":"6.5","measurand":"Energy.Active.Import.Register","unit":"kWh"},{"value":"11000","measurand":"Power.Active.Import","unit":"W"}]}]}"#,
                ),
            ),
            envelope(
                "CP",
                None,
                call(
                    "StopTransaction",
                    r#"{"transactionId":5,"meterStop":12000,"timestamp":"2026-01-05T09:00:00Z","reason":"EVDisconnected"}"#,
                ),
            ),
        ];
        let lines_201 = [
            envelope(
                "CP",
                None,
                call(
                    "TransactionEvent",
                    r#"{"eventType":"Started","timestamp":"2026-01-05T08:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"TX"},"idToken":{"idToken":"TAG","type":"ISO14443"},"evse":{"id":1,"connectorId":1},"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[{"value":1000,"context":"Transaction.Begin"}]}]}"#,
                ),
            ),
            envelope(
                "CP",
                None,
                call(
                    "TransactionEvent",
                    r#"{"eventType":"Updated","timestamp":"2026-01-05T08:30:00Z","triggerReason":"MeterValuePeriodic","seqNo":1,"transactionInfo":{"transactionId":"TX"},"evse":{"id":1},"meterValue":[{"timestamp":"2026-01-05T08:30:00Z","sampledValue":[{"value":6.5,"measurand":"Energy.Active.Import.Register","unitOfMeasure":{"unit":"kWh"}},{"value":11,"measurand":"Power.Active.Import","unitOfMeasure":{"unit":"W","multiplier":3}}]}]}"#,
                ),
            ),
            envelope(
                "CP",
                None,
                call(
                    "TransactionEvent",
                    r#"{"eventType":"Ended","timestamp":"2026-01-05T09:00:00Z","triggerReason":"EVCommunicationLost","seqNo":2,"transactionInfo":{"transactionId":"TX","stoppedReason":"EVDisconnected"},"meterValue":[{"timestamp":"2026-01-05T09:00:00Z","sampledValue":[{"value":12000,"context":"Transaction.End"}]}]}"#,
                ),
            ),
        ];
        let mut ev16 = vec![];
        let mut ev201 = vec![];
        for (lines, out) in [(&lines_16, &mut ev16), (&lines_201, &mut ev201)] {
            for l in lines {
                let (ev, dl, _) = decode_with(&mut d, l);
                assert!(dl.is_empty(), "{dl:?}");
                out.extend(ev.into_iter().map(|e| (e.event_time, e.kind)));
            }
        }
        let start = |e: &[(Millis, EventKind)]| {
            e.iter().find_map(|(t, k)| match k {
                EventKind::TransactionStart {
                    connector_id,
                    id_tag,
                    meter_start_wh,
                    ..
                } => Some((*t, *connector_id, id_tag.clone(), *meter_start_wh)),
                _ => None,
            })
        };
        let stop = |e: &[(Millis, EventKind)]| {
            e.iter().find_map(|(t, k)| match k {
                EventKind::TransactionStop {
                    meter_stop_wh,
                    reason,
                    ..
                } => Some((*t, *meter_stop_wh, reason.clone())),
                _ => None,
            })
        };
        let periodic = |e: &[(Millis, EventKind)]| {
            e.iter()
                .filter_map(|(t, k)| match k {
                    EventKind::Meter { sample, .. }
                        if sample.context == SampleContext::Periodic =>
                    {
                        Some((*t, *sample))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(start(&ev16), start(&ev201));
        assert!(start(&ev16).is_some());
        assert_eq!(stop(&ev16), stop(&ev201));
        assert_eq!(periodic(&ev16), periodic(&ev201));
        assert_eq!(periodic(&ev16).len(), 1);
    }
}
