//! Payment events: a payment provider's JSONL file (`schemas/payment-event.schema.json`).
//!
//! Owns: reading and validating payment events. [`parse_payment`] checks one line (the Kafka
//! consumer reuses it); [`read_payments`] reads a whole file, reports the lines it cannot use
//! as [`BadPayment`]s (never fatal) and returns the events sorted by (timestamp, line order).
//! Blank lines (and a trailing `\r`) are skipped. Fields the schema does not name are ignored.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::SourceError;
use crate::model::{PaymentEvent, PaymentEventKind};
use crate::time::parse_rfc3339;

/// A line that is not a payment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPayment {
    /// 1-based; blank lines count.
    pub line_no: u64,
    pub error: String,
    /// The line without its line ending, lossily decoded as UTF-8.
    pub line: String,
}

impl BadPayment {
    /// The dead letter of a bad payment event (`seq`: its line number, or Kafka offset).
    pub fn into_dead_letter(self) -> crate::model::DeadLetter {
        crate::model::DeadLetter {
            seq: self.line_no,
            reason: crate::model::DeadLetterReason::BadPaymentEvent,
            error: self.error,
            line: self.line,
        }
    }
}

/// The line as written; checked field by field so that errors name the field and money never
/// passes through a float.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    payment_id: Cow<'a, str>,
    #[serde(borrow)]
    charge_point_id: Cow<'a, str>,
    transaction_id: Value,
    #[serde(rename = "type")]
    kind: PaymentEventKind,
    amount: Value,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

/// Parses one payment event (a JSON object, no line ending).
pub fn parse_payment(line: &[u8]) -> Result<PaymentEvent, String> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let non_empty = |field: &str, v: &str| {
        if v.trim().is_empty() {
            Err(format!("{field} is empty"))
        } else {
            Ok(v.to_string())
        }
    };
    // OCPP 1.6 transaction ids are integers: accept them as written by a provider that kept
    // the type.
    let transaction_id = match &raw.transaction_id {
        Value::String(s) => non_empty("transaction_id", s)?,
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => return Err(format!("transaction_id must be a string, not {other}")),
    };
    let amount = match &raw.amount {
        Value::String(s) => parse_amount(s)?,
        other => {
            return Err(format!(
                "amount must be a decimal string such as \"12.50\", not {other}"
            ))
        }
    };
    let currency = &*raw.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "currency must be an ISO 4217 code such as \"EUR\", not {currency:?}"
        ));
    }
    let timestamp = parse_rfc3339(&raw.timestamp).map_err(|e| e.to_string())?;
    Ok(PaymentEvent {
        payment_id: non_empty("payment_id", &raw.payment_id)?,
        charge_point_id: non_empty("charge_point_id", &raw.charge_point_id)?.into(),
        transaction_id,
        kind: raw.kind,
        amount,
        currency: currency.into(),
        timestamp,
    })
}

/// A non-negative decimal, `^[0-9]+(\.[0-9]+)?$`: refunds are positive amounts too.
fn parse_amount(s: &str) -> Result<Decimal, String> {
    let bad =
        || format!("amount must be a non-negative decimal string such as \"12.50\", not {s:?}");
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(bad());
    }
    Decimal::from_str(s).map_err(|_| bad())
}

