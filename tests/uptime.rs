//! NEVI uptime through the whole pipeline, against figures computed by hand.
//!
//! One charger (CP-U1, two connectors, UTC site) from 2026-02-27 00:00 to 2026-03-01 00:10,
//! heartbeat every 5 minutes, with these outages:
//!
//! | connector | when (Feb 27 unless said) | cause | outage min | excluded min | why excluded |
//! |---|---|---|---:|---:|---|
//! | 1 | 02:00–03:30 | Faulted (GroundFailure) | 90 | 0 | |
//! | 1, 2 | 09:30–11:15 | Unavailable; maintenance window 10:00–11:00 | 105 each | 60 each | scheduled_maintenance |
//! | 1, 2 | 13:55–14:40 | silent from 14:00 (last heartbeat 13:55), boot 14:40 | 45 each | 0 | |
//! | 2 | 16:00–16:20 | Faulted (UnderVoltage) | 20 | 20 | grid_power |
//! | 2 | 23:00–Feb 28 01:00 | Faulted (EVCommunicationError) | 120 (60 + 60) | 120 | vehicle |
//! | 1 | Feb 28 13:00–15:00 | Faulted; declared exclusion 12:00–18:00 | 120 | 120 | vandalism |
//!
//! Day rows (1440 minutes each):
//! - connector 1, Feb 27: outage 90 + 105 + 45 = 240, excluded 60 → 100 × (1440 − 180) / 1440 = 87.5 %
//! - connector 2, Feb 27: outage 105 + 45 + 20 + 60 = 230, excluded 60 + 20 + 60 = 140 → 93.75 %
//! - connector 1, Feb 28: 120, 120 → 100 %; connector 2, Feb 28: 60, 60 → 100 %
//!
//! February (2880 minutes observed): connector 1: 360 / 180 → 93.75 %; connector 2: 290 / 200 →
//! 96.875 %.
//!
//! A connector Faulted during the maintenance window (connector 2, 10:20–10:30) is recorded
//! as an anomaly marked `during_maintenance`, and no `station_out_of_order` goes out for it.

mod common;

use std::collections::BTreeMap;

use common::*;
use evflow::model::{UptimePeriod, UptimeRow};
use evflow::sinks::parquet::{read_health, read_outages, read_uptime};
use evflow::time::{format_rfc3339, parse_rfc3339};
use serde_json::json;

