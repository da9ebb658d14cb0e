//! A streaming statistical anomaly detector for any numeric stream (a measurand, a metric).
//!
//! Owns: the model, its parameters and the score. Pure: no I/O, no clock; the same points in
//! the same order give the same scores, bit for bit. `crate::detect` feeds it from CSV files.
//!
//! # Model
//!
//! A robust additive Holt–Winters model without trend (Gelper, Fried & Croux 2010, "Robust
//! forecasting with exponential and Holt–Winters smoothing"), O(1) per point:
//!
//! ```text
//! forecast  f   = level + season[b]          (season[b] = 0 while the seasonal part is off)
//! residual  r   = x − f
//! sigma     σ   = max(1.2533 · scale, min_scale_abs, min_scale_rel · magnitude)
//! z             = r / σ
//! score         = 1 − exp(−max(0, |z| − z_offset) / z_soft)          ∈ [0, 1)
//! cleaned   x*  = f + clamp(r, −huber_k·σ, +huber_k·σ)                (after the warm-up)
//! level        += a · (x* − season[b] − level)
//! season[b]    += g · (x* − level − season[b])                      (when the point has a time)
//! scale        += a · (|x* − f| − scale)                              (EWMA of |residual|)
//! magnitude    += a · (|x| − magnitude)
//! ```
//!
//! - `level` is an EWMA of the (deseasonalised) value and `scale` an EWMA of the absolute
//!   one-step forecast error; 1.2533 = √(π/2) turns a mean absolute deviation into a standard
//!   deviation for Gaussian noise, so `z` reads as "standard deviations off the forecast".
//! - Robustness: after the warm-up, a point enters the state *clipped* to the forecast
//!   ± `huber_k`·σ (Huber's ψ), so one spike moves neither level nor scale by much and the
//!   points after it are judged against the same baseline. A lasting level shift is still
//!   learned: each clipped point moves the level by a·huber_k·σ and lets the scale grow, so the
//!   model catches up within a few multiples of 1/a points (the score stays high meanwhile).
//! - Warm-up of the averages: the weights are `a = max(alpha, 1/n)` (n = points folded so far)
//!   and `g = max(alpha_season, 1/n_b)` (n_b = points folded into that bucket), i.e. exact
//!   running means at first and EWMAs afterwards, so the first points do not drag a zero
//!   initial state along.
//! - Seasonal baseline: when points carry a time (milliseconds since the epoch), `season[b]` is
//!   the typical offset from the level in the point's bucket `b` — the UTC hour of the day
//!   (24 buckets, the default) or of the week (168). It is learned from the first timed point,
//!   but enters the forecast only once the timed points span `season_periods` whole periods
//!   (default 2 days) — before that a bucket has too few points to be trusted. Points without
//!   a time use the level alone (and do not touch the seasonal buckets).
//! - `sigma`'s floors keep a constant (noise-free) series from dividing by zero: a constant
//!   series scores 0 everywhere; any departure from it scores high.
//! - Squashing: |z| ≤ `z_offset` (3 σ) scores exactly 0; above, the score rises smoothly
//!   (|z| = 4 → 0.39, 5 → 0.63, 6 → 0.78, 8 → 0.92 with the defaults) and never reaches 1.
//!
//! # Warm-up
//!
//! The first `warmup` finite values (default 100) score 0: the level and scale are running
//! means then, and a z against them would be noise. They still train the model, without the
//! Huber clipping (there is no trusted scale to clip against yet).
//!
//! # Values that are not finite
//!
//! NaN and ±inf score 0 and are not folded into the state (the next finite value is judged
//! against the state before them).
//!
//! # Defaults and why
//!
//! | parameter | default | why |
//! |---|---|---|
//! | `alpha` | 0.01 | level and scale remember ~100 points: 8 h of 5-minute samples, long enough that a short anomaly does not become the baseline, short enough to follow a drift within a day |
//! | `alpha_season` | 0.05 | per bucket: ~20 visits, i.e. ~2 days of 5-minute samples in an hour bucket, or ~3 weeks of hourly samples |
//! | `seasonality` | `HourOfDay` | daily cycles are the common case (traffic, load, charging); a week of history is rarer |
//! | `season_periods` | 2 | two whole days (or weeks) of timed history before the seasonal offsets are used |
//! | `warmup` | 100 | one time constant of `alpha` |
//! | `huber_k` | 3.0 | clip at 3σ: the classic robust-filter choice (Gaussian points are clipped 0.3% of the time) |
//! | `z_offset`, `z_soft` | 3.0, 2.0 | nothing below 3σ; a 6σ point scores 0.78, 8σ 0.92 |
//! | `min_scale_rel`, `min_scale_abs` | 1e-3, 1e-9 | σ is at least 0.1% of the typical magnitude: integer-valued or quantised series are not flagged for a one-unit step after a flat run |
//! | `threshold` | 0.5 | a point is called anomalous at score ≥ 0.5, i.e. \|z\| ≥ 4.39 |

