//! Side inputs: event streams beside the OCPP traffic (payment events, driver watches), one JSON
//! object per line, read whole from a JSONL file or consumed from a Kafka topic.
//!
//! Owns: what every side input does the same way — cutting a file into lines ([`read_jsonl`]),
//! the lines it cannot use ([`BadLine`], dead-lettered with the input's own reason, never
//! fatal), the Kafka consumer ([`SideInputConsumer`]) with its positions and commits, and
//! opening one for a run ([`SideInputStart::open`]). What
//! a line means is the event type's business ([`SideInput::parse`]): see `payments` and
//! `watches`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::SourceError;
use crate::config::{KafkaConfig, KafkaSourceConfig};
use crate::model::{DeadLetter, DeadLetterReason, Millis};

/// An event type read as a side input.
pub trait SideInput: Sized {
    /// What the input is called in errors and logs (`payments`, `watches`).
    const NAME: &'static str;
    /// The dead-letter reason of a line that is not such an event.
    const REASON: DeadLetterReason;
    /// Parses one line (a JSON object, no line ending); the error names the offending field.
    fn parse(line: &[u8]) -> Result<Self, String>;
    /// The event time: events are applied in this order.
    fn timestamp(&self) -> Millis;
}

/// A line (or Kafka value) of a side input that is not one of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based, blank lines count; for a Kafka topic the record's offset.
    pub line_no: u64,
    pub error: String,
    /// The line without its line ending, lossily decoded as UTF-8.
    pub line: String,
    /// The input's dead-letter reason ([`SideInput::REASON`]).
    pub reason: DeadLetterReason,
}

impl BadLine {
    /// The dead letter of the line (`seq`: its line number, or Kafka offset).
    pub fn into_dead_letter(self) -> DeadLetter {
        DeadLetter {
            seq: self.line_no,
            reason: self.reason,
            error: self.error,
            line: self.line,
        }
    }
}

/// Checks that a line is a JSON object before a derived `Deserialize` reads it: serde's derived
/// structs also take a JSON array (fields by position), which no side input's schema allows.
pub fn require_object(line: &[u8], what: &str) -> Result<(), String> {
    if line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        Ok(_) => Err(format!("{what} must be a JSON object")),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// A value with nothing but whitespace: skipped, not a bad line.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Reads a JSONL file of `T`s: the good ones sorted by (timestamp, line order), and the lines
/// that are not `T`s. Blank lines and a trailing `\r` are skipped; only I/O errors are fatal.
pub fn read_jsonl<T: SideInput>(path: &Path) -> Result<(Vec<T>, Vec<BadLine>), SourceError> {
    let io_err = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            break;
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if is_blank(line) {
            continue;
        }
        match T::parse(line) {
            Ok(event) => good.push(event),
            Err(error) => bad.push(BadLine {
                line_no,
                error,
                line: String::from_utf8_lossy(line).into_owned(),
                reason: T::REASON,
            }),
        }
    }
    // Stable: equal timestamps keep the file's order.
    good.sort_by_key(T::timestamp);
    Ok((good, bad))
}

/// `T`s from a Kafka topic (`kafka://HOST:PORT/TOPIC?group=G`): every partition is read from
/// `from` (the positions of the last commit) or the group's committed offsets (else the
/// earliest). With `stop=end` the topic is read to its end once, before the run starts (a
/// bounded, deterministic run); otherwise it is polled as the run goes. Values are `T`s (JSON,
/// as in the file); other values are bad lines, empty ones are skipped.
pub struct SideInputConsumer<T> {
    consumer: BaseConsumer,
    topic: String,
    /// The next offset of each partition after what was polled.
    positions: BTreeMap<i32, i64>,
    partitions: i32,
    pub stop_at_end: bool,
    // `fn() -> T`: the consumer makes `T`s, it holds none (Send and Sync whatever `T` is).
    _events: PhantomData<fn() -> T>,
}

