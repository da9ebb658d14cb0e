//! Property tests of the OCPP decoder (`evflow::ocpp::Decoder`, the library API): whatever a
//! line holds, decoding never panics, and the line ends up as exactly one of — one or more
//! events, one counted ignored action, or one dead letter with a non-empty error.
//!
//! Inputs: arbitrary bytes; near-valid envelopes built from random frame types, actions (the
//! 1.6 and 2.0.1 lists and garbage) and random JSON (nested, huge and negative numbers,
//! NaN-like strings, unicode, escapes); and mutations (fields deleted, replaced, retyped,
//! emptied) of real payloads: the real chargers' frames in ../shared/data/ocpp/real-frames.jsonl,
//! the simulator's frames and a few 2.0.1 frames.
//!
//! Case counts are bounded so that the file runs in seconds in a debug build; `PROPTEST_CASES`
//! overrides them for a longer run (docs/ocpp-quirks.md):
//! `PROPTEST_CASES=20000 cargo test --test decoder_props`.

use std::sync::OnceLock;

use evflow::config::{PipelineConfig, SimulatorConfig};
use evflow::model::{DeadLetter, Event, EventKind};
use evflow::ocpp::{v16, v201, DecodeOptions, DecodeStats, Decoder};
use evflow::sources::simulator::{write_all, Fleet};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

/// `cases`, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // A failure is kept as an explicit test below, not as a file in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn decoder() -> Decoder {
    let p = PipelineConfig::default();
    Decoder::new(DecodeOptions {
        max_clock_skew: p.max_clock_skew.0,
        max_delivery_delay: p.max_delivery_delay.0,
    })
}

