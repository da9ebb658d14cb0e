//! Time: RFC 3339 parsing and formatting, UTC calendar dates, durations in config.
//!
//! Owns: conversions between [`Millis`] and text. Hand-written because timestamp parsing is on
//! the hot path (every frame has one or more) and because evflow needs nothing else of a
//! calendar library: all times are UTC.

use crate::model::Millis;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0:?}")]
pub struct TimestampError(pub String);

/// Parses an RFC 3339 timestamp (`2026-01-05T08:00:00Z`, `…T08:00:00.123+02:00`, also a space
/// instead of `T` and a lower-case `z`) to milliseconds since the epoch, UTC. Fractions beyond
/// milliseconds are truncated. A missing offset is rejected: a charger's local time without an
/// offset cannot be placed on the time line.
pub fn parse_rfc3339(s: &str) -> Result<Millis, TimestampError> {
    parse_bytes(s.as_bytes()).ok_or_else(|| TimestampError(s.to_string()))
}

fn digits(b: &[u8], start: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for i in start..start + n {
        let d = *b.get(i)?;
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as i64;
    }
    Some(v)
}

fn parse_bytes(b: &[u8]) -> Option<Millis> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = digits(b, i + 1, 2)?;
            let m = digits(b, i + 4, 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 60 + m;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of an instant, UTC: the hive `date=` partition.
pub fn date_string(t: Millis) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 in UTC with milliseconds: `2026-01-05T08:00:00.000Z`.
pub fn format_rfc3339(t: Millis) -> String {
    let days = t.div_euclid(86_400_000);
    let ms_of_day = t.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let s = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms_of_day % 1000
    )
}

/// Start of the tumbling window of `width` ms that contains `t` (windows aligned to the epoch).
pub fn window_start(t: Millis, width: Millis) -> Millis {
    t - t.rem_euclid(width)
}

/// Parses a duration such as `300ms`, `5s`, `15m`, `2h`, `1d` (or a bare number of seconds).
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected e.g. 30s, 15m, 1h"))?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("bad duration unit {other:?} in {s:?}")),
    };
    Ok(n * unit_ms)
}

/// Serde adapter: a [`Millis`] written as an RFC 3339 string.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: an `Option<Millis>` written as an RFC 3339 string or null.
pub mod rfc3339_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            // `serialize_some`: a binary format (bincode snapshots) needs the option's tag.
            Some(t) => s.serialize_some(&format_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
            Some(s) => parse_rfc3339(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-01-05T08:00:00.5Z"),
            Ok(1_767_600_000_500)
        );
        assert_eq!(
            parse_rfc3339("2026-01-05T10:00:00.123456+02:00"),
            Ok(1_767_600_000_123)
        );
        assert_eq!(parse_rfc3339("2026-01-05 08:00:00z"), Ok(1_767_600_000_000));
        assert_eq!(
            parse_rfc3339("2026-01-05T07:00:00-01:00"),
            Ok(1_767_600_000_000)
        );
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "2026-01-05",
            "2026-01-05T08:00:00",
            "2026-13-05T08:00:00Z",
            "2026-02-30T08:00:00Z",
            "2026-01-05T25:00:00Z",
            "2026-01-05T08:00:00.Z",
            "2026-01-05T08:00:00Zjunk",
            "yesterday at noon",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for t in [
            0,
            1_767_600_000_123,
            951_782_400_000, /* 2000-02-29 */
            -1000,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t));
        }
        assert_eq!(date_string(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn windows_and_durations() {
        assert_eq!(window_start(3_700_000, 3_600_000), 3_600_000);
        assert_eq!(window_start(-1, 3_600_000), -3_600_000);
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("10"), Ok(10_000));
        assert!(parse_duration("ten").is_err());
    }
}
