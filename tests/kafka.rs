//! Kafka in and out against a real broker (tansu, started by `common/kafka.rs`): a topic
//! replay gives what a file replay gives, raw OCPP-J frames as values, the Kafka sinks, and
//! committed offsets.

#[path = "common/kafka.rs"]
mod broker;
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use broker::Broker;
use common::*;
use evflow::sinks::parquet::{read_revenue, read_sessions};
use serde_json::json;

fn simulate(dir: &Path, chargers: u32, hours: u32) -> String {
    run_ok(&[
        "simulate",
        "--chargers",
        &chargers.to_string(),
        "--hours",
        &hours.to_string(),
        "--out",
        dir.join("traffic.jsonl").to_str().unwrap(),
        "--registry",
        dir.join("registry.json").to_str().unwrap(),
        "--watches",
        dir.join("watches.jsonl").to_str().unwrap(),
    ]);
    std::fs::read_to_string(dir.join("traffic.jsonl")).unwrap()
}

/// (id, state) of every anomaly record.
fn anomaly_ids(out: &Path) -> BTreeSet<(String, String)> {
    read_jsonl(&out.join("anomalies.jsonl"))
        .iter()
        .map(|a| (a["id"].to_string(), a["state"].to_string()))
        .collect()
}

/// The final (highest) revision of every revenue window: (window, site, method, currency) →
/// (sessions, energy, total incl. VAT).
type FinalRevenue = std::collections::BTreeMap<(i64, String, String, String), (i64, i64, String)>;

fn final_revenue(out: &Path) -> FinalRevenue {
    let mut rows = read_revenue(out).expect("read revenue");
    rows.sort_by_key(|r| r.revision);
    rows.into_iter()
        .map(|r| {
            (
                (
                    r.window_start,
                    r.site_id.to_string(),
                    r.payment_method.to_string(),
                    r.currency.to_string(),
                ),
                (
                    r.sessions,
                    r.energy_wh,
                    r.total_incl_vat.normalize().to_string(),
                ),
            )
        })
        .collect()
}

/// The number after `label` in a run's summary.
fn summary_count(stdout: &[u8], label: &str) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{text}"))
}

#[test]
fn a_topic_replay_gives_what_a_file_replay_gives() {
    let _g = serial();
    let dir = tmp_dir("kafka-replay");
    let text = simulate(&dir, 30, 24);
    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("ocpp", 3);
    let t = std::time::Instant::now();
    let n = broker.produce_envelopes("ocpp", &text);
    eprintln!("produced {n} records in {:.1} s", t.elapsed().as_secs_f64());
    assert!(n > 10_000, "{n}");

    let dataflow = file_dataflow(
        &dir,
        &dir.join("traffic.jsonl"),
        Some(&dir.join("registry.json")),
        "",
    );
    let from_file = dir.join("out-file");
    run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        from_file.to_str().unwrap(),
    ]);
    let from_kafka = dir.join("out-kafka");
    let t = std::time::Instant::now();
    let run = run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--input",
        &broker.url("ocpp", "group=g1&stop=end"),
        "--workers",
        "2",
        "--out",
        from_kafka.to_str().unwrap(),
    ]);
    eprintln!("consumed in {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(summary_count(&run.stdout, "input lines"), n as u64);

    let (file_sessions, kafka_sessions) =
        (sorted_sessions(&from_file), sorted_sessions(&from_kafka));
    assert!(file_sessions.len() > 50, "{}", file_sessions.len());
    assert_eq!(file_sessions, kafka_sessions);
    assert_eq!(final_revenue(&from_file), final_revenue(&from_kafka));
    let anomalies = anomaly_ids(&from_file);
    assert!(anomalies.len() > 5, "{anomalies:?}");
    assert_eq!(anomalies, anomaly_ids(&from_kafka));
    let notifications = |out: &Path| -> BTreeSet<String> {
        read_jsonl(&out.join("notifications.jsonl"))
            .iter()
            .map(|n| n["id"].to_string())
            .collect()
    };
    assert_eq!(notifications(&from_file), notifications(&from_kafka));
}

