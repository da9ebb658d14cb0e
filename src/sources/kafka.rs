//! Kafka source: envelope lines (or raw OCPP-J frames) from the partitions of a topic.
//!
//! Owns: the consumer, the cutting of each partition into chunks, and the committed offsets.
//!
//! - **Partitions are assigned, not balanced.** Worker `w` of `N` reads the partitions
//!   `p mod N = w` (`assign`, not `subscribe`); `group.id` is used only for the committed
//!   offsets a run starts from and commits to. A consumer group's rebalancing would hand
//!   partitions to workers by timing, and chunk times would then depend on it.
//! - **Chunk times are a function of the input.** With `P` partitions (from the topic's
//!   metadata at start), partition `p`'s `k`-th chunk holds the next `chunk_lines` records by
//!   offset and has chunk time `k·P + p` (`k` counts on across restarts: a commit records it);
//!   a line's `seq` is `offset·P + p`. A worker
//!   emits its partitions' chunks in chunk-time order, so a partition that has no full chunk
//!   yet is waited for (the others are paused when 32,768 records, at least 4 chunks, wait).
//! - **Bounded (`stop=end`)**: a partition ends at librdkafka's partition-EOF event (with what
//!   it has, a partial last chunk flagged `ended`), a worker when all its partitions have; the
//!   output then depends only on the records up to the ends. Records that arrive after a
//!   partition's EOF are left for the next run.
//! - **Live**: a partly filled chunk is passed on after `kafka.linger` (200 ms), even an empty
//!   one, so that event time keeps moving; a partition with no record for
//!   `kafka.idle_timeout` (5 s) sends empty chunks flagged `ended`, so it stops holding the
//!   watermark back (`dataflow::watermark`) until its next record. Chunk boundaries then
//!   depend on arrival timing: live mode trades determinism for latency.
//! - **Positions** (the next offset of each partition after the chunks handed out) are
//!   recorded by the dataflow's commits (`dataflow::commit`, `docs/commit-protocol.md`); a
//!   restart continues from the last commit's positions and chunk index, not from the
//!   group's offsets, which are committed after the commit's manifest for monitoring and as
//!   the start of a run without a manifest.
//! - **Values**: an envelope line, or a raw OCPP-J frame (a value starting with `[`): then the
//!   record key is the charge point id and the record timestamp the receive time, and the
//!   frame is wrapped into an envelope line so it takes the same decoder path. A raw frame
//!   without a key becomes a `missing_charge_point` dead letter. Line breaks inside a value
//!   (pretty-printed JSON) are read as spaces; empty values are skipped.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Chunk, Poll, Position, Resume, Source, SourceError, SourceProgress};
use crate::config::{KafkaConfig, KafkaProperties, KafkaSourceConfig};
use crate::metrics::{label, labels2, Metrics};
use crate::time::format_rfc3339;

