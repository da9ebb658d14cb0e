//! Frames of real chargers, quoted from public bug reports (`../shared/data/ocpp/real-frames.jsonl`,
//! read in place): what evflow does with each — accept and normalise, accept and count the
//! quirk, or dead-letter — as docs/ocpp-quirks.md decides. Every line of the file must be known
//! here: a frame added to the file fails the test until its decision is written down.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use evflow::config::PipelineConfig;
use evflow::model::{
    ConnectorStatus, DeadLetter, DeadLetterReason, ErrorCode, Event, EventKind, SampleContext,
    TransactionId,
};
use evflow::ocpp::v16::quirk;
use evflow::ocpp::{message_id, DecodeOptions, DecodeStats, Decoder};
use evflow::time::parse_rfc3339;
use serde_json::{json, Value};

/// When the backend "received" every frame: one fixed time, as a replay of the quotes.
const RECEIVED: &str = "2026-05-01T00:00:00Z";

fn frames_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ocpp/real-frames.jsonl")
}

/// One line of the file.
struct RealFrame {
    line_no: usize,
    source: String,
    device: String,
    frame: Value,
    /// The file's verdict: the frame satisfies the official 1.6 schema.
    schema_valid: bool,
}

impl RealFrame {
    /// (source, message type, message id): unique per line (a CALL and its CALLRESULT share
    /// the id; two reports may reuse an id).
    fn key(&self) -> (String, u64, String) {
        (
            self.source.clone(),
            self.frame[0].as_u64().unwrap_or(0),
            self.frame[1].as_str().unwrap_or("").to_string(),
        )
    }

    /// The envelope evflow reads: the device as the charge point id, the fixed receive time.
    fn envelope(&self) -> String {
        line(RECEIVED, &self.device, self.frame.clone())
    }

    /// The charger's own timestamp, if the payload has one.
    fn charger_time(&self) -> Option<&str> {
        let p = &self.frame[3];
        p["timestamp"]
            .as_str()
            .or_else(|| p["meterValue"][0]["timestamp"].as_str())
    }
}

fn real_frames() -> Vec<RealFrame> {
    let path = frames_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The real-charger frames live in the shared data beside the repository \
             (../shared/data/ocpp/real-frames.jsonl, see ../shared/README.md); they are read \
             in place, not copied.",
            path.display()
        )
    });
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let field = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("line {}: no {k:?}", i + 1))
                    .to_string()
            };
            RealFrame {
                line_no: i + 1,
                source: field("source"),
                device: field("device"),
                frame: v["frame"].clone(),
                schema_valid: v["schema_valid_v16"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("line {}: no schema_valid_v16", i + 1)),
            }
        })
        .collect()
}

