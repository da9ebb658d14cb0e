//! `/metrics` on a live run: evflow reads a stream on stdin, Prometheus text is served while
//! it runs, with every documented metric name.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Every metric the README documents, as exposed.
pub const DOCUMENTED: &[&str] = &[
    "evflow_build_info",
    "evflow_input_lines_total",
    "evflow_events_total",
    "evflow_events_ignored_total",
    "evflow_dead_letters_total",
    "evflow_late_events_total",
    "evflow_clock_skew_events_total",
    "evflow_orphan_stops_total",
    "evflow_duplicate_frames_total",
    "evflow_ocpp_quirks_total",
    "evflow_watermark_timestamp_seconds",
    "evflow_watermark_lag_seconds",
    "evflow_chargers",
    "evflow_site_health_score",
    "evflow_site_health_component",
    "evflow_charger_health_score",
    "evflow_anomalies_open",
    "evflow_anomalies_total",
    "evflow_site_anomalies_open",
    "evflow_chargers_offline",
    "evflow_notifications_total",
    "evflow_notifications_suppressed_total",
    "evflow_sessions_total",
    "evflow_session_energy_joules_total",
    "evflow_revenue_excl_vat_total",
    "evflow_revenue_incl_vat_total",
    "evflow_revenue_leakage_total",
    "evflow_revenue_leakage_open",
    "evflow_kafka_consumer_lag",
    "evflow_kafka_records_total",
    "evflow_kafka_delivery_errors_total",
    "evflow_kafka_committed_offset",
    "evflow_delivery_attempts_total",
    "evflow_delivered_total",
    "evflow_delivery_dead_letters_total",
    "evflow_delivery_backlog",
    "evflow_alerts_firing",
    "evflow_commits_total",
    "evflow_commits_postponed_total",
    "evflow_commit_duration_seconds",
    "evflow_commit_snapshot_bytes",
    "evflow_last_commit_timestamp_seconds",
    "evflow_restore_duration_seconds",
];

#[test]
fn metrics_are_served_live_with_documented_names() {
    let _g = serial();
    let dir = tmp_dir("metrics-live");
    let traffic = dir.join("traffic.jsonl");
    run_ok(&[
        "simulate",
        "--chargers",
        "20",
        "--hours",
        "6",
        "--out",
        traffic.to_str().unwrap(),
        "--registry",
        dir.join("registry.json").to_str().unwrap(),
    ]);
    let dataflow = file_dataflow(&dir, &traffic, Some(&dir.join("registry.json")), "");
    let (mut child, addr) = spawn_live(&dataflow, &[]);
    assert!(addr.starts_with("127.0.0.1:"), "binds to loopback: {addr}");

    // Feed the first half, keep stdin open: evflow must process it while waiting for more.
    let text = std::fs::read_to_string(&traffic).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let mut stdin = child.stdin.take().unwrap();
    for l in &lines[..half] {
        writeln!(stdin, "{l}").unwrap();
    }
    writeln!(stdin, "not json at all").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = scrape(&addr);
        if value(&body, "evflow_input_lines_total").is_some_and(|v| v as usize > half) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "input not processed while the stream is open:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in DOCUMENTED {
        let base = name.trim_end_matches("_total");
        assert!(
            body.contains(&format!("# TYPE {base} ")),
            "{name} is not exposed:\n{body}"
        );
    }
    assert_eq!(
        value(&body, "evflow_dead_letters_total{reason=\"invalid_json\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(value(&body, "evflow_events_total{action=\"MeterValues\"}").is_some_and(|v| v > 0.0));
    assert!(
        value(&body, "evflow_watermark_timestamp_seconds").is_some_and(|v| v > 1.7e9),
        "{body}"
    );

    for l in &lines[half..] {
        writeln!(stdin, "{l}").unwrap();
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
    // The line this test broke, and the simulator's deliberately malformed frames
    // (message_errors faults and noise), nothing else.
    let dead = read_jsonl(&dir.join("out/dead-letter.jsonl"));
    assert_eq!(
        dead.iter()
            .filter(|d| d["reason"] == "invalid_json")
            .count(),
        1
    );
    assert!(
        dead.iter()
            .all(|d| d["reason"] == "invalid_json" || d["reason"] == "bad_payload"),
        "{dead:#?}"
    );
}

/// The README's metrics table, `DOCUMENTED` and what the registry exposes name the same
/// families.
#[test]
fn readme_documents_every_exposed_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("a Metrics section");
    let mut in_readme: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| `evflow_"))
        .flat_map(|l| {
            l.split('|').nth(1).into_iter().flat_map(|c| {
                c.split(',')
                    .map(|n| n.trim().trim_matches('`').to_string())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    in_readme.sort();
    let text = evflow::metrics::Metrics::new().encode();
    let mut exposed: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("# TYPE name kind");
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect();
    exposed.sort();
    let mut documented: Vec<String> = DOCUMENTED.iter().map(|s| s.to_string()).collect();
    documented.sort();
    assert_eq!(in_readme, exposed, "README vs /metrics");
    assert_eq!(documented, exposed, "DOCUMENTED vs /metrics");
}
