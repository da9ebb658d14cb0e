//! Who gets which notification, through the whole pipeline: driver watches from a file, the
//! session's driver, recent users and the operator; hysteresis, quiet hours and routes.
//!
//! Site SITE-A (UTC) has CP-1 (two connectors) and CP-2. Monday 2026-03-02:
//!
//! | time | what | who hears |
//! |---|---|---|
//! | 08:40 | ZOE's session on CP-1/1 reaches 82 % SoC | ZOE (`charging_almost_complete`) |
//! | 08:30 | CP-2/1 Faulted | operator, BOB (site), DAVE (CP-2, until 09:00) |
//! | 09:01 | CP-1/1 Available after the session | ALICE (CP-1), BOB (site) |
//! | 10:00 | CP-1/2 Faulted | operator, ALICE, BOB — not CAROL (maintenance only) |
//! | 10:02 | CP-1/2 Available | ALICE, BOB |
//! | 10:05 | CP-1/2 Faulted again | operator, ALICE, BOB: their last word was "available" |
//! | 10:06 | CP-1/2 Available again | nobody: within `available_min_interval` of 10:02 |
//! | 10:08 | CP-1/2 Faulted again | operator only: ALICE and BOB were told it 3 min ago (hysteresis) |
//! | 10:20 | CP-1/2 Available | ALICE, BOB |
//! | 12:00 | maintenance 14:00–16:00 on CP-1, 2 h ahead | operator, ALICE, BOB, CAROL, ZOE (recent user) |
//! | 15:00 | BOB stops watching SITE-A | |
//! | 22:30 | CP-1/1 Unavailable (quiet hours 22:00–07:00) | operator at once; ALICE's held |
//! | 23:30 | CP-1/1 Available | ALICE's held notice replaced: she wakes up to "available", due 07:00 |
//! | 23:40 | CP-2/1 Available | nobody: BOB unwatched, DAVE's watch expired |
//!
//! A bad watch line is dead-lettered (`bad_watch_event`) and the run goes on.

mod common;

use std::collections::BTreeSet;

use common::*;
use evflow::time::{format_rfc3339, parse_rfc3339};
use serde_json::json;

fn t(s: &str) -> i64 {
    parse_rfc3339(&format!("2026-03-02T{s}:00Z")).unwrap()
}

#[derive(Default)]
struct Traffic(Vec<(i64, String)>, u32);

impl Traffic {
    fn push(&mut self, ms: i64, cp: &str, message: serde_json::Value) {
        self.0.push((ms, line(&format_rfc3339(ms), cp, message)));
    }

    fn call(&mut self, ms: i64, cp: &str, action: &str, payload: serde_json::Value) -> String {
        self.1 += 1;
        let id = format!("m{}", self.1);
        self.push(ms, cp, json!([2, id, action, payload]));
        id
    }

    fn status(&mut self, at: &str, cp: &str, connector: u32, status: &str) {
        let ms = t(at);
        let code = if status == "Faulted" {
            "GroundFailure"
        } else {
            "NoError"
        };
        self.call(
            ms,
            cp,
            "StatusNotification",
            json!({"connectorId": connector, "errorCode": code, "status": status, "timestamp": format_rfc3339(ms)}),
        );
    }
}

/// (kind, recipient, charger, connector, event time, held until)
type Row = (String, String, String, Option<u64>, String, Option<String>);

