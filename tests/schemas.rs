//! The JSON Schemas in `schemas/` against real evflow files: simulate a small fleet, run the
//! replay dataflow over its traffic (plus unusual but valid lines, and one bad line per
//! dead-letter reason), and validate everything with `tests/schemas.py` (Python `jsonschema`).
//! Also checks that the schemas' enums name exactly the Rust enums' serialised values.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evflow::model::{
    AnomalyKind, AnomalyState, Audience, ConnectorStatus, DeadLetterReason, NotificationKind,
    Severity,
};
use serde::Serialize;
use serde_json::Value;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// Valid envelopes the simulator does not write: CALLERRORs with and without description and
/// details, an ignored action, an extra envelope field, an offset, a space separator.
const EXTRA_VALID: &str = r#"{"timestamp":"2026-01-05T23:59:50Z","charge_point_id":"CP-0001","message":[4,"x1","NotImplemented","",{}]}
{"timestamp":"2026-01-05T23:59:50.250Z","charge_point_id":"CP-0001","message":[4,"x2","InternalError"]}
{"timestamp":"2026-01-06T01:59:51.5+02:00","charge_point_id":"CP-0001","message":[2,"x3","DataTransfer",{"vendorId":"acme"}],"gateway":"gw-1"}
{"timestamp":"2026-01-05 23:59:52z","charge_point_id":"CP-0002","message":[2,"x4","Heartbeat",{}]}
"#;

/// One line per dead-letter reason, the last two both invalid_json. The unknown_action and
/// bad_payload lines are valid envelopes: the schema does not look into actions and payloads.
const BAD: &[&[u8]] = &[
    b"{not json",
    br#"[1,2,3]"#,
    br#"{"timestamp":"2026-01-05T23:59:53Z","charge_point_id":"  ","message":[2,"b1","Heartbeat",{}]}"#,
    br#"{"timestamp":"yesterday","charge_point_id":"CP-0001","message":[2,"b2","Heartbeat",{}]}"#,
    br#"{"timestamp":"2026-01-05T23:59:53Z","charge_point_id":"CP-0001","message":[9,"b3"]}"#,
    br#"{"timestamp":"2026-01-05T23:59:53Z","charge_point_id":"CP-0001","message":[2,"b4","MakeCoffee",{}]}"#,
    br#"{"timestamp":"2026-01-05T23:59:53Z","charge_point_id":"CP-0001","message":[2,"b5","StatusNotification",{"connectorId":"one","errorCode":"NoError","status":"Available"}]}"#,
    b"\xff\xfe{\"timestamp\":1}",
];

/// Maintenance windows, so that maintenance_upcoming notifications are written too.
const MAINTENANCE: &str = r#"
[[maintenance]]
charge_point_id = "CP-0002"
start = "2026-01-05T16:00:00Z"
end = "2026-01-05T18:00:00Z"
reason = "inspection"

[[maintenance]]
site_id = "SITE-003"
start = "2026-01-05T20:00:00Z"
end = "2026-01-05T21:00:00Z"

[notifications]
watches = "watches.jsonl"
"#;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn evflow(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_evflow"))
        .args(args)
        .current_dir(dir))
}

/// The Python that has `jsonschema`: `EVFLOW_PYTHON` (set by scripts/test), else the repo's
/// .venv, else `python3`. Fails, never skips, when it cannot import jsonschema.
fn python() -> PathBuf {
    let python = std::env::var_os("EVFLOW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(MANIFEST).join(".venv/bin/python")).filter(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let how = "`.ci/run` (or scripts/test) installs it into .venv; or: pip install jsonschema";
    match Command::new(&python)
        .args(["-c", "import jsonschema"])
        .output()
    {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import jsonschema, which tests/schemas.py needs: {how}\n{}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run {} ({e}): tests/schemas.py needs Python with jsonschema; {how}",
            python.display()
        ),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn field_set(records: &[Value], field: &str) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r[field].as_str().expect("a string field").to_string())
        .collect()
}

fn names<T: Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .map(|v| match serde_json::to_value(v).unwrap() {
            Value::String(s) => s,
            other => panic!("{other} does not serialise as a string"),
        })
        .collect()
}

