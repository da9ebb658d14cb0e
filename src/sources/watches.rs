//! Driver watches: drivers starting or stopping to watch a charger or a site
//! (`schemas/watch-event.schema.json`), from a JSONL file or a Kafka topic.
//!
//! Owns: validating watch events. [`parse_watch`] checks one line; [`read_watches`] reads a
//! whole file, reports the lines it cannot use as [`BadLine`]s (never fatal, dead-lettered as
//! `bad_watch_event`) and returns the events sorted by (timestamp, line order); [`WatchConsumer`]
//! reads a Kafka topic. The line and Kafka handling is the shared side-input code
//! (`side_input`). Blank lines (and a trailing `\r`) are skipped; fields the schema does not
//! name are ignored, and a null optional field is read as absent. Who then gets which
//! notification is not decided here.

use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::side_input::{read_jsonl, require_object, BadLine, SideInput, SideInputConsumer};
use super::SourceError;
use crate::model::{
    DeadLetterReason, Millis, NotificationKind, WatchAction, WatchEvent, WatchTarget,
};
use crate::time::parse_rfc3339;

/// The notification kinds a watcher can get; a watch without `kinds` wants all of them.
pub const WATCHABLE: [NotificationKind; 3] = [
    NotificationKind::StationAvailable,
    NotificationKind::StationOutOfOrder,
    NotificationKind::MaintenanceUpcoming,
];

/// Watch events from a Kafka topic (`kafka://HOST:PORT/TOPIC?group=G`); see
/// [`SideInputConsumer`].
pub type WatchConsumer = SideInputConsumer<WatchEvent>;

impl SideInput for WatchEvent {
    const NAME: &'static str = "watches";
    const REASON: DeadLetterReason = DeadLetterReason::BadWatchEvent;

    fn parse(line: &[u8]) -> Result<Self, String> {
        parse_watch(line)
    }

    fn timestamp(&self) -> Millis {
        self.timestamp
    }
}

/// The line as written. Every field is taken as raw JSON and checked by hand so that errors
/// name the field; `Some(Value::Null)` is a field given as null, `None` one left out.
#[derive(Deserialize)]
struct Raw {
    #[serde(default, deserialize_with = "present")]
    driver: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    action: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    charge_point_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    site_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    kinds: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    timestamp: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    expires: Option<Value>,
}

/// A field that is there, even as null (plain `Option` would read null as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// An optional field: null is the same as absent (producers that write every field).
fn optional(v: Option<Value>) -> Option<Value> {
    v.filter(|v| !v.is_null())
}

fn required(field: &str, v: Option<Value>) -> Result<Value, String> {
    v.ok_or_else(|| format!("missing field `{field}`"))
}

/// A non-empty string, kept as written.
fn text<'a>(field: &str, v: &'a Value) -> Result<&'a str, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(format!("{field} is empty")),
        Value::String(s) => Ok(s),
        other => Err(format!("{field} must be a string, not {other}")),
    }
}

fn time(field: &str, v: &Value) -> Result<Millis, String> {
    match v {
        Value::String(s) => parse_rfc3339(s).map_err(|e| format!("{field}: {e}")),
        other => Err(format!("{field} must be an RFC 3339 string, not {other}")),
    }
}

fn watchable_list() -> String {
    WATCHABLE.map(NotificationKind::as_str).join(", ")
}

/// One element of `kinds`.
fn kind(i: usize, v: &Value) -> Result<NotificationKind, String> {
    let Value::String(s) = v else {
        return Err(format!("kinds[{i}] must be a string, not {v}"));
    };
    match NotificationKind::ALL.into_iter().find(|k| k.as_str() == s) {
        Some(k) if WATCHABLE.contains(&k) => Ok(k),
        Some(k) => Err(format!(
            "kinds[{i}]: {} cannot be watched (watchable: {})",
            k.as_str(),
            watchable_list()
        )),
        None => Err(format!(
            "kinds[{i}]: {s:?} is not a notification kind (watchable: {})",
            watchable_list()
        )),
    }
}

