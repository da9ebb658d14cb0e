//! Communication-link detectors of one charger: `clock_skew` and `message_errors`
//! (`communication_lost` is a timer in `charger`).
//!
//! Owns: the charger's clock estimate and its recent error frames. Pure: the charger stage
//! feeds events in event-time order and these decide when an anomaly opens or resolves.
//!
//! - **`clock_skew`.** Each timestamped frame gives an offset: its payload timestamp minus
//!   the backend's receive time. Queueing only ever makes a frame look older, so the freshest
//!   of the last [`CLOCK_FRAMES`] frames — the largest offset — is the estimate of the
//!   charger's clock error. It opens when the estimate is beyond `clock_skew_threshold` for
//!   `confirm_samples` frames in a row (stamped at the first), and resolves the same way.
//!   A backlog (StopTransaction's transactionData, a charger catching up after an outage)
//!   cannot fake a skew: its frames are old, not fresh, and one fresh frame in the window
//!   outweighs them; the events of one frame count as one frame.
//! - **`message_errors`.** CALLERROR frames and frames evflow rejected (dead-lettered) within
//!   the last `message_errors_window`; `message_errors_min` of them open it (stamped at the
//!   frame that reached the count). It resolves one window after the last error, at the first
//!   event after that.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::anomalies::{Debounce, Transition};
use crate::config::AnomalyConfig;
use crate::model::Millis;

/// How many recent timestamped frames the clock estimate looks at.
pub const CLOCK_FRAMES: usize = 3;

/// What a link detector decided about one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Open { at: Millis, value: f64 },
    Resolve { at: Millis, value: f64 },
    None,
}

/// The clock-skew estimate of one charger.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClockWatch {
    /// (frame seq, offset ms) of the last frames, newest last.
    recent: VecDeque<(u64, i64)>,
    gate: Debounce,
    open: bool,
    /// The latest receive time seen: frames are judged in the order the backend got them
    /// (event-time order interleaves the frames of a clock that jumped back).
    received: Millis,
}

impl ClockWatch {
    /// The current estimate of the charger's clock error, ms (positive: ahead).
    pub fn estimate(&self) -> Option<i64> {
        self.recent.iter().map(|(_, o)| *o).max()
    }

    /// One event with a charger timestamp (`offset_ms` = timestamp − receive time), received
    /// at `at`. A frame received before one already judged is skipped.
    pub fn observe(
        &mut self,
        cfg: &AnomalyConfig,
        seq: u64,
        at: Millis,
        offset_ms: i64,
    ) -> Verdict {
        if at < self.received {
            return Verdict::None;
        }
        self.received = at;
        match self.recent.back_mut() {
            // Another event of the same frame: one frame, one offset.
            Some((s, o)) if *s == seq => {
                *o = (*o).max(offset_ms);
                return Verdict::None;
            }
            _ => {
                if self.recent.len() >= CLOCK_FRAMES {
                    self.recent.pop_front();
                }
                self.recent.push_back((seq, offset_ms));
            }
        }
        let Some(estimate) = self.estimate() else {
            return Verdict::None;
        };
        let bad = estimate.abs() > cfg.clock_skew_threshold.0;
        let value = estimate as f64 / 1000.0;
        match self.gate.observe(bad, at, cfg.confirm_samples, self.open) {
            Transition::Opened(since) => {
                self.open = true;
                Verdict::Open { at: since, value }
            }
            Transition::Cleared(since) => {
                self.open = false;
                Verdict::Resolve { at: since, value }
            }
            Transition::None => Verdict::None,
        }
    }
}

/// Recent error frames of one charger.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ErrorWatch {
    errors: VecDeque<Millis>,
    open: bool,
}

impl ErrorWatch {
    fn prune(&mut self, window: Millis, now: Millis) {
        while self.errors.front().is_some_and(|t| *t <= now - window) {
            self.errors.pop_front();
        }
    }

    /// An error frame (CALLERROR or rejected) at `at`.
    pub fn error(&mut self, cfg: &AnomalyConfig, at: Millis) -> Verdict {
        let window = cfg.message_errors_window.0;
        self.prune(window, at);
        // Bounded: more than the threshold adds nothing.
        if self.errors.len() < 4 * cfg.message_errors_min.max(1) as usize {
            self.errors.push_back(at);
        }
        if !self.open && self.errors.len() >= cfg.message_errors_min.max(1) as usize {
            self.open = true;
            return Verdict::Open {
                at,
                value: self.errors.len() as f64,
            };
        }
        Verdict::None
    }