#[test]
fn evflow_files_match_the_schemas() {
    let python = python();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemas");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    evflow(
        &dir,
        &[
            "simulate",
            "--chargers",
            "60",
            "--hours",
            // two days: the learned detectors' faults come after a day of warm-up
            "48",
            "--out",
            &p("traffic.jsonl"),
            "--labels",
            &p("labels.jsonl"),
            "--registry",
            &p("registry.json"),
            "--watches",
            &p("watches.jsonl"),
        ],
    );
    // A bad watch line is dead-lettered too.
    let mut watches = fs::read(dir.join("watches.jsonl")).unwrap();
    watches.extend_from_slice(b"{\"driver\":\"X\",\"action\":\"watch\"}\n");
    fs::write(dir.join("watches.jsonl"), watches).unwrap();
    let mut valid = fs::read(dir.join("traffic.jsonl")).unwrap();
    valid.extend_from_slice(EXTRA_VALID.as_bytes());
    fs::write(dir.join("valid.jsonl"), &valid).unwrap();
    let first_bad_line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut input = valid;
    for line in BAD {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    fs::write(dir.join("input.jsonl"), &input).unwrap();
    // The replay dataflow reads registry.json from the working directory (`dir`).
    let replay = fs::read_to_string(Path::new(MANIFEST).join("dataflows/replay.toml")).unwrap();
    fs::write(dir.join("dataflow.toml"), replay + MAINTENANCE).unwrap();
    evflow(
        &dir,
        &[
            "run",
            "dataflow.toml",
            "--input",
            "input.jsonl",
            "--out",
            "out",
            "--metrics-addr",
            "",
        ],
    );

    // The data exercises every reason and kind, so that every branch of the schemas is used.
    let out = dir.join("out");
    let dead = lines(&out.join("dead-letter.jsonl"));
    // The bad lines, plus the simulator's deliberately malformed frames (bad_payload).
    assert!(dead.len() >= BAD.len(), "{dead:#?}");
    // schema_violation only exists in strict mode (tests/strict.rs); this run is tolerant.
    // bad_payment_event needs a payments file (tests/revenue.rs).
    let want: BTreeSet<String> = names(&DeadLetterReason::ALL)
        .into_iter()
        .filter(|r| r != "schema_violation" && r != "bad_payment_event")
        .collect();
    assert_eq!(field_set(&dead, "reason"), want);
    let anomalies = lines(&out.join("anomalies.jsonl"));
    let want: BTreeSet<String> = names(&AnomalyKind::ALL).into_iter().collect();
    assert_eq!(field_set(&anomalies, "kind"), want, "anomaly kinds seen");
    let notifications = lines(&out.join("notifications.jsonl"));
    let want: BTreeSet<String> = names(&NotificationKind::ALL).into_iter().collect();
    assert_eq!(
        field_set(&notifications, "kind"),
        want,
        "notification kinds seen"
    );

    let script = Path::new(MANIFEST).join("tests/schemas.py");
    let ok = run(Command::new(&python)
        .arg(&script)
        .args([p("out"), p("valid.jsonl")])
        .args([
            "--registry",
            &p("registry.json"),
            "--labels",
            &p("labels.jsonl"),
        ]));
    let report = String::from_utf8_lossy(&ok.stdout);
    println!("{report}");
    let mut checked = vec![
        "anomalies.jsonl",
        "notifications.jsonl",
        "dead-letter.jsonl",
        "registry.json",
        "valid.jsonl",
    ];
    if Path::new(MANIFEST)
        .join("schemas/labels.schema.json")
        .exists()
    {
        checked.push("labels.jsonl");
    }
    for file in checked {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(file)),
            "{file} not checked:\n{report}"
        );
    }

    // The bad lines are not valid envelopes, and the script says where the first one is.
    let bad = Command::new(&python)
        .arg(&script)
        .args([p("out"), p("input.jsonl"), "--no-registry".into()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "the bad lines passed:\n{stderr}");
    assert!(
        stderr.contains(&format!("input.jsonl:{first_bad_line}: ")),
        "expected a failure at line {first_bad_line}:\n{stderr}"
    );
}

