//! What happens to every kind of bad input: each lands in `dead-letter.jsonl` with its reason
//! and the line itself, the run completes (exit 0), and the good lines around it are analysed.

mod common;

use common::*;
use serde_json::json;

#[test]
fn every_kind_of_bad_line_is_dead_lettered_and_the_run_completes() {
    let _g = serial();
    let dir = tmp_dir("bad-input");
    let ts = "2026-03-01T10:00:00Z";
    let good_start = line(
        ts,
        "CP-1",
        json!([2, "t1", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": ts}]),
    );
    let good_result = line(
        ts,
        "CP-1",
        json!([3, "t1", {"transactionId": 5, "idTagInfo": {"status": "Accepted"}}]),
    );
    let good_stop = line(
        "2026-03-01T10:30:00Z",
        "CP-1",
        json!([2, "x1", "StopTransaction", {"transactionId": 5, "meterStop": 7000, "timestamp": "2026-03-01T10:30:00Z"}]),
    );
    // (line, expected reason)
    let bad: Vec<(String, &str)> = vec![
        ("{\"timestamp\": \"2026-03-01T10:00:00Z\", \"charge_point_id\": ".to_string(), "invalid_json"),
        ("\u{0}\u{1}garbage".to_string(), "invalid_json"),
        ("[2, \"1\", \"Heartbeat\", {}]".to_string(), "bad_envelope"),
        (json!({"timestamp": ts, "charge_point_id": "CP-1"}).to_string(), "bad_envelope"),
        (json!({"timestamp": ts, "message": [2, "1", "Heartbeat", {}]}).to_string(), "missing_charge_point"),
        (json!({"timestamp": ts, "charge_point_id": "  ", "message": [2, "1", "Heartbeat", {}]}).to_string(), "missing_charge_point"),
        (json!({"timestamp": "10 o'clock", "charge_point_id": "CP-1", "message": [2, "1", "Heartbeat", {}]}).to_string(), "bad_timestamp"),
        (line(ts, "CP-1", json!([2, "1", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-02-30T10:00:00Z"}])), "bad_timestamp"),
        (line(ts, "CP-1", json!({"action": "Heartbeat"})), "not_a_frame"),
        (line(ts, "CP-1", json!([7, "1", "Heartbeat", {}])), "not_a_frame"),
        (line(ts, "CP-1", json!("[2,\"1\",\"Heartbeat\",{}]")), "not_a_frame"),
        (line(ts, "CP-1", json!([2, "1", "LaunchRocket", {}])), "unknown_action"),
        (line(ts, "CP-1", json!([2, "1", "MeterValues", {"connectorId": 1}])), "bad_payload"),
        (line(ts, "CP-1", json!([2, "1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}])), "bad_payload"),
        (line(ts, "CP-1", json!([2, "1", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": ts, "sampledValue": [{"value": "lots"}]}]}])), "bad_payload"),
    ];
    let mut lines = vec![good_start, good_result];
    lines.extend(bad.iter().map(|(l, _)| l.clone()));
    lines.push(line(
        ts,
        "CP-1",
        json!([2, "d1", "DataTransfer", {"vendorId": "acme"}]),
    ));
    lines.push(good_stop);
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dataflow = file_dataflow(&dir, &input, None, "");
    let out = run_ok(&["run", dataflow.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("dead letters"));
    assert_eq!(
        reported.and_then(|l| l.split_whitespace().last()),
        Some(bad.len().to_string().as_str()),
        "{stdout}"
    );

    let dead = read_jsonl(&dir.join("out/dead-letter.jsonl"));
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for (d, (l, reason)) in dead.iter().zip(&bad) {
        assert_eq!(d["reason"], *reason, "{l}");
        assert_eq!(
            d["line"].as_str().unwrap(),
            String::from_utf8_lossy(l.as_bytes())
        );
        assert!(!d["error"].as_str().unwrap().is_empty());
        assert!(d["seq"].as_u64().unwrap() >= 3, "seq is the line number");
    }
    // The good lines around the bad ones still make a session; DataTransfer is counted, not dead.
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].energy_wh, 7000);
}

#[test]
fn an_empty_input_completes_with_empty_outputs() {
    let _g = serial();
    let dir = tmp_dir("empty-input");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "\n\n").unwrap();
    let dataflow = file_dataflow(&dir, &input, None, "");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    assert!(read_jsonl(&dir.join("out/anomalies.jsonl")).is_empty());
    assert!(evflow::sinks::parquet::read_sessions(&dir.join("out"))
        .unwrap()
        .is_empty());
}

#[test]
fn a_missing_input_file_is_a_clear_error() {
    let dir = tmp_dir("missing-input");
    let dataflow = file_dataflow(&dir, &dir.join("nope.jsonl"), None, "");
    let out = evflow()
        .args(["run", dataflow.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.jsonl"), "{err}");
}
