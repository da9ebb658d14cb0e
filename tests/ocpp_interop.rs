//! Interoperability: evflow on OCPP traffic made by an independent implementation, The Mobility
//! House `ocpp` library (PyPI `ocpp`, pinned in tests/requirements.txt), in OCPP 1.6 and 2.0.1.
//!
//! tests/ocpp_traffic.py drives the library's chargers and backend through one scripted scenario
//! (the library builds and schema-validates every frame) and writes envelope JSONL. The same
//! scenario in both versions must give the scripted sessions, anomalies and notifications, and
//! the same results in both versions. Each file is run with `evflow run --input FILE`; a second,
//! live run (`--input -`) of the same file is scraped for `/metrics` to prove every frame was
//! decoded (no action ignored, nothing dead-lettered).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use evflow::model::{EnergySource, RevenueRow, SessionRecord};
use evflow::sinks::parquet::{read_revenue, read_sessions};
use evflow::time::parse_rfc3339;
use rust_decimal::Decimal;
use serde_json::Value;

const OCPP_VERSION: &str = "2.1.0";

/// The Python with the `ocpp` package: `EVFLOW_PYTHON` (set by scripts/test), else the repo's
/// .venv. Fails (never skips) when the package is missing.
fn python() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let py = match std::env::var_os("EVFLOW_PYTHON") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
            };
            let hint = "run the tests with scripts/test, or install it: \
                        .venv/bin/pip install -r tests/requirements.txt";
            assert!(
                py.exists(),
                "the interop tests need Python with The Mobility House `ocpp` package \
                 ({OCPP_VERSION}); {} does not exist: {hint}",
                py.display()
            );
            let out = Command::new(&py)
                .args([
                    "-c",
                    "import importlib.metadata as m, ocpp.v16, ocpp.v201; print(m.version('ocpp'))",
                ])
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "the Python package `ocpp` ({OCPP_VERSION}, The Mobility House) is missing from \
                 {}: {hint}\n{}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                version, OCPP_VERSION,
                "ocpp {version} is installed, the tests pin {OCPP_VERSION}: {hint}"
            );
            py
        })
        .clone()
}

/// Scenario time: `hh:mm:ss` on 2026-02-02, UTC.
fn t(hms: &str) -> i64 {
    parse_rfc3339(&format!("2026-02-02T{hms}Z")).unwrap()
}

fn time_str(ms: i64) -> String {
    evflow::time::format_rfc3339(ms)
}

/// A session as scripted in tests/ocpp_traffic.py.
struct Scripted {
    cp: &'static str,
    connector: u32,
    tx_16: &'static str,
    tx_201: &'static str,
    tag: &'static str,
    start: &'static str,
    end: &'static str,
    energy_wh: i64,
    stop_reason: &'static str,
    /// EUR incl. VAT at the test tariff (0.39/kWh + 0.50, 19 % VAT), in cents.
    total_incl_vat_cents: i64,
}

const SESSIONS: [Scripted; 3] = [
    Scripted {
        cp: "IOP-1",
        connector: 1,
        tx_16: "1001",
        tx_201: "IOP-1-0001",
        tag: "IOP-TAG-A",
        start: "08:10:00",
        end: "09:10:00",
        energy_wh: 22_345 - 10_000,
        stop_reason: "Local",
        total_incl_vat_cents: 632,
    },
    Scripted {
        cp: "IOP-2",
        connector: 1,
        tx_16: "2001",
        tx_201: "IOP-2-0001",
        tag: "IOP-TAG-C",
        start: "08:20:00",
        end: "09:20:00",
        // 8.19 -> 19.19 kWh (2.0.1 registers in kWh; 1.6 meterStart/meterStop in Wh)
        energy_wh: 19_190 - 8_190,
        stop_reason: "Remote",
        total_incl_vat_cents: 570,
    },
    Scripted {
        cp: "IOP-1",
        connector: 1,
        tx_16: "1002",
        tx_201: "IOP-1-0002",
        tag: "IOP-TAG-B",
        start: "09:30:00",
        end: "10:15:00",
        energy_wh: 30_000 - 22_345,
        stop_reason: "EVDisconnected",
        total_incl_vat_cents: 415,
    },
];