    /// Any event at `at`: resolves once a whole window has passed since the last error.
    pub fn tick(&mut self, cfg: &AnomalyConfig, at: Millis) -> Verdict {
        if !self.open {
            return Verdict::None;
        }
        let window = cfg.message_errors_window.0;
        match self.errors.back() {
            Some(last) if at >= last + window => {
                let resolved_at = last + window;
                self.errors.clear();
                self.open = false;
                Verdict::Resolve {
                    at: resolved_at,
                    value: 0.0,
                }
            }
            _ => Verdict::None,
        }
    }

    /// Errors in the window ending at `now`.
    pub fn recent(&mut self, cfg: &AnomalyConfig, now: Millis) -> usize {
        self.prune(cfg.message_errors_window.0, now);
        self.errors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn a_clock_ahead_opens_after_two_frames_and_a_backlog_does_not() {
        let cfg = AnomalyConfig::default();
        let mut w = ClockWatch::default();
        // in step with the backend, then a backlog of old samples in one frame
        assert_eq!(w.observe(&cfg, 1, 0, 400), Verdict::None);
        assert_eq!(w.observe(&cfg, 2, MIN, -30 * MIN), Verdict::None);
        assert_eq!(w.observe(&cfg, 2, MIN, -31 * MIN), Verdict::None);
        assert_eq!(w.observe(&cfg, 3, 2 * MIN, -20 * MIN), Verdict::None);
        assert_eq!(w.estimate(), Some(400));
        // the clock jumps 10 minutes ahead
        assert_eq!(w.observe(&cfg, 4, 3 * MIN, 10 * MIN), Verdict::None);
        assert_eq!(
            w.observe(&cfg, 5, 4 * MIN, 10 * MIN),
            Verdict::Open {
                at: 3 * MIN,
                value: 600.0
            }
        );
        // back in step: the window must forget the skewed frames first
        assert_eq!(w.observe(&cfg, 6, 5 * MIN, 0), Verdict::None);
        assert_eq!(w.observe(&cfg, 7, 6 * MIN, 0), Verdict::None);
        assert_eq!(w.observe(&cfg, 8, 7 * MIN, 0), Verdict::None);
        assert!(matches!(
            w.observe(&cfg, 9, 8 * MIN, 0),
            Verdict::Resolve { at, .. } if at == 7 * MIN
        ));
    }

    #[test]
    fn frames_received_earlier_but_judged_later_are_skipped() {
        let cfg = AnomalyConfig::default();
        let mut w = ClockWatch::default();
        // the clock jumped back 15 min: its new frames sort before the last old ones
        for i in 0..3i64 {
            w.observe(&cfg, 10 + i as u64, 20 * MIN + i * MIN, -15 * MIN);
        }
        assert!(w.estimate().is_some_and(|e| e < -10 * MIN));
        // an old, in-step frame received at 5 min, processed now: ignored
        assert_eq!(w.observe(&cfg, 3, 5 * MIN, 0), Verdict::None);
        assert!(w.estimate().is_some_and(|e| e < -10 * MIN));
    }

    #[test]
    fn a_clock_behind_opens_once_no_fresh_frame_says_otherwise() {
        let cfg = AnomalyConfig::default();
        let mut w = ClockWatch::default();
        let mut opened = None;
        for i in 0..8 {
            if let Verdict::Open { at, value } = w.observe(&cfg, i, i as i64 * MIN, -5 * MIN) {
                opened = Some((at, value));
            }
        }
        assert_eq!(opened, Some((0, -300.0)));
    }

    #[test]
    fn errors_open_at_the_threshold_and_resolve_a_window_after_the_last() {
        let cfg = AnomalyConfig::default(); // 5 in 10 min
        let mut w = ErrorWatch::default();
        // isolated errors never add up
        for i in 0..10 {
            assert_eq!(w.error(&cfg, i * 11 * MIN), Verdict::None);
        }
        let t0 = 200 * MIN;
        for i in 0..4 {
            assert_eq!(w.error(&cfg, t0 + i * 30_000), Verdict::None);
        }
        assert_eq!(
            w.error(&cfg, t0 + 120_000),
            Verdict::Open {
                at: t0 + 120_000,
                value: 5.0
            }
        );
        assert_eq!(w.error(&cfg, t0 + 150_000), Verdict::None);
        assert_eq!(w.tick(&cfg, t0 + 5 * MIN), Verdict::None);
        assert_eq!(
            w.tick(&cfg, t0 + 30 * MIN),
            Verdict::Resolve {
                at: t0 + 150_000 + 10 * MIN,
                value: 0.0
            }
        );
        assert_eq!(w.recent(&cfg, t0 + 30 * MIN), 0);
    }
}