/// Decodes one line and checks that it has exactly one outcome, consistent with the stats.
fn check_line(d: &mut Decoder, seq: u64, line: &[u8]) -> Result<(), TestCaseError> {
    let (mut ev, mut dead, mut st): (Vec<Event>, Vec<DeadLetter>, _) =
        (vec![], vec![], DecodeStats::default());
    d.decode_line(seq, line, &mut ev, &mut dead, &mut st);
    let ignored: u64 = st.ignored_by_action.values().sum();
    let decoded: u64 = st.events_by_action.values().sum();
    let dead_counted: u64 = st.dead_by_reason.values().sum();
    let text = String::from_utf8_lossy(line);
    prop_assert_eq!(st.lines, 1);
    // A dead line whose charger is known also yields one `Rejected` event (for
    // message_errors) with the dead letter's reason; it is not a decoded event.
    let rejected: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Rejected { .. }))
        .collect();
    prop_assert!(rejected.len() <= 1, "{}", text);
    for r in &rejected {
        prop_assert_eq!(
            dead.len(),
            1,
            "a Rejected event without its dead letter: {}",
            text
        );
        prop_assert_eq!(
            &r.kind,
            &EventKind::Rejected {
                reason: dead[0].reason
            }
        );
    }
    let ev: Vec<Event> = ev
        .into_iter()
        .filter(|e| !matches!(e.kind, EventKind::Rejected { .. }))
        .collect();
    prop_assert_eq!(decoded, ev.len() as u64, "events vs stats: {}", text);
    prop_assert_eq!(
        dead_counted,
        dead.len() as u64,
        "dead letters vs stats: {}",
        text
    );
    let outcomes = [!ev.is_empty(), ignored > 0, !dead.is_empty()];
    prop_assert_eq!(
        outcomes.iter().filter(|o| **o).count(),
        1,
        "events {:?} ignored {} dead {:?}: {}",
        ev,
        ignored,
        dead,
        text
    );
    prop_assert!(ignored <= 1 && dead.len() <= 1, "{}", text);
    for dl in &dead {
        prop_assert!(!dl.error.trim().is_empty(), "empty error: {:?}", dl);
        prop_assert_eq!(dl.seq, seq);
        prop_assert_eq!(&dl.line, &text);
        prop_assert!(
            st.quirks.is_empty(),
            "quirks of a dead line: {:?}",
            st.quirks
        );
    }
    for e in &ev {
        prop_assert_eq!(e.seq, seq);
        prop_assert!(!e.charge_point_id.trim().is_empty());
        if let EventKind::Meter { sample: s, .. } = &e.kind {
            let wide = [s.energy_wh, s.power_w, s.current_a];
            let narrow = [s.frequency_hz, s.soc_pct, s.temperature_c];
            prop_assert!(
                wide.iter().flatten().all(|v| v.is_finite())
                    && narrow
                        .iter()
                        .chain(&s.voltage_v)
                        .flatten()
                        .all(|v| v.is_finite()),
                "non-finite sample {:?}: {}",
                s,
                text
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Random JSON
// ------------------------------------------------------------------------------------------

/// Payload field names of 1.6 and 2.0.1 (so that random objects hit the decoders' fields).
const KEYS: &[&str] = &[
    "connectorId",
    "errorCode",
    "status",
    "timestamp",
    "info",
    "vendorErrorCode",
    "vendorId",
    "meterValue",
    "sampledValue",
    "value",
    "context",
    "format",
    "measurand",
    "phase",
    "location",
    "unit",
    "transactionId",
    "idTag",
    "idTagInfo",
    "meterStart",
    "meterStop",
    "reason",
    "transactionData",
    "chargePointVendor",
    "chargePointModel",
    "interval",
    "currentTime",
    "eventType",
    "triggerReason",
    "seqNo",
    "transactionInfo",
    "chargingState",
    "stoppedReason",
    "evse",
    "evseId",
    "id",
    "idToken",
    "type",
    "unitOfMeasure",
    "multiplier",
    "connectorStatus",
    "eventData",
    "component",
    "variable",
    "actualValue",
    "techCode",
    "cleared",
    "chargingStation",
    "vendorName",
    "model",
    "generatedAt",
    "trigger",
    "eventNotificationType",
];

/// Strings that mean something to a decoder, or that decoders get wrong.
const STRINGS: &[&str] = &[
    "",
    " ",
    "Faulted",
    "Available",
    "Charging",
    "Occupied",
    "NoError",
    "Error",
    "OverVoltage",
    "HighTemperature",
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "Temperature",
    "SoC",
    "Frequency",
    "Wh",
    "kWh",
    "W",
    "kW",
    "Celcius",
    "Celsius",
    "Fahrenheit",
    "K",
    "Percent",
    "L1",
    "L2-N",
    "L1-L2",
    "N",
    "Transaction.Begin",
    "Transaction.End",
    "Sample.Periodic",
    "SignedData",
    "Started",
    "Updated",
    "Ended",
    "Problem",
    "true",
    "2026-01-05T08:00:00Z",
    "2026-01-05T08:00:00.123456789+14:00",
    "2026-01-05 08:00:00z",
    "2026-01-05T08:00:60Z",
    "2026-02-29T08:00:00Z",
    "2024-02-29T23:59:59-23:59",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "2026-01-05T08:00:00",
    "2026-01-05T08:00:00+5",
    "12.5",
    " 164.5 ",
    "-0",
    "1e3",
    "1E-3",
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "1,5",
    "0x10",
    "1e",
    "e3",
    "+5",
    ".5",
    "5.",
    "99999999999999999999999999999999",
    "4294967295",
    "340282350000000000000000000000000000000",
    "١٢٣",
    "１２",
    "\u{feff}12",
    "\u{0}",
    "é",
    "🔌",
    "\u{202e}gnp.exe",
];

/// Raw JSON number tokens, beyond what `serde_json::Value` can write.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "255",
    "256",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e308",
    "1e309",
    "-1e400",
    "1e-400",
    "0.1",
    "2.0",
    "-2.5",
    "1.7976931348623157e308",
    "5e-324",
];

/// Raw JSON string tokens with escapes, valid and not.
const RAW_STRINGS: &[&str] = &[
    r#""\u0000""#,
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\uD83D\uDD0C""#,
    r#""a\"b""#,
    r#""\\""#,
    r#""\/""#,
    r#""\x41""#,
    r#""\u12""#,
    r#""tab	in""#,
    r#""new
line""#,
];

fn string_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(STRINGS).prop_map(|s| Value::from(s).to_string()),
        2 => any::<String>().prop_map(|s| Value::from(s).to_string()),
        1 => select(RAW_STRINGS).prop_map(String::from),
        1 => (1usize..3000).prop_map(|n| Value::from("x".repeat(n)).to_string()),
    ]
}

fn key_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => select(KEYS).prop_map(|s| Value::from(s).to_string()),
        1 => string_lit(),
    ]
}