use serde::{Deserialize, Serialize};

/// Which calendar bucket a timed point's seasonal offset is kept in (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seasonality {
    /// No seasonal part: the forecast is the level.
    Off,
    /// 24 buckets, one per hour of the day; one period is a day.
    HourOfDay,
    /// 168 buckets, one per hour of the week; one period is a week.
    HourOfWeek,
}

const HOUR_MS: i64 = 3_600_000;

impl Seasonality {
    fn buckets(self) -> usize {
        match self {
            Seasonality::Off => 0,
            Seasonality::HourOfDay => 24,
            Seasonality::HourOfWeek => 168,
        }
    }

    /// One period in milliseconds.
    fn period_ms(self) -> i64 {
        self.buckets() as i64 * HOUR_MS
    }

    fn bucket(self, t: i64) -> Option<usize> {
        let n = self.buckets() as i64;
        (n > 0).then(|| t.div_euclid(HOUR_MS).rem_euclid(n) as usize)
    }
}

/// The detector's parameters (see the module doc for the model and the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// EWMA weight of the level, the scale and the magnitude, in (0, 1].
    pub alpha: f64,
    /// EWMA weight of a seasonal bucket, per point in that bucket, in (0, 1].
    pub alpha_season: f64,
    pub seasonality: Seasonality,
    /// Whole periods of timed history before the seasonal offsets enter the forecast.
    pub season_periods: u32,
    /// Finite values that score 0 while the model learns.
    pub warmup: u64,
    /// Residuals are clipped to ± `huber_k`·σ before they update the state.
    pub huber_k: f64,
    /// |z| up to this scores 0.
    pub z_offset: f64,
    /// Softness of the squashing above `z_offset`: the score is 1 − e^(−(|z| − z_offset)/z_soft).
    pub z_soft: f64,
    /// σ ≥ this fraction of the EWMA of |value|.
    pub min_scale_rel: f64,
    /// σ ≥ this, in the value's unit.
    pub min_scale_abs: f64,
    /// A point is anomalous when its score is at least this.
    pub threshold: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            alpha: 0.01,
            alpha_season: 0.05,
            seasonality: Seasonality::HourOfDay,
            season_periods: 2,
            warmup: 100,
            huber_k: 3.0,
            z_offset: 3.0,
            z_soft: 2.0,
            min_scale_rel: 1e-3,
            min_scale_abs: 1e-9,
            threshold: 0.5,
        }
    }
}

/// √(π/2): mean absolute deviation → standard deviation, for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;