/// A partition is paused when this many records (at least 4 chunks) wait for their turn:
/// small chunks must not make pausing (and the fetch restarts it costs) frequent.
const PAUSE_AT_RECORDS: u64 = 32_768;
/// How long to wait for the topic's metadata at start.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses `kafka://HOST:PORT[,HOST:PORT…]/TOPIC?group=GROUP[&stop=end][&NAME=VALUE…]`.
///
/// `group` is required; `stop=end` makes the run bounded; every other query parameter is a
/// librdkafka property passed verbatim (`security.protocol=SASL_SSL&sasl.mechanism=PLAIN…`).
/// Names and values may be percent-encoded (`%26` for `&`, `%3D` for `=`, `%25` for `%`);
/// `+` is a plus sign.
pub fn parse_url(url: &str) -> Result<KafkaSourceConfig, String> {
    let rest = url
        .strip_prefix("kafka://")
        .ok_or_else(|| format!("{url:?}: a Kafka URL starts with kafka://"))?;
    let (brokers, rest) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url:?}: no topic (kafka://HOST:PORT/TOPIC?group=GROUP)"))?;
    let (topic, query) = rest.split_once('?').unwrap_or((rest, ""));
    if brokers.is_empty() || brokers.split(',').any(|b| b.trim().is_empty()) {
        return Err(format!("{url:?}: no broker (kafka://HOST:PORT/TOPIC)"));
    }
    let topic = percent_decode(topic)?;
    if topic.is_empty() || topic.contains('/') {
        return Err(format!("{url:?}: bad topic {topic:?}"));
    }
    let mut group = None;
    let mut stop_at_end = false;
    let mut properties = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{url:?}: query parameter {pair:?} has no value"))?;
        let (name, value) = (percent_decode(name)?, percent_decode(value)?);
        match name.as_str() {
            "group" if group.is_some() => return Err(format!("{url:?}: group given twice")),
            "group" => group = Some(value),
            "stop" if value == "end" => stop_at_end = true,
            "stop" => return Err(format!("{url:?}: stop={value:?}: only stop=end is known")),
            _ => {
                if properties.insert(name.clone(), value).is_some() {
                    return Err(format!("{url:?}: {name} given twice"));
                }
            }
        }
    }
    let group = group
        .filter(|g| !g.is_empty())
        .ok_or_else(|| format!("{url:?}: group=GROUP is required (offsets are committed to it)"))?;
    Ok(KafkaSourceConfig {
        brokers: brokers.to_string(),
        topic,
        group,
        stop_at_end,
        properties: KafkaProperties(properties),
    })
}

/// Where `evflow produce` writes: `kafka://HOST:PORT/TOPIC[?PROPERTY=VALUE…]` (no group).
pub fn parse_producer_url(url: &str) -> Result<KafkaSourceConfig, String> {
    let with_group = if url.contains('?') {
        format!("{url}&group=-")
    } else {
        format!("{url}?group=-")
    };
    let c = parse_url(&with_group)?;
    if c.stop_at_end {
        return Err(format!("{url:?}: stop= is for sources"));
    }
    Ok(c)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// The consumer's librdkafka configuration: evflow's defaults, then `[kafka.properties]`,
/// then the source's own properties (the URL's), then what the source relies on.
pub fn consumer_config(src: &KafkaSourceConfig, common: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &src.brokers)
        .set("group.id", &src.group)
        .set("client.id", "evflow")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    for (k, v) in common.properties.0.iter().chain(&src.properties.0) {
        c.set(k, v);
    }
    // Offsets are committed by the source, after the pipeline has written a chunk's records.
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "enable.partition.eof",
            if src.stop_at_end { "true" } else { "false" },
        );
    c
}

/// Appends one record's line to `data` (with its `\n`); `false` if the record has no line
/// (an empty value). See the module doc for raw frames.
pub fn append_record_line(
    data: &mut Vec<u8>,
    key: Option<&[u8]>,
    value: &[u8],
    timestamp_ms: Option<i64>,
) -> bool {
    let value = value.trim_ascii();
    if value.is_empty() {
        return false;
    }
    let start = data.len();
    if value[0] == b'[' {
        data.push(b'{');
        if let Some(ts) = timestamp_ms {
            data.extend_from_slice(b"\"timestamp\":\"");
            data.extend_from_slice(format_rfc3339(ts).as_bytes());
            data.extend_from_slice(b"\",");
        }
        if let Some(k) = key.filter(|k| !k.is_empty()) {
            data.extend_from_slice(b"\"charge_point_id\":");
            let id = String::from_utf8_lossy(k);
            // Serialising a string cannot fail.
            let _ = serde_json::to_writer(&mut *data, &*id);
            data.push(b',');
        }
        data.extend_from_slice(b"\"message\":");
        data.extend_from_slice(value);
        data.push(b'}');
    } else {
        data.extend_from_slice(value);
    }
    // JSON allows line breaks only as whitespace: as spaces the line stays one line.
    for b in &mut data[start..] {
        if matches!(*b, b'\n' | b'\r') {
            *b = b' ';
        }
    }
    data.push(b'\n');
    true
}