#[test]
fn raw_frames_take_the_key_as_charger_and_the_record_time_as_receive_time() {
    let _g = serial();
    let dir = tmp_dir("kafka-raw-frames");
    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("frames", 2);
    let t0 = 1_767_600_000_000i64; // 2026-01-05T08:00:00Z
    let min = 60_000;
    let frames: Vec<(Option<&str>, String, i64)> = vec![
        (
            Some("CP-RAW"),
            json!([2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])
                .to_string(),
            t0,
        ),
        (
            Some("CP-RAW"),
            json!([3, "b1", {"status": "Accepted", "currentTime": "2026-01-05T08:00:00Z", "interval": 300}])
                .to_string(),
            t0 + 100,
        ),
        (
            Some("CP-RAW"),
            // Pretty-printed, with line breaks: still one line for the decoder.
            serde_json::to_string_pretty(&json!([2, "s1", "StartTransaction",
                {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-01-05T08:01:00Z"}]))
            .unwrap(),
            t0 + min,
        ),
        (
            Some("CP-RAW"),
            json!([3, "s1", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}]).to_string(),
            t0 + min + 100,
        ),
        (
            Some("CP-RAW"),
            json!([2, "s2", "StopTransaction",
                {"transactionId": 7, "meterStop": 3000, "timestamp": "2026-01-05T08:05:00Z", "reason": "EVDisconnected"}])
            .to_string(),
            t0 + 5 * min + 200,
        ),
        (
            Some("CP-RAW"),
            json!([2, "h1", "Heartbeat", {}]).to_string(),
            t0 + 6 * min,
        ),
        // No key: no charge point.
        (None, json!([2, "h2", "Heartbeat", {}]).to_string(), t0 + 7 * min),
        // An envelope line beside the raw frames.
        (
            Some("whatever"),
            line("2026-01-05T08:02:00Z", "CP-ENV", json!([2, "x", "Heartbeat", {}])),
            t0,
        ),
    ];
    broker.produce(
        "frames",
        frames
            .iter()
            .map(|(k, v, ts)| (*k, v.as_bytes(), Some(*ts))),
    );
    let dataflow = file_dataflow(&dir, &dir.join("unused.jsonl"), None, "");
    let out = dir.join("out");
    let run = run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--input",
        &broker.url("frames", "group=g&stop=end"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(summary_count(&run.stdout, "input lines"), 8);
    assert_eq!(summary_count(&run.stdout, "events"), 7);
    let sessions = read_sessions(&out).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(&*s.charge_point_id, "CP-RAW");
    assert_eq!(s.transaction_id, "7");
    assert_eq!(s.energy_wh, 2000);
    assert_eq!(s.start_time, t0 + min);
    assert_eq!(s.end_time, t0 + 5 * min);
    let dead = read_jsonl(&out.join("dead-letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "missing_charge_point");
    let line = dead[0]["line"].as_str().unwrap();
    assert!(
        line.contains(r#""timestamp":"2026-01-05T08:07:00.000Z""#),
        "the record timestamp is the receive time: {line}"
    );
}

#[test]
fn anomalies_notifications_and_dead_letters_go_to_their_topics() {
    let _g = serial();
    let dir = tmp_dir("kafka-sinks");
    let mut text = simulate(&dir, 10, 24);
    text.push_str("not json at all\n");
    let traffic = dir.join("traffic.jsonl");
    std::fs::write(&traffic, &text).unwrap();
    let broker = Broker::start(&dir.join("broker"));
    for t in ["anomalies", "notifications", "dead-letters", "driver-app"] {
        broker.create_topic(t, 2);
    }
    // A notification route: the drivers' notifications to a topic of their own.
    let extra = format!(
        "[output.kafka]\nbrokers = {:?}\nanomalies_topic = \"anomalies\"\n\
         notifications_topic = \"notifications\"\ndead_letter_topic = \"dead-letters\"\n\
         [notifications]\nwatches = {:?}\n\
         [[notifications.routes]]\nname = \"driver-app\"\naudience = \"driver\"\nkafka = \"driver-app\"\n\
         [[maintenance]]\ncharge_point_id = \"CP-0001\"\nstart = \"2026-01-05T14:00:00Z\"\nend = \"2026-01-05T15:00:00Z\"\n",
        broker.addr(),
        dir.join("watches.jsonl").display().to_string()
    );
    let dataflow = file_dataflow(&dir, &traffic, Some(&dir.join("registry.json")), &extra);
    let out = dir.join("out");
    run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    for (topic, file, keyed) in [
        ("anomalies", "anomalies.jsonl", true),
        ("notifications", "notifications.jsonl", true),
        ("dead-letters", "dead-letter.jsonl", false),
    ] {
        let mut lines: Vec<String> = std::fs::read_to_string(out.join(file))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(!lines.is_empty(), "{file} is empty");
        let records = broker.read_all(topic);
        let mut values: Vec<String> = records.iter().map(|r| r.3.clone()).collect();
        lines.sort();
        values.sort();
        assert_eq!(values, lines, "{topic}: the values are the JSONL lines");
        for (_, _, key, value) in &records {
            let v: serde_json::Value = serde_json::from_str(value).unwrap();
            if keyed {
                assert_eq!(
                    key.as_deref(),
                    v["charge_point_id"].as_str(),
                    "{topic}: keyed by charge point"
                );
            } else {
                assert_eq!(key, &None);
            }
        }
        // A charger's records are in one partition, in the JSONL order.
        if keyed {
            let jsonl = std::fs::read_to_string(out.join(file)).unwrap();
            for cp in records
                .iter()
                .filter_map(|r| r.2.clone())
                .collect::<BTreeSet<_>>()
            {
                let in_file: Vec<&str> = jsonl
                    .lines()
                    .filter(|l| l.contains(&format!("\"charge_point_id\":\"{cp}\"")))
                    .collect();
                let on_topic: Vec<&str> = records
                    .iter()
                    .filter(|r| r.2.as_deref() == Some(cp.as_str()))
                    .map(|r| r.3.as_str())
                    .collect();
                assert_eq!(in_file, on_topic, "{topic}: {cp}");
            }
        }
    }
    // The route's topic has exactly the drivers' notifications, keyed by recipient.
    let mut drivers: Vec<String> = std::fs::read_to_string(out.join("notifications.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""audience":"driver""#))
        .map(str::to_string)
        .collect();
    assert!(!drivers.is_empty());
    let records = broker.read_all("driver-app");
    for (_, _, key, value) in &records {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(key.as_deref(), v["recipient"].as_str());
    }
    let mut values: Vec<String> = records.into_iter().map(|r| r.3).collect();
    for kind in evflow::model::NotificationKind::ALL {
        assert!(
            values
                .iter()
                .any(|v| v.contains(&format!("\"kind\":\"{}\"", kind.as_str()))),
            "driver-app: no {kind:?}"
        );
    }
    drivers.sort();
    values.sort();
    assert_eq!(values, drivers, "driver-app: the drivers' notifications");
}

#[test]
fn a_finished_run_commits_its_offsets() {
    let _g = serial();
    let dir = tmp_dir("kafka-commit");
    let text = simulate(&dir, 6, 12);
    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("ocpp", 2);
    let n = broker.produce_envelopes("ocpp", &text) as u64;
    let dataflow = file_dataflow(
        &dir,
        &dir.join("traffic.jsonl"),
        Some(&dir.join("registry.json")),
        "",
    );
    let run = |group: &str, out: &str| {
        let out = dir.join(out);
        let r = run_ok(&[
            "run",
            dataflow.to_str().unwrap(),
            "--input",
            &broker.url("ocpp", &format!("group={group}&stop=end")),
            "--out",
            out.to_str().unwrap(),
        ]);
        (
            summary_count(&r.stdout, "input lines"),
            read_sessions(&out).unwrap().len(),
        )
    };
    let (lines, sessions) = run("g", "out1");
    assert_eq!(lines, n);
    assert!(sessions > 0);
    // The same group again: nothing new to read, nothing written.
    assert_eq!(run("g", "out2"), (0, 0));
    // Another group reads everything again.
    assert_eq!(run("other", "out3"), (n, sessions));
}

/// Scrapes until `done` holds (at most 60 s).
fn wait_for(addr: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = scrape(addr);
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_live_run_follows_the_topic_and_idle_partitions_release_event_time() {
    use std::io::BufRead;
    use std::process::Stdio;
    let _g = serial();
    let dir = tmp_dir("kafka-live");
    let text = simulate(&dir, 10, 12);
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("ocpp", 3);
    let first = broker.produce_envelopes("ocpp", &lines[..half].join("\n"));
    let dataflow = file_dataflow(
        &dir,
        &dir.join("traffic.jsonl"),
        Some(&dir.join("registry.json")),
        "[kafka]\nidle_timeout = \"1s\"\n",
    );
    let mut child = evflow()
        .args([
            "run",
            dataflow.to_str().unwrap(),
            "--input",
            &broker.url("ocpp", "group=live"),
            "--workers",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
            "--out",
            dir.join("out").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evflow");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = l.split("http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("evflow logs its metrics address");
    let records = "evflow_kafka_records_total{topic=\"ocpp\"}";
    wait_for(&addr, "the first half", |b| {
        value(b, records) == Some(first as f64)
    });
    // Every partition goes idle: the watermark is then the newest event time − 10 s.
    wait_for(&addr, "idle partitions to release the watermark", |b| {
        value(b, "evflow_watermark_lag_seconds") == Some(10.0)
    });
    let w1 = value(&scrape(&addr), "evflow_watermark_timestamp_seconds").unwrap();
    let anomalies_before = std::fs::read_to_string(dir.join("out/anomalies.jsonl"))
        .unwrap_or_default()
        .lines()
        .count();

    // More traffic while it runs.
    let second = broker.produce_envelopes("ocpp", &lines[half..].join("\n"));
    wait_for(&addr, "the second half", |b| {
        value(b, records) == Some((first + second) as f64)
    });
    let body = wait_for(&addr, "the lag of every partition", |b| {
        (0..3).all(|p| {
            value(
                b,
                &format!("evflow_kafka_consumer_lag{{topic=\"ocpp\",partition=\"{p}\"}}"),
            ) == Some(0.0)
        })
    });
    let body = if value(&body, "evflow_watermark_lag_seconds") == Some(10.0) {
        body
    } else {
        wait_for(&addr, "the watermark", |b| {
            value(b, "evflow_watermark_lag_seconds") == Some(10.0)
        })
    };
    let w2 = value(&body, "evflow_watermark_timestamp_seconds").unwrap();
    assert!(w2 > w1 + 3600.0, "event time moved on: {w1} → {w2}");
    let anomalies_after = std::fs::read_to_string(dir.join("out/anomalies.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(
        anomalies_after > anomalies_before,
        "{anomalies_before} → {anomalies_after}"
    );
    // Commits follow while it runs (live, one every `commit_every_chunks` chunks, which
    // idle partitions cut every `linger`): the last commit covers every record.
    let committed = |b: &str| -> f64 {
        (0..3)
            .filter_map(|p| {
                value(
                    b,
                    &format!("evflow_kafka_committed_offset{{topic=\"ocpp\",partition=\"{p}\"}}"),
                )
            })
            .sum()
    };
    wait_for(&addr, "a commit of every record", |b| {
        committed(b) == (first + second) as f64
    });
    // The group's offsets follow the manifest.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let again = run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--input",
        &broker.url("ocpp", "group=live&stop=end"),
        "--out",
        dir.join("out2").to_str().unwrap(),
    ]);
    assert_eq!(summary_count(&again.stdout, "input lines"), 0);
}

#[test]
fn payment_events_from_a_topic_give_what_the_file_gives() {
    let _g = serial();
    let dir = tmp_dir("kafka-payments");
    simulate(&dir, 12, 24);
    let dataflow = |name: &str, payments: &str| {
        let path = file_dataflow(
            &dir,
            &dir.join("traffic.jsonl"),
            Some(&dir.join("registry.json")),
            &format!("[revenue]\npayments = {payments:?}\n[revenue.leakage]\ngrace = \"1h\"\n"),
        );
        let named = dir.join(format!("dataflow-{name}.toml"));
        std::fs::rename(&path, &named).unwrap();
        named
    };
    // What was priced, without payments.
    let plain = file_dataflow(
        &dir,
        &dir.join("traffic.jsonl"),
        Some(&dir.join("registry.json")),
        "",
    );
    let priced_out = dir.join("out-priced");
    run_ok(&[
        "run",
        plain.to_str().unwrap(),
        "--out",
        priced_out.to_str().unwrap(),
    ]);
    let sessions = sorted_sessions(&priced_out);
    let billable: Vec<_> = sessions
        .iter()
        .filter(|s| {
            s.total_incl_vat > rust_decimal::Decimal::ZERO && &*s.payment_method != "subscription"
        })
        .collect();
    assert!(billable.len() > 20, "{}", billable.len());
    // Every third billable session is never captured, every fifth short by 0.50; one bad value.
    let mut payments = Vec::new();
    for (i, s) in billable.iter().enumerate() {
        if i % 3 == 0 {
            continue;
        }
        let amount = if i % 5 == 0 {
            s.total_incl_vat - rust_decimal::Decimal::new(50, 2)
        } else {
            s.total_incl_vat
        };
        payments.push(
            json!({"payment_id": format!("p{i}"), "charge_point_id": &*s.charge_point_id,
                   "transaction_id": s.transaction_id, "type": "captured",
                   "amount": amount.normalize().to_string(), "currency": "EUR",
                   "timestamp": evflow::time::format_rfc3339(s.end_time + 60_000)})
            .to_string(),
        );
    }
    payments.push("{\"type\": \"captured\"}".to_string());
    std::fs::write(dir.join("payments.jsonl"), payments.join("\n") + "\n").unwrap();

    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("payments", 2);
    broker.produce(
        "payments",
        payments.iter().map(|p| (Some("k"), p.as_bytes(), None)),
    );

    let from_file = dir.join("out-file");
    let file_flow = dataflow("file", dir.join("payments.jsonl").to_str().unwrap());
    run_ok(&[
        "run",
        file_flow.to_str().unwrap(),
        "--out",
        from_file.to_str().unwrap(),
    ]);
    let from_topic = dir.join("out-topic");
    let topic_flow = dataflow("topic", &broker.url("payments", "group=pay&stop=end"));
    run_ok(&[
        "run",
        topic_flow.to_str().unwrap(),
        "--out",
        from_topic.to_str().unwrap(),
    ]);

    let leaks = |out: &Path| -> BTreeSet<(String, String, String)> {
        read_jsonl(&out.join("leakage.jsonl"))
            .iter()
            .filter(|l| l["kind"] != "meter_mismatch")
            .map(|l| {
                (
                    l["transaction_id"].as_str().unwrap().to_string(),
                    l["kind"].as_str().unwrap().to_string(),
                    l["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let file_leaks = leaks(&from_file);
    // Exactly the sessions left uncaptured or paid short, among those whose grace period
    // ended before the data did (all but the last hour's).
    let last_end = sessions.iter().map(|s| s.end_time).max().unwrap();
    let judged = |s: &&&evflow::model::SessionRecord| s.end_time + 3_600_000 < last_end - 60_000;
    let expected: BTreeSet<(String, String, String)> = billable
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0 || i % 5 == 0)
        .filter(|(_, s)| judged(s))
        .map(|(i, s)| {
            let kind = if i % 3 == 0 {
                "uncaptured"
            } else {
                "amount_mismatch"
            };
            (
                s.transaction_id.clone(),
                kind.to_string(),
                "open".to_string(),
            )
        })
        .collect();
    assert!(expected.len() > 5, "{expected:?}");
    assert!(
        expected.is_subset(&file_leaks),
        "missing: {:?}",
        expected.difference(&file_leaks).collect::<Vec<_>>()
    );
    assert_eq!(file_leaks, leaks(&from_topic));
    for out in [&from_file, &from_topic] {
        let dead = read_jsonl(&out.join("dead-letter.jsonl"));
        assert_eq!(
            dead.iter()
                .filter(|d| d["reason"] == "bad_payment_event")
                .count(),
            1,
            "{dead:?}"
        );
    }
}