/// What evflow decides for a frame.
enum Decision {
    /// Accepted: the events, checked by the function.
    Accept(fn(&[Event])),
    /// Accepted and counted in `evflow_ocpp_quirks_total{quirk}`.
    AcceptWithQuirk(&'static str, fn(&[Event])),
    #[allow(dead_code)]
    DeadLetter(DeadLetterReason),
    #[allow(dead_code)]
    Ignored,
}

struct Known {
    source: &'static str,
    message_type: u64,
    message_id: &'static str,
    decision: Decision,
}

fn one(events: &[Event]) -> &EventKind {
    assert_eq!(events.len(), 1, "{events:#?}");
    &events[0].kind
}

fn status(events: &[Event]) -> (u32, ConnectorStatus, &ErrorCode, Option<&str>) {
    match one(events) {
        EventKind::Status {
            connector_id,
            status,
            error_code,
            vendor_detail,
        } => (*connector_id, *status, error_code, vendor_detail.as_deref()),
        other => panic!("expected a status, got {other:?}"),
    }
}

/// The decision for every frame of the file (docs/ocpp-quirks.md has the reasons).
fn known() -> Vec<Known> {
    use Decision::*;
    vec![
        Known {
            source: "https://github.com/evcc-io/evcc/issues/15768",
            message_type: 2,
            message_id: "598",
            // Transaction.Begin register (0 Wh) beside the periodic one (678 Wh) in the same
            // meterValue: the periodic register is the reading; power and current per phase.
            decision: Accept(|ev| match one(ev) {
                EventKind::Meter {
                    connector_id,
                    transaction_id,
                    sample,
                } => {
                    assert_eq!(*connector_id, 1);
                    assert_eq!(*transaction_id, Some(TransactionId::Int(1_745_408_128)));
                    assert_eq!(sample.energy_wh, Some(678.0));
                    assert_eq!(sample.context, SampleContext::Periodic);
                    assert_eq!(sample.power_w, Some(3878.0));
                    assert_eq!(sample.current_a, Some(16.3));
                    assert_eq!(sample.voltage_v, [Some(236.7), None, None]);
                    assert_eq!(sample.temperature_c, Some(30.0));
                    assert_eq!((sample.soc_pct, sample.frequency_hz), (None, None));
                }
                other => panic!("{other:?}"),
            }),
        },
        Known {
            source: "https://github.com/dallmann-consulting/OCPP.Core/issues/41",
            message_type: 2,
            message_id: "eb07f294-f7b3-4a70-b2fe-a1ad375236ba",
            // Energy only, a decimal Wh string: kept to the tenth, nothing invented.
            decision: Accept(|ev| match one(ev) {
                EventKind::Meter {
                    connector_id,
                    transaction_id,
                    sample,
                } => {
                    assert_eq!(*connector_id, 4);
                    assert_eq!(*transaction_id, Some(TransactionId::Int(14)));
                    assert_eq!(sample.energy_wh, Some(164.5));
                    assert_eq!(sample.context, SampleContext::Periodic);
                    assert_eq!(
                        (sample.power_w, sample.current_a, sample.soc_pct),
                        (None, None, None)
                    );
                    assert_eq!(sample.voltage_v, [None; 3]);
                }
                other => panic!("{other:?}"),
            }),
        },
        Known {
            source: "https://github.com/lbbrhzn/ocpp/issues/1248",
            message_type: 2,
            message_id: "28240181849166013077",
            // errorCode "Error" is not in the 1.6 enumeration: kept verbatim, still a fault of
            // the whole charger (connector 0).
            decision: AcceptWithQuirk(quirk::ERROR_CODE_NOT_IN_ENUM, |ev| {
                let (c, s, code, detail) = status(ev);
                assert_eq!((c, s), (0, ConnectorStatus::Faulted));
                assert!(
                    matches!(code, ErrorCode::Other(o) if &**o == "Error"),
                    "{code:?}"
                );
                assert_eq!(detail, None);
            }),
        },
        Known {
            source: "https://github.com/lbbrhzn/ocpp/pull/1925",
            message_type: 2,
            message_id: "1472002871",
            // Empty info / vendorErrorCode: no vendor detail (not an empty one).
            decision: Accept(|ev| {
                let (c, s, code, detail) = status(ev);
                assert_eq!((c, s), (1, ConnectorStatus::Preparing));
                assert_eq!(*code, ErrorCode::NoError);
                assert_eq!(detail, None);
            }),
        },
        Known {
            source: "https://github.com/matth-x/MicroOcpp/issues/203",
            message_type: 2,
            message_id: "1000003",
            decision: Accept(|ev| match one(ev) {
                EventKind::TransactionStart {
                    message_id: m,
                    connector_id,
                    transaction_id,
                    id_tag,
                    meter_start_wh,
                } => {
                    assert_eq!(*m, message_id("1000003"));
                    assert_eq!(*connector_id, 1);
                    assert_eq!(*transaction_id, None, "1.6: the id comes in the CALLRESULT");
                    assert_eq!(id_tag.as_deref(), Some("7507344113"));
                    assert_eq!(*meter_start_wh, Some(0));
                }
                other => panic!("{other:?}"),
            }),
        },
        Known {
            source: "https://github.com/matth-x/MicroOcpp/issues/203",
            message_type: 3,
            message_id: "1000003",
            decision: Accept(|ev| {
                assert_eq!(
                    *one(ev),
                    EventKind::CallResult {
                        message_id: message_id("1000003"),
                        transaction_id: Some(25),
                        heartbeat_interval_s: None,
                    }
                );
            }),
        },
        Known {
            source: "https://github.com/matth-x/MicroOcpp/issues/203",
            message_type: 2,
            message_id: "1000004",
            decision: Accept(|ev| {
                let (c, s, code, detail) = status(ev);
                assert_eq!((c, s), (1, ConnectorStatus::Charging));
                assert_eq!((code, detail), (&ErrorCode::NoError, None));
            }),
        },
        Known {
            source: "https://github.com/matth-x/MicroOcpp/issues/136",
            message_type: 2,
            message_id: "1000002",
            decision: Accept(|ev| {
                let (c, s, code, _) = status(ev);
                assert_eq!((c, s), (1, ConnectorStatus::Faulted));
                assert!(matches!(code, ErrorCode::Known(_)));
                assert_eq!(code.as_str(), "OverVoltage");
            }),
        },
        Known {
            source: "https://github.com/matth-x/MicroOcpp/issues/136",
            message_type: 2,
            message_id: "1000003",
            // Faulted with NoError (the firmware lost the code on re-sending): still Faulted.
            decision: AcceptWithQuirk(quirk::FAULTED_WITH_NO_ERROR, |ev| {
                let (c, s, code, _) = status(ev);
                assert_eq!((c, s), (1, ConnectorStatus::Faulted));
                assert_eq!(*code, ErrorCode::NoError);
            }),
        },
        Known {
            source: "https://mrec.evgo.com/def/format.html",
            message_type: 2,
            message_id: "12345",
            // MREC's compound codes: kept verbatim, info and vendorErrorCode joined.
            decision: Accept(|ev| {
                let (c, s, code, detail) = status(ev);
                assert_eq!((c, s), (1, ConnectorStatus::Finishing));
                assert_eq!(code.as_str(), "OtherError");
                assert_eq!(detail, Some("1.11,5.00; F001,F003"));
            }),
        },
    ]
}

fn decoder() -> Decoder {
    let p = PipelineConfig::default();
    Decoder::new(DecodeOptions {
        max_clock_skew: p.max_clock_skew.0,
        max_delivery_delay: p.max_delivery_delay.0,
    })
}

#[test]
fn every_real_frame_gets_its_documented_decision() {
    let frames = real_frames();
    let mut table: BTreeMap<(String, u64, String), Decision> = known()
        .into_iter()
        .map(|k| {
            (
                (
                    k.source.to_string(),
                    k.message_type,
                    k.message_id.to_string(),
                ),
                k.decision,
            )
        })
        .collect();
    let docs = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/ocpp-quirks.md"),
    )
    .expect("docs/ocpp-quirks.md");
    let options = PipelineConfig::default();
    let received = parse_rfc3339(RECEIVED).unwrap();
    let mut decoder = decoder();
    let mut strict = self::decoder().with_strict(true);
    for f in &frames {
        let key = f.key();
        let Some(decision) = table.remove(&key) else {
            panic!(
                "line {} of {} ({key:?}) is not known to this test: decide what evflow does \
                 with it, write it down in docs/ocpp-quirks.md and add it to `known()`",
                f.line_no,
                frames_path().display()
            );
        };
        assert!(
            docs.contains(&f.source),
            "docs/ocpp-quirks.md does not cite {}",
            f.source
        );
        let (mut ev, mut dead, mut st): (Vec<Event>, Vec<DeadLetter>, _) =
            (vec![], vec![], DecodeStats::default());
        decoder.decode_line(
            f.line_no as u64,
            f.envelope().as_bytes(),
            &mut ev,
            &mut dead,
            &mut st,
        );
        let ctx = format!("line {} ({key:?}): {ev:#?} {dead:#?}", f.line_no);
        let ignored: u64 = st.ignored_by_action.values().sum();
        let quirks: Vec<&str> = st.quirks.keys().copied().collect();
        match decision {
            Decision::Accept(check) | Decision::AcceptWithQuirk(_, check) => {
                assert!(dead.is_empty() && ignored == 0, "{ctx}");
                assert!(!ev.is_empty(), "{ctx}");
                check(&ev);
                // Event time: the charger's timestamp where it is trusted, else the receive time.
                let charger = f.charger_time().map(|t| parse_rfc3339(t).unwrap());
                let expected = charger
                    .filter(|t| {
                        *t <= received + options.max_clock_skew.0
                            && *t >= received - options.max_delivery_delay.0
                    })
                    .unwrap_or(received);
                for e in &ev {
                    assert_eq!(e.event_time, expected, "{ctx}");
                    assert_eq!(&*e.charge_point_id, f.device, "{ctx}");
                }
            }
            Decision::DeadLetter(reason) => {
                assert!(only_rejected(&ev, &dead) && ignored == 0, "{ctx}");
                assert_eq!(dead.len(), 1, "{ctx}");
                assert_eq!(dead[0].reason, reason, "{ctx}");
                assert!(!dead[0].error.is_empty(), "{ctx}");
            }
            Decision::Ignored => {
                assert!(ev.is_empty() && dead.is_empty() && ignored == 1, "{ctx}");
            }
        }
        // Strict mode (`--strict`) decides by the official schema alone: what the schema
        // accepts decodes as in the default, tolerant mode; the rest is dead-lettered.
        let (mut sev, mut sdead, mut sst): (Vec<Event>, Vec<DeadLetter>, _) =
            (vec![], vec![], DecodeStats::default());
        strict.decode_line(
            f.line_no as u64,
            f.envelope().as_bytes(),
            &mut sev,
            &mut sdead,
            &mut sst,
        );
        if f.schema_valid {
            assert_eq!((&sev, &sdead), (&ev, &dead), "strict mode: {ctx}");
        } else {
            assert!(only_rejected(&sev, &sdead), "strict mode: {ctx}");
            assert_eq!(
                sdead.iter().map(|d| d.reason).collect::<Vec<_>>(),
                vec![DeadLetterReason::SchemaViolation],
                "strict mode: {sdead:#?}"
            );
        }
        match decision {
            Decision::AcceptWithQuirk(q, _) => {
                assert_eq!(quirks, vec![q], "{ctx}");
                assert_eq!(st.quirks[q], 1, "{ctx}");
            }
            _ => assert!(quirks.is_empty(), "unexpected quirks {quirks:?}: {ctx}"),
        }
    }
    assert!(
        table.is_empty(),
        "frames known to this test but no longer in the file: {:?}",
        table.keys().collect::<Vec<_>>()
    );
}

