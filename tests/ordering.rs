//! Order and repeats as real backends deliver them: frames out of order within the
//! out-of-orderness bound are processed in event-time order, verbatim repeats are dropped,
//! and a CALLRESULT is correlated with its CALL by message id wherever it arrives.

mod common;

use common::*;
use serde_json::json;

#[test]
fn out_of_order_frames_within_the_bound_are_processed_by_event_time() {
    let _g = serial();
    let dir = tmp_dir("ordering-oo");
    let status = |at: &str, status: &str, err: &str| {
        line(
            &format!("2026-03-01T10:00:{at}Z"),
            "CP-O",
            json!([2, format!("s{at}"), "StatusNotification", {"connectorId": 1, "errorCode": err, "status": status, "timestamp": format!("2026-03-01T10:00:{at}Z")}]),
        )
    };
    // Available (10:00:05) is delivered before the Faulted (10:00:03) that preceded it.
    let lines = [
        status("01", "Available", "NoError"),
        status("05", "Available", "NoError"),
        status("03", "Faulted", "GroundFailure"),
        line(
            "2026-03-01T10:01:00Z",
            "CP-O",
            json!([2, "h", "Heartbeat", {}]),
        ),
    ];
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let dataflow = file_dataflow(&dir, &input, None, "");
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let anomalies = read_jsonl(&dir.join("out/anomalies.jsonl"));
    let faulted: Vec<_> = anomalies
        .iter()
        .filter(|a| a["kind"] == "connector_faulted")
        .collect();
    assert_eq!(faulted.len(), 2, "{anomalies:#?}");
    assert_eq!(
        (
            faulted[0]["state"].as_str(),
            faulted[0]["event_time"].as_str()
        ),
        (Some("open"), Some("2026-03-01T10:00:03.000Z"))
    );
    assert_eq!(
        (
            faulted[1]["state"].as_str(),
            faulted[1]["event_time"].as_str()
        ),
        (Some("resolved"), Some("2026-03-01T10:00:05.000Z"))
    );
}

#[test]
fn repeats_are_dropped_and_call_results_correlate_wherever_they_arrive() {
    let _g = serial();
    let dir = tmp_dir("ordering-dup");
    let cp = "CP-D";
    let start = line(
        "2026-03-01T10:00:00Z",
        cp,
        json!([2, "m1", "StartTransaction", {"connectorId": 2, "idTag": "TAG", "meterStart": 5000, "timestamp": "2026-03-01T10:00:00Z"}]),
    );
    let meter = |at: &str, wh: &str| {
        line(
            &format!("2026-03-01T10:{at}:00Z"),
            cp,
            json!([2, format!("mv{at}"), "MeterValues", {"connectorId": 2, "transactionId": 9, "meterValue": [{"timestamp": format!("2026-03-01T10:{at}:00Z"), "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}, {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"}]}]}]),
        )
    };
    let lines = [
        start.clone(),
        line(
            "2026-03-01T10:00:01Z",
            cp,
            json!([2, "c1", "StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Charging"}]),
        ),
        line(
            "2026-03-01T10:00:02Z",
            cp,
            json!([2, "h1", "Heartbeat", {}]),
        ),
        // The backend's reply comes after other frames of the charger …
        line(
            "2026-03-01T10:00:03Z",
            cp,
            json!([3, "m1", {"transactionId": 9, "idTagInfo": {"status": "Accepted"}}]),
        ),
        // … and the backend's log repeats frames (retries).
        start,
        meter("10", "6000"),
        meter("10", "6000"),
        meter("20", "7500"),
        line(
            "2026-03-01T10:30:00Z",
            cp,
            json!([2, "x1", "StopTransaction", {"transactionId": 9, "meterStop": 8500, "timestamp": "2026-03-01T10:30:00Z"}]),
        ),
    ];
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let dataflow = file_dataflow(&dir, &input, None, "");
    let out = run_ok(&["run", dataflow.to_str().unwrap(), "--metrics-addr", ""]);
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].transaction_id, "9");
    assert_eq!(sessions[0].connector_id, 2);
    assert_eq!(sessions[0].energy_wh, 3500);
    assert!(read_jsonl(&dir.join("out/dead-letter.jsonl")).is_empty());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sessions"));
}
