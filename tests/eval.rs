//! `evflow eval` on the real binary: simulated faults (seeds the detectors were not tuned on)
//! → `evflow run` → anomalies scored against the simulator's labels.

mod common;

use std::path::Path;

use common::*;
use evflow::model::AnomalyKind;
use serde_json::Value;

/// Recall and precision every detector must reach (docs/evaluation.md).
const MIN_RECALL: f64 = 0.95;
const MIN_PRECISION: f64 = 0.9;

/// `evflow eval --json` and the table; prints the table.
fn eval(labels: &Path, anomalies: &Path, what: &str) -> Value {
    let l = labels.to_str().unwrap();
    let a = anomalies.to_str().unwrap();
    let table = run_ok(&["eval", "--labels", l, "--anomalies", a]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    eprintln!("{what}\n{table}");
    assert!(table.starts_with("kind "), "{table}");
    let json = run_ok(&["eval", "--labels", l, "--anomalies", a, "--json"]);
    serde_json::from_slice(&json.stdout).expect("eval --json prints JSON")
}

/// The upper bound of a kind's detection delay, s, given the detectors' defaults
/// (docs/detectors.md): a sample-confirmed fault is stamped at its first bad sample (the
/// simulated chargers' clocks are up to 30 s off); `communication_lost` opens
/// `missed_heartbeats` (2) × the heartbeat interval (300 s) after the last message, which is
/// before the labelled start; `stuck_session` after `stuck_after` (20 min) without power
/// (+ one 60 s meter interval); a power loss when the charger reports it (≤ 4 min of
/// silence); `clock_skew` after 2–4 timestamped frames; `message_errors` at the 5th error
/// frame (≤ 60 s apart); `session_failures` at the third failed session's end;
/// `power_delivery_degraded` during the third degraded session; `underused` once 10
/// sessions were expected (the simulator's spans are ≤ 20 h).
fn max_delay_s(kind: AnomalyKind) -> f64 {
    match kind {
        // + the receive latency of the last message (≤ a few seconds)
        AnomalyKind::CommunicationLost => 610.0,
        AnomalyKind::StuckSession => 1260.0,
        AnomalyKind::PowerSupply => 300.0,
        AnomalyKind::ClockSkew => 1200.0,
        AnomalyKind::MessageErrors => 600.0,
        AnomalyKind::SessionFailures => 3600.0,
        AnomalyKind::PowerDeliveryDegraded => 3.0 * 3600.0,
        AnomalyKind::Underused => 20.0 * 3600.0,
        _ => 60.0,
    }
}

/// Detections may be stamped before the labelled start by up to the matching tolerance
/// (5 min): clock offsets, and a power loss stamped at the last message before it.
const MIN_DELAY_S: f64 = -300.0;

/// The per-kind assertions: every labelled kind has a row with recall and precision at
/// target, and delays within the detectors' latency.
fn check(report: &Value, labels: &[Value]) {
    let rows = report["kinds"].as_array().expect("kinds");
    for kind in AnomalyKind::ALL {
        let labelled = labels.iter().filter(|l| l["kind"] == kind.as_str()).count();
        assert!(labelled > 0, "the simulator labelled no {}", kind.as_str());
        let row = rows
            .iter()
            .find(|r| r["kind"] == kind.as_str())
            .unwrap_or_else(|| panic!("no row for {}", kind.as_str()));
        assert_eq!(row["labels"], labelled, "{row}");
        let recall = row["recall"].as_f64().expect("recall is reported");
        let precision = row["precision"].as_f64().expect("precision is reported");
        assert!(recall >= MIN_RECALL, "{}: recall {recall}", kind.as_str());
        assert!(
            precision >= MIN_PRECISION,
            "{}: precision {precision}",
            kind.as_str()
        );
        let tp = row["true_positives"].as_u64().expect("true_positives");
        let fn_ = row["false_negatives"].as_u64().expect("false_negatives");
        let fp = row["false_positives"].as_u64().expect("false_positives");
        assert_eq!(tp + fn_, labelled as u64, "{row}");
        assert_eq!(tp + fp, row["detections"].as_u64().unwrap(), "{row}");
        let p50 = row["delay_median_s"].as_f64().expect("a median delay");
        let p95 = row["delay_p95_s"].as_f64().expect("a p95 delay");
        let max = row["delay_max_s"].as_f64().expect("a max delay");
        assert!(p50 <= p95 && p95 <= max, "{row}");
        assert!(
            p50 >= MIN_DELAY_S && max <= max_delay_s(kind),
            "{}: delay beyond the detector's latency: {row}",
            kind.as_str()
        );
    }
    assert_eq!(report["total"]["labels"], labels.len());
}

/// The CLI path of docs/evaluation.md: `simulate` → `run` a file dataflow → `eval`. Seed 7
/// is the one the detectors were tuned on; 48 h, because `underused` faults start after a
/// day of traffic (the demand baselines' warm-up).
#[test]
fn eval_scores_detectors_on_simulated_fleet_seed_7() {
    let _g = serial();
    let dir = tmp_dir("eval-seed-7");
    let (traffic, labels, registry) = (
        dir.join("traffic.jsonl"),
        dir.join("labels.jsonl"),
        dir.join("registry.json"),
    );
    run_ok(&[
        "simulate",
        "--chargers",
        "200",
        "--hours",
        "48",
        "--seed",
        "7",
        "--out",
        traffic.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
    ]);
    let dataflow = file_dataflow(&dir, &traffic, Some(&registry), "");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let report = eval(
        &labels,
        &dir.join("out/anomalies.jsonl"),
        "seed 7, 200 chargers, 48 h",
    );
    check(&report, &read_jsonl(&labels));
}

/// Seeds the detectors were not tuned on (tuning used 7, 11, 13, 99, 1009 and 2024), with
/// five times the default fault rate (about 40 faults of each kind), through the simulator
/// source of a dataflow and through `simulate`.
#[test]
fn eval_scores_detectors_on_dense_faults_of_unseen_seed_31() {
    let _g = serial();
    let dir = tmp_dir("eval-seed-31");
    let out = dir.join("out");
    let text = format!(
        "name = \"eval\"\n[source]\nkind = \"simulator\"\nchargers = 200\nhours = 48\nseed = 31\n\
         fault_rate = 10\n[pipeline]\nworkers = 1\n[output]\ndir = {:?}\n[metrics]\naddr = \"\"\n\
         [registry]\ndefault_tariff = \"ac_standard\"\n{TARIFFS}\n",
        out.display().to_string()
    );
    let dataflow = dir.join("dataflow.toml");
    std::fs::write(&dataflow, text).expect("write dataflow");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let labels = out.join("labels.jsonl");
    let report = eval(
        &labels,
        &out.join("anomalies.jsonl"),
        "seed 31, 200 chargers, 48 h, fault_rate 10",
    );
    let labels = read_jsonl(&labels);
    for kind in AnomalyKind::ALL {
        let n = labels.iter().filter(|l| l["kind"] == kind.as_str()).count();
        // underused needs a busy charger with site peers: fewer of them
        let want = if kind == AnomalyKind::Underused {
            5
        } else {
            30
        };
        assert!(n >= want, "{n} labels of {}", kind.as_str());
    }
    check(&report, &labels);
}

#[test]
fn eval_scores_detectors_on_dense_faults_of_unseen_seed_4242() {
    let _g = serial();
    let dir = tmp_dir("eval-seed-4242");
    let (traffic, labels, registry) = (
        dir.join("traffic.jsonl"),
        dir.join("labels.jsonl"),
        dir.join("registry.json"),
    );
    run_ok(&[
        "simulate",
        "--chargers",
        "200",
        "--hours",
        "48",
        "--seed",
        "4242",
        "--fault-rate",
        "10",
        "--out",
        traffic.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
    ]);
    let dataflow = file_dataflow(&dir, &traffic, Some(&registry), "");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let report = eval(
        &labels,
        &dir.join("out/anomalies.jsonl"),
        "seed 4242, 200 chargers, 48 h, fault_rate 10",
    );
    check(&report, &read_jsonl(&labels));
}

/// Without faults nothing is labelled and nothing may be detected.
#[test]
fn eval_fault_free_fleet_has_no_detections() {
    let _g = serial();
    let dir = tmp_dir("eval-no-faults");
    let (traffic, labels) = (dir.join("traffic.jsonl"), dir.join("labels.jsonl"));
    run_ok(&[
        "simulate",
        "--chargers",
        "50",
        "--hours",
        "48",
        "--seed",
        "7",
        "--no-faults",
        "--out",
        traffic.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ]);
    let dataflow = file_dataflow(&dir, &traffic, None, "");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let report = eval(&labels, &dir.join("out/anomalies.jsonl"), "no faults");
    let total = &report["total"];
    assert_eq!(total["labels"], 0, "{total}");
    assert_eq!(total["detections"], 0, "false alarms: {total}");
    assert!(total["precision"].is_null() && total["recall"].is_null());
}

/// A bad line fails with the file and the line number.
#[test]
fn eval_rejects_a_bad_line_naming_file_and_line() {
    let dir = tmp_dir("eval-bad-line");
    let labels = dir.join("labels.jsonl");
    let anomalies = dir.join("anomalies.jsonl");
    std::fs::write(
        &labels,
        "{\"kind\":\"meter_error\",\"charge_point_id\":\"CP-1\",\"connector_id\":1,\
         \"start\":\"2026-01-05T00:00:00.000Z\",\"end\":\"2026-01-05T01:00:00.000Z\"}\n\
         {\"kind\":\"meter_error\",\"charge_point_id\":\"CP-1\"}\n",
    )
    .expect("write labels");
    std::fs::write(&anomalies, "").expect("write anomalies");
    let out = evflow()
        .args(["eval", "--labels", labels.to_str().unwrap()])
        .args(["--anomalies", anomalies.to_str().unwrap()])
        .output()
        .expect("run evflow");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("labels.jsonl") && err.contains("line 2"),
        "{err}"
    );
    // Empty files are fine: an empty report.
    std::fs::write(&labels, "").expect("write labels");
    let out = run_ok(&[
        "eval",
        "--labels",
        labels.to_str().unwrap(),
        "--anomalies",
        anomalies.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["total"]["detections"], 0);
}