/// The sum of a metric's series (all label values), 0 if absent.
fn total(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The real binary on every frame (plus one verbatim repeat, as a backend's retry would be):
/// every line in is accounted for — decoded into events, a counted ignored action, a dropped
/// duplicate, or a dead letter — and the faults raise connector_faulted.
#[test]
fn the_binary_accounts_for_every_real_frame() {
    let _g = serial();
    let frames = real_frames();
    let mut lines: Vec<String> = frames.iter().map(RealFrame::envelope).collect();
    // A retry of the MicroOcpp "Charging" status: a duplicate, dropped and counted.
    let retried = frames
        .iter()
        .position(|f| f.source.ends_with("MicroOcpp/issues/203") && f.frame[1] == "1000004")
        .expect("the MicroOcpp #203 Charging status");
    lines.push(lines[retried].clone());

    let dir = tmp_dir("real-frames");
    let dataflow = file_dataflow(&dir, &dir.join("unused.jsonl"), None, "");
    let (mut child, addr) = spawn_live(&dataflow, &[]);
    let mut stdin = child.stdin.take().unwrap();
    for l in &lines {
        writeln!(stdin, "{l}").unwrap();
    }
    stdin.flush().unwrap();

    // Keep the stream open and read the counters once every line has been accounted for.
    let n = lines.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (body, decoded, ignored, dead, duplicates) = loop {
        let body = scrape(&addr);
        let decoded = total(&body, "evflow_events_total");
        let ignored = total(&body, "evflow_events_ignored_total");
        let dead = total(&body, "evflow_dead_letters_total");
        let duplicates = total(&body, "evflow_duplicate_frames_total");
        if total(&body, "evflow_input_lines_total") == n
            && decoded + ignored + dead == n
            && duplicates >= 1.0
        {
            break (body, decoded, ignored, dead, duplicates);
        }
        assert!(
            Instant::now() < deadline,
            "not every line accounted for:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every real frame decodes into exactly one event (checked frame by frame above), so
    // events count lines here; the repeat is among them and then dropped as a duplicate.
    assert_eq!((decoded - duplicates) + duplicates + ignored + dead, n);
    assert_eq!(
        (decoded, ignored, dead, duplicates),
        (n, 0.0, 0.0, 1.0),
        "{body}"
    );
    for q in [quirk::ERROR_CODE_NOT_IN_ENUM, quirk::FAULTED_WITH_NO_ERROR] {
        let series = format!("evflow_ocpp_quirks_total{{quirk=\"{q}\"}} ");
        assert!(
            body.lines().any(|l| l == format!("{series}1")),
            "{series}:\n{body}"
        );
    }

    drop(stdin);
    let status = child.wait().expect("evflow exits");
    assert!(status.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("evflow run complete"), "{out}");
    assert!(read_jsonl(&dir.join("out/dead-letter.jsonl")).is_empty());
    // Both Faulted chargers raise connector_faulted: the Legrand with a non-enum code on
    // connector 0 (the whole charger), the MicroOcpp one on connector 1.
    let anomalies = read_jsonl(&dir.join("out/anomalies.jsonl"));
    let faulted = |cp: &str, connector: Value| {
        anomalies.iter().any(|a| {
            a["kind"] == "connector_faulted"
                && a["state"] == "open"
                && a["charge_point_id"] == cp
                && a["connector_id"] == connector
        })
    };
    let device = |source: &str| {
        frames
            .iter()
            .find(|f| f.source.ends_with(source))
            .map(|f| f.device.clone())
            .unwrap()
    };
    assert!(
        faulted(&device("ocpp/issues/1248"), Value::Null),
        "{anomalies:#?}"
    );
    assert!(
        faulted(&device("MicroOcpp/issues/136"), json!(1)),
        "{anomalies:#?}"
    );
}

/// A rejected frame yields no decoded event, only (when its charger is known) one `Rejected`
/// event with its dead letter's reason, for the `message_errors` detector.
fn only_rejected(ev: &[Event], dead: &[DeadLetter]) -> bool {
    ev.len() <= 1
        && ev.iter().all(|e| {
            dead.len() == 1
                && e.kind
                    == evflow::model::EventKind::Rejected {
                        reason: dead[0].reason,
                    }
        })
}