/// (charge point, kind, state, connector, event time) of every anomaly record scripted.
const ANOMALIES: [(&str, &str, &str, u32, &str); 4] = [
    // two samples above 70 C from 08:40, cool again from 08:42
    ("IOP-2", "over_temperature", "open", 1, "08:40:00"),
    ("IOP-2", "over_temperature", "resolved", 1, "08:42:00"),
    // GroundFailure from 09:00 to 09:30
    ("IOP-3", "connector_faulted", "open", 1, "09:00:00"),
    ("IOP-3", "connector_faulted", "resolved", 1, "09:30:00"),
];

/// (kind, recipient, charge point, connector, event time) of every notification scripted.
const NOTIFICATIONS: [(&str, &str, &str, u32, &str); 6] = [
    (
        "charging_almost_complete",
        "IOP-TAG-A",
        "IOP-1",
        1,
        "09:05:00",
    ), // SoC 80 %
    ("station_available", "public", "IOP-1", 1, "09:12:00"),
    ("station_available", "public", "IOP-1", 1, "10:17:00"),
    ("station_available", "public", "IOP-2", 1, "09:22:00"),
    ("station_available", "public", "IOP-3", 1, "09:30:00"), // back from the fault
    ("station_out_of_order", "operator", "IOP-3", 1, "09:00:00"),
];

/// What evflow made of one version's traffic.
struct Outcome {
    version: &'static str,
    lines: usize,
    stdout: String,
    metrics: String,
    sessions: Vec<SessionRecord>,
    revenue: Vec<RevenueRow>,
    anomalies: Vec<Value>,
    notifications: Vec<Value>,
    dead_letters: Vec<Value>,
}

/// Generates the version's traffic with the library and runs evflow on it, once per test binary.
fn outcome(version: &'static str) -> &'static Outcome {
    static V16: OnceLock<Outcome> = OnceLock::new();
    static V201: OnceLock<Outcome> = OnceLock::new();
    let cell = if version == "1.6" { &V16 } else { &V201 };
    cell.get_or_init(|| {
        let _g = serial();
        let dir = tmp_dir(&format!("ocpp-interop-{version}"));
        let traffic = dir.join("traffic.jsonl");
        let gen = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/ocpp_traffic.py"
            ))
            .args(["--version", version, "--out"])
            .arg(&traffic)
            .output()
            .expect("run tests/ocpp_traffic.py");
        assert!(
            gen.status.success(),
            "tests/ocpp_traffic.py --version {version} failed:\n{}{}",
            String::from_utf8_lossy(&gen.stdout),
            String::from_utf8_lossy(&gen.stderr)
        );
        let text = std::fs::read_to_string(&traffic).unwrap();
        let lines = text.lines().count();
        assert!(lines > 1000, "{lines} lines");

        // Nobody watches these chargers: availability goes to the public feed.
        let dataflow = file_dataflow(
            &dir,
            &traffic,
            None,
            "[notifications]\npublic_feed = true\n",
        );
        let out = dir.join("out");
        let run = run_ok(&[
            "run",
            dataflow.to_str().unwrap(),
            "--input",
            traffic.to_str().unwrap(),
        ]);
        let metrics = live_metrics(&dataflow, &text, &dir.join("live"));
        let mut sessions = read_sessions(&out).expect("read sessions");
        sessions.sort_by_key(|s| (s.start_time, s.charge_point_id.clone()));
        Outcome {
            version,
            lines,
            stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
            metrics,
            sessions,
            revenue: read_revenue(&out).expect("read revenue"),
            anomalies: read_jsonl(&out.join("anomalies.jsonl")),
            notifications: read_jsonl(&out.join("notifications.jsonl")),
            dead_letters: read_jsonl(&out.join("dead-letter.jsonl")),
        }
    })
}

