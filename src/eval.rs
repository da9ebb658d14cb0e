//! Evaluation: scores anomaly detections against the simulator's ground-truth labels.
//!
//! Owns: the matching of detections to labels and the per-kind metrics that `evflow eval`
//! prints. Pure: no I/O (the binary reads the files); see `docs/evaluation.md`.
//!
//! # Matching
//!
//! - A *detection* is an [`AnomalyRecord`] with state `open` (resolved records are ignored;
//!   open records repeated with the same `id` count once).
//! - A detection *can match* a [`Label`] when
//!   - the kinds are equal and the `charge_point_id`s are equal;
//!   - the connectors are compatible: equal when both are given, but a charger-wide side
//!     (connector `null`, or `0` — OCPP's connector 0 is the charger itself, and meter-based
//!     detectors report a charger-wide meter as connector 0) matches any connector of that
//!     charger;
//!   - the detection's `event_time` lies in `[label.start − tolerance_before,
//!     label.end + tolerance_after]` (both ends included). `tolerance_before` (default 5 min)
//!     allows for timestamp jitter between the simulator's clock and the charger's messages;
//!     `tolerance_after` (default 30 min) allows for detectors that can only confirm a fault
//!     some time after it began, e.g. `communication_lost` after `missed_heartbeats` silent
//!     heartbeat intervals, `stuck_session` after `stuck_after` without power — even when
//!     the labelled fault was shorter than that.
//! - Assignment is greedy and one-to-one: labels are taken in order of `start` (then `end`,
//!   charger, connector, kind), and each takes the *earliest* detection that can match it and
//!   is not yet taken. So each label is matched by at most one detection and each detection
//!   matches at most one label. (Greedy is not an optimal bipartite matching: when windows of
//!   two labels of one kind on one connector overlap, an earlier label may take the detection
//!   of a later one. The simulator keeps faults of one connector apart, so this is rare.)
//!
//! # Metrics, per kind and in total
//!
//! - TP: labels matched; FN: labels not matched; FP: detections not matched.
//! - precision = TP / (TP + FP), `None` (JSON `null`, shown `-`) when there are no detections;
//!   recall = TP / (TP + FN), `None` when there are no labels.
//! - detection delay of a matched pair = detection `event_time` − `label.start`, in seconds
//!   (negative when the detection is stamped before the labelled start, within
//!   `tolerance_before`). Reported: the median and the 95th percentile by nearest rank (the
//!   value at rank ⌈p · n⌉ of the n delays in ascending order; so the median of an even count
//!   is the lower middle value), and the maximum; `None` without matched pairs.
//! - The total row sums TP, FP and FN over all kinds (micro-average) and takes the delay
//!   statistics over all matched pairs.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{AnomalyKind, AnomalyRecord, AnomalyState, Millis};
use crate::sources::simulator::Label;

const MINUTE: Millis = 60_000;

/// How far outside a label's `[start, end]` a detection may lie and still match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalConfig {
    /// Before `start`, ms (default 5 min).
    pub tolerance_before: Millis,
    /// After `end`, ms (default 30 min).
    pub tolerance_after: Millis,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            tolerance_before: 5 * MINUTE,
            tolerance_after: 30 * MINUTE,
        }
    }
}

/// Counts and metrics of one kind, or of all kinds together.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scores {
    pub labels: usize,
    pub detections: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// TP / (TP + FP); `None` without detections.
    pub precision: Option<f64>,
    /// TP / (TP + FN); `None` without labels.
    pub recall: Option<f64>,
    /// Detection delay (event time − label start) of the matched pairs, seconds.
    pub delay_median_s: Option<f64>,
    pub delay_p95_s: Option<f64>,
    pub delay_max_s: Option<f64>,
}

/// The scores of one anomaly kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KindRow {
    pub kind: AnomalyKind,
    #[serde(flatten)]
    pub scores: Scores,
}

/// The result of [`evaluate`]: one row per kind (all of [`AnomalyKind::ALL`], in that order)
/// and the totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    pub tolerance_before_s: f64,
    pub tolerance_after_s: f64,
    pub kinds: Vec<KindRow>,
    pub total: Scores,
}

impl EvalReport {
    /// The row of `kind`.
    pub fn kind(&self, kind: AnomalyKind) -> Option<&Scores> {
        self.kinds
            .iter()
            .find(|r| r.kind == kind)
            .map(|r| &r.scores)
    }
}

