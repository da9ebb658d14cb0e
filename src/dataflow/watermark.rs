//! Event time and watermarks.
//!
//! Owns: the rule that turns input progress into an event-time watermark. Timely timestamps in
//! evflow are *chunk times* (see `sources`), not event times. Every source chunk sends a
//! [`Mark`] — the newest event time in it, and which input partition it came from — to every
//! worker. Once the timely frontier has passed chunk time `c`, every mark up to `c` has
//! arrived, and the watermark is
//!
//! ```text
//! W(c) = min over partitions p not ended (max event time in p's chunks ≤ c) − out_of_orderness
//! ```
//!
//! A file, stdin and the simulator are one partition (0), so there `W(c)` is simply the newest
//! event time in any chunk ≤ c, minus the bound. A Kafka topic has one partition per Kafka
//! partition: one lagging partition then holds the watermark back instead of making its
//! events late. Until every partition `0..P` has sent a mark (P is in every mark) the
//! watermark does not move. A partition that has *ended* (its last chunk at the end of a
//! bounded input; in live mode, idle for longer than `kafka.idle_timeout`) no longer holds it
//! back, until a later mark of it says otherwise; when every partition has ended, the newest
//! event time of all counts. The watermark never goes back.
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
    /// The newest event time in the chunk; `None` if it had no events.
    pub max_event_time: Option<Millis>,
    /// The input partition the chunk belongs to (0 for a file, stdin, the simulator).
    pub partition: u32,
    /// How many partitions the input has (1 for a file, stdin, the simulator).
    pub partitions: u32,
    /// The partition has ended (bounded input) or is idle (live): it stops holding the
    /// watermark back.
    pub ended: bool,
}

impl Mark {
    /// The mark of a chunk of a single-partition input.
    pub fn single(max_event_time: Millis) -> Mark {
        Mark {
            max_event_time: Some(max_event_time),
            partition: 0,
            partitions: 1,
            ended: false,
        }
    }
}

/// What the marks folded so far say about one partition.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct PartitionProgress {
    max_event_time: Option<Millis>,
    ended: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Watermark {
    bound: Millis,
    /// Marks not yet folded in, by chunk time, merged per partition (newest event time, any
    /// of them ended) so the result does not depend on arrival order.
    pending: BTreeMap<u64, BTreeMap<u32, (PartitionProgress, u32)>>,
    partitions: BTreeMap<u32, PartitionProgress>,
    /// The largest partition count any mark announced.
    expected: u32,
    max_seen: Option<Millis>,
    current: Millis,
}

impl Watermark {
    pub fn new(out_of_orderness: Millis) -> Self {
        Watermark {
            bound: out_of_orderness,
            pending: BTreeMap::new(),
            partitions: BTreeMap::new(),
            expected: 1,
            max_seen: None,
            current: Millis::MIN,
        }
    }

