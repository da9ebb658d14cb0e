//! Exactly-once output across crashes, against a real broker (tansu): evflow is killed with
//! SIGKILL at random points and restarted until it finishes, and its outputs must equal an
//! uninterrupted run's — every Parquet row, and the JSONL files byte for byte. Also: the
//! broker stops mid-stream and comes back.
//!
//! The kill points come from a seed the test prints; `EVFLOW_CRASH_SEED=N` replays them.
//! `EVFLOW_CRASH_KILLS=N` sets the number of kills (5 by default). The longer run,
//! `cargo test --test crash -- --ignored`, kills 25 times over a bigger fleet.

#[path = "common/kafka.rs"]
mod broker;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker::Broker;
use common::*;
use evflow::sinks::parquet::{read_health, read_revenue};

/// splitmix64: the kill points' generator (no dependency needed for a few numbers).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A fleet's traffic in a topic of `partitions` partitions, and two dataflows that commit
/// often (every 4 chunks of 500 records per partition): one also produces anomalies to the
/// `anomalies` topic, the other writes files only.
fn setup(dir: &Path, chargers: u32, partitions: u32) -> (Broker, PathBuf, PathBuf, usize) {
    run_ok(&[
        "simulate",
        "--chargers",
        &chargers.to_string(),
        "--hours",
        "24",
        "--out",
        dir.join("traffic.jsonl").to_str().unwrap(),
        "--registry",
        dir.join("registry.json").to_str().unwrap(),
        "--watches",
        dir.join("watches.jsonl").to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(dir.join("traffic.jsonl")).unwrap();
    let broker = Broker::start(&dir.join("broker"));
    broker.create_topic("ocpp", partitions);
    broker.create_topic("anomalies", 1);
    // `evflow produce`, keyed by charge point: what the README tells users to do.
    let produced = run_ok(&[
        "produce",
        dir.join("traffic.jsonl").to_str().unwrap(),
        "--to",
        &broker.url("ocpp", "").replace('?', ""),
    ]);
    let report = String::from_utf8_lossy(&produced.stdout).to_string();
    eprint!("{report}");
    let n = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        report.starts_with(&format!("produced {n} records")),
        "{report}"
    );
    // Keyed by charge point: a charger's records are all in one partition.
    let mut partition_of = std::collections::BTreeMap::new();
    for (p, _, key, _) in broker.read_all("ocpp") {
        let key = key.expect("keyed by charge point");
        assert_eq!(*partition_of.entry(key.clone()).or_insert(p), p, "{key}");
    }
    assert_eq!(partition_of.len() as u32, chargers);
    let write = |name: &str, kafka_out: &str| {
        let path = dir.join(name);
        let text = format!(
            "name = \"crash\"\n\
             [source]\nkind = \"kafka\"\nbrokers = \"{addr}\"\ntopic = \"ocpp\"\n\
             group = \"unused\"\nstop_at_end = true\n\
             [pipeline]\nworkers = 2\nchunk_lines = 500\n\
             [kafka]\ncommit_every_chunks = 4\n\
             [output]\ndir = \"unused\"\n{kafka_out}\
             [metrics]\naddr = \"\"\n\
             [registry]\npath = {registry:?}\ndefault_tariff = \"ac_standard\"\n{TARIFFS}\n\
             [notifications]\nwatches = {watches:?}\n\
             [notifications.quiet_hours.driver]\nstart = \"22:00\"\nend = \"07:00\"\n\
             [[notifications.routes]]\nname = \"drivers\"\naudience = \"driver\"\n\
             jsonl = \"route-drivers.jsonl\"\n",
            addr = broker.addr(),
            registry = dir.join("registry.json").display().to_string(),
            watches = dir.join("watches.jsonl").display().to_string(),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let with_kafka_out = write(
        "dataflow.toml",
        &format!(
            "[output.kafka]\nbrokers = \"{}\"\nanomalies_topic = \"anomalies\"\n\
             flush_timeout = \"2s\"\n",
            broker.addr()
        ),
    );
    let plain = write("dataflow-plain.toml", "");
    (broker, with_kafka_out, plain, n)
}

fn run_args<'a>(dataflow: &'a Path, broker: &Broker, group: &str, out: &'a Path) -> Vec<String> {
    vec![
        "run".into(),
        dataflow.display().to_string(),
        "--input".into(),
        broker.url("ocpp", &format!("group={group}&stop=end")),
        "--out".into(),
        out.display().to_string(),
    ]
}

/// Everything a run wrote, in a comparable form: Parquet rows sorted, JSONL files as text.
#[derive(Debug, PartialEq)]
struct Outputs {
    sessions: Vec<evflow::model::SessionRecord>,
    revenue: Vec<String>,
    health: Vec<String>,
    anomalies: String,
    notifications: String,
    /// A notification route's file (drivers only; watches and quiet hours in the state).
    route: String,
    dead_letters: String,
}

fn outputs(out: &Path) -> Outputs {
    let mut revenue: Vec<String> = read_revenue(out)
        .expect("revenue")
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    revenue.sort();
    let mut health: Vec<String> = read_health(out)
        .expect("health")
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    health.sort();
    let text = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    Outputs {
        sessions: sorted_sessions(out),
        revenue,
        health,
        anomalies: text("anomalies.jsonl"),
        notifications: text("notifications.jsonl"),
        route: text("route-drivers.jsonl"),
        dead_letters: text("dead-letter.jsonl"),
    }
}

/// Equal, or a short account of the first difference (outputs are large).
fn same_lines(what: &str, a: &[String], b: &[String]) {
    if a == b {
        return;
    }
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: {} vs {} lines; first difference at line {first}:\n  reference: {:?}\n  got:       {:?}",
        a.len(),
        b.len(),
        a.get(first),
        b.get(first)
    );
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn assert_same(reference: &Outputs, got: &Outputs) {
    assert!(
        reference.sessions.len() > 100,
        "{}",
        reference.sessions.len()
    );
    assert!(reference.revenue.len() > 10, "{}", reference.revenue.len());
    let debug = |v: &[evflow::model::SessionRecord]| -> Vec<String> {
        v.iter().map(|s| format!("{s:?}")).collect()
    };
    same_lines(
        "sessions",
        &debug(&reference.sessions),
        &debug(&got.sessions),
    );
    same_lines("revenue rows", &reference.revenue, &got.revenue);
    same_lines("health rows", &reference.health, &got.health);
    same_lines(
        "anomalies.jsonl",
        &lines(&reference.anomalies),
        &lines(&got.anomalies),
    );
    same_lines(
        "notifications.jsonl",
        &lines(&reference.notifications),
        &lines(&got.notifications),
    );
    assert!(reference.route.contains("held_until\":\"20"));
    same_lines(
        "route-drivers.jsonl",
        &lines(&reference.route),
        &lines(&got.route),
    );
    same_lines(
        "dead-letter.jsonl",
        &lines(&reference.dead_letters),
        &lines(&got.dead_letters),
    );
}

fn kill_and_restart(chargers: u32, partitions: u32, default_kills: u64, name: &str) {
    let _g = serial();
    let seed = env_u64("EVFLOW_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let kills = env_u64("EVFLOW_CRASH_KILLS").unwrap_or(default_kills);
    eprintln!("kill points from seed {seed} (replay: EVFLOW_CRASH_SEED={seed}), {kills} kills");
    let mut rng = Rng(seed);
    let dir = tmp_dir(name);
    let (broker, dataflow, _, _) = setup(&dir, chargers, partitions);

    let reference_out = dir.join("out-reference");
    let t = Instant::now();
    run_ok(
        &run_args(&dataflow, &broker, "reference", &reference_out)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let full = t.elapsed();
    eprintln!("uninterrupted run: {:.1} s", full.as_secs_f64());
    let reference = outputs(&reference_out);

    let out = dir.join("out-crash");
    let args = run_args(&dataflow, &broker, "crash", &out);
    let mut killed = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_evflow"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join(format!("run-{runs}.log"))).unwrap(),
            ))
            .spawn()
            .expect("spawn evflow");
        if killed < kills {
            // Early points too: before the first commit, during start-up and restore.
            let at = rng.between(Duration::from_millis(200), full.mul_f64(0.3));
            let deadline = Instant::now() + at;
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
                eprintln!("run {runs}: killed after {} ms", at.as_millis());
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "run {runs} failed: {}",
            std::fs::read_to_string(dir.join(format!("run-{runs}.log"))).unwrap()
        );
        if killed >= kills {
            break;
        }
        // It finished before the kill: nothing left to interrupt; a run after the end
        // must change nothing either.
        eprintln!("run {runs} finished before its kill point");
        break;
    }
    eprintln!("{killed} kill(s), {runs} run(s)");
    assert!(
        killed >= kills.min(3),
        "only {killed} kill(s) landed before the end"
    );
    assert_same(&reference, &outputs(&out));

    // One more run over the same input: nothing new, nothing written again.
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_same(&reference, &outputs(&out));
}

#[test]
fn kill_9_at_random_points_loses_and_doubles_nothing() {
    kill_and_restart(250, 4, 5, "crash-kill");
}

/// The longer version, by hand: `cargo test --release --test crash -- --ignored`.
#[test]
#[ignore]
fn kill_9_many_times_over_a_bigger_fleet() {
    kill_and_restart(600, 6, 25, "crash-kill-long");
}

#[test]
fn the_broker_stops_mid_stream_and_comes_back() {
    let _g = serial();
    let dir = tmp_dir("crash-broker");
    let (mut broker, dataflow, plain, _) = setup(&dir, 150, 3);
    let reference_out = dir.join("out-reference");
    let t = Instant::now();
    run_ok(
        &run_args(&plain, &broker, "reference", &reference_out)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let full = t.elapsed();
    let reference = outputs(&reference_out);

    let out = dir.join("out-outage");
    let log = dir.join("outage.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_evflow"))
        .args(run_args(&dataflow, &broker, "outage", &out))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn evflow");
    std::thread::sleep(full / 3);
    assert!(
        child.try_wait().unwrap().is_none(),
        "evflow finished before the outage"
    );
    broker.stop();
    eprintln!("broker down");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "evflow gave up while the broker was down: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    broker.restart();
    eprintln!("broker back");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "evflow did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log_text}");
    assert_same(&reference, &outputs(&out));
    // The anomalies also went to Kafka, at least once each (the sink's records sent
    // during the outage were retried, and commits waited for them).
    let ids = |records: Vec<serde_json::Value>| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .map(|a| format!("{}/{}", a["id"], a["state"]))
            .collect()
    };
    let in_file = ids(read_jsonl(&out.join("anomalies.jsonl")));
    let in_topic = ids(broker
        .read_all("anomalies")
        .into_iter()
        .map(|(_, _, _, v)| serde_json::from_str(&v).unwrap())
        .collect());
    assert!(!in_file.is_empty());
    assert!(
        in_file.is_subset(&in_topic),
        "missing from the topic: {:?}",
        in_file.difference(&in_topic).take(5).collect::<Vec<_>>()
    );
}