/// JSON text: a random document (sometimes not quite JSON: raw tokens serde may reject).
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        select(NUMBERS).prop_map(String::from),
        string_lit(),
        string_lit(),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key_lit(), inner), 0..7).prop_map(|kv| {
                let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A JSON value (for mutations of real payloads).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        select(STRINGS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((select(KEYS), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

// ------------------------------------------------------------------------------------------
// Near-valid envelopes
// ------------------------------------------------------------------------------------------

const GARBAGE_ACTIONS: &[&str] = &[
    "",
    " ",
    "heartbeat",
    "Heartbeat ",
    "StatusNotification\u{0}",
    "MakeCoffee",
    "TransactionEvent2",
    "Ｈeartbeat",
];

fn action_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(v16::ACTIONS).prop_map(|a| Value::from(a).to_string()),
        4 => select(v201::ACTIONS).prop_map(|a| Value::from(a).to_string()),
        1 => select(GARBAGE_ACTIONS).prop_map(|a| Value::from(a).to_string()),
        1 => json_text(),
    ]
}

fn id_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9-]{0,12}".prop_map(|s| Value::from(s).to_string()),
        1 => string_lit(),
        1 => json_text(),
    ]
}

fn message_text() -> impl Strategy<Value = String> {
    let call_type = prop_oneof![
        8 => Just("2".to_string()),
        1 => select(&["0", "1", "5", "-1", "2.0", "\"2\"", "null", "256", "1e0"][..])
            .prop_map(String::from),
    ];
    prop_oneof![
        6 => (call_type, id_lit(), action_lit(), json_text())
            .prop_map(|(t, id, a, p)| format!("[{t},{id},{a},{p}]")),
        2 => (id_lit(), json_text()).prop_map(|(id, p)| format!("[3,{id},{p}]")),
        1 => (id_lit(), string_lit(), prop::collection::vec(json_text(), 0..3)).prop_map(
            |(id, code, rest)| {
                let mut parts = vec!["4".to_string(), id, code];
                parts.extend(rest);
                format!("[{}]", parts.join(","))
            }
        ),
        1 => prop::collection::vec(json_text(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
        1 => json_text(),
    ]
}

fn timestamp_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("\"2026-01-05T08:00:00Z\"".to_string()),
        2 => select(STRINGS).prop_map(|s| Value::from(s).to_string()),
        1 => json_text(),
    ]
}

fn version_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        2 => select(&["1.6", "2.0.1", "ocpp1.6", "ocpp2.0.1", "2.1", ""][..])
            .prop_map(|v| format!(",\"ocpp_version\":{}", Value::from(v))),
        1 => json_text().prop_map(|v| format!(",\"ocpp_version\":{v}")),
    ]
}

fn envelope_text() -> impl Strategy<Value = String> {
    let cp = prop_oneof![
        8 => Just("\"CP-1\"".to_string()),
        1 => string_lit(),
        1 => json_text(),
    ];
    (timestamp_lit(), cp, message_text(), version_field(), 0u8..8).prop_map(
        |(ts, cp, msg, version, shape)| match shape {
            // Now and then a field is missing, or the whole line is the message.
            0 => format!("{{\"charge_point_id\":{cp},\"message\":{msg}{version}}}"),
            1 => format!("{{\"timestamp\":{ts},\"message\":{msg}}}"),
            2 => msg,
            _ => format!(
                "{{\"timestamp\":{ts},\"charge_point_id\":{cp},\"message\":{msg}{version}}}"
            ),
        },
    )
}

// ------------------------------------------------------------------------------------------
// Mutated real payloads
// ------------------------------------------------------------------------------------------

/// A real frame to mutate.
#[derive(Clone, Debug)]
struct Seed {
    /// `[2, id, action, payload]` or `[3, id, payload]`.
    frame: Value,
    version: Option<&'static str>,
}

impl Seed {
    fn payload_index(&self) -> usize {
        if self.frame[0] == 2 {
            3
        } else {
            2
        }
    }
}