fn t(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

struct Traffic(Vec<(i64, String)>, u32);

impl Traffic {
    fn call(&mut self, at: &str, action: &str, payload: serde_json::Value) {
        self.1 += 1;
        let ms = t(at);
        self.0.push((
            ms,
            line(
                &format_rfc3339(ms),
                "CP-U1",
                json!([2, format!("m{}", self.1), action, payload]),
            ),
        ));
    }

    fn status(&mut self, at: &str, connector: u32, status: &str, code: &str) {
        self.call(
            at,
            "StatusNotification",
            json!({"connectorId": connector, "errorCode": code, "status": status, "timestamp": at}),
        );
    }
}

#[test]
fn uptime_per_port_matches_the_hand_computed_figures() {
    let _g = serial();
    let dir = tmp_dir("uptime");
    let mut tr = Traffic(Vec::new(), 0);
    let boot = |tr: &mut Traffic, at: &str| {
        tr.call(
            at,
            "BootNotification",
            json!({"chargePointVendor": "Alfen BV", "chargePointModel": "NG920"}),
        );
        for c in 0..=2 {
            tr.status(at, c, "Available", "NoError");
        }
    };
    boot(&mut tr, "2026-02-27T00:00:00Z");
    // heartbeats every 5 minutes, silent 14:00–14:35 on Feb 27
    let (mut h, end) = (t("2026-02-27T00:05:00Z"), t("2026-03-01T00:10:00Z"));
    while h <= end {
        if !(t("2026-02-27T14:00:00Z")..t("2026-02-27T14:40:00Z")).contains(&h) {
            tr.call(&format_rfc3339(h), "Heartbeat", json!({}));
        }
        h += 300_000;
    }
    tr.status("2026-02-27T02:00:00Z", 1, "Faulted", "GroundFailure");
    tr.status("2026-02-27T03:30:00Z", 1, "Available", "NoError");
    for c in [1, 2] {
        tr.status("2026-02-27T09:30:00Z", c, "Unavailable", "NoError");
        tr.status("2026-02-27T11:15:00Z", c, "Available", "NoError");
    }
    tr.status("2026-02-27T10:20:00Z", 2, "Faulted", "GroundFailure");
    tr.status("2026-02-27T10:30:00Z", 2, "Unavailable", "NoError");
    boot(&mut tr, "2026-02-27T14:40:00Z");
    tr.status("2026-02-27T16:00:00Z", 2, "Faulted", "UnderVoltage");
    tr.status("2026-02-27T16:20:00Z", 2, "Available", "NoError");
    tr.status("2026-02-27T23:00:00Z", 2, "Faulted", "EVCommunicationError");
    tr.status("2026-02-28T01:00:00Z", 2, "Available", "NoError");
    tr.status("2026-02-28T13:00:00Z", 1, "Faulted", "GroundFailure");
    tr.status("2026-02-28T15:00:00Z", 1, "Available", "NoError");
    tr.0.sort_by_key(|(ms, _)| *ms);
    let input = dir.join("traffic.jsonl");
    let text: Vec<String> = tr.0.into_iter().map(|(_, l)| l).collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    let registry = dir.join("registry.json");
    std::fs::write(
        &registry,
        json!({"sites": [{"site_id": "SITE-U", "time_zone": "UTC"}],
               "stations": [{"charge_point_id": "CP-U1", "site_id": "SITE-U", "max_power_w": 22000.0, "connectors": 2}]})
        .to_string(),
    )
    .unwrap();
    let extra = r#"
[[maintenance]]
charge_point_id = "CP-U1"
start = "2026-02-27T10:00:00Z"
end = "2026-02-27T11:00:00Z"
reason = "firmware update"

[[uptime.exclusions]]
site_id = "SITE-U"
start = "2026-02-28T12:00:00Z"
end = "2026-02-28T18:00:00Z"
reason = "vandalism"
"#;
    let dataflow = file_dataflow(&dir, &input, Some(&registry), extra);
    let out = dir.join("out");
    run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);

    let rows: BTreeMap<(u32, UptimePeriod, String), UptimeRow> = read_uptime(&out)
        .expect("read uptime")
        .into_iter()
        .map(|r| {
            (
                (r.connector_id, r.period, format_rfc3339(r.period_start)),
                r,
            )
        })
        .collect();
    let want = [
        (
            1,
            UptimePeriod::Day,
            "2026-02-27T00:00:00.000Z",
            1440.0,
            240.0,
            60.0,
            87.5,
        ),
        (
            2,
            UptimePeriod::Day,
            "2026-02-27T00:00:00.000Z",
            1440.0,
            230.0,
            140.0,
            93.75,
        ),
        (
            1,
            UptimePeriod::Day,
            "2026-02-28T00:00:00.000Z",
            1440.0,
            120.0,
            120.0,
            100.0,
        ),
        (
            2,
            UptimePeriod::Day,
            "2026-02-28T00:00:00.000Z",
            1440.0,
            60.0,
            60.0,
            100.0,
        ),
        (
            1,
            UptimePeriod::Month,
            "2026-02-01T00:00:00.000Z",
            2880.0,
            360.0,
            180.0,
            93.75,
        ),
        (
            2,
            UptimePeriod::Month,
            "2026-02-01T00:00:00.000Z",
            2880.0,
            290.0,
            200.0,
            96.875,
        ),
    ];
    assert_eq!(rows.len(), want.len(), "{rows:#?}");
    for (c, period, start, minutes, outage, excluded, pct) in want {
        let r = rows
            .get(&(c, period, start.to_string()))
            .unwrap_or_else(|| panic!("no {period:?} row for connector {c} at {start}: {rows:#?}"));
        assert_eq!(
            (
                r.minutes,
                r.outage_minutes,
                r.excluded_minutes,
                r.uptime_pct
            ),
            (minutes, outage, excluded, pct),
            "connector {c} {period:?} {start}"
        );
        assert_eq!(&*r.charge_point_id, "CP-U1");
        assert_eq!(&*r.site_id, "SITE-U");
    }

    let mut outages: Vec<(u32, String, String, String, f64, f64, String)> = read_outages(&out)
        .expect("read outages")
        .into_iter()
        .map(|o| {
            (
                o.connector_id,
                format_rfc3339(o.start),
                format_rfc3339(o.end),
                o.cause.to_string(),
                o.outage_minutes,
                o.excluded_minutes,
                o.exclusion.to_string(),
            )
        })
        .collect();
    outages.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let o = |c: u32, s: &str, e: &str, cause: &str, m: f64, x: f64, why: &str| {
        (
            c,
            format!("2026-02-{s}:00.000Z"),
            format!("2026-02-{e}:00.000Z"),
            cause.to_string(),
            m,
            x,
            why.to_string(),
        )
    };
    let mut want = vec![
        o(1, "27T02:00", "27T03:30", "faulted", 90.0, 0.0, ""),
        o(
            1,
            "27T09:30",
            "27T11:15",
            "unavailable",
            105.0,
            60.0,
            "scheduled_maintenance",
        ),
        o(
            1,
            "27T13:55",
            "27T14:40",
            "communication_lost",
            45.0,
            0.0,
            "",
        ),
        o(
            1,
            "28T13:00",
            "28T15:00",
            "faulted",
            120.0,
            120.0,
            "vandalism",
        ),
        o(
            2,
            "27T09:30",
            "27T11:15",
            "unavailable",
            105.0,
            60.0,
            "scheduled_maintenance",
        ),
        o(
            2,
            "27T13:55",
            "27T14:40",
            "communication_lost",
            45.0,
            0.0,
            "",
        ),
        o(
            2,
            "27T16:00",
            "27T16:20",
            "faulted",
            20.0,
            20.0,
            "grid_power",
        ),
        o(
            2, "27T23:00", "28T01:00", "faulted", 120.0, 120.0, "vehicle",
        ),
    ];
    want.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(outages, want);

    // The fault inside the maintenance window: recorded, marked, not notified.
    let anomalies = read_jsonl(&out.join("anomalies.jsonl"));
    let in_window: Vec<_> = anomalies
        .iter()
        .filter(|a| a["during_maintenance"] == true)
        .collect();
    assert_eq!(in_window.len(), 2, "{in_window:#?}");
    assert!(in_window
        .iter()
        .all(|a| a["kind"] == "connector_faulted" && a["connector_id"] == 2));
    let notifications = read_jsonl(&out.join("notifications.jsonl"));
    let out_of_order: Vec<&str> = notifications
        .iter()
        .filter(|n| n["kind"] == "station_out_of_order" && n["audience"] == "operator")
        .filter_map(|n| n["event_time"].as_str())
        .collect();
    assert!(
        out_of_order.contains(&"2026-02-27T02:00:00.000Z"),
        "{out_of_order:?}"
    );
    assert!(
        !out_of_order.iter().any(|t| t.starts_with("2026-02-27T10:")),
        "{out_of_order:?}"
    );

    // Health rows say why a score dropped.
    let health = read_health(&out).expect("read health");
    let faulted = health
        .iter()
        .find(|h| {
            h.connector_id == Some(1)
                && format_rfc3339(h.window_start) == "2026-02-27T02:00:00.000Z"
        })
        .expect("a health row for connector 1 at 02:00");
    assert_eq!(faulted.main_cause.map(|c| c.as_str()), Some("availability"));
    assert!(faulted.score < 100.0);
    let healthy = health
        .iter()
        .find(|h| {
            h.connector_id == Some(1)
                && format_rfc3339(h.window_start) == "2026-02-27T06:00:00.000Z"
        })
        .expect("a health row for connector 1 at 06:00");
    assert_eq!((healthy.score, healthy.main_cause), (100.0, None));
}