impl<T: SideInput> SideInputConsumer<T> {
    pub fn open(
        src: &KafkaSourceConfig,
        common: &KafkaConfig,
        from: &BTreeMap<i32, i64>,
    ) -> Result<Self, SourceError> {
        let err = |what: String| {
            move |e: KafkaError| SourceError::Kafka(format!("{}: {what}: {e}", T::NAME))
        };
        let mut config = super::kafka::consumer_config(src, common);
        // Even live: `poll` reports whether every partition is at its end.
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config
            .create()
            .map_err(err("cannot create the consumer".into()))?;
        let metadata = consumer
            .fetch_metadata(Some(&src.topic), Duration::from_secs(30))
            .map_err(err(format!("metadata of {}", src.topic)))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == src.topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            return Err(SourceError::Kafka(format!(
                "{}: topic {} has no partitions",
                T::NAME,
                src.topic
            )));
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let start = from.get(&p).map_or(Offset::Stored, |o| Offset::Offset(*o));
            tpl.add_partition_offset(&src.topic, p, start)
                .map_err(err("assignment".into()))?;
        }
        consumer.assign(&tpl).map_err(err("assign".into()))?;
        Ok(SideInputConsumer {
            consumer,
            topic: src.topic.clone(),
            positions: from.clone(),
            partitions,
            stop_at_end: src.stop_at_end,
            _events: PhantomData,
        })
    }

    /// Takes what has arrived: good events (in arrival order) and bad values. Returns whether
    /// every partition is at its end.
    pub fn poll(
        &mut self,
        wait: Duration,
        good: &mut Vec<T>,
        bad: &mut Vec<BadLine>,
    ) -> Result<bool, SourceError> {
        let mut at_end = BTreeSet::new();
        let mut timeout = wait;
        // Only the first poll waits: then take what is already there.
        while let Some(r) = self
            .consumer
            .poll(std::mem::replace(&mut timeout, Duration::ZERO))
        {
            match r {
                Ok(m) => {
                    at_end.remove(&m.partition());
                    accept(&mut self.positions, &self.topic, &m, good, bad);
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                }
                Err(e) => tracing::warn!("kafka: {} {}: {e}", T::NAME, self.topic),
            }
        }
        Ok(at_end.len() as i32 == self.partitions)
    }

    /// Reads every partition to its end (`stop=end`), at most `timeout`; the good events come
    /// sorted by (timestamp, arrival order).
    pub fn read_to_end(
        &mut self,
        timeout: Duration,
        good: &mut Vec<T>,
        bad: &mut Vec<BadLine>,
    ) -> Result<(), SourceError> {
        let deadline = Instant::now() + timeout;
        let mut ended = BTreeSet::new();
        while (ended.len() as i32) < self.partitions {
            if Instant::now() > deadline {
                return Err(SourceError::Kafka(format!(
                    "{}: {} not read to its end within {timeout:?}",
                    T::NAME,
                    self.topic
                )));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => accept(&mut self.positions, &self.topic, &m, good, bad),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => tracing::warn!("kafka: {} {}: {e}", T::NAME, self.topic),
            }
        }
        good.sort_by_key(T::timestamp);
        Ok(())
    }

    /// The next offset of each partition after what was polled (what a commit records).
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// Records the positions in the consumer group (informational, like the OCPP source's).
    pub fn commit(&self) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.positions {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!("kafka: committing the {} group's offsets: {e}", T::NAME);
            }
        }
    }
}

/// One Kafka record: an event, or a bad value; the partition's position moves on either way.
fn accept<T: SideInput>(
    positions: &mut BTreeMap<i32, i64>,
    topic: &str,
    m: &BorrowedMessage<'_>,
    good: &mut Vec<T>,
    bad: &mut Vec<BadLine>,
) {
    positions.insert(m.partition(), m.offset() + 1);
    let value = m.payload().unwrap_or_default();
    if is_blank(value) {
        return;
    }
    match T::parse(value) {
        Ok(event) => good.push(event),
        Err(error) => bad.push(BadLine {
            line_no: m.offset() as u64,
            error: format!("{topic}[{}]@{}: {error}", m.partition(), m.offset()),
            line: String::from_utf8_lossy(value).into_owned(),
            reason: T::REASON,
        }),
    }
}

