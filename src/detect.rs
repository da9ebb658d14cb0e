//! `evflow detect`: score a `timestamp,value` CSV with the streaming anomaly detector
//! ([`crate::stages::detector`]).
//!
//! Owns: the CSV side — the header, the rows, what is echoed and how bad rows are treated.
//!
//! Input: a header line naming a `timestamp` and a `value` column (any order, matched without
//! regard to case, surrounding spaces or double quotes; other columns are ignored), then one
//! row per line. Fields are split at every comma: quoted fields holding commas are not
//! supported (the NAB files and evflow's exports have none). `\r\n` line ends are accepted;
//! empty lines are skipped (they are not rows). Bytes are not required to be UTF-8.
//!
//! Output: the header `timestamp,value,anomaly_score`, then one row per input row, in input
//! order: the timestamp and value fields exactly as given (byte for byte) and the score with
//! six decimals.
//!
//! - Timestamps only feed the detector's seasonal part: RFC 3339 (`2014-04-01T00:05:00Z`,
//!   `…+02:00`) or, as in NAB, `YYYY-MM-DD HH:MM:SS[.ffffff]` without an offset, read as UTC.
//!   A row whose timestamp is neither is still scored, without a time (`unparsed_timestamps`).
//! - A row whose value is not a finite number (empty, text, NaN, inf) is written with score 0
//!   and not fed to the detector (`bad_values`).
//! - A row with a different number of fields than the header is written with the fields at
//!   the timestamp and value positions (empty when missing) and score 0, and not fed to the
//!   detector (`bad_rows`).

use std::io::{BufRead, BufWriter, Write};

use crate::model::Millis;
use crate::stages::detector::{Detector, DetectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the input is empty: expected a header line with `timestamp` and `value` columns")]
    MissingHeader,
    #[error("the header {header:?} has no `{column}` column")]
    MissingColumn {
        column: &'static str,
        header: String,
    },
}

/// What one run saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectStats {
    /// Data rows written (every input row but the header and empty lines).
    pub rows: u64,
    /// Rows with a different number of fields than the header.
    pub bad_rows: u64,
    /// Rows whose value is not a finite number.
    pub bad_values: u64,
    /// Rows scored without a time: their timestamp did not parse.
    pub unparsed_timestamps: u64,
    /// The highest score (0 when there is no row).
    pub max_score: f64,
    /// Rows whose score reached the configured threshold.
    pub anomalies: u64,
}

/// Reads the CSV from `input`, writes the scored CSV to `output` (buffered here), and returns
/// what it saw. Errors: I/O, and a missing header or column; bad rows are not errors.
pub fn detect_csv(
    mut input: impl BufRead,
    output: impl Write,
    cfg: &DetectorConfig,
) -> Result<DetectStats, DetectError> {
    let mut out = BufWriter::with_capacity(1 << 16, output);
    let mut line = Vec::with_capacity(256);
    let header = loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Err(DetectError::MissingHeader);
        }
        let text = trim_line_end(&line);
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        if !is_blank(text) {
            break Header::parse(text)?;
        }
    };
    out.write_all(b"timestamp,value,anomaly_score\n")?;

    let mut detector = Detector::new(cfg.clone());
    let mut stats = DetectStats::default();
    let mut ts_buf = String::with_capacity(40);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = trim_line_end(&line);
        if is_blank(text) {
            continue;
        }
        let (mut ts, mut raw_value, mut n_fields): (&[u8], &[u8], usize) = (b"", b"", 0);
        for (i, field) in text.split(|&b| b == b',').enumerate() {
            if i == header.timestamp {
                ts = field;
            }
            if i == header.value {
                raw_value = field;
            }
            n_fields = i + 1;
        }
        stats.rows += 1;
        let score = if n_fields != header.fields {
            stats.bad_rows += 1;
            0.0
        } else {
            match parse_value(raw_value) {
                None => {
                    stats.bad_values += 1;
                    0.0
                }
                Some(v) => {
                    let t = parse_timestamp_bytes(ts, &mut ts_buf);
                    if t.is_none() {
                        stats.unparsed_timestamps += 1;
                    }
                    detector.observe(t, v)
                }
            }
        };
        if score > stats.max_score {
            stats.max_score = score;
        }
        if detector.is_anomaly(score) {
            stats.anomalies += 1;
        }
        out.write_all(ts)?;
        out.write_all(b",")?;
        out.write_all(raw_value)?;
        writeln!(out, ",{score:.6}")?;
    }
    out.flush()?;
    Ok(stats)
}

/// Where the columns are.
struct Header {
    timestamp: usize,
    value: usize,
    fields: usize,
}

