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