/// One stream's detector state. Serialisable (serde, no skipped or flattened fields) so that it
/// can be kept in snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    cfg: DetectorConfig,
    /// Finite values folded into the state.
    n: u64,
    level: f64,
    /// EWMA of the absolute one-step forecast error.
    scale: f64,
    /// EWMA of |value|, for the relative floor of σ.
    magnitude: f64,
    /// Seasonal offsets from the level, one per bucket.
    season: Vec<f64>,
    /// Points folded into each bucket.
    season_n: Vec<u64>,
    /// Earliest and latest time seen (timed points only).
    time_span: Option<(i64, i64)>,
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Detector {
        let buckets = cfg.seasonality.buckets();
        Detector {
            cfg,
            n: 0,
            level: 0.0,
            scale: 0.0,
            magnitude: 0.0,
            season: vec![0.0; buckets],
            season_n: vec![0; buckets],
            time_span: None,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Finite values seen so far.
    pub fn seen(&self) -> u64 {
        self.n
    }

    /// Whether the warm-up is over (the next finite value gets a real score).
    pub fn warmed_up(&self) -> bool {
        self.n >= self.cfg.warmup
    }

    /// Whether `score` counts as an anomaly (≥ the configured threshold).
    pub fn is_anomaly(&self, score: f64) -> bool {
        score >= self.cfg.threshold
    }

    /// Scores one point and folds it into the state. `t`: the point's time in milliseconds
    /// since the epoch, if it has one (it feeds only the seasonal part). Returns a score in
    /// [0, 1]: 0 during the warm-up and for non-finite values.
    pub fn observe(&mut self, t: Option<i64>, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let bucket = t.and_then(|t| self.cfg.seasonality.bucket(t));
        if let Some(t) = t {
            self.time_span = Some(match self.time_span {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
        let offset = match bucket {
            Some(b) if self.seasonal_ready() => self.season[b],
            _ => 0.0,
        };
        let forecast = self.level + offset;
        let r = value - forecast;
        let sigma = (MAD_TO_SIGMA * self.scale)
            .max(self.cfg.min_scale_abs)
            .max(self.cfg.min_scale_rel * self.magnitude);
        let warm = self.warmed_up();
        let score = if warm {
            squash((r / sigma).abs(), self.cfg.z_offset, self.cfg.z_soft)
        } else {
            0.0
        };

        // Fold the point in: clipped after the warm-up, as it is before.
        let r_clean = if warm {
            let c = self.cfg.huber_k * sigma;
            r.clamp(-c, c)
        } else {
            r
        };
        let x_clean = forecast + r_clean;
        self.n += 1;
        let a = self.cfg.alpha.max(1.0 / self.n as f64);
        if self.n > 1 {
            // The first point has no forecast to be wrong against.
            let a_scale = self.cfg.alpha.max(1.0 / (self.n - 1) as f64);
            self.scale += a_scale * (r_clean.abs() - self.scale);
        }
        self.level += a * (x_clean - offset - self.level);
        self.magnitude += a * (value.abs() - self.magnitude);
        if let Some(b) = bucket {
            self.season_n[b] = self.season_n[b].saturating_add(1);
            let g = self.cfg.alpha_season.max(1.0 / self.season_n[b] as f64);
            self.season[b] += g * (x_clean - self.level - self.season[b]);
        }
        score
    }

    /// Whether the timed history spans enough whole periods for the seasonal offsets.
    fn seasonal_ready(&self) -> bool {
        let period = self.cfg.seasonality.period_ms();
        match self.time_span {
            Some((lo, hi)) if period > 0 => {
                hi.saturating_sub(lo) >= period.saturating_mul(self.cfg.season_periods as i64)
            }
            _ => false,
        }
    }
}

/// 1 − e^(−max(0, z − offset)/soft), in [0, 1]; 0 for a NaN.
fn squash(z: f64, offset: f64, soft: f64) -> f64 {
    let excess = (z - offset).max(0.0);
    let s = 1.0 - (-excess / soft.max(f64::MIN_POSITIVE)).exp();
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [−1, 1] (an LCG), so the tests need no random crate.
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    const FIVE_MIN: i64 = 300_000;
    const T0: i64 = 1_396_310_400_000; // 2014-04-01T00:00:00Z

    fn run(d: &mut Detector, values: &[f64], timed: bool) -> Vec<f64> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| d.observe(timed.then_some(T0 + i as i64 * FIVE_MIN), v))
            .collect()
    }

    fn noisy(n: usize, mean: f64, amp: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n).map(|_| mean + amp * noise(&mut s)).collect()
    }

    #[test]
    fn constant_series_scores_zero() {
        for v in [0.0, 45.0, -3.5, 1e9] {
            for timed in [false, true] {
                let mut d = Detector::new(DetectorConfig::default());
                let scores = run(&mut d, &vec![v; 2000], timed);
                assert!(scores.iter().all(|&s| s == 0.0), "constant {v}: {scores:?}");
            }
        }
    }

    #[test]
    fn warmup_scores_zero_even_for_wild_values() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut s = 7;
        for i in 0..100 {
            let v = 1e6 * noise(&mut s) + if i % 10 == 0 { 1e9 } else { 0.0 };
            assert_eq!(d.observe(None, v), 0.0, "point {i}");
        }
        assert!(d.warmed_up());
    }

    #[test]
    fn spike_scores_high_and_the_points_before_low() {
        for timed in [false, true] {
            let mut values = noisy(1500, 50.0, 1.0, 3);
            values[1200] = 70.0;
            let mut d = Detector::new(DetectorConfig::default());
            let scores = run(&mut d, &values, timed);
            assert!(scores[1200] > 0.9, "spike: {}", scores[1200]);
            let before = scores[100..1200].iter().cloned().fold(0.0, f64::max);
            assert!(before < 0.3, "before the spike: max {before}");
            // The spike did not poison the baseline: the points after it are calm again.
            let after = scores[1201..].iter().cloned().fold(0.0, f64::max);
            assert!(after < 0.3, "after the spike: max {after}");
        }
    }

    #[test]
    fn step_change_scores_high_then_is_learned() {
        let mut values = noisy(1000, 10.0, 1.0, 11);
        values.extend(noisy(1500, 20.0, 1.0, 12));
        let mut d = Detector::new(DetectorConfig::default());
        let scores = run(&mut d, &values, false);
        let before = scores[..1000].iter().cloned().fold(0.0, f64::max);
        assert!(before < 0.3, "before the step: max {before}");
        assert!(scores[1000] > 0.9, "at the step: {}", scores[1000]);
        let late = scores[2000..].iter().cloned().fold(0.0, f64::max);
        assert!(late < 0.3, "500 points after the step: max {late}");
    }

    #[test]
    fn daily_cycle_is_learned_and_a_break_in_it_is_flagged() {
        // A daily sine (5-minute samples) with small noise; on day 6 the morning peak is missing.
        let per_day = 288;
        let mut s = 5;
        let values: Vec<f64> = (0..per_day * 8)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
                let day = i / per_day;
                let cycle = if day == 6 && (48..96).contains(&(i % per_day)) {
                    0.0
                } else {
                    20.0 * phase.sin()
                };
                100.0 + cycle + 0.5 * noise(&mut s)
            })
            .collect();
        let mut d = Detector::new(DetectorConfig::default());
        let scores = run(&mut d, &values, true);
        let normal = scores[per_day * 3..per_day * 6]
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        let broken = scores[per_day * 6 + 48..per_day * 6 + 96]
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        assert!(normal < 0.5, "days 3–5: max {normal}");
        assert!(broken > 0.9, "the missing peak: max {broken}");
        // Without the seasonal part the level lags the cycle, the scale absorbs the lag, and
        // the missing peak is much less visible.
        let mut plain = Detector::new(DetectorConfig {
            seasonality: Seasonality::Off,
            ..DetectorConfig::default()
        });
        let plain_scores = run(&mut plain, &values, true);
        let plain_broken = plain_scores[per_day * 6 + 48..per_day * 6 + 96]
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        assert!(plain_broken < 0.5, "{plain_broken} vs {broken}");
    }

    #[test]
    fn scores_stay_in_unit_interval() {
        let mut s = 99;
        let mut d = Detector::new(DetectorConfig {
            warmup: 5,
            ..DetectorConfig::default()
        });
        for i in 0..20_000i64 {
            let v = match i % 997 {
                0 => 1e300,
                1 => -1e300,
                2 => f64::NAN,
                3 => f64::INFINITY,
                4 => f64::MIN_POSITIVE,
                _ => noise(&mut s) * 10f64.powi((i % 13) as i32 - 6),
            };
            let t = if i % 3 == 0 {
                None
            } else {
                Some(i * 7_777_777 - 1_000_000_000)
            };
            let score = d.observe(t, v);
            assert!((0.0..=1.0).contains(&score), "point {i}: {score}");
        }
    }

    #[test]
    fn non_finite_values_score_zero_and_leave_the_state_alone() {
        let values = noisy(300, 5.0, 1.0, 1);
        let mut d = Detector::new(DetectorConfig::default());
        run(&mut d, &values, false);
        let before = d.clone();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(d.observe(Some(T0), v), 0.0);
        }
        assert_eq!(d, before);
    }

    #[test]
    fn deterministic() {
        let mut values = noisy(3000, 3.0, 2.0, 42);
        values[2000] = 100.0;
        let a = run(&mut Detector::new(DetectorConfig::default()), &values, true);
        let b = run(&mut Detector::new(DetectorConfig::default()), &values, true);
        assert_eq!(
            a.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn serde_round_trip_continues_identically() {
        let values = noisy(2000, 3.0, 2.0, 8);
        let mut d = Detector::new(DetectorConfig {
            seasonality: Seasonality::HourOfWeek,
            ..DetectorConfig::default()
        });
        run(&mut d, &values[..1000], true);
        // bincode (the snapshot format) is exact.
        let bytes = bincode::serialize(&d).expect("bincode");
        let mut from_bincode: Detector = bincode::deserialize(&bytes).expect("bincode back");
        assert_eq!(from_bincode, d);
        // JSON too, up to the last bit of a float (serde_json's default float parsing).
        let json = serde_json::to_string(&d).expect("serialise");
        let mut from_json: Detector = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(from_json.season_n, d.season_n);
        assert_eq!(from_json.cfg, d.cfg);
        for (i, &v) in values[1000..].iter().enumerate() {
            let t = Some(T0 + (1000 + i as i64) * FIVE_MIN);
            let s = d.observe(t, v);
            assert_eq!(s.to_bits(), from_bincode.observe(t, v).to_bits());
            assert!((s - from_json.observe(t, v)).abs() < 1e-9);
        }
    }

    #[test]
    fn squash_is_smooth_and_bounded() {
        assert_eq!(squash(0.0, 3.0, 2.0), 0.0);
        assert_eq!(squash(3.0, 3.0, 2.0), 0.0);
        assert!((squash(5.0, 3.0, 2.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert_eq!(squash(f64::INFINITY, 3.0, 2.0), 1.0);
        assert_eq!(squash(f64::NAN, 3.0, 2.0), 0.0);
    }
}
