//! Webhook delivery through the whole pipeline, against a real local HTTP receiver.
//!
//! - The receiver is down for the first seconds of the run, then fails every third request:
//!   every driver notification arrives, signed, in order; a duplicate is only ever a retry of
//!   the same id after a failure; nothing is dead-lettered; the run ends when all is delivered.
//! - The endpoint never comes back: every notification ends in the route's dead letter after
//!   `max_attempts`, with its reason, and the run still ends normally.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "webhook-test-secret";

#[derive(Debug, Clone)]
struct Request {
    id: String,
    signature: Option<String>,
    body: Vec<u8>,
    status: u16,
}

/// A minimal HTTP/1.1 receiver: answers `respond(n)` to the n-th request (0-based).
fn serve(listener: TcpListener, respond: fn(usize) -> u16) -> Arc<Mutex<Vec<Request>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    break;
                }
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let mut log = seen.lock().unwrap();
                let status = respond(log.len());
                log.push(Request {
                    id: headers
                        .get("x-evflow-notification-id")
                        .cloned()
                        .unwrap_or_default(),
                    signature: headers.get("x-evflow-signature").cloned(),
                    body,
                    status,
                });
                drop(log);
                let reply = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: 0\r\n\r\n",
                    if status == 200 { "OK" } else { "Oops" }
                );
                if stream.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    log
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A simulated day of 30 chargers with its drivers' watches, and a dataflow with a webhook
/// route (`route`: more TOML lines of the route; `webhook`: of its webhook table).
fn setup(
    name: &str,
    port: u16,
    route: &str,
    webhook: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = tmp_dir(name);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    run_ok(&[
        "simulate",
        "--chargers",
        "30",
        "--hours",
        "24",
        "--seed",
        "5",
        "--out",
        &p("traffic.jsonl"),
        "--registry",
        &p("registry.json"),
        "--watches",
        &p("watches.jsonl"),
    ]);
    let extra = format!(
        "[[maintenance]]\ncharge_point_id = \"CP-0001\"\nstart = \"2026-01-05T14:00:00Z\"\n\
         end = \"2026-01-05T15:00:00Z\"\n\n[notifications]\nwatches = {:?}\n\n[[notifications.routes]]\nname = \"drivers\"\n\
         audience = \"driver\"\n{route}\n[notifications.routes.webhook]\n\
         url = \"http://127.0.0.1:{port}/hook\"\nsecret_env = \"EVFLOW_TEST_WEBHOOK_SECRET\"\n\
         backoff_initial = \"20ms\"\nbackoff_max = \"200ms\"\n{webhook}\n",
        p("watches.jsonl")
    );
    let dataflow = file_dataflow(
        &dir,
        &dir.join("traffic.jsonl"),
        Some(&dir.join("registry.json")),
        &extra,
    );
    (dir, dataflow)
}

fn driver_notifications(out: &std::path::Path) -> Vec<serde_json::Value> {
    read_jsonl(&out.join("notifications.jsonl"))
        .into_iter()
        .filter(|n| n["audience"] == "driver")
        .collect()
}

#[test]
fn every_notification_arrives_through_a_down_then_flaky_endpoint() {
    let _g = serial();
    let port = free_port();
    let (dir, dataflow) = setup("webhook-flaky", port, "", "max_attempts = 1000");
    let started = Instant::now();
    let child = evflow()
        .args(["run", dataflow.to_str().unwrap()])
        .env("EVFLOW_TEST_WEBHOOK_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start evflow");
    // Down for a while: the run has written its notifications and waits for the endpoint.
    std::thread::sleep(Duration::from_millis(2500));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the reserved port");
    // Then every third request fails.
    let log = serve(listener, |n| if n % 3 == 2 { 500 } else { 200 });
    let out = child.wait_with_output().expect("evflow ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() > Duration::from_millis(2500));

    let want = driver_notifications(&dir.join("out"));
    assert!(
        want.len() > 50,
        "a day of 30 chargers has many: {}",
        want.len()
    );
    assert!(
        stdout.contains(&format!(
            "webhook drivers: {} delivered, 0 dead-lettered, 0 pending",
            want.len()
        )),
        "{stdout}"
    );
    let log = log.lock().unwrap().clone();
    assert!(log.iter().any(|r| r.status == 500));
    for kind in evflow::model::NotificationKind::ALL {
        assert!(
            want.iter().any(|n| n["kind"] == kind.as_str()),
            "no {kind:?} for the drivers"
        );
    }
    // Every notification was acknowledged exactly once, in the order they were written.
    let acked: Vec<&Request> = log.iter().filter(|r| r.status == 200).collect();
    let want_ids: Vec<&str> = want.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let acked_ids: Vec<&str> = acked.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(acked_ids, want_ids);
    // A request that was not acknowledged is retried with the same id, and nothing else is
    // ever sent twice.
    let mut by_id: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    for r in &log {
        by_id.entry(r.id.as_str()).or_default().push(r.status);
    }
    for (id, statuses) in &by_id {
        let (last, before) = statuses.split_last().unwrap();
        assert_eq!(*last, 200, "{id}: {statuses:?}");
        assert!(before.iter().all(|s| *s == 500), "{id}: {statuses:?}");
    }
    // The body is the notification, signed with the secret.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    for (r, n) in acked.iter().zip(&want) {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(&body, n);
        let tag = ring::hmac::sign(&key, &r.body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            r.signature.as_deref(),
            Some(format!("sha256={hex}").as_str())
        );
    }
    let dead = dir.join("out/delivery/drivers.dead-letter.jsonl");
    assert!(
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .is_empty(),
        "nothing is dead-lettered"
    );
}

#[test]
fn an_endpoint_that_never_returns_gets_everything_dead_lettered() {
    let _g = serial();
    let port = free_port();
    let (dir, dataflow) = setup(
        "webhook-gone",
        port,
        "kinds = [\"charging_almost_complete\"]",
        "max_attempts = 3",
    );
    let out = evflow()
        .args(["run", dataflow.to_str().unwrap()])
        .env("EVFLOW_TEST_WEBHOOK_SECRET", SECRET)
        .output()
        .expect("run evflow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<serde_json::Value> = driver_notifications(&dir.join("out"))
        .into_iter()
        .filter(|n| n["kind"] == "charging_almost_complete")
        .collect();
    assert!(!want.is_empty());
    assert!(
        stdout.contains(&format!(
            "webhook drivers: 0 delivered, {} dead-lettered, 0 pending",
            want.len()
        )),
        "{stdout}"
    );
    let dead = read_jsonl(&dir.join("out/delivery/drivers.dead-letter.jsonl"));
    assert_eq!(dead.len(), want.len());
    for (d, n) in dead.iter().zip(&want) {
        assert_eq!(d["id"], n["id"]);
        assert_eq!(&d["record"], n);
        assert_eq!(d["attempts"], 3);
        assert_eq!(d["route"], "drivers");
        assert!(!d["last_error"].as_str().unwrap_or("").is_empty(), "{d}");
    }
}