impl Header {
    fn parse(text: &[u8]) -> Result<Header, DetectError> {
        let names: Vec<String> = text
            .split(|&b| b == b',')
            .map(|f| {
                String::from_utf8_lossy(f)
                    .trim()
                    .trim_matches('"')
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let find = |column: &'static str| {
            names
                .iter()
                .position(|n| n == column)
                .ok_or_else(|| DetectError::MissingColumn {
                    column,
                    header: String::from_utf8_lossy(text).into_owned(),
                })
        };
        Ok(Header {
            timestamp: find("timestamp")?,
            value: find("value")?,
            fields: names.len(),
        })
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(u8::is_ascii_whitespace)
}

/// A finite number (surrounding spaces and double quotes allowed), else None.
fn parse_value(field: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(field).ok()?.trim().trim_matches('"');
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A CSV timestamp in milliseconds since the epoch: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff…]`
/// (also with `T`) without an offset, read as UTC. None when it is neither.
pub fn parse_timestamp(s: &str) -> Option<Millis> {
    let mut buf = String::with_capacity(s.len() + 1);
    parse_timestamp_bytes(s.as_bytes(), &mut buf)
}

fn parse_timestamp_bytes(field: &[u8], buf: &mut String) -> Option<Millis> {
    let s = std::str::from_utf8(field).ok()?.trim().trim_matches('"');
    if let Ok(t) = crate::time::parse_rfc3339(s) {
        return Some(t);
    }
    // No offset (NAB's form): the same text as UTC.
    buf.clear();
    buf.push_str(s);
    buf.push('Z');
    crate::time::parse_rfc3339(buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(input: &str) -> Result<(String, DetectStats), DetectError> {
        detect_with(input, &DetectorConfig::default())
    }

    fn detect_with(
        input: &str,
        cfg: &DetectorConfig,
    ) -> Result<(String, DetectStats), DetectError> {
        let mut out = Vec::new();
        let stats = detect_csv(input.as_bytes(), &mut out, cfg)?;
        Ok((String::from_utf8(out).expect("utf-8 output"), stats))
    }

    fn nab_rows(n: usize, value: impl Fn(usize) -> String) -> String {
        let mut s = String::from("timestamp,value\n");
        for i in 0..n {
            let t = 1_396_310_400 + i as i64 * 300; // 2014-04-01 00:00:00, every 5 minutes
            let (y, m, d) = crate::time::civil_from_days(t.div_euclid(86_400));
            let sec = t.rem_euclid(86_400);
            s.push_str(&format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{}\n",
                sec / 3600,
                sec / 60 % 60,
                sec % 60,
                value(i)
            ));
        }
        s
    }

    fn scores(out: &str) -> Vec<f64> {
        out.lines()
            .skip(1)
            .map(|l| {
                l.rsplit(',')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("a score")
            })
            .collect()
    }

    #[test]
    fn echoes_rows_and_scores_a_spike() {
        let input = nab_rows(400, |i| match i {
            300 => "90.5".to_string(),
            _ => format!("{}", 20 + (i * 7) % 5),
        });
        let (out, stats) = detect(&input).expect("detect");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "timestamp,value,anomaly_score");
        assert_eq!(lines.len(), 401);
        assert_eq!(lines[1], "2014-04-01 00:00:00,20,0.000000");
        for (inp, outp) in input.lines().skip(1).zip(&lines[1..]) {
            assert!(outp.starts_with(&format!("{inp},")), "{inp} → {outp}");
        }
        let s = scores(&out);
        assert!(s[300] > 0.9, "{}", s[300]);
        assert!(s[..300].iter().all(|&x| x < 0.5));
        assert_eq!(stats.rows, 400);
        assert_eq!(
            (stats.bad_rows, stats.bad_values, stats.unparsed_timestamps),
            (0, 0, 0)
        );
        assert!((stats.max_score - s[300]).abs() < 1e-6);
        assert!(stats.anomalies >= 1);
    }

    #[test]
    fn columns_in_any_order_and_others_ignored() {
        let input = "\u{feff}id, \"Value\" ,TIMESTAMP\r\n1,3.5,2014-04-01T00:00:00Z\r\n2,4,x\r\n";
        let (out, stats) = detect(input).expect("detect");
        assert_eq!(
            out,
            "timestamp,value,anomaly_score\n2014-04-01T00:00:00Z,3.5,0.000000\nx,4,0.000000\n"
        );
        assert_eq!(stats.rows, 2);
        assert_eq!(stats.unparsed_timestamps, 1);
    }

    #[test]
    fn bad_values_and_bad_rows_are_written_with_score_zero() {
        let mut input = nab_rows(200, |i| format!("{}", 10 + i % 3));
        input.push_str("2014-04-02 00:00:00,abc\n");
        input.push_str("2014-04-02 00:05:00,\n");
        input.push_str("2014-04-02 00:10:00,NaN\n");
        input.push_str("2014-04-02 00:15:00,1e999\n");
        input.push_str("2014-04-02 00:20:00\n");
        input.push_str("2014-04-02 00:25:00,1,extra\n");
        input.push('\n');
        input.push_str("2014-04-02 00:30:00,11\n");
        let (out, stats) = detect(&input).expect("detect");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1 + 200 + 7);
        assert_eq!(
            &lines[201..],
            &[
                "2014-04-02 00:00:00,abc,0.000000",
                "2014-04-02 00:05:00,,0.000000",
                "2014-04-02 00:10:00,NaN,0.000000",
                "2014-04-02 00:15:00,1e999,0.000000",
                "2014-04-02 00:20:00,,0.000000",
                "2014-04-02 00:25:00,1,0.000000",
                "2014-04-02 00:30:00,11,0.000000",
            ]
        );
        assert_eq!(stats.rows, 207);
        assert_eq!(stats.bad_values, 4);
        assert_eq!(stats.bad_rows, 2);
    }

    #[test]
    fn bad_rows_do_not_disturb_the_detector() {
        let clean = nab_rows(300, |i| format!("{}", 5 + i % 4));
        let mut dirty = String::new();
        for (i, l) in clean.lines().enumerate() {
            dirty.push_str(l);
            dirty.push('\n');
            if i % 50 == 10 {
                dirty.push_str("2014-01-01 00:00:00,oops\n");
            }
        }
        let (a, _) = detect(&clean).expect("clean");
        let (b, stats) = detect(&dirty).expect("dirty");
        let b: Vec<&str> = b.lines().filter(|l| !l.contains("oops")).collect();
        assert_eq!(a.lines().collect::<Vec<_>>(), b);
        assert_eq!(stats.bad_values, 6);
    }

    #[test]
    fn header_errors() {
        assert!(matches!(detect(""), Err(DetectError::MissingHeader)));
        assert!(matches!(detect("\n\n"), Err(DetectError::MissingHeader)));
        assert!(matches!(
            detect("time,value\n1,2\n"),
            Err(DetectError::MissingColumn {
                column: "timestamp",
                ..
            })
        ));
        assert!(matches!(
            detect("timestamp,val\n1,2\n"),
            Err(DetectError::MissingColumn {
                column: "value",
                ..
            })
        ));
        let (out, stats) = detect("timestamp,value\n").expect("header only");
        assert_eq!(out, "timestamp,value,anomaly_score\n");
        assert_eq!(stats, DetectStats::default());
    }

    #[test]
    fn io_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::Error::other("disk full"))
            }
        }
        let r = detect_csv(
            "timestamp,value\n2014-04-01 00:00:00,1\n".as_bytes(),
            Broken,
            &DetectorConfig::default(),
        );
        assert!(matches!(r, Err(DetectError::Io(_))), "{r:?}");
    }

    #[test]
    fn non_utf8_bytes_are_echoed_verbatim() {
        let input = b"timestamp,value\n\xff\xfe,1\n2014-04-01 00:00:00,\xe9\n";
        let mut out = Vec::new();
        let stats = detect_csv(&input[..], &mut out, &DetectorConfig::default()).expect("detect");
        assert_eq!(
            out,
            b"timestamp,value,anomaly_score\n\xff\xfe,1,0.000000\n2014-04-01 00:00:00,\xe9,0.000000\n"
        );
        assert_eq!((stats.unparsed_timestamps, stats.bad_values), (1, 1));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000"),
            parse_timestamp("2014-04-10T07:15:00Z")
        );
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp("\"1970-01-01 00:00:00\""), Some(0));
        assert_eq!(parse_timestamp("1970-01-01"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2014-02-30 00:00:00"), None);
    }

    #[test]
    fn threshold_counts_anomalies() {
        let input = nab_rows(300, |i| if i == 250 { "1000".into() } else { "7".into() });
        let (_, stats) = detect(&input).expect("detect");
        assert_eq!((stats.anomalies, stats.max_score), (1, 1.0));
        let strict = DetectorConfig {
            threshold: 1.1,
            ..DetectorConfig::default()
        };
        let (_, stats) = detect_with(&input, &strict).expect("detect");
        assert_eq!(stats.anomalies, 0);
    }
}
