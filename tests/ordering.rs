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

/// One chunk per line, so the watermark moves between lines as on a live feed.
fn live_dataflow(dir: &std::path::Path, input: &std::path::Path) -> std::path::PathBuf {
    let dataflow = file_dataflow(dir, input, None, "");
    let text = std::fs::read_to_string(&dataflow)
        .unwrap()
        .replace("workers = 1", "workers = 1\nchunk_lines = 1");
    std::fs::write(&dataflow, text).unwrap();
    dataflow
}

fn ts(hm: &str) -> String {
    format!("2026-03-01T{hm}Z")
}

/// A charger every minute from 10:00 to `until`, to move event time on.
fn ticker(until_min: u32) -> Vec<(String, String)> {
    (0..=until_min)
        .map(|m| {
            let at = ts(&format!("{:02}:{:02}:00", 10 + m / 60, m % 60));
            (
                at.clone(),
                line(&at, "TICK", json!([2, format!("hb{m}"), "Heartbeat", {}])),
            )
        })
        .collect()
}

fn energy_sample(at: &str, wh: i64, context: &str) -> serde_json::Value {
    json!({"timestamp": at, "sampledValue": [{"value": wh.to_string(), "context": context, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]})
}

/// Lines sorted by receive time (the first element), as a backend log is.
fn write_sorted(path: &std::path::Path, mut lines: Vec<(String, String)>) {
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    std::fs::write(path, text.join("\n")).unwrap();
}

#[test]
fn samples_delivered_late_keep_their_own_times() {
    let _g = serial();
    let dir = tmp_dir("ordering-backlog");
    let mut lines = ticker(150);
    // A 150 kW charger goes offline at 10:05 and delivers its queued samples at 11:30.
    let cp = "BACKLOG";
    let start = ts("10:00:00");
    lines.push((start.clone(), line(&start, cp, json!([2, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 100000, "timestamp": start}]))));
    lines.push((
        start.clone(),
        line(
            &start,
            cp,
            json!([3, "s", {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}]),
        ),
    ));
    for m in 1..=30 {
        let at = ts(&format!("10:{m:02}:00"));
        let received = if m <= 5 {
            at.clone()
        } else {
            ts(&format!("11:{:02}:00", m))
        };
        let mv = energy_sample(&at, 100000 + 2500 * m as i64, "Sample.Periodic");
        lines.push((received.clone(), line(&received, cp, json!([2, format!("m{m}"), "MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [mv]}]))));
    }
    // The stop repeats the transaction's samples in transactionData (1.6 does).
    let data: Vec<_> = std::iter::once(energy_sample(&start, 100000, "Transaction.Begin"))
        .chain((1..=30).map(|m| {
            energy_sample(
                &ts(&format!("10:{m:02}:00")),
                100000 + 2500 * m as i64,
                "Sample.Periodic",
            )
        }))
        .collect();
    let stop_at = ts("10:31:00");
    lines.push((ts("11:31:00"), line(&ts("11:31:00"), cp, json!([2, "x", "StopTransaction", {"transactionId": 1, "meterStop": 177000, "timestamp": stop_at, "transactionData": data}]))));
    let input = dir.join("in.jsonl");
    write_sorted(&input, lines);
    run_ok(&["run", live_dataflow(&dir, &input).to_str().unwrap()]);
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].energy_wh, sessions[0].energy_source.as_str()),
        (77000, "registers")
    );
    assert_eq!(
        evflow::time::format_rfc3339(sessions[0].end_time),
        "2026-03-01T10:31:00.000Z"
    );
    let anomalies = read_jsonl(&dir.join("out/anomalies.jsonl"));
    assert!(
        !anomalies.iter().any(|a| a["kind"] == "meter_error"),
        "{anomalies:#?}"
    );
}

#[test]
fn the_heartbeat_interval_from_the_boot_reply_is_used() {
    let _g = serial();
    let dir = tmp_dir("ordering-boot");
    let mut lines = ticker(200);
    let cp = "HOURLY";
    let boot = ts("10:00:00");
    lines.push((boot.clone(), line(&boot, cp, json!([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))));
    lines.push((
        ts("10:00:01"),
        line(
            &ts("10:00:01"),
            cp,
            json!([3, "b", {"status": "Accepted", "currentTime": boot, "interval": 3600}]),
        ),
    ));
    for h in 1..=3 {
        let at = ts(&format!("{}:00:00", 10 + h));
        lines.push((
            at.clone(),
            line(&at, cp, json!([2, format!("h{h}"), "Heartbeat", {}])),
        ));
    }
    let input = dir.join("in.jsonl");
    write_sorted(&input, lines);
    run_ok(&["run", live_dataflow(&dir, &input).to_str().unwrap()]);
    let anomalies = read_jsonl(&dir.join("out/anomalies.jsonl"));
    assert!(
        !anomalies.iter().any(|a| a["charge_point_id"] == cp),
        "hourly heartbeats are not silence: {anomalies:#?}"
    );
}

#[test]
fn a_charger_clock_running_ahead_does_not_make_others_late() {
    let _g = serial();
    let dir = tmp_dir("ordering-ahead");
    let mut lines = vec![];
    for m in 0..40 {
        // FAST stamps its messages 4 minutes ahead of the backend's clock.
        let received = ts(&format!("10:{m:02}:00"));
        let claimed = ts(&format!("10:{:02}:00", m + 4));
        lines.push((received.clone(), line(&received, "FAST", json!([2, format!("f{m}"), "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": claimed}]))));
    }
    let (s, e) = (ts("10:10:00"), ts("10:20:00"));
    lines.push((s.clone(), line(&s, "NORMAL", json!([2, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": s}]))));
    lines.push((
        ts("10:10:01"),
        line(
            &ts("10:10:01"),
            "NORMAL",
            json!([3, "s", {"transactionId": 4, "idTagInfo": {"status": "Accepted"}}]),
        ),
    ));
    lines.push((ts("10:20:01"), line(&ts("10:20:01"), "NORMAL", json!([2, "x", "StopTransaction", {"transactionId": 4, "meterStop": 5000, "timestamp": e}]))));
    let input = dir.join("in.jsonl");
    write_sorted(&input, lines);
    run_ok(&["run", live_dataflow(&dir, &input).to_str().unwrap()]);
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0].late, "{:?}", sessions[0]);
}

#[test]
fn a_retried_start_is_not_billed_twice() {
    let _g = serial();
    let dir = tmp_dir("ordering-retry");
    let cp = "RETRY";
    let start = |msg: &str, tx: i64, at: &str| {
        vec![
            line(
                &ts(at),
                cp,
                json!([2, msg, "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": ts(at)}]),
            ),
            line(
                &ts(at),
                cp,
                json!([3, msg, {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}]),
            ),
        ]
    };
    // The charger retries its StartTransaction with a new message id; the backend hands out
    // a second transaction id.
    let mut lines = start("s1", 1, "10:00:00");
    lines.extend(start("s2", 2, "10:00:05"));
    lines.push(line(&ts("10:30:00"), cp, json!([2, "x", "StopTransaction", {"transactionId": 2, "meterStop": 6000, "timestamp": ts("10:30:00")}])));
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    run_ok(&[
        "run",
        file_dataflow(&dir, &input, None, "").to_str().unwrap(),
    ]);
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).unwrap();
    assert_eq!(sessions.len(), 2);
    let superseded = sessions
        .iter()
        .find(|s| &*s.stop_reason == "Superseded")
        .unwrap();
    assert_eq!(
        (superseded.energy_wh, superseded.total_incl_vat),
        (0, rust_decimal::Decimal::ZERO)
    );
    let billed = sessions.iter().find(|s| s.transaction_id == "2").unwrap();
    assert_eq!(billed.energy_wh, 5000);
    assert!(billed.total_incl_vat > rust_decimal::Decimal::ZERO);
}
