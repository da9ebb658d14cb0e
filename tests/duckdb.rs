//! DuckDB, the tool data teams use, reads evflow's Parquet: types, partitions, and the revenue
//! cross-check to the cent; and the query evflow prints at the end of a run works.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// The Python with DuckDB: `EVFLOW_PYTHON` (set by scripts/test), else the repo's .venv.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EVFLOW_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "DuckDB is needed: run the tests with scripts/test (it installs DuckDB into .venv)"
    );
    venv
}

#[test]
fn duckdb_reads_the_parquet_and_revenue_matches_sessions_to_the_cent() {
    let _g = serial();
    let dir = tmp_dir("duckdb");
    let out = dir.join("out");
    // The demo dataflow itself (simulator source), smaller and with a free metrics port.
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dataflows/demo.toml"))
        .unwrap()
        .replace("chargers = 300", "chargers = 40");
    let dataflow = dir.join("demo.toml");
    std::fs::write(&dataflow, demo).unwrap();
    let run = run_ok(&[
        "run",
        dataflow.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let printed = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("duckdb -c \""))
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no DuckDB query in the summary:\n{stdout}"));
    let check = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/duckdb_check.py"
        ))
        .arg(&out)
        .arg(printed)
        .output()
        .expect("run python");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(report.starts_with("ok:"), "{report}");
}