/// A side input at the start of a run: what a file or a `stop=end` topic held, its bad lines
/// as dead letters, and a live consumer.
pub struct SideInputStart<T> {
    pub initial: Vec<T>,
    pub bad: Vec<DeadLetter>,
    pub consumer: Option<SideInputConsumer<T>>,
    pub positions: BTreeMap<i32, i64>,
}

impl<T: SideInput> SideInputStart<T> {
    /// Opens a side input (`path`: a file, or a `kafka://` URL) for a run; a resumed run
    /// (`fresh` false) has a file's events in its snapshot already.
    pub fn open(
        path: Option<&Path>,
        kafka: &KafkaConfig,
        resumed_positions: &BTreeMap<i32, i64>,
        fresh: bool,
    ) -> Result<SideInputStart<T>, SourceError> {
        let mut start = SideInputStart {
            initial: Vec::new(),
            bad: Vec::new(),
            consumer: None,
            positions: Default::default(),
        };
        let mut bad_lines = Vec::new();
        match path.and_then(|p| p.to_str()) {
            Some(url) if url.starts_with("kafka://") => {
                let src = super::kafka::parse_url(url)
                    .map_err(|e| SourceError::Kafka(format!("{}: {e}", T::NAME)))?;
                let mut consumer = SideInputConsumer::<T>::open(&src, kafka, resumed_positions)?;
                if consumer.stop_at_end {
                    consumer.read_to_end(
                        Duration::from_secs(120),
                        &mut start.initial,
                        &mut bad_lines,
                    )?;
                }
                start.positions = consumer.positions().clone();
                start.consumer = Some(consumer);
            }
            // A resumed run has the file's events in its snapshot already.
            Some(_) if fresh => {
                if let Some(p) = path {
                    let (events, bad) = read_jsonl::<T>(p)?;
                    start.initial = events;
                    bad_lines = bad;
                }
            }
            _ => {}
        }
        start.bad = bad_lines
            .into_iter()
            .map(|b| b.into_dead_letter())
            .collect();
        if !start.bad.is_empty() {
            tracing::warn!(
                "{} {} line(s) not usable (see dead-letter.jsonl)",
                start.bad.len(),
                T::NAME
            );
        }
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal side input: `{"t": MILLIS}`.
    #[derive(Debug, PartialEq)]
    struct Tick(Millis);

    impl SideInput for Tick {
        const NAME: &'static str = "ticks";
        const REASON: DeadLetterReason = DeadLetterReason::BadWatchEvent;
        fn parse(line: &[u8]) -> Result<Self, String> {
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            v["t"]
                .as_i64()
                .map(Tick)
                .ok_or_else(|| "t is missing".into())
        }
        fn timestamp(&self) -> Millis {
            self.0
        }
    }

    #[test]
    fn reads_lines_sorted_and_dead_letters_bad_ones_with_the_inputs_reason() {
        let text = "{\"t\":3}\r\n\n{\"t\":1}\n  \t\r\n{}\n{\"t\":2}";
        let path =
            std::env::temp_dir().join(format!("evflow-side-input-{}.jsonl", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        let read = read_jsonl::<Tick>(&path);
        let _ = std::fs::remove_file(&path);
        let (good, bad) = read.expect("readable");
        assert_eq!(good, [Tick(1), Tick(2), Tick(3)]);
        assert_eq!(
            bad,
            [BadLine {
                line_no: 5,
                error: "t is missing".into(),
                line: "{}".into(),
                reason: DeadLetterReason::BadWatchEvent,
            }]
        );
        let dead = bad[0].clone().into_dead_letter();
        assert_eq!(
            (dead.seq, dead.reason, dead.line.as_str()),
            (5, DeadLetterReason::BadWatchEvent, "{}")
        );
    }
}
