//! `sinks::alertmanager` against the real Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, 0.25): evflow's alerts go in through the v2 API, Alertmanager
//! routes them with `alerts/alertmanager.yml` to a webhook receiver this test runs, firing and
//! then resolved.
//!
//! The binary: `EVFLOW_ALERTMANAGER`, else `/usr/bin/prometheus-alertmanager`, else
//! `alertmanager` or `prometheus-alertmanager` on `PATH`. Missing, the test says so loudly and
//! returns (CI installs it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evflow::metrics::Metrics;
use evflow::model::{
    AnomalyKind, AnomalyRecord, AnomalyState, Audience, NotificationKind, NotificationRecord,
    Severity,
};
use evflow::sinks::alertmanager::{AlertmanagerConfig, AlertmanagerSink};
use serde_json::Value;

/// The receiver URL in `alerts/alertmanager.yml` that the test replaces with its own.
const EXAMPLE_RECEIVER: &str = "http://127.0.0.1:5001/evflow/alerts";

fn alertmanager_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EVFLOW_ALERTMANAGER") {
        return Some(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/bin/prometheus-alertmanager");
    if debian.exists() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("alertmanager"), d.join("prometheus-alertmanager")])
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Alertmanager, killed on drop (also when the test panics); its log is printed then.
struct Alertmanager {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Alertmanager {
    fn start(binary: &Path, config: &Path, dir: &Path) -> Alertmanager {
        let port = free_port();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(r) = ureq::get(&am.url("/-/ready")).call() {
                if r.status() == 200 {
                    return am;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("alertmanager not ready on port {port}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /api/v2/alerts`.
    fn alerts(&self) -> Vec<Value> {
        ureq::get(&self.url("/api/v2/alerts"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- alertmanager log ---\n{log}");
        }
    }
}

/// Alertmanager's webhook notifications, as JSON, in arrival order.
struct Receiver {
    port: u16,
    notifications: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let n = notifications.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let n = n.clone();
                std::thread::spawn(move || serve(conn, &n));
            }
        });
        Receiver {
            port,
            notifications,
        }
    }

    fn all(&self) -> Vec<Value> {
        self.notifications
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Waits until an alert named `alertname` arrived with alert status `status`; returns it.
    fn wait_alert(&self, alertname: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .all()
                .iter()
                .filter_map(|n| n["alerts"].as_array().cloned())
                .flatten()
                .find(|a| a["labels"]["alertname"] == alertname && a["status"] == status);
            if let Some(a) = found {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} {alertname} notification; received: {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Minimal HTTP/1.1: keep-alive, `Content-Length` bodies; every request is a notification.
fn serve(conn: TcpStream, notifications: &Mutex<Vec<Value>>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if let (Ok(v), Ok(mut all)) = (serde_json::from_slice(&body), notifications.lock()) {
            all.push(v);
        }
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// The real Alertmanager with `alerts/alertmanager.yml`, its receiver pointed at a receiver
/// this test runs.
fn example_alertmanager(binary: &Path, dir: &Path) -> (Receiver, Alertmanager) {
    let receiver = Receiver::start();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/alertmanager.yml"),
    )
    .expect("alerts/alertmanager.yml");
    assert!(
        example.contains(EXAMPLE_RECEIVER),
        "the example's receiver URL changed"
    );
    let config = dir.join("alertmanager.yml");
    let url = format!("http://127.0.0.1:{}/evflow/alerts", receiver.port);
    std::fs::write(&config, example.replace(EXAMPLE_RECEIVER, &url)).expect("config");
    let am = Alertmanager::start(binary, &config, dir);
    (receiver, am)
}

fn labels(alert: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(alert["labels"].clone()).unwrap_or_default()
}

#[test]
fn alerts_fire_and_resolve_through_the_real_alertmanager() {
    let Some(binary) = alertmanager_binary() else {
        eprintln!(
            "\n!!!!! SKIPPED: prometheus-alertmanager not found (apt-get install prometheus-alertmanager, \
             or set EVFLOW_ALERTMANAGER) !!!!!\n"
        );
        return;
    };
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("evflow-alertmanager-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    // The example config, with the receiver pointed at this test.
    let (receiver, am) = example_alertmanager(&binary, &dir);

    let cfg = AlertmanagerConfig {
        labels: BTreeMap::from([("env".to_string(), "test".to_string())]),
        ..AlertmanagerConfig::new(am.url(""))
    };
    let mut sink = AlertmanagerSink::start("ops", &cfg, Metrics::new()).expect("sink");
    let now = now_millis();
    let fault = AnomalyRecord {
        id: "anomaly-1".into(),
        kind: AnomalyKind::ConnectorFaulted,
        state: AnomalyState::Open,
        charge_point_id: Arc::from("CP-0001"),
        site_id: Arc::from("site-north"),
        connector_id: Some(1),
        event_time: now - 120_000,
        severity: Severity::Critical,
        during_maintenance: false,
        details: serde_json::json!({"error_code": "GroundFailure"}),
    };
    let out_of_order = NotificationRecord {
        id: "notification-1".into(),
        kind: NotificationKind::StationOutOfOrder,
        audience: Audience::Operator,
        recipient: Arc::from("operator"),
        charge_point_id: Arc::from("CP-0002"),
        site_id: Arc::from("site-south"),
        connector_id: None,
        event_time: now - 60_000,
        facts: serde_json::json!({"status": "Unavailable"}),
        held_until: None,
    };
    sink.anomaly(&fault);
    sink.out_of_order(&out_of_order);

    // Firing: notified with evflow's labels...
    let wait = Duration::from_secs(10);
    let firing = receiver.wait_alert("ConnectorFaulted", "firing", wait);
    let l = labels(&firing);
    assert_eq!(l["severity"], "critical");
    assert_eq!(l["charge_point_id"], "CP-0001");
    assert_eq!(l["site_id"], "site-north");
    assert_eq!(l["connector_id"], "1");
    assert_eq!(l["kind"], "connector_faulted");
    assert_eq!(l["env"], "test");
    assert_eq!(firing["annotations"]["anomaly_id"], "anomaly-1");
    let firing = receiver.wait_alert("StationOutOfOrder", "firing", wait);
    let l = labels(&firing);
    assert_eq!(l["severity"], "warning");
    assert_eq!(l["charge_point_id"], "CP-0002");
    assert_eq!(l["site_id"], "site-south");
    assert!(!l.contains_key("connector_id"));
    // ...and active in Alertmanager.
    let active = am.alerts();
    for name in ["ConnectorFaulted", "StationOutOfOrder"] {
        assert!(
            active
                .iter()
                .any(|a| a["labels"]["alertname"] == name && a["status"]["state"] == "active"),
            "{name} not active: {active:#?}"
        );
    }

    // Resolved: both notified as resolved.
    sink.anomaly(&AnomalyRecord {
        state: AnomalyState::Resolved,
        event_time: now - 10_000,
        ..fault.clone()
    });
    sink.back_in_order("CP-0002", None, now_millis());
    let report = sink.drain(Duration::from_secs(5));
    assert_eq!(report.pending, 0);
    for name in ["ConnectorFaulted", "StationOutOfOrder"] {
        let resolved = receiver.wait_alert(name, "resolved", wait);
        assert_ne!(resolved["endsAt"], "0001-01-01T00:00:00Z");
    }
    assert!(
        am.alerts().iter().all(|a| a["status"]["state"] != "active"),
        "still active after resolving"
    );
    drop(am);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("alertmanager round trip in {:?}", started.elapsed());
}

/// The whole pipeline: evflow reads live OCPP traffic on stdin with an `alertmanager` route;
/// a connector's fault becomes a `ConnectorFaulted` and a `StationOutOfOrder` alert, and when
/// the connector is Available again both are resolved — through the real Alertmanager.
#[test]
fn evflow_alerts_fire_and_resolve_through_the_real_alertmanager() {
    let Some(binary) = alertmanager_binary() else {
        eprintln!("\n!!!!! SKIPPED: prometheus-alertmanager not found !!!!!\n");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("alertmanager-e2e");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (receiver, am) = example_alertmanager(&binary, &dir);

    let dataflow = dir.join("dataflow.toml");
    std::fs::write(
        &dataflow,
        format!(
            r#"
[source]
kind = "file"
path = "-"
[pipeline]
workers = 1
[output]
dir = {out:?}
[metrics]
addr = ""
[[notifications.routes]]
name = "ops"
audience = "operator"
kinds = ["station_out_of_order"]
[notifications.routes.alertmanager]
url = {url:?}
"#,
            out = dir.join("out").display().to_string(),
            url = am.url(""),
        ),
    )
    .expect("dataflow");
    let mut evflow = Command::new(env!("CARGO_BIN_EXE_evflow"))
        .args(["run", dataflow.to_str().expect("utf-8")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start evflow");
    let mut stdin = evflow.stdin.take().expect("stdin");
    let mut n = 0;
    let mut send =
        |stdin: &mut std::process::ChildStdin, at: &str, action: &str, payload: Value| {
            n += 1;
            let line = serde_json::json!({"timestamp": at, "charge_point_id": "CP-AM",
            "message": [2, format!("m{n}"), action, payload]});
            writeln!(stdin, "{line}").expect("write stdin");
            stdin.flush().expect("flush stdin");
        };
    let status = |c: u32, s: &str, at: &str| {
        let code = if s == "Faulted" {
            "GroundFailure"
        } else {
            "NoError"
        };
        serde_json::json!({"connectorId": c, "errorCode": code, "status": s, "timestamp": at})
    };
    send(
        &mut stdin,
        "2026-03-02T10:00:00Z",
        "BootNotification",
        serde_json::json!({"chargePointVendor": "Alfen BV", "chargePointModel": "NG920"}),
    );
    for c in 0..=2 {
        send(
            &mut stdin,
            "2026-03-02T10:00:00Z",
            "StatusNotification",
            status(c, "Available", "2026-03-02T10:00:00Z"),
        );
    }
    send(
        &mut stdin,
        "2026-03-02T10:01:00Z",
        "StatusNotification",
        status(1, "Faulted", "2026-03-02T10:01:00Z"),
    );
    // Heartbeats move event time (the watermark) past the fault.
    for m in 2..=5 {
        send(
            &mut stdin,
            &format!("2026-03-02T10:0{m}:00Z"),
            "Heartbeat",
            serde_json::json!({}),
        );
    }
    // The fault reaches Alertmanager while evflow is still running.
    let wait = Duration::from_secs(20);
    let fault = receiver.wait_alert("ConnectorFaulted", "firing", wait);
    let l = labels(&fault);
    assert_eq!(
        (
            l["charge_point_id"].as_str(),
            l["site_id"].as_str(),
            l["connector_id"].as_str(),
            l["severity"].as_str()
        ),
        ("CP-AM", "unassigned", "1", "critical")
    );
    let out_of_order = receiver.wait_alert("StationOutOfOrder", "firing", wait);
    assert_eq!(labels(&out_of_order)["connector_id"], "1");
    assert_eq!(out_of_order["startsAt"], "2026-03-02T10:01:00Z");

    send(
        &mut stdin,
        "2026-03-02T10:06:00Z",
        "StatusNotification",
        status(1, "Available", "2026-03-02T10:06:00Z"),
    );
    for m in 7..=9 {
        send(
            &mut stdin,
            &format!("2026-03-02T10:0{m}:00Z"),
            "Heartbeat",
            serde_json::json!({}),
        );
    }
    drop(stdin);
    let out = evflow.wait_with_output().expect("evflow ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["ConnectorFaulted", "StationOutOfOrder"] {
        let resolved = receiver.wait_alert(name, "resolved", wait);
        assert_eq!(resolved["endsAt"], "2026-03-02T10:06:00Z", "{name}");
    }
    drop(am);
}
