//! The operator's view against the real Prometheus (`prometheus` 2.42 and `promtool`; the
//! binaries are `EVFLOW_PROMETHEUS`/`EVFLOW_PROMTOOL`, else on `PATH`; `.ci/run` installs
//! the Debian packages when missing). No Grafana: the dashboard's queries are run by
//! Prometheus itself.
//!
//! - `promtool check rules` passes on `alerts/evflow.rules.yml`, `promtool check config` on
//!   `alerts/prometheus.yml`.
//! - A live run of `dataflows/live.toml` (30 chargers at ×7200, webhook and Alertmanager
//!   routes to a local receiver, a webhook route to a dead port), scraped every second by a Prometheus that evaluates the
//!   rules every second with every `for:` at 0s: every query of `dashboards/evflow.json`
//!   (panels, annotations, the site variable) returns series; every alert rule's expression
//!   without its threshold returns series; every rule evaluates without error; the broken
//!   route drives `EvflowDeliveryDeadLetters` to firing. Queries of the Kafka families (a
//!   Kafka source or sink only) must succeed and may be empty.
//! - SIGTERM stops the live run cleanly: exit 0, the summary, the Parquet outputs written.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// Metric families that have series only in some runs: queries of them must succeed but
/// may return nothing here.
const ONLY_WITH: &[(&str, &str)] = &[("evflow_kafka_", "a Kafka source or [output.kafka]")];

/// A child process killed (and reaped) when the test ends, also on a panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `EVFLOW_<NAME>` if set, else `name` on `PATH`.
fn tool(name: &str) -> String {
    std::env::var(format!("EVFLOW_{}", name.to_ascii_uppercase())).unwrap_or(name.to_string())
}

fn promtool(args: &[&str]) {
    let out = Command::new(tool("promtool"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("promtool (apt-get install prometheus): {e}"));
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn rules_and_example_config_pass_promtool() {
    let rules = repo().join("alerts/evflow.rules.yml");
    promtool(&["check", "rules", rules.to_str().unwrap()]);
    let config = repo().join("alerts/prometheus.yml");
    promtool(&["check", "config", config.to_str().unwrap()]);
}

/// An HTTP receiver that answers 200 to every request (the healthy webhook route).
fn accept_everything() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                loop {
                    let mut len = 0usize;
                    let mut first = true;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" && !first {
                            break;
                        }
                        first = false;
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err()
                        || out
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// `dataflows/live.toml`, made small and fast, into `dir`.
fn live_dataflow(dir: &Path, receiver: u16, dead: u16) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("dataflows/live.toml")).expect("live.toml");
    let mut t: toml::Table = text.parse().expect("live.toml is TOML");
    let table = |t: &mut toml::Table, k: &str| -> toml::Table {
        t.get(k)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut source = table(&mut t, "source");
    assert_eq!(
        source.get("until_stopped"),
        Some(&toml::Value::Boolean(true))
    );
    source.insert("chargers".into(), 30.into());
    // Two simulated hours a second.
    source.insert("speed".into(), 7200.0.into());
    t.insert("source".into(), source.into());
    let mut output = table(&mut t, "output");
    output.insert(
        "dir".into(),
        dir.join("out").to_str().unwrap().to_string().into(),
    );
    t.insert("output".into(), output.into());
    let mut metrics = table(&mut t, "metrics");
    metrics.insert("addr".into(), "127.0.0.1:0".into());
    metrics.insert("per_charger_limit".into(), 10.into());
    t.insert("metrics".into(), metrics.into());
    let mut revenue = table(&mut t, "revenue");
    revenue.insert(
        "ocpi_tariffs".into(),
        repo()
            .join("dataflows/tariffs")
            .to_str()
            .unwrap()
            .to_string()
            .into(),
    );
    t.insert("revenue".into(), revenue.into());
    // Routes: a healthy webhook and Alertmanager (the local receiver answers 200), and a
    // webhook on a port nobody listens on (its notifications are given up at once: delivery
    // failures and dead letters).
    let notifications: toml::Table = format!(
        r#"
        drain_timeout = "1s"
        [[routes]]
        name = "ops"
        audience = "operator"
        [routes.webhook]
        url = "http://127.0.0.1:{receiver}/evflow"
        [[routes]]
        name = "am"
        [routes.alertmanager]
        url = "http://127.0.0.1:{receiver}"
        [[routes]]
        name = "broken"
        [routes.webhook]
        url = "http://127.0.0.1:{dead}/evflow"
        max_attempts = 1
        timeout = "1s"
        backoff_initial = "10ms"
        "#
    )
    .parse()
    .expect("routes");
    t.insert("notifications".into(), notifications.into());
    let path = dir.join("live.toml");
    std::fs::write(&path, toml::to_string(&t).expect("TOML")).expect("write dataflow");
    path
}

/// Starts evflow; returns it, its metrics address and its log so far.
fn start_evflow(dataflow: &Path) -> (Killed, String, Arc<Mutex<Vec<String>>>) {
    let mut child = evflow()
        .arg("run")
        .arg(dataflow)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evflow");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = l.split("metrics on http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_string());
            }
            lines.lock().unwrap().push(l);
        }
    });
    let child = Killed(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("evflow logs its metrics address: {:?}", log.lock()));
    (child, addr, log)
}