const ONE_TARGET: &str = "a watch is on one charger or one site";

/// Parses one watch event (a JSON object, no line ending). `kinds` comes back sorted and
/// without duplicates, so that equal requests are equal events.
pub fn parse_watch(line: &[u8]) -> Result<WatchEvent, String> {
    require_object(line, "a watch event")?;
    let raw: Raw = serde_json::from_slice(line).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("not JSON: {e}")
        } else {
            // A field given twice: serde's message names it.
            e.to_string()
        }
    })?;
    let driver = text("driver", &required("driver", raw.driver)?)?.into();
    let action = match required("action", raw.action)? {
        Value::String(s) if s == "watch" => WatchAction::Watch,
        Value::String(s) if s == "unwatch" => WatchAction::Unwatch,
        other => {
            return Err(format!(
                "action must be \"watch\" or \"unwatch\", not {other}"
            ))
        }
    };
    let target = match (optional(raw.charge_point_id), optional(raw.site_id)) {
        (Some(cp), None) => WatchTarget::ChargePoint(text("charge_point_id", &cp)?.into()),
        (None, Some(site)) => WatchTarget::Site(text("site_id", &site)?.into()),
        (Some(_), Some(_)) => {
            return Err(format!(
                "charge_point_id and site_id are both given: {ONE_TARGET}"
            ))
        }
        (None, None) => {
            return Err(format!(
                "missing field `charge_point_id` or `site_id`: {ONE_TARGET}"
            ))
        }
    };
    let mut kinds = match optional(raw.kinds) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| kind(i, v))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(format!(
                "kinds must be an array of notification kinds, not {other}"
            ))
        }
    };
    kinds.sort_unstable();
    kinds.dedup();
    let timestamp_raw = required("timestamp", raw.timestamp)?;
    let timestamp = time("timestamp", &timestamp_raw)?;
    let expires = match optional(raw.expires) {
        None => None,
        Some(v) => {
            let expires = time("expires", &v)?;
            // A watch that ends before (or as) it starts is a producer's bug, not a no-op.
            if expires <= timestamp {
                return Err(format!(
                    "expires ({v}) must be after timestamp ({timestamp_raw})"
                ));
            }
            Some(expires)
        }
    };
    Ok(WatchEvent {
        driver,
        action,
        target,
        kinds,
        timestamp,
        expires,
    })
}