/// Runs evflow on `text` as a live stream (stdin) and scrapes /metrics once every line has been
/// decoded (decode statistics are folded per chunk, with the line count).
fn live_metrics(dataflow: &Path, text: &str, out: &Path) -> String {
    let (mut child, addr) = spawn_live(dataflow, &["--out", out.to_str().unwrap()]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let n = text.lines().count() as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = scrape(&addr);
        if value(&body, "evflow_input_lines_total") == Some(n) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "evflow did not decode the {n} lines of the stream:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let status = child.wait().expect("evflow exits");
    assert!(status.success(), "the live run failed");
    body
}

/// Series of metric `name` with a non-zero value.
fn nonzero(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) != Some(0.0))
        .map(str::to_string)
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn anomaly_keys(o: &Outcome) -> Vec<(String, String, String, u32, String)> {
    let mut k: Vec<_> = o
        .anomalies
        .iter()
        .map(|a| {
            (
                str_of(a, "charge_point_id").to_string(),
                str_of(a, "kind").to_string(),
                str_of(a, "state").to_string(),
                a["connector_id"].as_u64().unwrap_or(0) as u32,
                str_of(a, "event_time").to_string(),
            )
        })
        .collect();
    k.sort();
    k
}

fn notification_keys(o: &Outcome) -> Vec<(String, String, String, u32, String)> {
    let mut k: Vec<_> = o
        .notifications
        .iter()
        .map(|n| {
            (
                str_of(n, "kind").to_string(),
                str_of(n, "recipient").to_string(),
                str_of(n, "charge_point_id").to_string(),
                n["connector_id"].as_u64().unwrap_or(0) as u32,
                str_of(n, "event_time").to_string(),
            )
        })
        .collect();
    k.sort();
    k
}

