//! Payment events: a payment provider's JSONL file (`schemas/payment-event.schema.json`).
//!
//! Owns: validating payment events. [`parse_payment`] checks one line; [`read_payments`] reads
//! a whole file, reports the lines it cannot use as [`BadPayment`]s (never fatal) and returns
//! the events sorted by (timestamp, line order); [`PaymentConsumer`] reads a Kafka topic. The
//! line and Kafka handling is the shared side-input code (`side_input`). Blank lines (and a
//! trailing `\r`) are skipped. Fields the schema does not name are ignored.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::side_input::{read_jsonl, require_object, BadLine, SideInput, SideInputConsumer};
use super::SourceError;
use crate::model::{DeadLetterReason, Millis, PaymentEvent, PaymentEventKind};
use crate::time::parse_rfc3339;

/// A line that is not a payment event (dead-lettered as `bad_payment_event`).
pub type BadPayment = BadLine;

/// Payment events from a Kafka topic (`revenue.payments = "kafka://HOST:PORT/TOPIC?group=G"`);
/// see [`SideInputConsumer`].
pub type PaymentConsumer = SideInputConsumer<PaymentEvent>;

impl SideInput for PaymentEvent {
    const NAME: &'static str = "payments";
    const REASON: DeadLetterReason = DeadLetterReason::BadPaymentEvent;

    fn parse(line: &[u8]) -> Result<Self, String> {
        parse_payment(line)
    }

    fn timestamp(&self) -> Millis {
        self.timestamp
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
    require_object(line, "a payment event")?;
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
    read_jsonl(path)
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
            ("[1,2]".into(), "a payment event must be a JSON object"),
            // A derived struct would take this array field by field.
            (
                r#"["p1","CP-1","42","captured","12.50","EUR","2026-01-05T10:00:00Z"]"#.into(),
                "a payment event must be a JSON object",
            ),
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
        assert_eq!(bad[0].reason, DeadLetterReason::BadPaymentEvent);

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