/// The consumer's context: logs commit failures, turns statistics into the lag metric.
struct Context {
    topic: String,
    lag: Family<Vec<(&'static str, String)>, Gauge>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        // Partition-EOF comes as an event too (handled in `drain`); the rest librdkafka retries.
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!("kafka: {}: {error}: {reason}", self.topic);
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            topics: BTreeMap<String, TopicStats>,
        }
        #[derive(serde::Deserialize)]
        struct TopicStats {
            #[serde(default)]
            partitions: BTreeMap<String, PartitionStats>,
        }
        #[derive(serde::Deserialize)]
        struct PartitionStats {
            #[serde(default)]
            desired: bool,
            #[serde(default = "invalid")]
            hi_offset: i64,
            #[serde(default = "invalid")]
            app_offset: i64,
            #[serde(default = "invalid")]
            committed_offset: i64,
        }
        fn invalid() -> i64 {
            -1
        }
        let Ok(stats) = serde_json::from_slice::<Stats>(statistics) else {
            return;
        };
        let Some(t) = stats.topics.get(&self.topic) else {
            return;
        };
        for (p, s) in &t.partitions {
            if p.starts_with('-') || !s.desired || s.hi_offset < 0 {
                continue;
            }
            // Position: the next offset evflow reads; before the first record, the committed one.
            let position = if s.app_offset >= 0 {
                s.app_offset
            } else if s.committed_offset >= 0 {
                s.committed_offset
            } else {
                continue;
            };
            self.lag
                .get_or_create(&labels2("topic", &self.topic, "partition", p))
                .set((s.hi_offset - position).max(0));
        }
    }
}

impl ConsumerContext for Context {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!("kafka: committing offsets of {} failed: {e}", self.topic);
        }
    }
}

/// Records of a partition gathered for one chunk.
#[derive(Default)]
struct Filling {
    data: Vec<u8>,
    seqs: Vec<u64>,
    /// Records, including those without a line (empty values).
    records: u64,
    /// The offset after the last record.
    next_offset: Option<i64>,
}

struct Partition {
    id: i32,
    /// Index in this run of the partition's next chunk.
    k: u64,
    filling: Filling,
    /// Full chunks waiting for their chunk time to come.
    ready: VecDeque<Filling>,
    /// The next offset expected (records below it are repeats and skipped).
    expected: Option<i64>,
    /// Partition-EOF seen (`stop=end`): the filling chunk is the last.
    eof: bool,
    /// The offset after the last chunk handed out (`None` before any record).
    emitted_next: Option<i64>,
    /// The last chunk has been emitted.
    done: bool,
    paused: bool,
    last_emit: Instant,
    last_record: Instant,
}

pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    topic: String,
    partitions: Vec<Partition>,
    num_partitions: u32,
    chunk_lines: u64,
    /// Full chunks waiting in a partition before it is paused.
    pause_at: usize,
    stop_at_end: bool,
    linger: Duration,
    idle_timeout: Duration,
    records: u64,
    records_metric: Counter,
    last_warning: Option<Instant>,
}

fn kafka_err(context: &str) -> impl Fn(KafkaError) -> SourceError + '_ {
    move |e| SourceError::Kafka(format!("{context}: {e}"))
}