fn schema(name: &str) -> Option<Value> {
    let path = Path::new(MANIFEST).join("schemas").join(name);
    let text = fs::read_to_string(&path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn enum_at(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no enum at {pointer}"))
        .iter()
        .map(|v| v.as_str().expect("string enum").to_string())
        .collect()
}

#[test]
fn schema_enums_are_the_rust_enums() {
    // Adding a variant breaks these matches: add it to the list and to the schema.
    let severities = [Severity::Info, Severity::Warning, Severity::Critical];
    let _ = |s: Severity| match s {
        Severity::Info | Severity::Warning | Severity::Critical => (),
    };
    let states = [AnomalyState::Open, AnomalyState::Resolved];
    let _ = |s: AnomalyState| match s {
        AnomalyState::Open | AnomalyState::Resolved => (),
    };
    let audiences = [Audience::Driver, Audience::Operator];
    let _ = |a: Audience| match a {
        Audience::Driver | Audience::Operator => (),
    };

    let anomaly = schema("anomaly.schema.json").expect("anomaly.schema.json");
    assert_eq!(
        enum_at(&anomaly, "/properties/kind/enum"),
        names(&AnomalyKind::ALL)
    );
    assert_eq!(enum_at(&anomaly, "/properties/state/enum"), names(&states));
    assert_eq!(
        enum_at(&anomaly, "/properties/severity/enum"),
        names(&severities)
    );
    let statuses = enum_at(&anomaly, "/$defs/connectorStatus/enum");
    assert_eq!(statuses.len(), 9);
    for s in &statuses {
        assert_eq!(
            ConnectorStatus::parse(s).map(|c| c.as_str()),
            Some(s.as_str())
        );
    }

    let notification = schema("notification.schema.json").expect("notification.schema.json");
    assert_eq!(
        enum_at(&notification, "/properties/kind/enum"),
        names(&NotificationKind::ALL)
    );
    assert_eq!(
        enum_at(&notification, "/properties/audience/enum"),
        names(&audiences)
    );

    let dead = schema("dead-letter.schema.json").expect("dead-letter.schema.json");
    assert_eq!(
        enum_at(&dead, "/properties/reason/enum"),
        names(&DeadLetterReason::ALL)
    );

    if let Some(labels) = schema("labels.schema.json") {
        assert_eq!(
            enum_at(&labels, "/properties/kind/enum"),
            names(&AnomalyKind::ALL)
        );
    }
}

/// Watch events evflow rejects, one per rule the schema can express (it cannot say that
/// `expires` is after `timestamp`).
const BAD_WATCHES: &[&str] = &[
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","site_id":"SITE-001","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":null,"site_id":null,"timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":" ","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"action":"watch","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"","action":"watch","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"follow","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","kinds":["charging_almost_complete"],"timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","kinds":["coffee_ready"],"timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","kinds":"station_available","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00"}"#,
    r#"{"driver":"DRV-ALICE","action":"watch","charge_point_id":"CP-0001","timestamp":"2026-01-05T10:00:00Z","expires":"soon"}"#,
    "{not json",
    "[1,2]",
];

#[test]
fn watch_events_match_their_schema() {
    use evflow::model::WatchAction;
    use evflow::sources::watches::{parse_watch, read_watches, WATCHABLE};

    let example = Path::new(MANIFEST).join("tests/data/watches.jsonl");
    let (good, bad) = read_watches(&example).expect("tests/data/watches.jsonl");
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(good.len(), 12);
    for line in BAD_WATCHES {
        assert!(
            parse_watch(line.as_bytes()).is_err(),
            "evflow accepts {line}"
        );
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("watch-schema");
    fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad-watches.jsonl");
    fs::write(&bad_file, BAD_WATCHES.join("\n") + "\n").unwrap();

    let ok = run(Command::new(python())
        .arg(Path::new(MANIFEST).join("tests/schemas.py"))
        .args(["--jsonl", "watch-event.schema.json"])
        .arg(&example)
        .args(["--invalid", "watch-event.schema.json"])
        .arg(&bad_file));
    let report = String::from_utf8_lossy(&ok.stdout);
    println!("{report}");
    let n = BAD_WATCHES.len();
    for (file, count) in [("watches.jsonl", 12), ("bad-watches.jsonl", n)] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("ok {count:>9}  ")) && l.contains(file)),
            "{file} not checked:\n{report}"
        );
    }

    // Adding a variant breaks this match: add it to the list and to the schema.
    let actions = [WatchAction::Watch, WatchAction::Unwatch];
    let _ = |a: WatchAction| match a {
        WatchAction::Watch | WatchAction::Unwatch => (),
    };
    let watch = schema("watch-event.schema.json").expect("watch-event.schema.json");
    assert_eq!(enum_at(&watch, "/properties/action/enum"), names(&actions));
    assert_eq!(
        enum_at(&watch, "/properties/kinds/items/enum"),
        names(&WATCHABLE)
    );
}
