//! Kafka sinks: anomalies, notifications and dead letters to the topics `[output.kafka]`
//! names, beside (not instead of) the JSONL files.
//!
//! Owns: the producer. Each record is one Kafka record: key = the charge point id (none for
//! dead letters, which may not have one), value = exactly the record's JSONL line (without
//! the `\n`; schemas/). The producer is idempotent (`enable.idempotence=true`: librdkafka's
//! retries neither duplicate nor reorder a partition's records); a record librdkafka gives up
//! on (after `message.timeout.ms`) is logged and counted in
//! `evflow_kafka_delivery_errors_total{topic}`. The sink flushes — waits until everything
//! sent is acknowledged, at most `flush_timeout` — at every checkpoint and at the end; a
//! flush that times out is logged and the run goes on (the records stay queued).

use std::time::Duration;

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

/// Counts and logs failed deliveries.
struct Context {
    errors: Family<Vec<(&'static str, String)>, Counter>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            self.errors
                .get_or_create(&label("topic", msg.topic()))
                .inc();
            tracing::warn!("kafka: a record to {} was not delivered: {e}", msg.topic());
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
        let producer = producer_config(out, common)
            .create_with_context(Context {
                errors: errors.clone(),
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

    fn send<T: Serialize>(
        &mut self,
        topic: &str,
        key: Option<&str>,
        record: &T,
    ) -> Result<(), SinkError> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record)
            .map_err(|e| SinkError::Kafka(format!("{topic}: {e}")))?;
        let mut r = BaseRecord::to(topic).payload(&self.buf[..]);
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
                    self.errors.get_or_create(&label("topic", topic)).inc();
                    tracing::warn!("kafka: a record to {topic} could not be queued: {e}");
                    return Ok(());
                }
            }
        }
    }

    /// Waits (at most `flush_timeout`) until every record sent is acknowledged.
    pub fn flush(&mut self) {
        let started = std::time::Instant::now();
        match self.producer.flush(self.flush_timeout) {
            Ok(()) => tracing::debug!(
                "kafka: producer flushed in {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(e) => tracing::warn!(
                "kafka: flush did not finish in {:?} ({} record(s) still in flight): {e}",
                self.flush_timeout,
                self.producer.in_flight_count()
            ),
        }
    }
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