/// Which detection matched which label (indices into the slices given to [`match_labels`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    /// (label, detection), in the order the labels were considered.
    pub pairs: Vec<(usize, usize)>,
    pub unmatched_labels: Vec<usize>,
    /// Open, distinct detections that matched no label.
    pub unmatched_detections: Vec<usize>,
}

/// Whether a label's and a detection's connectors are compatible: equal, or either side
/// charger-wide (`None` or connector 0).
fn connectors_match(label: Option<u32>, detection: Option<u32>) -> bool {
    match (label, detection) {
        (None, _) | (_, None) | (Some(0), _) | (_, Some(0)) => true,
        (Some(a), Some(b)) => a == b,
    }
}

/// Matches detections to labels by the rules of the module doc.
pub fn match_labels(labels: &[Label], detections: &[AnomalyRecord], cfg: &EvalConfig) -> Matching {
    // Open records, each id once, by (kind, charger) in event-time order.
    let mut seen_ids = HashSet::new();
    let mut open: Vec<usize> = (0..detections.len())
        .filter(|&i| {
            let d = &detections[i];
            d.state == AnomalyState::Open && seen_ids.insert(d.id.as_str())
        })
        .collect();
    open.sort_by(|&a, &b| {
        let (x, y) = (&detections[a], &detections[b]);
        (x.event_time, &x.charge_point_id, x.connector_id, &x.id, a).cmp(&(
            y.event_time,
            &y.charge_point_id,
            y.connector_id,
            &y.id,
            b,
        ))
    });
    let mut by_key: HashMap<(AnomalyKind, &str), Vec<usize>> = HashMap::new();
    for &i in &open {
        let d = &detections[i];
        by_key
            .entry((d.kind, &*d.charge_point_id))
            .or_default()
            .push(i);
    }

    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&labels[a], &labels[b]);
        (
            x.start,
            x.end,
            &x.charge_point_id,
            x.connector_id,
            x.kind,
            a,
        )
            .cmp(&(
                y.start,
                y.end,
                &y.charge_point_id,
                y.connector_id,
                y.kind,
                b,
            ))
    });
    let mut taken = vec![false; detections.len()];
    let mut m = Matching::default();
    for li in order {
        let l = &labels[li];
        let (from, to) = (
            l.start.saturating_sub(cfg.tolerance_before),
            l.end.saturating_add(cfg.tolerance_after),
        );
        let hit = by_key
            .get(&(l.kind, l.charge_point_id.as_str()))
            .and_then(|cands| {
                cands.iter().copied().find(|&di| {
                    let d = &detections[di];
                    !taken[di]
                        && connectors_match(l.connector_id, d.connector_id)
                        && (from..=to).contains(&d.event_time)
                })
            });
        match hit {
            Some(di) => {
                taken[di] = true;
                m.pairs.push((li, di));
            }
            None => m.unmatched_labels.push(li),
        }
    }
    m.unmatched_detections = open.into_iter().filter(|&i| !taken[i]).collect();
    m.unmatched_detections.sort_unstable();
    m
}

/// The value at nearest rank ⌈`pct` / 100 · n⌉ of `sorted` (ascending); `None` when empty.
fn nearest_rank(sorted: &[Millis], pct: usize) -> Option<Millis> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (pct * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn secs(ms: Option<Millis>) -> Option<f64> {
    ms.map(|v| v as f64 / 1000.0)
}

fn scores(labels: usize, detections: usize, tp: usize, mut delays: Vec<Millis>) -> Scores {
    delays.sort_unstable();
    let (fp, fn_) = (detections - tp, labels - tp);
    Scores {
        labels,
        detections,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        delay_median_s: secs(nearest_rank(&delays, 50)),
        delay_p95_s: secs(nearest_rank(&delays, 95)),
        delay_max_s: secs(delays.last().copied()),
    }
}

/// Scores `detections` (anomaly records, open and resolved) against `labels`.
pub fn evaluate(labels: &[Label], detections: &[AnomalyRecord], cfg: &EvalConfig) -> EvalReport {
    let m = match_labels(labels, detections, cfg);
    let mut rows = Vec::with_capacity(AnomalyKind::ALL.len());
    let mut all_delays = Vec::with_capacity(m.pairs.len());
    let n_detections = m.pairs.len() + m.unmatched_detections.len();
    for kind in AnomalyKind::ALL {
        let n_labels = labels.iter().filter(|l| l.kind == kind).count();
        let delays: Vec<Millis> = m
            .pairs
            .iter()
            .filter(|&&(li, _)| labels[li].kind == kind)
            .map(|&(li, di)| detections[di].event_time - labels[li].start)
            .collect();
        let tp = delays.len();
        let fp = m
            .unmatched_detections
            .iter()
            .filter(|&&di| detections[di].kind == kind)
            .count();
        all_delays.extend_from_slice(&delays);
        rows.push(KindRow {
            kind,
            scores: scores(n_labels, tp + fp, tp, delays),
        });
    }
    EvalReport {
        tolerance_before_s: cfg.tolerance_before as f64 / 1000.0,
        tolerance_after_s: cfg.tolerance_after as f64 / 1000.0,
        kinds: rows,
        total: scores(labels.len(), n_detections, m.pairs.len(), all_delays),
    }
}

/// A line of a JSONL file that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub error: serde_json::Error,
}