/// The real chargers' frames, the simulator's (a few of each action and frame type) and some
/// 2.0.1 frames.
fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = Vec::new();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/ocpp/real-frames.jsonl"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (the shared data beside the repository, ../shared/README.md)")
        });
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(l).expect("real-frames.jsonl line");
            seeds.push(Seed {
                frame: v["frame"].clone(),
                version: Some("1.6"),
            });
        }
        let fleet = Fleet::new(
            &SimulatorConfig {
                chargers: 4,
                hours: 3,
                ..SimulatorConfig::default()
            },
            &[],
        );
        let mut traffic = Vec::new();
        write_all(&fleet, &mut traffic).expect("simulate");
        let mut per_kind = std::collections::BTreeMap::<String, usize>::new();
        for l in traffic.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(l).expect("simulator line");
            let frame = v["message"].clone();
            let kind = format!("{}{}", frame[0], frame.get(2).filter(|a| a.is_string()).unwrap_or(&Value::Null));
            let n = per_kind.entry(kind).or_default();
            if *n < 3 && frame[0] != 4 {
                *n += 1;
                seeds.push(Seed {
                    frame,
                    version: None,
                });
            }
        }
        let ts = "2026-01-05T08:00:00Z";
        for (action, payload) in [
            (
                "TransactionEvent",
                json!({"eventType": "Started", "timestamp": ts, "triggerReason": "CablePluggedIn",
                       "seqNo": 0, "transactionInfo": {"transactionId": "T-1", "chargingState": "Charging"},
                       "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "TAG", "type": "ISO14443"},
                       "meterValue": [{"timestamp": ts, "sampledValue": [
                           {"value": 12.345, "measurand": "Energy.Active.Import.Register",
                            "context": "Transaction.Begin", "unitOfMeasure": {"unit": "kWh", "multiplier": 0}},
                           {"value": 7.4, "measurand": "Power.Active.Import", "phase": "L1",
                            "unitOfMeasure": {"unit": "kW"}}]}]}),
            ),
            (
                "TransactionEvent",
                json!({"eventType": "Ended", "timestamp": ts, "triggerReason": "EVCommunicationLost",
                       "seqNo": 7, "transactionInfo": {"transactionId": "T-1", "stoppedReason": "EVDisconnected"},
                       "meterValue": [{"timestamp": ts, "sampledValue": [
                           {"value": 20000, "context": "Transaction.End"}]}]}),
            ),
            (
                "StatusNotification",
                json!({"timestamp": ts, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}),
            ),
            (
                "NotifyEvent",
                json!({"generatedAt": ts, "seqNo": 0, "eventData": [{"eventId": 1, "timestamp": ts,
                       "trigger": "Delta", "actualValue": "true", "techCode": "GF",
                       "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                       "variable": {"name": "Problem"}, "eventNotificationType": "HardWiredNotification"}]}),
            ),
            (
                "MeterValues",
                json!({"evseId": 1, "meterValue": [{"timestamp": ts, "sampledValue": [
                       {"value": 2305, "measurand": "Voltage", "phase": "L1-N",
                        "unitOfMeasure": {"unit": "V", "multiplier": -1}}]}]}),
            ),
            (
                "BootNotification",
                json!({"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}),
            ),
        ] {
            seeds.push(Seed {
                frame: json!([2, "v201", action, payload]),
                version: Some("2.0.1"),
            });
        }
        seeds.push(Seed {
            frame: json!([3, "v201", {"currentTime": ts, "interval": 300, "status": "Accepted"}]),
            version: Some("2.0.1"),
        });
        seeds
    })
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Delete,
    Replace,
    Retype,
    Insert,
    Empty,
    Wrap,
}

#[derive(Clone, Debug)]
struct Mutation {
    path: Vec<u16>,
    op: Op,
    value: Value,
    key: &'static str,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec(any::<u16>(), 0..5),
        select(
            &[
                Op::Delete,
                Op::Replace,
                Op::Retype,
                Op::Insert,
                Op::Empty,
                Op::Wrap,
            ][..],
        ),
        json_value(),
        select(KEYS),
    )
        .prop_map(|(path, op, value, key)| Mutation {
            path,
            op,
            value,
            key,
        })
}

/// Applies `m` at the node its path leads to (each step picks a child of an object or array).
fn mutate(v: &mut Value, m: &Mutation) {
    let (steps, pick) = match m.path.split_last() {
        Some((last, rest)) => (rest, *last as usize),
        None => (&[][..], 0),
    };
    let mut cur = v;
    for s in steps {
        let n = match &*cur {
            Value::Object(o) => o.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if n == 0 {
            break;
        }
        let s = *s as usize % n;
        cur = match cur {
            Value::Object(o) => o.values_mut().nth(s).unwrap(),
            Value::Array(a) => &mut a[s],
            _ => unreachable!(),
        };
    }
    match m.op {
        Op::Delete => match cur {
            Value::Object(o) if !o.is_empty() => {
                let k = o.keys().nth(pick % o.len()).unwrap().clone();
                o.remove(&k);
            }
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                a.remove(pick % n);
            }
            other => *other = Value::Null,
        },
        Op::Replace => *cur = m.value.clone(),
        Op::Retype => {
            *cur = match cur.take() {
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .unwrap_or(Value::Bool(s.is_empty())),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::String(String::new()),
                Value::Array(a) => a.into_iter().next().unwrap_or(Value::Null),
                Value::Object(o) => Value::Array(o.into_iter().map(|(_, v)| v).collect()),
            }
        }
        Op::Insert => match cur {
            Value::Object(o) => {
                o.insert(m.key.to_string(), m.value.clone());
            }
            Value::Array(a) => a.push(m.value.clone()),
            other => *other = m.value.clone(),
        },
        Op::Empty => match cur {
            Value::Object(o) => o.clear(),
            Value::Array(a) => a.clear(),
            Value::String(s) => s.clear(),
            other => *other = Value::Number(0.into()),
        },
        Op::Wrap => *cur = Value::Array(vec![cur.take()]),
    }
}

fn mutated_envelope() -> impl Strategy<Value = String> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 1..4),
        prop_oneof![
            6 => Just(None),
            1 => action_lit().prop_map(Some),
        ],
        any::<bool>(),
    )
        .prop_map(|(i, mutations, action, keep_version)| {
            let seed = i.get(seeds()).clone();
            let mut frame = seed.frame.clone();
            let at = seed.payload_index();
            for m in &mutations {
                mutate(&mut frame[at], m);
            }
            if let (Some(a), true) = (action, frame[0] == 2) {
                frame[2] = serde_json::from_str(&a).unwrap_or(Value::Null);
            }
            let mut env = Map::new();
            env.insert("timestamp".into(), "2026-01-05T08:00:01Z".into());
            env.insert("charge_point_id".into(), "CP-1".into());
            env.insert("message".into(), frame);
            if let (Some(v), true) = (seed.version, keep_version) {
                env.insert("ocpp_version".into(), v.into());
            }
            Value::Object(env).to_string()
        })
}