    /// Records a mark received at chunk time `time`.
    pub fn observe(&mut self, time: u64, mark: Mark) {
        let (p, n) = self
            .pending
            .entry(time)
            .or_default()
            .entry(mark.partition)
            .or_default();
        p.max_event_time = p.max_event_time.max(mark.max_event_time);
        p.ended |= mark.ended;
        *n = (*n).max(mark.partitions);
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
            for (partition, (mark, n)) in entry.remove() {
                self.expected = self.expected.max(n);
                let p = self.partitions.entry(partition).or_default();
                p.max_event_time = p.max_event_time.max(mark.max_event_time);
                // The latest mark of a partition says whether it has ended (an idle live
                // partition comes back with its next records).
                p.ended = mark.ended;
                if let Some(m) = mark.max_event_time {
                    self.max_seen = Some(self.max_seen.map_or(m, |s| s.max(m)));
                }
            }
        }
        if let Some(m) = self.holding_back() {
            self.current = self.current.max(m.saturating_sub(self.bound));
        }
        self.current
    }

    /// The event time the watermark trails: the least newest event time of the partitions
    /// that have not ended, or, when all have ended, the newest of all. `None` while a
    /// partition has not been heard from (or has no event yet and has not ended).
    fn holding_back(&self) -> Option<Millis> {
        let all_known = (0..self.expected).all(|p| self.partitions.contains_key(&p));
        if !all_known {
            return None;
        }
        let mut least: Option<Millis> = None;
        let mut any_active = false;
        for p in self.partitions.values().filter(|p| !p.ended) {
            any_active = true;
            let m = p.max_event_time?;
            least = Some(least.map_or(m, |l| l.min(m)));
        }
        if any_active {
            least
        } else {
            self.max_seen
        }
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

    fn mark(partition: u32, partitions: u32, max: Option<Millis>, ended: bool) -> Mark {
        Mark {
            max_event_time: max,
            partition,
            partitions,
            ended,
        }
    }

    #[test]
    fn watermark_trails_the_newest_event_time_of_complete_chunks() {
        let mut w = Watermark::new(10);
        w.observe(0, Mark::single(100));
        w.observe(2, Mark::single(300));
        w.observe(1, Mark::single(50));
        assert_eq!(w.advance_through(0), 90);
        assert_eq!(w.advance_through(1), 90); // never goes back
        assert_eq!(w.advance_through(2), 290);
        w.observe(3, Mark::single(310));
        assert_eq!(w.finish(), 310);
    }

    #[test]
    fn a_lagging_partition_holds_the_watermark_back_until_it_ends() {
        let mut w = Watermark::new(10);
        // Partition 0 runs ahead; partition 1 has not been heard from: no watermark yet.
        w.observe(0, mark(0, 2, Some(1_000), false));
        assert_eq!(w.advance_through(0), Millis::MIN);
        // Partition 1 lags: it sets the watermark.
        w.observe(1, mark(1, 2, Some(200), false));
        assert_eq!(w.advance_through(1), 190);
        w.observe(2, mark(0, 2, Some(2_000), false));
        assert_eq!(w.advance_through(2), 190);
        w.observe(3, mark(1, 2, Some(400), false));
        assert_eq!(w.advance_through(3), 390);
        // Partition 1 ends: partition 0 alone holds it.
        w.observe(5, mark(1, 2, None, true));
        assert_eq!(w.advance_through(5), 1_990);
        // Partition 1 comes back (a live partition that was idle): it holds the watermark
        // again, which never goes back.
        w.observe(7, mark(1, 2, Some(500), false));
        assert_eq!(w.advance_through(7), 1_990);
        w.observe(8, mark(0, 2, Some(3_000), false));
        w.observe(9, mark(1, 2, Some(2_500), false));
        assert_eq!(w.advance_through(9), 2_490);
        // Both ended: the newest event time of all.
        w.observe(10, mark(0, 2, None, true));
        w.observe(11, mark(1, 2, None, true));
        assert_eq!(w.advance_through(11), 2_990);
        assert_eq!(w.finish(), 3_000);
    }

    #[test]
    fn an_empty_partition_that_ended_does_not_hold_the_watermark() {
        let mut w = Watermark::new(10);
        w.observe(0, mark(0, 3, Some(100), false));
        w.observe(1, mark(1, 3, None, true));
        assert_eq!(w.advance_through(1), Millis::MIN); // partition 2 unknown
        w.observe(2, mark(2, 3, Some(50), false));
        assert_eq!(w.advance_through(2), 40);
        // Marks of one time merge in any order: the newest event time, ended if any ended.
        let mut a = Watermark::new(0);
        let mut b = Watermark::new(0);
        let (m1, m2) = (mark(0, 1, Some(5), false), mark(0, 1, Some(7), false));
        a.observe(0, m1);
        a.observe(0, m2);
        b.observe(0, m2);
        b.observe(0, m1);
        assert_eq!(a.advance_through(0), b.advance_through(0));
        assert_eq!(a.current(), 7);
    }
}