/// Parses JSONL text (blank lines skipped), e.g. labels or anomaly records.
pub fn parse_jsonl<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, LineError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|error| LineError { line: i + 1, error }))
        .collect()
}

/// The report as a text table, one row per kind and a total.
pub fn format_table(r: &EvalReport) -> String {
    fn opt(v: Option<f64>, digits: usize) -> String {
        v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
    }
    fn row(out: &mut String, name: &str, s: &Scores) -> fmt::Result {
        writeln!(
            out,
            "{name:<24} {:>6} {:>6} {:>5} {:>5} {:>5} {:>9} {:>7} {:>10} {:>9} {:>9}",
            s.labels,
            s.detections,
            s.true_positives,
            s.false_positives,
            s.false_negatives,
            opt(s.precision, 3),
            opt(s.recall, 3),
            opt(s.delay_median_s, 1),
            opt(s.delay_p95_s, 1),
            opt(s.delay_max_s, 1),
        )
    }
    let mut out = String::new();
    let write = |out: &mut String| -> fmt::Result {
        writeln!(
            out,
            "{:<24} {:>6} {:>6} {:>5} {:>5} {:>5} {:>9} {:>7} {:>10} {:>9} {:>9}",
            "kind",
            "labels",
            "detect",
            "TP",
            "FP",
            "FN",
            "precision",
            "recall",
            "delay p50s",
            "p95 s",
            "max s"
        )?;
        for k in &r.kinds {
            row(out, k.kind.as_str(), &k.scores)?;
        }
        row(out, "total", &r.total)?;
        writeln!(
            out,
            "a detection (open record) matches a label of its kind, charger and connector when \
             its event time is in [start - {} s, end + {} s]; delay = event time - start",
            r.tolerance_before_s, r.tolerance_after_s
        )
    };
    // Writing to a String cannot fail.
    let _ = write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    const T0: Millis = 1_767_571_200_000; // 2026-01-05T00:00:00Z

    fn label(kind: AnomalyKind, cp: &str, conn: Option<u32>, start: Millis, end: Millis) -> Label {
        Label {
            kind,
            charge_point_id: cp.into(),
            connector_id: conn,
            start: T0 + start,
            end: T0 + end,
        }
    }

    fn det(kind: AnomalyKind, cp: &str, conn: Option<u32>, at: Millis) -> AnomalyRecord {
        AnomalyRecord {
            id: format!("{kind:?}/{cp}/{conn:?}/{at}"),
            kind,
            state: AnomalyState::Open,
            charge_point_id: cp.into(),
            site_id: "SITE-001".into(),
            connector_id: conn,
            event_time: T0 + at,
            severity: Severity::Critical,
            during_maintenance: false,
            details: serde_json::json!({}),
        }
    }

    fn resolved(mut d: AnomalyRecord, at: Millis) -> AnomalyRecord {
        d.state = AnomalyState::Resolved;
        d.event_time = T0 + at;
        d
    }

    const FAULT: AnomalyKind = AnomalyKind::ConnectorFaulted;
    const LOST: AnomalyKind = AnomalyKind::CommunicationLost;

    #[test]
    fn eval_exact_matches_score_one() {
        let labels = [
            label(FAULT, "CP-1", Some(1), 0, 30 * MINUTE),
            label(LOST, "CP-2", None, MINUTE, 60 * MINUTE),
        ];
        let d1 = det(FAULT, "CP-1", Some(1), 0);
        let d2 = det(LOST, "CP-2", None, 11 * MINUTE);
        let dets = [
            d1.clone(),
            d2.clone(),
            resolved(d1, 30 * MINUTE),
            resolved(d2, 60 * MINUTE),
        ];
        let r = evaluate(&labels, &dets, &EvalConfig::default());
        let f = r.kind(FAULT).unwrap();
        assert_eq!(
            (f.true_positives, f.false_positives, f.false_negatives),
            (1, 0, 0)
        );
        assert_eq!((f.precision, f.recall), (Some(1.0), Some(1.0)));
        assert_eq!(f.delay_median_s, Some(0.0));
        let l = r.kind(LOST).unwrap();
        assert_eq!((l.labels, l.detections, l.true_positives), (1, 1, 1));
        assert_eq!(l.delay_max_s, Some(600.0));
        assert_eq!(r.total.true_positives, 2);
        assert_eq!(r.total.detections, 2, "resolved records are not detections");
        assert_eq!(r.total.precision, Some(1.0));
        // Kinds without labels or detections: no ratios.
        let p = r.kind(AnomalyKind::PowerSupply).unwrap();
        assert_eq!((p.precision, p.recall, p.delay_p95_s), (None, None, None));
        assert_eq!(r.kinds.len(), AnomalyKind::ALL.len());
    }

    #[test]
    fn eval_detection_outside_window_is_fn_and_fp() {
        let cfg = EvalConfig::default();
        let labels = [label(FAULT, "CP-1", Some(1), 0, 30 * MINUTE)];
        // Just inside both ends.
        for at in [-5 * MINUTE, 60 * MINUTE] {
            let r = evaluate(&labels, &[det(FAULT, "CP-1", Some(1), at)], &cfg);
            assert_eq!(r.total.true_positives, 1, "at {at}");
        }
        // Late: after end + 30 min; early: before start − 5 min.
        for at in [60 * MINUTE + 1, -5 * MINUTE - 1] {
            let r = evaluate(&labels, &[det(FAULT, "CP-1", Some(1), at)], &cfg);
            let f = r.kind(FAULT).unwrap();
            assert_eq!(
                (f.true_positives, f.false_positives, f.false_negatives),
                (0, 1, 1),
                "at {at}"
            );
            assert_eq!((f.precision, f.recall), (Some(0.0), Some(0.0)));
            assert_eq!(f.delay_median_s, None);
        }
        // Wrong charger, wrong kind, wrong connector: no match either.
        let r = evaluate(
            &labels,
            &[
                det(FAULT, "CP-2", Some(1), 0),
                det(AnomalyKind::PowerSupply, "CP-1", Some(1), 0),
                det(FAULT, "CP-1", Some(2), 0),
            ],
            &cfg,
        );
        assert_eq!(
            (
                r.total.true_positives,
                r.total.false_positives,
                r.total.false_negatives
            ),
            (0, 3, 1)
        );
    }

    #[test]
    fn eval_two_detections_for_one_label_are_one_tp_one_fp() {
        let labels = [label(FAULT, "CP-1", Some(1), 0, 30 * MINUTE)];
        let late = det(FAULT, "CP-1", Some(1), 10 * MINUTE);
        let early = det(FAULT, "CP-1", Some(1), 2 * MINUTE);
        // Given late first: the earliest still wins.
        let r = evaluate(&labels, &[late, early.clone()], &EvalConfig::default());
        let f = r.kind(FAULT).unwrap();
        assert_eq!(
            (f.true_positives, f.false_positives, f.false_negatives),
            (1, 1, 0)
        );
        assert_eq!(f.precision, Some(0.5));
        assert_eq!(f.recall, Some(1.0));
        assert_eq!(f.delay_median_s, Some(120.0));
        // The same open record twice (same id) is one detection.
        let r = evaluate(&labels, &[early.clone(), early], &EvalConfig::default());
        assert_eq!(r.total.false_positives, 0);
        // Two labels, one detection in both windows: the earlier label takes it.
        let labels = [
            label(FAULT, "CP-1", Some(1), 0, 10 * MINUTE),
            label(FAULT, "CP-1", Some(1), 20 * MINUTE, 30 * MINUTE),
        ];
        let m = match_labels(
            &labels,
            &[det(FAULT, "CP-1", Some(1), 20 * MINUTE)],
            &EvalConfig::default(),
        );
        assert_eq!(m.pairs, vec![(0, 0)]);
        assert_eq!(m.unmatched_labels, vec![1]);
    }

    #[test]
    fn eval_charger_wide_matches_any_connector() {
        let cfg = EvalConfig::default();
        // A charger-wide label matches a detection on any connector, and vice versa; a
        // connector-0 detection (charger-wide meter) matches too.
        for (l, d) in [
            (None, Some(2)),
            (Some(2), None),
            (None, None),
            (Some(2), Some(0)),
            (Some(2), Some(2)),
        ] {
            let r = evaluate(
                &[label(FAULT, "CP-1", l, 0, MINUTE)],
                &[det(FAULT, "CP-1", d, 0)],
                &cfg,
            );
            assert_eq!(r.total.true_positives, 1, "label {l:?}, detection {d:?}");
        }
        let r = evaluate(
            &[label(FAULT, "CP-1", Some(1), 0, MINUTE)],
            &[det(FAULT, "CP-1", Some(2), 0)],
            &cfg,
        );
        assert_eq!(r.total.true_positives, 0);
        // One charger-wide detection serves one of two connector labels only.
        let r = evaluate(
            &[
                label(FAULT, "CP-1", Some(1), 0, MINUTE),
                label(FAULT, "CP-1", Some(2), 0, MINUTE),
            ],
            &[det(FAULT, "CP-1", None, 0)],
            &cfg,
        );
        assert_eq!(
            (
                r.total.true_positives,
                r.total.false_negatives,
                r.total.false_positives
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn eval_delay_statistics_by_nearest_rank() {
        // Delays 1..=20 s on 20 chargers.
        let labels: Vec<Label> = (1..=20)
            .map(|i| label(FAULT, &format!("CP-{i}"), Some(1), 0, 30 * MINUTE))
            .collect();
        let dets: Vec<AnomalyRecord> = (1..=20)
            .map(|i| det(FAULT, &format!("CP-{i}"), Some(1), i * 1000))
            .collect();
        let r = evaluate(&labels, &dets, &EvalConfig::default());
        let f = r.kind(FAULT).unwrap();
        assert_eq!(f.delay_median_s, Some(10.0)); // rank ⌈0.5·20⌉ = 10
        assert_eq!(f.delay_p95_s, Some(19.0)); // rank ⌈0.95·20⌉ = 19
        assert_eq!(f.delay_max_s, Some(20.0));
        assert_eq!(r.total.delay_p95_s, Some(19.0));

        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 95), Some(4));
        // A detection stamped before the labelled start has a negative delay.
        let r = evaluate(
            &[label(FAULT, "CP-1", Some(1), 0, MINUTE)],
            &[det(FAULT, "CP-1", Some(1), -1500)],
            &EvalConfig::default(),
        );
        assert_eq!(r.total.delay_median_s, Some(-1.5));
    }

    #[test]
    fn eval_empty_inputs() {
        let cfg = EvalConfig::default();
        let r = evaluate(&[], &[], &cfg);
        assert_eq!(r.total, Scores::default());
        assert!(r.kinds.iter().all(|k| k.scores == Scores::default()));
        let text = format_table(&r);
        assert!(text.contains("total"), "{text}");

        let r = evaluate(&[label(LOST, "CP-1", None, 0, MINUTE)], &[], &cfg);
        let l = r.kind(LOST).unwrap();
        assert_eq!(
            (l.precision, l.recall, l.false_negatives),
            (None, Some(0.0), 1)
        );

        let r = evaluate(&[], &[det(LOST, "CP-1", None, 0)], &cfg);
        let l = r.kind(LOST).unwrap();
        assert_eq!(
            (l.precision, l.recall, l.false_positives),
            (Some(0.0), None, 1)
        );
    }

    #[test]
    fn eval_report_json_and_table() {
        let r = evaluate(
            &[label(FAULT, "CP-1", Some(1), 0, MINUTE)],
            &[det(FAULT, "CP-1", Some(1), 2000)],
            &EvalConfig::default(),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kinds"][1]["kind"], "connector_faulted");
        assert_eq!(v["kinds"][1]["recall"], 1.0);
        assert_eq!(v["kinds"][1]["delay_median_s"], 2.0);
        assert!(v["kinds"][0]["precision"].is_null());
        assert_eq!(v["total"]["true_positives"], 1);
        assert_eq!(v["tolerance_after_s"], 1800.0);
        let text = format_table(&r);
        assert!(text.lines().count() >= 8, "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("connector_faulted")
                && l.contains("1.000")
                && l.contains("2.0")),
            "{text}"
        );
    }

    #[test]
    fn eval_parse_jsonl_names_the_bad_line() {
        let good = r#"{"kind":"meter_error","charge_point_id":"CP-1","connector_id":1,"start":"2026-01-05T00:00:00.000Z","end":"2026-01-05T01:00:00.000Z"}"#;
        let labels: Vec<Label> = parse_jsonl(&format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].kind, AnomalyKind::MeterError);
        let err = parse_jsonl::<Label>(&format!("{good}\n{{\"kind\": 1}}\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }
}