impl KafkaSource {
    /// Connects, reads the topic's partition count and assigns worker `index` of `peers` its
    /// partitions: from `resume`'s positions, else from the group's committed offsets (else
    /// `auto.offset.reset`: earliest).
    pub fn open(
        src: &KafkaSourceConfig,
        common: &KafkaConfig,
        chunk_lines: usize,
        index: usize,
        peers: usize,
        resume: Option<&Resume>,
        metrics: &Metrics,
    ) -> Result<KafkaSource, SourceError> {
        let context = Context {
            topic: src.topic.clone(),
            lag: metrics.kafka_consumer_lag.clone(),
        };
        let consumer: BaseConsumer<Context> = consumer_config(src, common)
            .create_with_context(context)
            .map_err(kafka_err("cannot create the consumer"))?;
        let metadata = consumer
            .fetch_metadata(Some(&src.topic), METADATA_TIMEOUT)
            .map_err(kafka_err(&format!(
                "metadata of {} at {}",
                src.topic, src.brokers
            )))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == src.topic)
            .ok_or_else(|| SourceError::Kafka(format!("no topic {}", src.topic)))?;
        if let Some(e) = topic.error() {
            return Err(SourceError::Kafka(format!(
                "topic {}: {}",
                src.topic,
                rdkafka::types::RDKafkaErrorCode::from(e)
            )));
        }
        let num_partitions = topic.partitions().len() as u32;
        if num_partitions == 0 {
            return Err(SourceError::Kafka(format!(
                "topic {} has no partitions",
                src.topic
            )));
        }
        let now = Instant::now();
        let partitions: Vec<Partition> = (0..num_partitions as i32)
            .filter(|p| *p as usize % peers == index)
            .map(|id| {
                let at = resume.and_then(|r| r.positions.iter().find(|x| x.partition == id as u32));
                let done = resume.is_some_and(|r| r.keep_done) && at.is_some_and(|x| x.done);
                Partition {
                    id,
                    k: resume.map_or(0, |r| r.next_chunk),
                    filling: Filling::default(),
                    ready: VecDeque::new(),
                    expected: at.and_then(|x| x.next_offset),
                    eof: done,
                    emitted_next: at.and_then(|x| x.next_offset),
                    done,
                    paused: false,
                    last_emit: now,
                    last_record: now,
                }
            })
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in partitions.iter().filter(|p| !p.done) {
            let start = p.emitted_next.map_or(Offset::Stored, Offset::Offset);
            tpl.add_partition_offset(&src.topic, p.id, start)
                .map_err(kafka_err("assignment"))?;
        }
        consumer.assign(&tpl).map_err(kafka_err("assign"))?;
        tracing::info!(
            "kafka: worker {index} reads {} of the {num_partitions} partition(s) of {} ({})",
            partitions.len(),
            src.topic,
            if src.stop_at_end {
                "to their end"
            } else {
                "live"
            },
        );
        Ok(KafkaSource {
            consumer,
            topic: src.topic.clone(),
            partitions,
            num_partitions,
            chunk_lines: chunk_lines.max(1) as u64,
            pause_at: (PAUSE_AT_RECORDS / chunk_lines.max(1) as u64).max(4) as usize,
            stop_at_end: src.stop_at_end,
            linger: Duration::from_millis(common.linger.0.max(1) as u64),
            idle_timeout: Duration::from_millis(common.idle_timeout.0.max(1) as u64),
            records: 0,
            records_metric: metrics
                .kafka_records
                .get_or_create(&label("topic", &src.topic))
                .clone(),
            last_warning: None,
        })
    }

    fn chunk_time(&self, p: &Partition) -> u64 {
        p.k * self.num_partitions as u64 + p.id as u64
    }

    /// The partition whose chunk comes next: the least chunk time among those not done.
    fn target(&self) -> Option<usize> {
        (0..self.partitions.len())
            .filter(|i| !self.partitions[*i].done)
            .min_by_key(|i| self.chunk_time(&self.partitions[*i]))
    }

    /// Takes what the consumer has now into the partitions' chunks; returns how many events.
    fn drain(&mut self) -> Result<usize, SourceError> {
        let budget = (self.pause_at as u64 + 1) * self.chunk_lines;
        let mut n = 0usize;
        let mut received = 0u64;
        let mut warning = None;
        while (n as u64) < budget {
            let Some(r) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            n += 1;
            match r {
                Ok(msg) => {
                    received += 1;
                    accept(
                        &mut self.partitions,
                        &msg,
                        self.num_partitions,
                        self.chunk_lines,
                    );
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    if let Some(part) = self.partitions.iter_mut().find(|x| x.id == p) {
                        part.eof = self.stop_at_end;
                    }
                }
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(SourceError::Kafka(format!("{}: {e}", self.topic)));
                }
                Err(e) => warning = Some(e),
            }
        }
        if let Some(e) = warning {
            // librdkafka retries by itself (a broker down, a leader moving): tell, not too often.
            if self
                .last_warning
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                tracing::warn!("kafka: {}: {e}", self.topic);
                self.last_warning = Some(Instant::now());
            }
        }
        self.records += received;
        self.records_metric.inc_by(received);
        // Back-pressure: a partition far ahead of the chunk-time order waits.
        let mut pause = TopicPartitionList::new();
        for p in &mut self.partitions {
            if !p.paused && !p.done && p.ready.len() >= self.pause_at {
                p.paused = true;
                let _ = pause.add_partition(&self.topic, p.id);
            }
        }
        if pause.count() > 0 {
            self.consumer.pause(&pause).map_err(kafka_err("pause"))?;
        }
        Ok(n)
    }
}