// ------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(20000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_line(&mut decoder(), 1, &bytes)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        check_line(&mut decoder(), 1, text.as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(20000))]

    #[test]
    fn near_valid_envelopes_never_panic(line in envelope_text()) {
        check_line(&mut decoder(), 2, line.as_bytes())?;
    }

    #[test]
    fn mutated_real_payloads_never_panic(line in mutated_envelope()) {
        check_line(&mut decoder(), 3, line.as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(5000))]

    /// Whatever tolerances the configuration sets (a config file may say anything).
    #[test]
    fn any_clock_tolerance_never_panics(
        max_clock_skew in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), 0i64..1_000_000_000],
        max_delivery_delay in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), 0i64..1_000_000_000],
        line in prop_oneof![envelope_text(), mutated_envelope()],
    ) {
        let mut d = Decoder::new(DecodeOptions { max_clock_skew, max_delivery_delay });
        check_line(&mut d, 4, line.as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// One decoder over a stream of mixed lines (its interner and scratch buffers carry over):
    /// every line is still accounted for on its own.
    #[test]
    fn a_stream_of_mixed_lines_is_accounted_line_by_line(
        lines in prop::collection::vec(
            prop_oneof![envelope_text(), mutated_envelope()],
            1..25,
        )
    ) {
        let mut d = decoder();
        for (i, l) in lines.iter().enumerate() {
            check_line(&mut d, i as u64 + 1, l.as_bytes())?;
        }
    }
}

/// Inputs found worth keeping (and shapes proptest is unlikely to build on its own).
#[test]
fn edge_cases_are_accounted_for() {
    let env = |msg: &str| {
        format!(
            r#"{{"timestamp":"2026-01-05T08:00:00Z","charge_point_id":"CP-1","message":{msg}}}"#
        )
    };
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let lines = [
        String::new(),
        "\n".to_string(),
        deep.clone(),
        env(&deep),
        env(&format!(r#"[2,"1","MeterValues",{deep_obj}]"#)),
        env(&format!(r#"[2,"1","DataTransfer",{{"data":{deep}}}]"#)),
        // A MeterValues without meterValue entries would yield nothing: a dead letter.
        env(r#"[2,"1","MeterValues",{"connectorId":1,"meterValue":[]}]"#),
        env(
            r#"[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[]}]}]"#,
        ),
        env(
            r#"[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[{"value":"1e308","unit":"kWh"}]}]}]"#,
        ),
        env(
            r#"[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[{"value":"1e39","measurand":"Voltage"}]}]}]"#,
        ),
        env(
            r#"[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-05T08:00:00Z","sampledValue":[{"value":"12.5e2147483647","unit":"kWh"}]}]}]"#,
        ),
        env(
            r#"[2,"1","StatusNotification",{"connectorId":4294967295,"errorCode":"","status":"Faulted"}]"#,
        ),
        env(
            r#"[2,"1","StatusNotification",{"connectorId":1,"errorCode":"\ud800","status":"Faulted"}]"#,
        ),
        env(
            r#"[2,"1","StartTransaction",{"connectorId":1,"idTag":"","meterStart":9223372036854775807,"timestamp":"9999-12-31T23:59:59Z"}]"#,
        ),
        env(
            r#"[2,"1","StopTransaction",{"transactionId":-9223372036854775808,"meterStop":0,"timestamp":"0000-01-01T00:00:00Z"}]"#,
        ),
        env(r#"[3,"1",{"transactionId":1,"interval":4294967295}]"#),
        env(r#"[4,"1"]"#),
        env(r#"[4,"1","GenericError"]"#),
        env(r#"[2,"1","Heartbeat",{}]"#)
            .replace("2026-01-05T08:00:00Z", "9999-12-31T23:59:59.999+23:59"),
        env(r#"[2,"1","Heartbeat",{}]"#)
            .replace("2026-01-05T08:00:00Z", "0000-01-01T00:00:00-23:59"),
    ];
    let mut d = decoder();
    for (i, l) in lines.iter().enumerate() {
        check_line(&mut d, i as u64, l.as_bytes()).unwrap_or_else(|e| panic!("line {i}: {e}"));
    }
}

/// A tolerance of i64::MAX milliseconds once overflowed the trusted-range check.
#[test]
fn extreme_clock_tolerances_do_not_overflow() {
    let line = r#"{"timestamp":"9999-12-31T23:59:59Z","charge_point_id":"CP-1","message":[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"0000-01-01T00:00:00Z"}]}"#;
    for (skew, delay) in [
        (i64::MAX, i64::MAX),
        (i64::MIN, i64::MIN),
        (i64::MAX, i64::MIN),
    ] {
        let mut d = Decoder::new(DecodeOptions {
            max_clock_skew: skew,
            max_delivery_delay: delay,
        });
        check_line(&mut d, 1, line.as_bytes()).unwrap();
    }
}

/// The generators are not degenerate: the lines they build reach events of every kind the
/// decoder makes, ignored actions and every dead-letter reason of the decoder's own.
#[test]
fn generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;
    let mut runner = TestRunner::deterministic();
    let strategy = prop_oneof![envelope_text(), mutated_envelope()];
    let mut d = decoder();
    let (mut kinds, mut reasons) = (BTreeMap::new(), BTreeMap::new());
    let mut ignored = 0;
    for i in 0..3000 {
        let line = strategy.new_tree(&mut runner).unwrap().current();
        let (mut ev, mut dead, mut st) = (vec![], vec![], DecodeStats::default());
        d.decode_line(i, line.as_bytes(), &mut ev, &mut dead, &mut st);
        for e in &ev {
            *kinds.entry(e.kind.name()).or_insert(0) += 1;
        }
        for dl in &dead {
            *reasons.entry(dl.reason.as_str()).or_insert(0) += 1;
        }
        ignored += st.ignored_by_action.values().sum::<u64>();
    }
    eprintln!("events {kinds:?}\nignored {ignored}\ndead {reasons:?}");
    for k in [
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "StartTransaction",
        "StopTransaction",
        "CALLRESULT",
        "CALLERROR",
    ] {
        assert!(kinds.contains_key(k), "no {k} event: {kinds:?}");
    }
    assert!(ignored > 0);
    for r in [
        "invalid_json",
        "bad_envelope",
        "missing_charge_point",
        "bad_timestamp",
        "not_a_frame",
        "unknown_action",
        "bad_payload",
    ] {
        assert!(reasons.contains_key(r), "no {r} dead letter: {reasons:?}");
    }
}
