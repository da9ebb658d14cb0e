//! `evflow detect` on every series of the Numenta Anomaly Benchmark in `../shared/data/nab`
//! (58 CSV files, `timestamp,value`, 365,558 rows).
//!
//! For each series the real binary scores the file, and the test asserts:
//! - one output row per input row, the timestamp and value echoed verbatim and in input order
//!   (one NAB file, `machine_temperature_system_failure.csv`, repeats an hour of timestamps:
//!   the order is the file's, not sorted);
//! - every score parses and lies in [0, 1]; the summary line counts the same rows;
//! - a constant series (`art_flatline.csv`) scores 0 everywhere;
//! - every series outside `artificialNoAnomaly/` (NAB: "all data files contain anomalies,
//!   unless otherwise noted") has a non-zero score after the warm-up.
//!
//! Labels: `../shared` holds NAB's `data/` folder only, not its `labels/combined_windows.json`,
//! so by default the checks above are all. When a labels file is present — at
//! `../shared/data/nab/labels/combined_windows.json`, or at the path in `EVFLOW_NAB_LABELS`
//! (NAB's own file, unchanged) — the test also asserts that the detector beats chance on the
//! labelled series: for at least 60% of them the mean score inside the anomaly windows exceeds
//! the mean outside, and the share of the flagged points (score ≥ the threshold) that lie
//! inside a window exceeds the share of all points that do. Points of the warm-up are left
//! out. The per-series table is printed to stderr (`cargo test --test detect -- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use evflow::detect::parse_timestamp;
use evflow::stages::detector::DetectorConfig;

fn nab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab")
}

/// Every `.csv` under `dir`, sorted.
fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            csv_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "csv") {
            out.push(path);
        }
    }
    out.sort();
}

/// NAB's anomaly windows by series (`realKnownCause/nyc_taxi.csv` → [(start, end)], in
/// milliseconds).
type Windows = BTreeMap<String, Vec<(i64, i64)>>;

/// The labels file and its windows, if one is available.
fn labels() -> Option<(PathBuf, Windows)> {
    let path = std::env::var_os("EVFLOW_NAB_LABELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| nab_dir().join("labels/combined_windows.json"));
    let text = std::fs::read_to_string(&path).ok()?;
    let raw: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not NAB's window format: {e}", path.display()));
    let t = |s: &str| parse_timestamp(s).unwrap_or_else(|| panic!("bad label time {s:?}"));
    let windows = raw
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|(a, b)| (t(a), t(b))).collect()))
        .collect();
    Some((path, windows))
}

struct Row {
    series: String,
    rows: usize,
    max: f64,
    mean: f64,
    flagged: usize,
    /// (mean inside the windows, mean outside, the first maximum lies in a window,
    /// flagged points inside, points inside)
    labelled: Option<(f64, f64, bool, usize, usize)>,
}