/// Adds a record to its partition's chunk.
fn accept(partitions: &mut [Partition], msg: &BorrowedMessage<'_>, n: u32, chunk_lines: u64) {
    let Some(p) = partitions.iter_mut().find(|p| p.id == msg.partition()) else {
        return;
    };
    let offset = msg.offset();
    if p.eof || p.done || p.expected.is_some_and(|e| offset < e) {
        // After the partition's end (left for the next run), or a repeat.
        return;
    }
    p.expected = Some(offset + 1);
    p.last_record = Instant::now();
    let f = &mut p.filling;
    let ts = msg.timestamp().to_millis();
    if append_record_line(&mut f.data, msg.key(), msg.payload().unwrap_or(&[]), ts) {
        f.seqs.push(offset as u64 * n as u64 + p.id as u64);
    }
    f.records += 1;
    f.next_offset = Some(offset + 1);
    if f.records >= chunk_lines {
        let full = std::mem::take(f);
        p.ready.push_back(full);
    }
}

impl Source for KafkaSource {
    fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<Poll, SourceError> {
        for _ in 0..8 {
            let polled = self.drain()?;
            let Some(i) = self.target() else {
                return Ok(Poll::End);
            };
            let now = Instant::now();
            let time = self.chunk_time(&self.partitions[i]);
            let (linger, idle_timeout, stop_at_end, pause_at) = (
                self.linger,
                self.idle_timeout,
                self.stop_at_end,
                self.pause_at,
            );
            let p = &mut self.partitions[i];
            let (fill, ended) = if let Some(f) = p.ready.pop_front() {
                (f, false)
            } else if p.eof {
                p.done = true;
                (std::mem::take(&mut p.filling), true)
            } else if !stop_at_end && now.duration_since(p.last_emit) >= linger {
                let idle =
                    p.filling.records == 0 && now.duration_since(p.last_record) >= idle_timeout;
                (std::mem::take(&mut p.filling), idle)
            } else if polled > 0 {
                continue;
            } else {
                return Ok(Poll::Pending);
            };
            p.k += 1;
            p.last_emit = now;
            let resume = p.paused && p.ready.len() < pause_at / 2;
            if resume {
                p.paused = false;
                let mut tpl = TopicPartitionList::new();
                let _ = tpl.add_partition(&self.topic, p.id);
                self.consumer.resume(&tpl).map_err(kafka_err("resume"))?;
            }
            let id = p.id;
            if fill.next_offset.is_some() {
                p.emitted_next = fill.next_offset;
            }
            chunk.data = fill.data;
            chunk.seqs = fill.seqs;
            chunk.time = time;
            chunk.partition = id as u32;
            chunk.partitions = self.num_partitions;
            chunk.ended = ended;
            return Ok(Poll::Ready);
        }
        Ok(Poll::Pending)
    }

