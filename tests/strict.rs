//! Strict mode (`evflow run --strict`, `strict = true`): CALL payloads that violate their
//! action's official OCPP JSON schema are dead-lettered as `schema_violation`, the rest of the
//! input is processed as usual; without it the same lines are decoded tolerantly.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// The number on a summary line (`  dead letters   3`).
fn summary(stdout: &[u8], label: &str) -> u64 {
    let stdout = String::from_utf8_lossy(stdout);
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| {
            l[l.find(label).unwrap() + label.len()..]
                .split_whitespace()
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in\n{stdout}"))
}

fn dead_letters(out: &Path) -> Vec<Value> {
    let path = out.join("dead-letter.jsonl");
    if path.exists() {
        read_jsonl(&path)
    } else {
        Vec::new()
    }
}

#[test]
fn strict_mode_dead_letters_schema_violations_and_processes_the_rest() {
    let _g = serial();
    let dir = tmp_dir("strict");
    let ts = "2026-03-01T10:00:00Z";
    let lines = [
        line(
            ts,
            "CP-1",
            json!([2, "b1", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "W1"}]),
        ),
        line(
            ts,
            "CP-1",
            json!([2, "t1", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": ts}]),
        ),
        line(
            ts,
            "CP-1",
            json!([3, "t1", {"transactionId": 5, "idTagInfo": {"status": "Accepted"}}]),
        ),
        // Line 4: a real charger's (Legrand GreenUp) error code, not in ChargePointErrorCode.
        line(
            "2026-03-01T10:05:00Z",
            "CP-2",
            json!([2, "s1", "StatusNotification", {"connectorId": 0, "errorCode": "Error", "status": "Faulted", "timestamp": "2026-03-01T10:05:00Z"}]),
        ),
        line(
            "2026-03-01T10:06:00Z",
            "CP-2",
            json!([2, "s2", "StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available", "timestamp": "2026-03-01T10:06:00Z"}]),
        ),
        line(
            "2026-03-01T10:10:00Z",
            "CP-1",
            json!([2, "h1", "Heartbeat", {}]),
        ),
        line(
            "2026-03-01T10:30:00Z",
            "CP-1",
            json!([2, "x1", "StopTransaction", {"transactionId": 5, "meterStop": 7000, "timestamp": "2026-03-01T10:30:00Z"}]),
        ),
    ];
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dataflow = file_dataflow(&dir, &input, None, "");
    let out = dir.join("out");

    let strict = run_ok(&["run", dataflow.to_str().unwrap(), "--strict"]);
    let dead = dead_letters(&out);
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason"], "schema_violation");
    assert_eq!(dead[0]["seq"], 4);
    assert_eq!(dead[0]["line"], lines[3]);
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(r#"StatusNotification (OCPP 1.6): $.errorCode: "Error" is not one of ["#),
        "{error}"
    );
    assert_eq!(summary(&strict.stdout, "dead letters"), 1);
    // The valid lines around it are analysed: the session is priced.
    assert_eq!(summary(&strict.stdout, "sessions"), 1);
    assert_eq!(summary(&strict.stdout, "events"), lines.len() as u64 - 1);

    // Tolerant (the default): the same line is decoded, nothing is dead-lettered.
    let tolerant = run_ok(&["run", dataflow.to_str().unwrap()]);
    assert!(dead_letters(&out).is_empty(), "{:#?}", dead_letters(&out));
    assert_eq!(summary(&tolerant.stdout, "events"), lines.len() as u64);
    assert_eq!(summary(&tolerant.stdout, "sessions"), 1);

    // `strict = true` in the dataflow (a top-level key) does what --strict does.
    let text = std::fs::read_to_string(&dataflow).unwrap();
    std::fs::write(&dataflow, format!("strict = true\n{text}")).unwrap();
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let dead = dead_letters(&out);
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason"], "schema_violation");
}

#[test]
fn strict_mode_passes_the_simulators_traffic() {
    let _g = serial();
    let dir = tmp_dir("strict-simulated");
    let traffic = dir.join("traffic.jsonl");
    let registry = dir.join("registry.json");
    run_ok(&[
        "simulate",
        "--chargers",
        "20",
        "--hours",
        "6",
        "--out",
        traffic.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
    ]);
    let dataflow = file_dataflow(&dir, &traffic, Some(&registry), "");
    let strict = run_ok(&["run", dataflow.to_str().unwrap(), "--strict"]);
    // The only frames the schemas reject are the ones the simulator malforms on purpose
    // (message_errors faults and noise), which the tolerant decoder rejects too.
    let lines_of = |dead: &[serde_json::Value]| -> Vec<String> {
        dead.iter()
            .map(|d| d["line"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let strict_dead = dead_letters(&dir.join("out"));
    assert!(strict_dead
        .iter()
        .all(|d| d["reason"] == "schema_violation"));
    // … and decodes to exactly what a tolerant run does.
    let tolerant = run_ok(&["run", dataflow.to_str().unwrap()]);
    let tolerant_dead = dead_letters(&dir.join("out"));
    assert!(tolerant_dead.iter().all(|d| d["reason"] == "bad_payload"));
    assert_eq!(lines_of(&strict_dead), lines_of(&tolerant_dead));
    for label in ["input lines", "events", "sessions", "dead letters"] {
        assert_eq!(
            summary(&strict.stdout, label),
            summary(&tolerant.stdout, label),
            "{label}"
        );
    }
    assert!(summary(&strict.stdout, "events") > 1000);
}