#[test]
fn detect_scores_every_nab_series() {
    let _serial = serial();
    let nab = nab_dir();
    assert!(
        nab.is_dir(),
        "{}: the NAB data is missing (see ../shared/README.md)",
        nab.display()
    );
    let mut files = Vec::new();
    csv_files(&nab, &mut files);
    assert_eq!(files.len(), 58, "NAB has 58 series: {files:?}");
    let cfg = DetectorConfig::default();
    let warmup = cfg.warmup as usize;
    let labels = labels();
    match &labels {
        Some((p, _)) => eprintln!("labels: {}", p.display()),
        None => eprintln!(
            "labels: none in ../shared (set EVFLOW_NAB_LABELS to NAB's combined_windows.json \
             to check the scores against them); sanity checks only"
        ),
    }
    let dir = tmp_dir("detect_nab");
    let mut table = Vec::new();
    for (i, csv) in files.iter().enumerate() {
        let series = csv
            .strip_prefix(nab.join("data"))
            .unwrap_or(csv)
            .to_string_lossy()
            .replace('\\', "/");
        let out = dir.join(format!("{i}.csv"));
        let run = run_ok(&[
            "detect",
            "--csv",
            csv.to_str().expect("a UTF-8 path"),
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ]);
        let input = std::fs::read_to_string(csv).expect("read the series");
        let output = std::fs::read_to_string(&out).expect("read the scores");
        let in_rows: Vec<&str> = input.lines().skip(1).collect();
        let mut out_lines = output.lines();
        assert_eq!(
            out_lines.next(),
            Some("timestamp,value,anomaly_score"),
            "{series}"
        );
        let out_rows: Vec<&str> = out_lines.collect();
        assert_eq!(out_rows.len(), in_rows.len(), "{series}: row count");
        let summary = String::from_utf8_lossy(&run.stdout);
        assert!(
            summary.starts_with(&format!("scored {} rows ", in_rows.len())),
            "{series}: {summary}"
        );

        let mut scores = Vec::with_capacity(out_rows.len());
        let mut times = Vec::with_capacity(out_rows.len());
        for (n, (inp, outp)) in in_rows.iter().zip(&out_rows).enumerate() {
            let (echo, score) = outp
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("{series} row {n}: {outp:?}"));
            assert_eq!(echo, *inp, "{series} row {n}: not echoed verbatim");
            let score: f64 = score
                .parse()
                .unwrap_or_else(|e| panic!("{series} row {n}: score {score:?}: {e}"));
            assert!((0.0..=1.0).contains(&score), "{series} row {n}: {score}");
            scores.push(score);
            let ts = inp.split(',').next().unwrap_or_default();
            times.push(parse_timestamp(ts).unwrap_or_else(|| panic!("{series}: time {ts:?}")));
        }

        let values: Vec<&str> = in_rows
            .iter()
            .map(|r| r.split(',').nth(1).unwrap_or_default())
            .collect();
        let first = values.first().and_then(|v| v.parse::<f64>().ok());
        if first.is_some() && values.iter().all(|v| v.parse::<f64>().ok() == first) {
            assert!(
                scores.iter().all(|&s| s == 0.0),
                "{series}: a constant series must score 0"
            );
        }
        let after = &scores[warmup.min(scores.len())..];
        if !series.starts_with("artificialNoAnomaly/") {
            assert!(
                after.iter().any(|&s| s > 0.0),
                "{series}: all scores 0 after the warm-up, in a series with anomalies"
            );
        }

        let labelled = labels
            .as_ref()
            .and_then(|(_, l)| l.get(&series))
            .and_then(|w| {
                if w.is_empty() {
                    return None;
                }
                let inside = |t: i64| w.iter().any(|&(a, b)| a <= t && t <= b);
                let (mut sum_in, mut n_in, mut sum_out, mut n_out, mut flagged_in) =
                    (0.0, 0usize, 0.0, 0usize, 0usize);
                for (&s, &t) in after.iter().zip(&times[warmup.min(times.len())..]) {
                    if inside(t) {
                        sum_in += s;
                        n_in += 1;
                        flagged_in += usize::from(s >= cfg.threshold);
                    } else {
                        sum_out += s;
                        n_out += 1;
                    }
                }
                let max = after.iter().cloned().fold(0.0, f64::max);
                let first_max = after.iter().position(|&s| s == max).map(|p| p + warmup);
                let max_inside = max > 0.0 && first_max.is_some_and(|p| inside(times[p]));
                Some((
                    sum_in / n_in.max(1) as f64,
                    sum_out / n_out.max(1) as f64,
                    max_inside,
                    flagged_in,
                    n_in,
                ))
            });
        table.push(Row {
            series,
            rows: scores.len(),
            max: scores.iter().cloned().fold(0.0, f64::max),
            mean: after.iter().sum::<f64>() / after.len().max(1) as f64,
            flagged: after.iter().filter(|&&s| s >= cfg.threshold).count(),
            labelled,
        });
    }

    eprintln!(
        "{:<58} {:>6} {:>6} {:>7} {:>7} {:>8} {:>8} {:>6}",
        "series", "rows", "max", "mean", "flagged", "mean in", "mean out", "max in"
    );
    for r in &table {
        let (mi, mo, mx) = match r.labelled {
            Some((i, o, m, _, _)) => (
                format!("{i:.4}"),
                format!("{o:.4}"),
                if m { "yes" } else { "no" }.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        eprintln!(
            "{:<58} {:>6} {:>6.3} {:>7.4} {:>7} {:>8} {:>8} {:>6}",
            r.series, r.rows, r.max, r.mean, r.flagged, mi, mo, mx
        );
    }

    let labelled: Vec<_> = table
        .iter()
        .filter_map(|r| r.labelled.map(|l| (r, l)))
        .collect();
    if labelled.is_empty() {
        return;
    }
    let n = labelled.len();
    let mean_wins = labelled.iter().filter(|(_, l)| l.0 > l.1).count();
    let max_inside = labelled.iter().filter(|(_, l)| l.2).count();
    let flagged: usize = labelled.iter().map(|(r, _)| r.flagged).sum();
    let flagged_in: usize = labelled.iter().map(|(_, l)| l.3).sum();
    let points: usize = labelled
        .iter()
        .map(|(r, _)| r.rows.saturating_sub(warmup))
        .sum();
    let points_in: usize = labelled.iter().map(|(_, l)| l.4).sum();
    let precision = flagged_in as f64 / flagged.max(1) as f64;
    let base_rate = points_in as f64 / points.max(1) as f64;
    eprintln!(
        "labelled series: {n}; mean inside > mean outside: {mean_wins}; first maximum inside a \
         window: {max_inside}; flagged points inside windows: {flagged_in}/{flagged} = \
         {precision:.3} (windows hold {base_rate:.3} of the points)"
    );
    assert!(
        mean_wins as f64 >= 0.6 * n as f64,
        "mean score inside the windows exceeds the mean outside for only {mean_wins}/{n} series"
    );
    assert!(
        precision > base_rate,
        "flagged points fall inside windows no more often than chance: {precision:.3} vs \
         {base_rate:.3}"
    );
}