    fn next_time(&self) -> u64 {
        self.target()
            .map_or(u64::MAX, |i| self.chunk_time(&self.partitions[i]))
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            done: self.records,
            total: None,
            unit: "records",
        }
    }

    fn partitions(&self) -> u32 {
        self.num_partitions
    }

    fn positions(&self) -> Option<Vec<Position>> {
        Some(
            self.partitions
                .iter()
                .map(|p| Position {
                    partition: p.id as u32,
                    next_offset: p.emitted_next,
                    done: p.done,
                })
                .collect(),
        )
    }

    fn commit(&mut self, positions: &[Position], sync: bool) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for p in positions {
            if let Some(o) = p.next_offset {
                tpl.add_partition_offset(&self.topic, p.partition as i32, Offset::Offset(o))
                    .map_err(kafka_err("commit"))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        let r = self.consumer.commit(&tpl, mode);
        if sync {
            // Serve the last callbacks (commit results, statistics).
            while self.consumer.poll(Duration::ZERO).is_some() {}
        }
        // The group's offsets are informational (the manifest is the truth): a failure is
        // logged, and the next commit carries newer offsets.
        if let Err(e) = r {
            tracing::warn!(
                "kafka: committing the group's offsets of {}: {e}",
                self.topic
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_brokers_topic_group_stop_and_properties() {
        let c = parse_url("kafka://127.0.0.1:9092/ocpp?group=g1&stop=end").unwrap();
        assert_eq!(c.brokers, "127.0.0.1:9092");
        assert_eq!(c.topic, "ocpp");
        assert_eq!(c.group, "g1");
        assert!(c.stop_at_end);
        assert!(c.properties.0.is_empty());

        let c = parse_url(
            "kafka://k1:9093,k2:9093/ocpp.in?group=evflow&security.protocol=SASL_SSL\
             &sasl.mechanism=PLAIN&sasl.username=svc&sasl.password=p%26ss%3Dw%25rd+x",
        )
        .unwrap();
        assert_eq!(c.brokers, "k1:9093,k2:9093");
        assert_eq!(c.topic, "ocpp.in");
        assert!(!c.stop_at_end);
        let p = &c.properties.0;
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        assert_eq!(p["sasl.username"], "svc");
        assert_eq!(p["sasl.password"], "p&ss=w%rd+x");
        assert_eq!(p.len(), 4);

        for bad in [
            "http://k:1/t?group=g",
            "kafka://k:1?group=g",
            "kafka:///t?group=g",
            "kafka://k:1/?group=g",
            "kafka://k:1/t",
            "kafka://k:1/t?group=",
            "kafka://k:1/t?group=a&group=b",
            "kafka://k:1/t?group=g&stop=never",
            "kafka://k:1/t?group=g&acks",
            "kafka://k:1/t?group=g&x=%zz",
            "kafka://k:1,/t?group=g",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn properties_reach_the_consumer_config() {
        let src = parse_url(
            "kafka://k:9093/t?group=g&stop=end&security.protocol=SASL_SSL&sasl.mechanism=PLAIN\
             &enable.auto.commit=true",
        )
        .unwrap();
        let mut common = KafkaConfig::default();
        common
            .properties
            .0
            .insert("ssl.ca.location".into(), "/etc/ca.pem".into());
        common
            .properties
            .0
            .insert("security.protocol".into(), "SSL".into());
        let c = consumer_config(&src, &common);
        assert_eq!(c.get("bootstrap.servers"), Some("k:9093"));
        assert_eq!(c.get("group.id"), Some("g"));
        // The URL's properties win over [kafka.properties]; both reach librdkafka.
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        // What the source relies on cannot be overridden.
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.partition.eof"), Some("true"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
    }

    /// Every chunk of worker `index` of `peers`: (time, partition, ended, seqs).
    fn chunks(
        src: &KafkaSourceConfig,
        chunk_lines: usize,
        index: usize,
        peers: usize,
    ) -> Vec<(u64, u32, bool, Vec<u64>)> {
        let metrics = Metrics::new();
        let mut source = KafkaSource::open(
            src,
            &KafkaConfig::default(),
            chunk_lines,
            index,
            peers,
            None,
            &metrics,
        )
        .unwrap();
        let mut out: Vec<(u64, u32, bool, Vec<u64>)> = vec![];
        let mut chunk = Chunk::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "the source did not end");
            chunk.clear();
            let before = source.next_time();
            match source.next_chunk(&mut chunk).unwrap() {
                Poll::End => break,
                Poll::Pending => std::thread::sleep(Duration::from_millis(5)),
                Poll::Ready => {
                    assert!(chunk.time >= before);
                    assert!(out.last().is_none_or(|(t, ..)| *t < chunk.time));
                    assert_eq!(chunk.partitions, 3);
                    out.push((chunk.time, chunk.partition, chunk.ended, chunk.seqs.clone()));
                }
            }
        }
        let positions = source.positions().unwrap();
        source.commit(&positions, true).unwrap();
        out
    }

    #[test]
    fn partitions_are_cut_into_chunks_by_offset_and_end_at_their_end() {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("t", 3, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()
            .unwrap();
        // Partition 0: 9 records, partition 1: 8, partition 2: none.
        for i in 0..17 {
            let line = format!("{{\"n\": {i}}}");
            let r = BaseRecord::<str, str>::to("t")
                .partition(i % 2)
                .payload(&line);
            producer.send(r).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let src = KafkaSourceConfig {
            brokers: mock.bootstrap_servers(),
            topic: "t".into(),
            group: "g".into(),
            stop_at_end: true,
            properties: KafkaProperties::default(),
        };
        let w0 = chunks(&src, 4, 0, 2);
        let w1 = chunks(&src, 4, 1, 2);
        // Worker 0 owns partitions 0 and 2, worker 1 partition 1; chunk k of p at k·3 + p.
        let summary = |w: &[(u64, u32, bool, Vec<u64>)]| -> Vec<(u64, u32, bool, usize)> {
            w.iter().map(|(t, p, e, s)| (*t, *p, *e, s.len())).collect()
        };
        assert_eq!(
            summary(&w0),
            vec![
                (0, 0, false, 4),
                (2, 2, true, 0),
                (3, 0, false, 4),
                (6, 0, true, 1)
            ]
        );
        assert_eq!(
            summary(&w1),
            vec![(1, 1, false, 4), (4, 1, false, 4), (7, 1, true, 0)]
        );
        // seq = offset·P + p.
        assert_eq!(w0[0].3, vec![0, 3, 6, 9]);
        assert_eq!(w1[1].3, vec![13, 16, 19, 22]);
        // The offsets were committed: the same group reads nothing more.
        let again = chunks(&src, 4, 0, 1);
        assert!(
            again.iter().all(|(_, _, ended, s)| *ended && s.is_empty()),
            "{again:?}"
        );
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn values_become_envelope_lines() {
        let mut data = Vec::new();
        let env = br#"{"timestamp": "2026-01-05T08:00:00Z",
            "charge_point_id": "CP-1", "message": [2, "1", "Heartbeat", {}]}"#;
        assert!(append_record_line(
            &mut data,
            Some(b"ignored"),
            env,
            Some(0)
        ));
        assert!(append_record_line(
            &mut data,
            Some(b"CP-\"2\""),
            b" [2,\"7\",\"Heartbeat\",{}]\n",
            Some(1_767_600_000_123),
        ));
        assert!(append_record_line(
            &mut data,
            None,
            b"[2,\"8\",\"Heartbeat\",{}]",
            Some(0)
        ));
        assert!(!append_record_line(&mut data, Some(b"CP"), b"  \n", None));
        let text = String::from_utf8(data).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["charge_point_id"], "CP-1");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            second,
            serde_json::json!({"timestamp": "2026-01-05T08:00:00.123Z",
                "charge_point_id": "CP-\"2\"", "message": [2, "7", "Heartbeat", {}]})
        );
        let third: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert!(third.get("charge_point_id").is_none());
    }
}
