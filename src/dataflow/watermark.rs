//! Event time and watermarks.
//!
//! Owns: the rule that turns input progress into an event-time watermark. Timely timestamps in
//! evflow are *chunk times* (see `sources`), not event times. Every source chunk sends a
//! [`Mark`] — its chunk time and the newest event time in it — to every worker. Once the
//! timely frontier has passed chunk time `c`, every mark up to `c` has arrived, and the
//! watermark is
//!
//! ```text
//! W(c) = max(event time in any chunk ≤ c) − out_of_orderness
//! ```
//!
//! W is a function of the input alone (not of timing or the number of workers), so every
//! worker computes the same watermark at the same chunk time and every run over the same input
//! produces the same output. At the end of a bounded input the watermark jumps to the newest
//! event time seen (not to infinity: a charger that is silent at the end of a file has been
//! silent only that long).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// A chunk's contribution to event-time progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub max_event_time: Millis,
}

#[derive(Debug)]
pub struct Watermark {
    bound: Millis,
    pending: BTreeMap<u64, Millis>,
    max_seen: Option<Millis>,
    current: Millis,
}

impl Watermark {
    pub fn new(out_of_orderness: Millis) -> Self {
        Watermark {
            bound: out_of_orderness,
            pending: BTreeMap::new(),
            max_seen: None,
            current: Millis::MIN,
        }
    }

    /// Records a mark received at chunk time `time`.
    pub fn observe(&mut self, time: u64, mark: Mark) {
        let e = self.pending.entry(time).or_insert(mark.max_event_time);
        *e = (*e).max(mark.max_event_time);
    }

    /// Chunk times with marks not yet folded in.
    pub fn pending_times(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// Folds in the marks of every chunk time ≤ `time`; returns the watermark.
    pub fn advance_through(&mut self, time: u64) -> Millis {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > time {
                break;
            }
            let m = entry.remove();
            self.max_seen = Some(self.max_seen.map_or(m, |s| s.max(m)));
        }
        if let Some(m) = self.max_seen {
            self.current = self.current.max(m - self.bound);
        }
        self.current
    }

    /// The input has ended: the watermark becomes the newest event time seen.
    pub fn finish(&mut self) -> Millis {
        self.advance_through(u64::MAX);
        if let Some(m) = self.max_seen {
            self.current = self.current.max(m);
        }
        self.current
    }

    pub fn current(&self) -> Millis {
        self.current
    }

    pub fn max_seen(&self) -> Option<Millis> {
        self.max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_trails_the_newest_event_time_of_complete_chunks() {
        let mut w = Watermark::new(10);
        w.observe(
            0,
            Mark {
                max_event_time: 100,
            },
        );
        w.observe(
            2,
            Mark {
                max_event_time: 300,
            },
        );
        w.observe(1, Mark { max_event_time: 50 });
        assert_eq!(w.advance_through(0), 90);
        assert_eq!(w.advance_through(1), 90); // never goes back
        assert_eq!(w.advance_through(2), 290);
        w.observe(
            3,
            Mark {
                max_event_time: 310,
            },
        );
        assert_eq!(w.finish(), 310);
    }
}