fn rows(path: &std::path::Path) -> BTreeSet<Row> {
    read_jsonl(path)
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_string(),
                n["recipient"].as_str().unwrap().to_string(),
                n["charge_point_id"].as_str().unwrap().to_string(),
                n["connector_id"].as_u64(),
                n["event_time"].as_str().unwrap()[11..16].to_string(),
                n["held_until"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn row(kind: &str, who: &str, cp: &str, conn: Option<u64>, at: &str) -> Row {
    (kind.into(), who.into(), cp.into(), conn, at.into(), None)
}

#[test]
fn notifications_reach_watchers_drivers_and_the_operator() {
    let _g = serial();
    let dir = tmp_dir("notifications");
    let mut tr = Traffic::default();
    for cp in ["CP-1", "CP-2"] {
        tr.call(
            t("06:00"),
            cp,
            "BootNotification",
            json!({"chargePointVendor": "Alfen BV", "chargePointModel": "NG920"}),
        );
        for c in 0..=2 {
            tr.status("06:00", cp, c, "Available");
        }
        let mut h = t("06:05");
        while h <= t("23:55") {
            tr.call(h, cp, "Heartbeat", json!({}));
            h += 300_000;
        }
    }
    // ZOE's session on CP-1/1, SoC 54 % … 90 %.
    tr.status("08:00", "CP-1", 1, "Preparing");
    let start = tr.call(
        t("08:00"),
        "CP-1",
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "ZOE", "meterStart": 0, "timestamp": format_rfc3339(t("08:00"))}),
    );
    tr.push(
        t("08:00") + 300,
        "CP-1",
        json!([3, start, {"transactionId": 17, "idTagInfo": {"status": "Accepted"}}]),
    );
    tr.status("08:00", "CP-1", 1, "Charging");
    for k in 1..=10 {
        let ms = t("08:00") + k * 300_000;
        tr.call(
            ms,
            "CP-1",
            "MeterValues",
            json!({"connectorId": 1, "transactionId": 17, "meterValue": [{"timestamp": format_rfc3339(ms), "sampledValue": [
                {"value": (k * 600).to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": (50 + 4 * k).to_string(), "measurand": "SoC", "unit": "Percent"}]}]}),
        );
    }
    tr.call(
        t("09:00"),
        "CP-1",
        "StopTransaction",
        json!({"transactionId": 17, "idTag": "ZOE", "meterStop": 6000, "timestamp": format_rfc3339(t("09:00")), "reason": "Local"}),
    );
    tr.status("09:00", "CP-1", 1, "Finishing");
    tr.status("09:01", "CP-1", 1, "Available");
    tr.status("08:30", "CP-2", 1, "Faulted");
    for (at, s) in [
        ("10:00", "Faulted"),
        ("10:02", "Available"),
        ("10:05", "Faulted"),
        ("10:06", "Available"),
        ("10:08", "Faulted"),
        ("10:20", "Available"),
    ] {
        tr.status(at, "CP-1", 2, s);
    }
    tr.status("22:30", "CP-1", 1, "Unavailable");
    tr.status("23:30", "CP-1", 1, "Available");
    tr.status("23:40", "CP-2", 1, "Available");
    tr.0.sort_by_key(|(ms, _)| *ms);
    let input = dir.join("traffic.jsonl");
    let text: Vec<String> = tr.0.into_iter().map(|(_, l)| l).collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();

    let registry = dir.join("registry.json");
    std::fs::write(
        &registry,
        json!({"sites": [{"site_id": "SITE-A", "time_zone": "UTC"}],
               "stations": [
                   {"charge_point_id": "CP-1", "site_id": "SITE-A", "max_power_w": 22000.0, "connectors": 2},
                   {"charge_point_id": "CP-2", "site_id": "SITE-A", "max_power_w": 22000.0, "connectors": 2}]})
        .to_string(),
    )
    .unwrap();
    let watches = dir.join("watches.jsonl");
    std::fs::write(
        &watches,
        [
            r#"{"driver":"ALICE","action":"watch","charge_point_id":"CP-1","timestamp":"2026-03-01T00:00:00Z"}"#,
            r#"{"driver":"BOB","action":"watch","site_id":"SITE-A","timestamp":"2026-03-01T00:00:00Z"}"#,
            r#"{"driver":"CAROL","action":"watch","charge_point_id":"CP-1","kinds":["maintenance_upcoming"],"timestamp":"2026-03-01T00:00:00Z"}"#,
            r#"{"driver":"DAVE","action":"watch","charge_point_id":"CP-2","timestamp":"2026-03-01T00:00:00Z","expires":"2026-03-02T09:00:00Z"}"#,
            r#"{"driver":"BOB","action":"unwatch","site_id":"SITE-A","timestamp":"2026-03-02T15:00:00Z"}"#,
            r#"{"action":"watch","charge_point_id":"CP-1","timestamp":"2026-03-01T00:00:00Z"}"#,
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let extra = format!(
        r#"
[[maintenance]]
charge_point_id = "CP-1"
start = "2026-03-02T14:00:00Z"
end = "2026-03-02T16:00:00Z"
reason = "connector replacement"

[notifications]
watches = {watches:?}

[notifications.quiet_hours.driver]
start = "22:00"
end = "07:00"

[[notifications.routes]]
name = "drivers"
audience = "driver"
jsonl = "route-drivers.jsonl"

[[notifications.routes]]
name = "ops-out-of-order"
audience = "operator"
kinds = ["station_out_of_order"]
jsonl = "route-ops.jsonl"
"#,
        watches = watches.display().to_string()
    );
    let dataflow = file_dataflow(&dir, &input, Some(&registry), &extra);
    run_ok(&["run", dataflow.to_str().unwrap()]);
    let out = dir.join("out");

    let mut want: BTreeSet<Row> = [
        row("charging_almost_complete", "ZOE", "CP-1", Some(1), "08:40"),
        row("station_out_of_order", "operator", "CP-2", Some(1), "08:30"),
        row("station_out_of_order", "BOB", "CP-2", Some(1), "08:30"),
        row("station_out_of_order", "DAVE", "CP-2", Some(1), "08:30"),
        row("station_available", "ALICE", "CP-1", Some(1), "09:01"),
        row("station_available", "BOB", "CP-1", Some(1), "09:01"),
        row("station_out_of_order", "operator", "CP-1", Some(2), "10:00"),
        row("station_out_of_order", "ALICE", "CP-1", Some(2), "10:00"),
        row("station_out_of_order", "BOB", "CP-1", Some(2), "10:00"),
        row("station_available", "ALICE", "CP-1", Some(2), "10:02"),
        row("station_available", "BOB", "CP-1", Some(2), "10:02"),
        row("station_out_of_order", "operator", "CP-1", Some(2), "10:05"),
        row("station_out_of_order", "ALICE", "CP-1", Some(2), "10:05"),
        row("station_out_of_order", "BOB", "CP-1", Some(2), "10:05"),
        row("station_out_of_order", "operator", "CP-1", Some(2), "10:08"),
        row("station_available", "ALICE", "CP-1", Some(2), "10:20"),
        row("station_available", "BOB", "CP-1", Some(2), "10:20"),
        row("station_out_of_order", "operator", "CP-1", Some(1), "22:30"),
    ]
    .into_iter()
    .collect();
    for who in ["operator", "ALICE", "BOB", "CAROL", "ZOE"] {
        want.insert(row("maintenance_upcoming", who, "CP-1", None, "12:00"));
    }
    let mut held = row("station_available", "ALICE", "CP-1", Some(1), "23:30");
    held.5 = Some("2026-03-03T07:00:00.000Z".into());
    want.insert(held);
    let got = rows(&out.join("notifications.jsonl"));
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&Row>::new(),
        "unexpected notifications"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&Row>::new(),
        "missing notifications"
    );
    assert_eq!(
        read_jsonl(&out.join("notifications.jsonl")).len(),
        want.len(),
        "no duplicates"
    );

    // Routes: each gets exactly its share.
    let drivers: BTreeSet<Row> = want.iter().filter(|r| r.1 != "operator").cloned().collect();
    assert_eq!(rows(&out.join("route-drivers.jsonl")), drivers);
    let ops: BTreeSet<Row> = want
        .iter()
        .filter(|r| r.1 == "operator" && r.0 == "station_out_of_order")
        .cloned()
        .collect();
    assert_eq!(rows(&out.join("route-ops.jsonl")), ops);

    // The bad watch line is a dead letter with its reason; nothing else is.
    let dead = read_jsonl(&out.join("dead-letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "bad_watch_event");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("driver"),
        "{dead:?}"
    );
}