/// Every check against the scripted scenario, for one version.
fn check_scripted(o: &Outcome) {
    let v = o.version;
    // Decoded, all of it: nothing dead-lettered, no action ignored.
    assert!(
        o.dead_letters.is_empty(),
        "OCPP {v}: {} lines dead-lettered, first: {}",
        o.dead_letters.len(),
        o.dead_letters[0]
    );
    let m = &o.metrics;
    for name in ["evflow_events_ignored_total", "evflow_dead_letters_total"] {
        let bad = nonzero(m, name);
        assert!(
            bad.is_empty(),
            "OCPP {v}: frames of the library's traffic were not decoded:\n{}",
            bad.join("\n")
        );
    }
    assert_eq!(value(m, "evflow_input_lines_total"), Some(o.lines as f64));
    let events = |action: &str| value(m, &format!("evflow_events_total{{action=\"{action}\"}}"));
    assert_eq!(events("BootNotification"), Some(3.0), "OCPP {v}:\n{m}");
    // 3 chargers, a heartbeat a minute from 08:01 to 10:30
    assert_eq!(events("Heartbeat"), Some(450.0), "OCPP {v}:\n{m}");
    assert_eq!(events("StartTransaction"), Some(3.0), "OCPP {v}:\n{m}");
    assert_eq!(events("StopTransaction"), Some(3.0), "OCPP {v}:\n{m}");
    // every scripted sample: 162 in sessions, 10 clock-aligned on IOP-3
    assert!(
        events("MeterValues").is_some_and(|n| n >= 172.0),
        "OCPP {v}:\n{m}"
    );
    // 2.0.1: 6 at boot, Occupied/Available per session, Faulted/Available (1.6 has more)
    assert!(
        events("StatusNotification").is_some_and(|n| n >= 14.0),
        "OCPP {v}:\n{m}"
    );
    assert!(
        events("CALLRESULT").is_some_and(|n| n >= 450.0),
        "OCPP {v}:\n{m}"
    );
    assert_eq!(
        nonzero(m, "evflow_clock_skew_events_total"),
        Vec::<String>::new()
    );
    assert_eq!(nonzero(m, "evflow_late_events_total"), Vec::<String>::new());
    assert_eq!(
        nonzero(m, "evflow_orphan_stops_total"),
        Vec::<String>::new()
    );

    // The run summary.
    let summary: Vec<String> = o
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for expect in [
        format!("input lines {}", o.lines),
        "dead letters 0".to_string(),
        "sessions 3 (31.0 kWh)".to_string(),
    ] {
        assert!(
            summary.contains(&expect),
            "OCPP {v}: summary lacks {expect:?}:\n{}",
            o.stdout
        );
    }

    // Sessions, exactly as scripted.
    assert_eq!(
        o.sessions.len(),
        SESSIONS.len(),
        "OCPP {v}: sessions {:#?}",
        o.sessions
    );
    for (s, want) in o.sessions.iter().zip(&SESSIONS) {
        let ctx = format!("OCPP {v}, session {} {}: {s:#?}", want.cp, want.start);
        assert_eq!(&*s.charge_point_id, want.cp, "{ctx}");
        assert_eq!(s.connector_id, want.connector, "{ctx}");
        assert_eq!(s.start_time, t(want.start), "{ctx}");
        assert_eq!(s.end_time, t(want.end), "{ctx}");
        assert_eq!(s.energy_wh, want.energy_wh, "{ctx}");
        assert_eq!(s.energy_source, EnergySource::Registers, "{ctx}");
        assert_eq!(&*s.id_tag, want.tag, "{ctx}");
        assert_eq!(&*s.stop_reason, want.stop_reason, "{ctx}");
        let tx = if v == "1.6" { want.tx_16 } else { want.tx_201 };
        assert_eq!(s.transaction_id, tx, "{ctx}");
        assert_eq!(
            s.total_incl_vat,
            Decimal::new(want.total_incl_vat_cents, 2),
            "{ctx}"
        );
        assert!(!s.late, "{ctx}");
    }

    // Anomalies and notifications, exactly as scripted: nothing missing, nothing spurious.
    let want: Vec<_> = ANOMALIES
        .iter()
        .map(|(cp, kind, state, c, at)| {
            (
                cp.to_string(),
                kind.to_string(),
                state.to_string(),
                *c,
                time_str(t(at)),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        anomaly_keys(o),
        want,
        "OCPP {v}: anomalies\n{:#?}",
        o.anomalies
    );
    let want: Vec<_> = NOTIFICATIONS
        .iter()
        .map(|(kind, to, cp, c, at)| {
            (
                kind.to_string(),
                to.to_string(),
                cp.to_string(),
                *c,
                time_str(t(at)),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        notification_keys(o),
        want,
        "OCPP {v}: notifications\n{:#?}",
        o.notifications
    );
}

#[test]
fn ocpp16_traffic_from_the_mobility_house_library_is_analysed_as_scripted() {
    check_scripted(outcome("1.6"));
}

#[test]
fn ocpp201_traffic_from_the_mobility_house_library_is_analysed_as_scripted() {
    check_scripted(outcome("2.0.1"));
}

#[test]
fn both_ocpp_versions_of_the_scenario_give_the_same_results() {
    let (a, b) = (outcome("1.6"), outcome("2.0.1"));
    // Sessions: everything but the transaction id (an integer from the backend in 1.6, the
    // charger's string in 2.0.1).
    let strip = |o: &Outcome| -> Vec<SessionRecord> {
        o.sessions
            .iter()
            .map(|s| SessionRecord {
                transaction_id: String::new(),
                ..s.clone()
            })
            .collect()
    };
    assert_eq!(
        strip(a),
        strip(b),
        "sessions differ between OCPP 1.6 and 2.0.1"
    );
    let mut ra = a.revenue.clone();
    let mut rb = b.revenue.clone();
    for r in [&mut ra, &mut rb] {
        r.sort_by_key(|w| (w.window_start, w.site_id.clone(), w.revision));
    }
    assert_eq!(ra, rb, "revenue differs between OCPP 1.6 and 2.0.1");
    // Anomalies and notifications, ids included (derived from kind, charger, connector and time:
    // the same facts give the same ids whatever the protocol). Details and facts may differ:
    // 1.6 carries an error code and vendor detail, 2.0.1 a NotifyEvent.
    let ids = |recs: &[Value], fields: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = recs
            .iter()
            .map(|r| {
                fields
                    .iter()
                    .map(|f| r[*f].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        v.sort();
        v
    };
    let anomaly_fields = [
        "id",
        "kind",
        "state",
        "charge_point_id",
        "connector_id",
        "event_time",
        "severity",
    ];
    assert_eq!(
        ids(&a.anomalies, &anomaly_fields),
        ids(&b.anomalies, &anomaly_fields),
        "anomalies differ between OCPP 1.6 and 2.0.1"
    );
    let notification_fields = [
        "id",
        "kind",
        "audience",
        "recipient",
        "charge_point_id",
        "connector_id",
        "event_time",
    ];
    assert_eq!(
        ids(&a.notifications, &notification_fields),
        ids(&b.notifications, &notification_fields),
        "notifications differ between OCPP 1.6 and 2.0.1"
    );
}