/// The rules with every `for:` at 0s: the simulator is thousands of times faster than the
/// production durations.
fn rules_for_test(dir: &Path) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(repo().join("alerts/evflow.rules.yml")).expect("rules");
    let mut alerts = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let body = l.trim_start();
            alerts += usize::from(body.starts_with("- alert:"));
            if body.starts_with("for:") {
                format!("{}for: 0s", &l[..l.len() - body.len()])
            } else {
                l.to_string()
            }
        })
        .collect();
    let path = dir.join("evflow.rules.yml");
    std::fs::write(&path, lines.join("\n")).expect("write rules");
    (path, alerts)
}

struct Prometheus {
    base: String,
    agent: ureq::Agent,
}

impl Prometheus {
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{status}: {text}"));
        }
        Ok(v["data"].clone())
    }

    /// The series an instant query returns.
    fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let data = self.get("/api/v1/query", &[("query", q)])?;
        Ok(match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                data["result"].as_array().cloned().unwrap_or_default()
            }
            // A scalar or string is one value.
            _ => vec![data["result"].clone()],
        })
    }
}

/// Dashboard variables as Grafana would fill them in.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m")
        .replace("${site}", ".*")
        .replace("$site", ".*")
}

/// Every PromQL query of the dashboard: panel targets, annotations, and the `label_values`
/// variable queries (as `group by (label) (metric)`).
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn panels<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        for p in v.as_array().into_iter().flatten() {
            out.push(p);
            panels(&p["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dash["panels"], &mut all);
    for p in all {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((format!("panel {:?}", p["title"]), expr.to_string()));
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(def) = v["definition"].as_str() {
            let args = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {def}: only label_values(metric, label)"));
            let (metric, label) = args.split_once(',').expect("label_values(metric, label)");
            out.push((
                format!("variable {:?}", v["name"]),
                format!("group by ({}) ({})", label.trim(), metric.trim()),
            ));
        }
    }
    out
}

/// `expr` without its threshold: the last comparison with a number at the top level
/// (outside parentheses, braces and brackets), if any — `sum(x) / sum(y) > 0.05` → `sum(x) /
/// sum(y)`.
fn without_threshold(expr: &str) -> String {
    let b = expr.as_bytes();
    let (mut depth, mut quote, mut last) = (0i32, None::<u8>, None::<(usize, usize)>);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                    let two = b.get(i + 1) == Some(&b'=');
                    if c != b'=' || two {
                        let len = if two { 2 } else { 1 };
                        last = Some((i, len));
                        i += len;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    if let Some((at, len)) = last {
        let rest = expr[at + len..].trim();
        let rest = rest.strip_prefix("bool").unwrap_or(rest).trim();
        if rest.parse::<f64>().is_ok() {
            return expr[..at].trim().to_string();
        }
    }
    expr.trim().to_string()
}

fn only_with(expr: &str) -> Option<&'static str> {
    ONLY_WITH
        .iter()
        .find(|(m, _)| expr.contains(m))
        .map(|(_, why)| *why)
}

#[test]
fn thresholds_are_stripped_at_the_top_level_only() {
    assert_eq!(
        without_threshold("evflow_site_health_score < 70"),
        "evflow_site_health_score"
    );
    assert_eq!(
        without_threshold("up{job=\"evflow\"} == 0"),
        "up{job=\"evflow\"}"
    );
    assert_eq!(
        without_threshold("sum(a > 1) / clamp_min(sum(b), 1e-9) > 0.5"),
        "sum(a > 1) / clamp_min(sum(b), 1e-9)"
    );
    assert_eq!(
        without_threshold("x{kind=~\"a|b\", y!=\"<\"}"),
        "x{kind=~\"a|b\", y!=\"<\"}"
    );
    assert_eq!(without_threshold("a > bool 3"), "a");
    assert_eq!(without_threshold("a > b"), "a > b");
}

#[test]
fn dashboard_and_alert_expressions_return_data_on_a_live_run() {
    let _g = serial();
    let started = Instant::now();
    let dir = tmp_dir("prometheus-live");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/evflow.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));

    let dataflow = live_dataflow(&dir, accept_everything(), free_port());
    let (run, metrics_addr, log) = start_evflow(&dataflow);

    let (rules, alert_count) = rules_for_test(&dir);
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\n\
             scrape_configs:\n  - job_name: evflow\n    static_configs:\n      - targets: [{:?}]\n",
            rules.to_str().unwrap(),
            metrics_addr
        ),
    )
    .expect("write prometheus.yml");
    promtool(&["check", "config", config.to_str().unwrap()]);
    let port = free_port();
    let prometheus = Killed(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).expect("log file"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus (apt-get install prometheus): {e}")),
    );
    let p = Prometheus {
        base: format!("http://127.0.0.1:{port}"),
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent(),
    };
    let deadline = Instant::now() + Duration::from_secs(50);
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what}; see {}",
                dir.join("prometheus.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait("Prometheus is not ready", &|| {
        p.agent
            .get(format!("{}/-/ready", p.base))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    // A few scrapes, with sessions and health rows in them.
    wait("no five scrapes with finished sessions", &|| {
        p.query("count_over_time(evflow_input_lines_total[1m]) >= 5 and on() sum(evflow_sessions_total) > 0")
            .is_ok_and(|r| !r.is_empty())
    });

    // Every dashboard query, until all return series (some need a first anomaly, a first
    // delivery failure…).
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let empty_dashboard = loop {
        let mut empty = Vec::new();
        for (what, expr) in &queries {
            let q = substitute(expr);
            let result = p
                .query(&q)
                .unwrap_or_else(|e| panic!("{what}: {q} fails: {e}"));
            if result.is_empty() && only_with(expr).is_none() {
                empty.push(format!("{what}: {q}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break empty;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        empty_dashboard.is_empty(),
        "dashboard queries without data:\n{}",
        empty_dashboard.join("\n")
    );

    // Every rule is loaded, evaluates without error, and its expression without the
    // threshold has data.
    let loaded = |p: &Prometheus| -> Vec<Value> {
        p.get("/api/v1/rules", &[("type", "alert")]).expect("rules")["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    wait("rules not evaluated yet", &|| {
        loaded(&p).iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        })
    });
    let rules_loaded = loaded(&p);
    assert_eq!(
        rules_loaded.len(),
        alert_count,
        "every alert rule is loaded"
    );
    let empty_rules = loop {
        let mut empty = Vec::new();
        for r in &rules_loaded {
            let name = r["name"].as_str().unwrap_or_default();
            assert_eq!(r["health"], "ok", "{name}: {}", r["lastError"]);
            assert!(
                matches!(
                    r["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ),
                "{name}: severity"
            );
            for a in ["summary", "description"] {
                assert!(r["annotations"][a].is_string(), "{name}: {a}");
            }
            let expr = r["query"].as_str().expect("query");
            let q = without_threshold(expr);
            assert_ne!(q, expr.trim(), "{name}: a threshold to strip");
            let result = p
                .query(&q)
                .unwrap_or_else(|e| panic!("{name}: {q} fails: {e}"));
            if result.is_empty() && only_with(expr).is_none() {
                empty.push(format!("{name}: {q}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break empty;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        empty_rules.is_empty(),
        "alert expressions without data:\n{}",
        empty_rules.join("\n")
    );

    // The broken route's dead letters fire an alert.
    wait("EvflowDeliveryDeadLetters does not fire", &|| {
        p.get("/api/v1/alerts", &[])
            .ok()
            .and_then(|d| d["alerts"].as_array().cloned())
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "EvflowDeliveryDeadLetters"
                    && a["labels"]["route"] == "broken"
                    && a["labels"]["severity"] == "warning"
                    && a["state"] == "firing"
            })
    });
    drop(prometheus);

    // SIGTERM: a clean stop.
    let mut run = run;
    let pid = run.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = loop {
        if let Some(s) = run.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "evflow does not stop on SIGTERM: {:?}",
            log.lock()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}: {:?}", log.lock());
    let mut out = String::new();
    if let Some(mut o) = run.0.stdout.take() {
        o.read_to_string(&mut out).expect("stdout");
    }
    assert!(out.contains("evflow run complete"), "{out}");
    let sessions = evflow::sinks::parquet::read_sessions(&dir.join("out")).expect("sessions");
    assert!(!sessions.is_empty(), "the stop wrote the sessions");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
