//! Helpers shared by the integration tests: run the real `evflow` binary on real files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Heavy tests (whole pipeline runs) take this lock so that they run one at a time: the
/// machine has two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn evflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_evflow"))
}

/// A fresh, empty directory for one test.
pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Runs evflow with `args`, asserting success; returns its output.
pub fn run_ok(args: &[&str]) -> Output {
    let out = evflow().args(args).output().expect("run evflow");
    assert!(
        out.status.success(),
        "evflow {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The tariffs every test dataflow uses.
pub const TARIFFS: &str = r#"
[[tariffs]]
id = "ac_standard"
currency = "EUR"
energy_per_kwh = "0.39"
session_fee = "0.50"
vat_pct = "19"

[[tariffs]]
id = "dc_fast"
currency = "EUR"
energy_per_kwh = "0.59"
session_fee = "1.00"
vat_pct = "19"
"#;

/// Writes a file-source dataflow into `dir` and returns its path.
pub fn file_dataflow(dir: &Path, input: &Path, registry: Option<&Path>, extra: &str) -> PathBuf {
    let registry = registry.map_or(String::new(), |r| {
        format!("path = {:?}\n", r.display().to_string())
    });
    let text = format!(
        "name = \"test\"\n[source]\nkind = \"file\"\npath = {:?}\n[pipeline]\nworkers = 1\n[output]\ndir = {:?}\n[metrics]\naddr = \"\"\n[registry]\n{registry}default_tariff = \"ac_standard\"\n{TARIFFS}\n{extra}\n",
        input.display().to_string(),
        dir.join("out").display().to_string(),
    );
    let path = dir.join("dataflow.toml");
    std::fs::write(&path, text).expect("write dataflow");
    path
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l}: {e}", path.display()))
        })
        .collect()
}

/// One OCPP-J envelope line.
pub fn line(ts: &str, cp: &str, message: serde_json::Value) -> String {
    serde_json::json!({"timestamp": ts, "charge_point_id": cp, "message": message}).to_string()
}

/// GET /metrics from a running evflow; asserts a 200.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("set a read timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read the response");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// The value of the series written exactly `series` (name and labels, as exposed).
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sessions of an output directory, in (end, charger, connector, transaction) order.
pub fn sorted_sessions(out: &Path) -> Vec<evflow::model::SessionRecord> {
    let mut s = evflow::sinks::parquet::read_sessions(out).expect("read sessions");
    s.sort_by(|a, b| {
        (
            a.end_time,
            &a.charge_point_id,
            a.connector_id,
            &a.transaction_id,
        )
            .cmp(&(
                b.end_time,
                &b.charge_point_id,
                b.connector_id,
                &b.transaction_id,
            ))
    });
    s
}

/// Starts `evflow run DATAFLOW --input - --metrics-addr 127.0.0.1:0 [extra]` reading a live
/// stream on stdin; returns the child (stdin and stdout piped) and its metrics address, read
/// from its log.
pub fn spawn_live(dataflow: &Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = evflow()
        .arg("run")
        .arg(dataflow)
        .args(["--input", "-", "--metrics-addr", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evflow");
    let stderr = child.stderr.take().expect("stderr is piped");
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
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("evflow logs its metrics address");
    (child, addr)
}