/// Reads a JSONL file of payment events: the good ones sorted by (timestamp, line order), and
/// the lines that are not payment events.
pub fn read_payments(path: &Path) -> Result<(Vec<PaymentEvent>, Vec<BadPayment>), SourceError> {
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
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_payment(line) {
            Ok(p) => good.push(p),
            Err(error) => bad.push(BadPayment {
                line_no,
                error,
                line: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
    // Stable: equal timestamps keep the file's order.
    good.sort_by_key(|p: &PaymentEvent| p.timestamp);
    Ok((good, bad))
}

/// Payment events from a Kafka topic (`revenue.payments = "kafka://HOST:PORT/TOPIC?group=G"`):
/// every partition is read from `from` (the positions of the last commit) or the group's
/// committed offsets (else the earliest). With `stop=end` the topic is read to its end once,
/// before the run starts (a bounded, deterministic run); otherwise it is polled as the run
/// goes. Values are payment events (JSON, as in the file); other values are bad lines.
pub struct PaymentConsumer {
    consumer: rdkafka::consumer::BaseConsumer,
    topic: String,
    /// The next offset of each partition after what was polled.
    positions: std::collections::BTreeMap<i32, i64>,
    partitions: i32,
    pub stop_at_end: bool,
}

impl PaymentConsumer {
    pub fn open(
        src: &crate::config::KafkaSourceConfig,
        common: &crate::config::KafkaConfig,
        from: &std::collections::BTreeMap<i32, i64>,
    ) -> Result<PaymentConsumer, SourceError> {
        use rdkafka::consumer::Consumer;
        let err = |what: &str| {
            let what = what.to_string();
            move |e: rdkafka::error::KafkaError| {
                SourceError::Kafka(format!("payments: {what}: {e}"))
            }
        };
        let mut config = super::kafka::consumer_config(src, common);
        config.set("enable.partition.eof", "true");
        let consumer: rdkafka::consumer::BaseConsumer =
            config.create().map_err(err("cannot create the consumer"))?;
        let metadata = consumer
            .fetch_metadata(Some(&src.topic), std::time::Duration::from_secs(30))
            .map_err(err(&format!("metadata of {}", src.topic)))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == src.topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            return Err(SourceError::Kafka(format!(
                "payments: topic {} has no partitions",
                src.topic
            )));
        }
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            let start = from
                .get(&p)
                .map_or(rdkafka::Offset::Stored, |o| rdkafka::Offset::Offset(*o));
            tpl.add_partition_offset(&src.topic, p, start)
                .map_err(err("assignment"))?;
        }
        consumer.assign(&tpl).map_err(err("assign"))?;
        Ok(PaymentConsumer {
            consumer,
            topic: src.topic.clone(),
            positions: from.clone(),
            partitions,
            stop_at_end: src.stop_at_end,
        })
    }

    /// Takes what has arrived: good events (in arrival order) and bad values. Returns whether
    /// every partition is at its end.
    pub fn poll(
        &mut self,
        wait: std::time::Duration,
        good: &mut Vec<PaymentEvent>,
        bad: &mut Vec<BadPayment>,
    ) -> Result<bool, SourceError> {
        use rdkafka::message::Message;
        let mut at_end = std::collections::BTreeSet::new();
        let mut first = true;
        loop {
            let timeout = if first {
                wait
            } else {
                std::time::Duration::ZERO
            };
            first = false;
            let Some(r) = self.consumer.poll(timeout) else {
                break;
            };
            match r {
                Ok(m) => {
                    at_end.remove(&m.partition());
                    accept(&mut self.positions, &self.topic, &m, good, bad);
                }
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                }
                Err(e) => tracing::warn!("kafka: payments {}: {e}", self.topic),
            }
        }
        Ok(at_end.len() as i32 == self.partitions)
    }

    /// Reads every partition to its end (`stop=end`), at most `timeout`.
    pub fn read_to_end(
        &mut self,
        timeout: std::time::Duration,
        good: &mut Vec<PaymentEvent>,
        bad: &mut Vec<BadPayment>,
    ) -> Result<(), SourceError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut ended = std::collections::BTreeSet::new();
        while (ended.len() as i32) < self.partitions {
            if std::time::Instant::now() > deadline {
                return Err(SourceError::Kafka(format!(
                    "payments: {} not read to its end within {timeout:?}",
                    self.topic
                )));
            }
            match self.consumer.poll(std::time::Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => accept(&mut self.positions, &self.topic, &m, good, bad),
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => tracing::warn!("kafka: payments {}: {e}", self.topic),
            }
        }
        good.sort_by_key(|p| p.timestamp);
        Ok(())
    }

    pub fn positions(&self) -> &std::collections::BTreeMap<i32, i64> {
        &self.positions
    }

    /// Records the positions in the consumer group (informational, like the OCPP source's).
    pub fn commit(&self) {
        use rdkafka::consumer::Consumer;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (p, o) in &self.positions {
            let _ = tpl.add_partition_offset(&self.topic, *p, rdkafka::Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            if let Err(e) = self
                .consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            {
                tracing::warn!("kafka: committing the payments group's offsets: {e}");
            }
        }
    }
}