/// Reads a JSONL file of watch events: the good ones sorted by (timestamp, line order), and the
/// lines that are not watch events (reason `bad_watch_event`).
pub fn read_watches(path: &Path) -> Result<(Vec<WatchEvent>, Vec<BadLine>), SourceError> {
    read_jsonl(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00Z"}"#;
    /// 2026-01-05T10:00:00Z
    const T0: Millis = 1_767_607_200_000;
    const HOUR: Millis = 3_600_000;

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

    fn event(action: WatchAction, target: WatchTarget) -> WatchEvent {
        WatchEvent {
            driver: "DRV-ALICE".into(),
            action,
            target,
            kinds: Vec::new(),
            timestamp: T0,
            expires: None,
        }
    }

    fn cp(id: &str) -> WatchTarget {
        WatchTarget::ChargePoint(id.into())
    }

    fn site(id: &str) -> WatchTarget {
        WatchTarget::Site(id.into())
    }

    #[test]
    fn parses_every_variant_exactly() {
        use NotificationKind::*;
        use WatchAction::*;
        let site_line = without("charge_point_id").replace('}', r#","site_id":"SITE-001"}"#);
        let cases: Vec<(String, WatchEvent)> = vec![
            (GOOD.into(), event(Watch, cp("CP-0001"))),
            (with("action", "\"unwatch\""), event(Unwatch, cp("CP-0001"))),
            (site_line.clone(), event(Watch, site("SITE-001"))),
            (
                site_line.replace("\"watch\"", "\"unwatch\""),
                event(Unwatch, site("SITE-001")),
            ),
            // Sorted, duplicates dropped.
            (
                with(
                    "kinds",
                    r#"["maintenance_upcoming","station_available","maintenance_upcoming"]"#,
                ),
                WatchEvent {
                    kinds: vec![StationAvailable, MaintenanceUpcoming],
                    ..event(Watch, cp("CP-0001"))
                },
            ),
            (
                with("kinds", r#"["station_out_of_order"]"#).replace("\"watch\"", "\"unwatch\""),
                WatchEvent {
                    kinds: vec![StationOutOfOrder],
                    ..event(Unwatch, cp("CP-0001"))
                },
            ),
            (with("kinds", "[]"), event(Watch, cp("CP-0001"))),
            (
                with("expires", "\"2026-01-05T12:00:00+01:00\""),
                WatchEvent {
                    expires: Some(T0 + HOUR),
                    ..event(Watch, cp("CP-0001"))
                },
            ),
            (
                with("timestamp", "\"2026-01-05 11:00:00.250+01:00\""),
                WatchEvent {
                    timestamp: T0 + 250,
                    ..event(Watch, cp("CP-0001"))
                },
            ),
            // Forward compatibility: unknown fields are ignored; null optionals are absent.
            (with("app_version", "\"4.2\""), event(Watch, cp("CP-0001"))),
            (
                with("kinds", "null").replace('}', r#","expires":null,"site_id":null}"#),
                event(Watch, cp("CP-0001")),
            ),
            // Ids are kept as written.
            (
                with("driver", "\" DRV-ALICE \""),
                WatchEvent {
                    driver: " DRV-ALICE ".into(),
                    ..event(Watch, cp("CP-0001"))
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_watch(line.as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn rejects_every_bad_kind_naming_the_field() {
        let both = with("site_id", "\"SITE-001\"");
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not JSON"),
            ("".into(), "not JSON"),
            ("[1,2]".into(), "a watch event must be a JSON object"),
            ("\"watch\"".into(), "a watch event must be a JSON object"),
            // A derived struct would take this array field by field.
            (
                r#"["DRV-ALICE","watch","CP-0001",null,null,"2026-01-05T10:00:00Z"]"#.into(),
                "a watch event must be a JSON object",
            ),
            ("[1,".into(), "not JSON"),
            (
                GOOD.replace('}', r#","driver":"DRV-BOB"}"#),
                "duplicate field `driver`",
            ),
            (without("driver"), "missing field `driver`"),
            (with("driver", "\"\""), "driver is empty"),
            (with("driver", "\"  \""), "driver is empty"),
            (with("driver", "42"), "driver must be a string, not 42"),
            (with("driver", "null"), "driver must be a string, not null"),
            (without("action"), "missing field `action`"),
            (
                with("action", "\"follow\""),
                "action must be \"watch\" or \"unwatch\", not \"follow\"",
            ),
            (with("action", "\"Watch\""), "action must be"),
            (with("action", "true"), "action must be"),
            (both, "charge_point_id and site_id are both given"),
            (
                without("charge_point_id"),
                "missing field `charge_point_id` or `site_id`",
            ),
            (
                with("charge_point_id", "null"),
                "missing field `charge_point_id` or `site_id`",
            ),
            (with("charge_point_id", "\"\""), "charge_point_id is empty"),
            (with("charge_point_id", "7"), "charge_point_id must be a string"),
            (
                without("charge_point_id").replace('}', r#","site_id":" "}"#),
                "site_id is empty",
            ),
            (
                with("kinds", r#"["station_available","coffee_ready"]"#),
                "kinds[1]: \"coffee_ready\" is not a notification kind",
            ),
            (
                with("kinds", r#"["charging_almost_complete"]"#),
                "kinds[0]: charging_almost_complete cannot be watched",
            ),
            (with("kinds", "[1]"), "kinds[0] must be a string"),
            (
                with("kinds", "\"station_available\""),
                "kinds must be an array",
            ),
            (without("timestamp"), "missing field `timestamp`"),
            (
                with("timestamp", "\"yesterday\""),
                "timestamp: not an RFC 3339 timestamp",
            ),
            // No offset: cannot be placed on the time line.
            (
                with("timestamp", "\"2026-01-05T10:00:00\""),
                "timestamp: not an RFC 3339",
            ),
            (
                with("timestamp", "1767607200000"),
                "timestamp must be an RFC 3339 string",
            ),
            (with("timestamp", "null"), "timestamp must be an RFC 3339 string"),
            (
                with("expires", "\"soon\""),
                "expires: not an RFC 3339 timestamp",
            ),
            (with("expires", "3600"), "expires must be an RFC 3339 string"),
            (
                with("expires", "\"2026-01-05T09:00:00Z\""),
                "expires (\"2026-01-05T09:00:00Z\") must be after timestamp (\"2026-01-05T10:00:00Z\")",
            ),
            // Equal is not after.
            (
                with("expires", "\"2026-01-05T11:00:00+01:00\""),
                "must be after timestamp",
            ),
        ];
        for (line, want) in cases {
            let err = parse_watch(line.as_bytes()).expect_err(&line);
            assert!(err.contains(want), "{line}: {err:?} lacks {want:?}");
        }
        assert!(parse_watch(b"\xff\xfe{}")
            .expect_err("not UTF-8")
            .contains("not JSON"));
    }

    #[test]
    fn reads_a_file_in_timestamp_order_and_reports_bad_lines() {
        let later = with("timestamp", "\"2026-01-05T11:00:00Z\"");
        let bob = with("driver", "\"DRV-BOB\"");
        let carol = with("driver", "\"DRV-CAROL\"");
        let no_target = without("charge_point_id");
        let text = format!("{later}\n\n{GOOD}\r\n{{bad\n{bob}\n   \n{no_target}\n{carol}");
        let path =
            std::env::temp_dir().join(format!("evflow-watches-{}.jsonl", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        let read = read_watches(&path);
        let _ = std::fs::remove_file(&path);
        let (good, bad) = read.expect("readable");
        let drivers: Vec<&str> = good.iter().map(|w| &*w.driver).collect();
        assert_eq!(drivers, ["DRV-ALICE", "DRV-BOB", "DRV-CAROL", "DRV-ALICE"]);
        assert_eq!(good[3].timestamp, T0 + HOUR);
        let where_: Vec<(u64, &str)> = bad.iter().map(|b| (b.line_no, b.line.as_str())).collect();
        assert_eq!(where_, [(4, "{bad"), (7, no_target.as_str())]);
        assert!(bad[1].error.contains("charge_point_id"), "{bad:?}");
        let dead = bad[0].clone().into_dead_letter();
        assert_eq!(
            (dead.seq, dead.reason),
            (4, DeadLetterReason::BadWatchEvent)
        );

        let missing = std::env::temp_dir().join("evflow-watches-does-not-exist.jsonl");
        assert!(matches!(
            read_watches(&missing),
            Err(SourceError::Io { .. })
        ));
    }

    #[test]
    fn example_file_is_valid() {
        use NotificationKind::*;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/watches.jsonl");
        let (good, bad) = read_watches(&path).expect("example file");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 12);
        assert!(good.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        // The example shows every variant.
        assert!(good
            .iter()
            .any(|w| w.action == WatchAction::Unwatch && !w.kinds.is_empty()));
        assert!(good
            .iter()
            .any(|w| matches!(w.target, WatchTarget::Site(_))));
        assert!(good.iter().any(|w| w.expires.is_some()));
        // Line 4 is earlier than line 1 once its offset is applied.
        assert_eq!(&*good[0].driver, "DRV-DAVE");
        let carol = good
            .iter()
            .find(|w| &*w.driver == "DRV-CAROL" && w.action == WatchAction::Watch)
            .expect("DRV-CAROL watches");
        assert_eq!(
            carol,
            &WatchEvent {
                driver: "DRV-CAROL".into(),
                action: WatchAction::Watch,
                target: cp("CP-0002"),
                kinds: vec![StationAvailable, StationOutOfOrder],
                timestamp: T0 - 110 * 60_000,
                expires: Some(T0 - 50 * 60_000),
            }
        );
    }
}
