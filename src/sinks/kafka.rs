//! Kafka sinks: anomalies, notifications and dead letters to the topics `[output.kafka]`
//! names, beside (not instead of) the JSONL files.
//!
//! Owns: the producer. Each record is one Kafka record: key = the charge point id (none for
//! dead letters, which may not have one), value = exactly the record's JSONL line (without
//! the `\n`; schemas/). The producer is idempotent (`enable.idempotence=true`: librdkafka's
//! retries neither duplicate nor reorder a partition's records). A record librdkafka gives up
//! on (after `message.timeout.ms`) is counted in `evflow_kafka_delivery_errors_total{topic}`
//! and sent again — never dropped. A commit (`dataflow::commit`) waits until every record
//! sent before it is acknowledged ([`KafkaSink::flush_all`]); if that does not happen within
//! `flush_timeout`, the commit is postponed, so a crash re-sends from the previous commit:
//! delivery is at least once, and consumers deduplicate by the records' `id`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use serde::Serialize;

use super::SinkError;
use crate::config::{KafkaConfig, KafkaOutputConfig};
use crate::metrics::{label, Metrics};

/// A record whose delivery failed, to be sent again: (topic, key, value).
type Failed = (String, Option<Vec<u8>>, Vec<u8>);

/// Counts and logs failed deliveries, and keeps them for sending again.
struct Context {
    errors: Family<Vec<(&'static str, String)>, Counter>,
    failed: Arc<Mutex<Vec<Failed>>>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            self.errors
                .get_or_create(&label("topic", msg.topic()))
                .inc();
            tracing::warn!(
                "kafka: a record to {} was not delivered ({e}); it will be sent again",
                msg.topic()
            );
            if let Ok(mut failed) = self.failed.lock() {
                failed.push((
                    msg.topic().to_string(),
                    msg.key().map(<[u8]>::to_vec),
                    msg.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
}

/// The producer's librdkafka configuration: evflow's defaults, then `[kafka.properties]`,
/// then `[output.kafka.properties]`, then idempotence.
pub fn producer_config(out: &KafkaOutputConfig, common: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &out.brokers)
        .set("client.id", "evflow")
        .set("linger.ms", "20");
    for (k, v) in common.properties.0.iter().chain(&out.properties.0) {
        c.set(k, v);
    }
    c.set("enable.idempotence", "true");
    c
}

pub struct KafkaSink {
    producer: ThreadedProducer<Context>,
    anomalies: Option<String>,
    notifications: Option<String>,
    dead_letters: Option<String>,
    flush_timeout: Duration,
    buf: Vec<u8>,
    errors: Family<Vec<(&'static str, String)>, Counter>,
    failed: Arc<Mutex<Vec<Failed>>>,
}

impl KafkaSink {
    pub fn open(
        out: &KafkaOutputConfig,
        common: &KafkaConfig,
        metrics: &Metrics,
    ) -> Result<KafkaSink, SinkError> {
        let errors = metrics.kafka_delivery_errors.clone();
        let topics = [
            &out.anomalies_topic,
            &out.notifications_topic,
            &out.dead_letter_topic,
        ];
        for t in topics.into_iter().flatten() {
            // The series exists from the start, at 0.
            let _ = errors.get_or_create(&label("topic", t.as_str()));
        }
        let failed = Arc::new(Mutex::new(Vec::new()));
        let producer = producer_config(out, common)
            .create_with_context(Context {
                errors: errors.clone(),
                failed: failed.clone(),
            })
            .map_err(|e| SinkError::Kafka(format!("cannot create the producer: {e}")))?;
        tracing::info!(
            "kafka: producing to {} (anomalies: {}, notifications: {}, dead letters: {})",
            out.brokers,
            out.anomalies_topic.as_deref().unwrap_or("-"),
            out.notifications_topic.as_deref().unwrap_or("-"),
            out.dead_letter_topic.as_deref().unwrap_or("-"),
        );
        Ok(KafkaSink {
            producer,
            anomalies: out.anomalies_topic.clone(),
            notifications: out.notifications_topic.clone(),
            dead_letters: out.dead_letter_topic.clone(),
            flush_timeout: Duration::from_millis(out.flush_timeout.0.max(0) as u64),
            buf: Vec::with_capacity(1024),
            errors,
            failed,
        })
    }

    pub fn anomaly<T: Serialize>(&mut self, key: &str, record: &T) -> Result<(), SinkError> {
        let topic = self.anomalies.take();
        let r = topic
            .as_deref()
            .map_or(Ok(()), |t| self.send(t, Some(key), record));
        self.anomalies = topic;
        r
    }

    pub fn notification<T: Serialize>(&mut self, key: &str, record: &T) -> Result<(), SinkError> {
        let topic = self.notifications.take();
        let r = topic
            .as_deref()
            .map_or(Ok(()), |t| self.send(t, Some(key), record));
        self.notifications = topic;
        r
    }

    pub fn dead_letter<T: Serialize>(&mut self, record: &T) -> Result<(), SinkError> {
        let topic = self.dead_letters.take();
        let r = topic
            .as_deref()
            .map_or(Ok(()), |t| self.send(t, None, record));
        self.dead_letters = topic;
        r
    }

    /// Produces one record to `topic` (a notification route's).
    pub fn to_topic<T: Serialize>(
        &mut self,
        topic: &str,
        key: &str,
        record: &T,
    ) -> Result<(), SinkError> {
        self.send(topic, Some(key), record)
    }

    fn send<T: Serialize>(
        &mut self,
        topic: &str,
        key: Option<&str>,
        record: &T,
    ) -> Result<(), SinkError> {
        self.resend_failed()?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        serde_json::to_writer(&mut buf, record)
            .map_err(|e| SinkError::Kafka(format!("{topic}: {e}")))?;
        let r = self.enqueue(topic, key.map(str::as_bytes), &buf);
        self.buf = buf;
        r
    }

    /// Queues one record, waiting while librdkafka's local queue is full.
    fn enqueue(&self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<(), SinkError> {
        let mut r = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            r = r.key(k);
        }
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                // The local queue is full: the producer's thread is delivering; wait for room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    // Not retriable (a record larger than the broker accepts, an unknown
                    // topic in the configuration): the run stops rather than lose it.
                    self.errors.get_or_create(&label("topic", topic)).inc();
                    return Err(SinkError::Kafka(format!(
                        "a record to {topic} could not be queued: {e}"
                    )));
                }
            }
        }
    }

    /// Sends again the records whose delivery failed.
    fn resend_failed(&mut self) -> Result<(), SinkError> {
        let failed = match self.failed.lock() {
            Ok(mut f) if !f.is_empty() => std::mem::take(&mut *f),
            _ => return Ok(()),
        };
        for (topic, key, value) in &failed {
            self.enqueue(topic, key.as_deref(), value)?;
        }
        Ok(())
    }

    /// Records sent and not yet acknowledged, including those waiting to be sent again.
    pub fn pending(&self) -> usize {
        let failed = self.failed.lock().map_or(0, |f| f.len());
        self.producer.in_flight_count().max(0) as usize + failed
    }

    /// Waits (at most `flush_timeout`) until every record sent is acknowledged; failed
    /// deliveries are sent again meanwhile. An error says what is still pending.
    pub fn flush_all(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        loop {
            self.resend_failed()?;
            let left = self.flush_timeout.saturating_sub(started.elapsed());
            let flushed = self.producer.flush(left.min(Duration::from_secs(1)));
            if flushed.is_ok() && self.pending() == 0 {
                tracing::debug!(
                    "kafka: producer flushed in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                );
                return Ok(());
            }
            if started.elapsed() >= self.flush_timeout {
                return Err(SinkError::Kafka(format!(
                    "{} record(s) not acknowledged within {:?}",
                    self.pending(),
                    self.flush_timeout
                )));
            }
        }
    }

    /// [`flush_all`](Self::flush_all), logging instead of failing (a checkpoint goes on:
    /// the records stay queued and commits wait for them).
    pub fn flush(&mut self) {
        if let Err(e) = self.flush_all() {
            tracing::warn!("kafka: {e}");
        }
    }
}

/// `evflow produce`: sends every non-empty line of `input` to the topic of a
/// `kafka://HOST:PORT/TOPIC[?PROPERTY=VALUE…]` URL, keyed by the line's `charge_point_id`
/// (so that a charger's records stay in order in one partition), and waits for every
/// acknowledgement. Returns the number of records.
pub fn produce_lines(url: &str, input: impl std::io::BufRead) -> Result<u64, SinkError> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow, default)]
        charge_point_id: Option<std::borrow::Cow<'a, str>>,
    }
    let target = crate::sources::kafka::parse_producer_url(url).map_err(SinkError::Kafka)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &target.brokers)
        .set("client.id", "evflow-produce")
        .set("linger.ms", "50")
        .set("enable.idempotence", "true");
    for (k, v) in &target.properties.0 {
        config.set(k, v);
    }
    let producer: rdkafka::producer::BaseProducer = config
        .create()
        .map_err(|e| SinkError::Kafka(format!("cannot create the producer: {e}")))?;
    let mut n = 0u64;
    let mut last_log = Instant::now();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|source| SinkError::Io {
            path: "input".into(),
            source,
        })?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = serde_json::from_str::<Key<'_>>(line)
            .ok()
            .and_then(|k| k.charge_point_id);
        let mut r = BaseRecord::<str, str>::to(&target.topic).payload(line);
        if let Some(k) = key.as_deref() {
            r = r.key(k);
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(SinkError::Kafka(format!("line {}: {e}", i + 1)));
                }
            }
        }
        producer.poll(Duration::ZERO);
        n += 1;
        if last_log.elapsed() > Duration::from_secs(5) {
            tracing::info!("produced {n} records");
            last_log = Instant::now();
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| SinkError::Kafka(format!("not every record was acknowledged: {e}")))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_is_idempotent_and_takes_properties() {
        let out: KafkaOutputConfig = toml::from_str(
            "brokers = \"k:9092\"\nanomalies_topic = \"a\"\n\
             [properties]\n\"enable.idempotence\" = false\n\"acks\" = \"all\"\n",
        )
        .unwrap();
        let mut common = KafkaConfig::default();
        common
            .properties
            .0
            .insert("security.protocol".into(), "SASL_SSL".into());
        let c = producer_config(&out, &common);
        assert_eq!(c.get("bootstrap.servers"), Some("k:9092"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
    }
}