/// One Kafka record: a payment event, or a bad value; the partition's position moves on.
fn accept(
    positions: &mut std::collections::BTreeMap<i32, i64>,
    topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
    good: &mut Vec<PaymentEvent>,
    bad: &mut Vec<BadPayment>,
) {
    use rdkafka::message::Message;
    positions.insert(m.partition(), m.offset() + 1);
    let value = m.payload().unwrap_or_default();
    if value.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match parse_payment(value) {
        Ok(p) => good.push(p),
        Err(error) => bad.push(BadPayment {
            line_no: m.offset() as u64,
            error: format!("{topic}[{}]@{}: {error}", m.partition(), m.offset()),
            line: String::from_utf8_lossy(value).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"payment_id":"p1","charge_point_id":"CP-1","transaction_id":"42","type":"captured","amount":"12.50","currency":"EUR","timestamp":"2026-01-05T10:00:00Z"}"#;

    fn with(field: &str, value: &str) -> String {
        let mut v: Value = serde_json::from_str(GOOD).expect("GOOD is JSON");
        v[field] = serde_json::from_str(value).expect("test value is JSON");
        v.to_string()
    }

    fn without(field: &str) -> String {
        let mut v: Value = serde_json::from_str(GOOD).expect("GOOD is JSON");
        v.as_object_mut().expect("object").remove(field);
        v.to_string()
    }

    #[test]
    fn parses_good_lines() {
        let p = parse_payment(GOOD.as_bytes()).expect("good line");
        assert_eq!(p.payment_id, "p1");
        assert_eq!(&*p.charge_point_id, "CP-1");
        assert_eq!(p.transaction_id, "42");
        assert_eq!(p.kind, PaymentEventKind::Captured);
        assert_eq!(p.amount, Decimal::new(1250, 2));
        assert_eq!(&*p.currency, "EUR");
        assert_eq!(p.timestamp, 1_767_607_200_000);

        let p = parse_payment(with("transaction_id", "42").as_bytes()).expect("integer id");
        assert_eq!(p.transaction_id, "42");
        for kind in ["authorised", "captured", "failed", "refunded"] {
            assert!(parse_payment(with("type", &format!("\"{kind}\"")).as_bytes()).is_ok());
        }
        let extra = with("provider_ref", "\"abc\"");
        assert!(parse_payment(extra.as_bytes()).is_ok());
        let offset = with("timestamp", "\"2026-01-05T11:00:00.5+01:00\"");
        assert_eq!(
            parse_payment(offset.as_bytes()).map(|p| p.timestamp),
            Ok(1_767_607_200_500)
        );
        assert!(parse_payment(with("amount", "\"0\"").as_bytes()).is_ok());
    }

    #[test]
    fn rejects_every_bad_kind() {
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "key must be a string"),
            ("[1,2]".into(), "invalid type"),
            (with("type", "\"chargeback\""), "unknown variant"),
            (with("amount", "12.5"), "amount must be a decimal string"),
            (with("amount", "\"-1.00\""), "non-negative"),
            (with("amount", "\"1e3\""), "non-negative"),
            (with("amount", "\"12.\""), "non-negative"),
            (with("amount", "\"1_000\""), "non-negative"),
            (
                with("amount", "\"99999999999999999999999999999999\""),
                "non-negative",
            ),
            (with("timestamp", "\"yesterday\""), "RFC 3339"),
            (with("timestamp", "\"2026-01-05T10:00:00\""), "RFC 3339"),
            (with("currency", "\"eur\""), "ISO 4217"),
            (with("payment_id", "\"\""), "payment_id is empty"),
            (with("charge_point_id", "\" \""), "charge_point_id is empty"),
            (with("transaction_id", "1.5"), "transaction_id must be"),
            (with("transaction_id", "null"), "transaction_id must be"),
        ];
        let mut cases = cases;
        for field in [
            "payment_id",
            "charge_point_id",
            "transaction_id",
            "type",
            "amount",
            "currency",
            "timestamp",
        ] {
            cases.push((without(field), "missing field"));
        }
        for (line, want) in cases {
            let err = parse_payment(line.as_bytes()).expect_err(&line);
            assert!(err.contains(want), "{line}: {err:?} lacks {want:?}");
        }
        assert!(parse_payment(b"\xff\xfe{}").is_err());
    }

    #[test]
    fn reads_a_file_in_timestamp_order_and_reports_bad_lines() {
        let later = GOOD.replace("10:00:00Z", "11:00:00Z");
        let p2 = GOOD.replace("\"p1\"", "\"p2\"");
        let p3 = GOOD.replace("\"p1\"", "\"p3\"");
        let text = format!("{later}\n\n{GOOD}\r\n{{bad\n{p2}\n   \n{p3}");
        let path =
            std::env::temp_dir().join(format!("evflow-payments-{}.jsonl", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        let read = read_payments(&path);
        let _ = std::fs::remove_file(&path);
        let (good, bad) = read.expect("readable");
        let ids: Vec<&str> = good.iter().map(|p| p.payment_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2", "p3", "p1"]);
        assert_eq!(good[3].timestamp, 1_767_610_800_000);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line_no, bad[0].line.as_str()), (4, "{bad"));

        let missing = std::env::temp_dir().join("evflow-payments-does-not-exist.jsonl");
        assert!(matches!(
            read_payments(&missing),
            Err(SourceError::Io { .. })
        ));
    }

    #[test]
    fn example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/payments-example.jsonl");
        let (good, bad) = read_payments(&path).expect("example file");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 6);
        assert!(good.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
}
