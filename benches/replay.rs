//! End-to-end replay benchmark: a generated day of fleet traffic (≥ 1 M events) through the
//! whole pipeline — decode, stages, aggregation, Parquet and JSONL sinks — plus the decoder
//! alone (the hot path).
//!
//! `cargo bench --bench replay` (env: `EVFLOW_BENCH_CHARGERS`, default 1300 → ~1.07 M lines;
//! `EVFLOW_BENCH_WORKERS`, default "1,2"). Reports wall time, events/s, events per CPU-second
//! and peak RSS. Figures and the machine are recorded in benches/README.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use evflow::config::{DataflowConfig, SimulatorConfig, SourceConfig};
use evflow::metrics::Metrics;
use evflow::ocpp::schema::SchemaSet;
use evflow::ocpp::{DecodeOptions, DecodeStats, Decoder};
use evflow::sources::simulator::{write_all, Fleet};

fn proc_field(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn generate(dir: &Path, chargers: u32) -> (PathBuf, PathBuf) {
    let traffic = dir.join(format!("traffic-{chargers}.jsonl"));
    let registry = dir.join(format!("registry-{chargers}.json"));
    if !traffic.exists() || !registry.exists() {
        let sim = SimulatorConfig {
            chargers,
            hours: 24,
            seed: 1,
            ..SimulatorConfig::default()
        };
        let fleet = Fleet::new(&sim, &[]);
        let started = Instant::now();
        let tmp = traffic.with_extension("tmp");
        let mut w = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&tmp).expect("create traffic"),
        );
        let n = write_all(&fleet, &mut w).expect("write traffic");
        drop(w);
        std::fs::rename(&tmp, &traffic).expect("rename traffic");
        std::fs::write(
            &registry,
            serde_json::to_vec(&fleet.registry()).expect("registry"),
        )
        .expect("write registry");
        eprintln!(
            "generated {n} lines in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    (traffic, registry)
}

fn main() {
    let chargers: u32 = std::env::var("EVFLOW_BENCH_CHARGERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1300);
    let workers: Vec<usize> = std::env::var("EVFLOW_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let (traffic, registry) = generate(&dir, chargers);
    let bytes = std::fs::metadata(&traffic).map(|m| m.len()).unwrap_or(0);

    for w in workers {
        let toml = format!(
            "[source]\nkind = \"file\"\npath = {:?}\n[pipeline]\nworkers = {w}\n[output]\ndir = {:?}\n[metrics]\naddr = \"\"\n[registry]\npath = {:?}\ndefault_tariff = \"ac_standard\"\n[[tariffs]]\nid = \"ac_standard\"\ncurrency = \"EUR\"\nenergy_per_kwh = \"0.39\"\nsession_fee = \"0.50\"\nvat_pct = \"19\"\n[[tariffs]]\nid = \"dc_fast\"\ncurrency = \"EUR\"\nenergy_per_kwh = \"0.59\"\nsession_fee = \"1.00\"\nvat_pct = \"19\"\n",
            traffic.display().to_string(),
            dir.join(format!("out-{w}")).display().to_string(),
            registry.display().to_string(),
        );
        let mut cfg: DataflowConfig = toml::from_str(&toml).expect("bench dataflow");
        cfg.validate().expect("valid");
        assert!(matches!(cfg.source, SourceConfig::File { .. }));
        let _ = std::fs::remove_dir_all(&cfg.output.dir);
        let metrics = Metrics::new();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let report = evflow::dataflow::run(&cfg, &metrics).expect("run");
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        println!(
            "pipeline, {w} worker(s): {} events in {wall:.2} s wall, {cpu:.2} s CPU: {:.0} events/s, {:.0} events/CPU-s; {} sessions",
            report.events,
            report.events as f64 / wall,
            report.events as f64 / cpu.max(1e-9),
            report.summary.sessions
        );
    }
    // Peak memory of the pipeline runs, before the decoder bench loads the whole file.
    let pipeline_rss = proc_field("/proc/self/status", "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    println!("peak RSS of the pipeline runs: {pipeline_rss:.0} MB (VmHWM)");

    // The decoder alone, one thread: tolerant (the default), then strict (every CALL payload
    // validated against its OCPP JSON schema first).
    let data = std::fs::read(&traffic).expect("read traffic");
    for strict in [false, true] {
        let mut decoder = Decoder::new(DecodeOptions {
            max_clock_skew: 300_000,
            max_delivery_delay: 7 * 86_400_000,
        })
        .with_strict(strict);
        let (mut events, mut dead, mut stats) =
            (Vec::with_capacity(8192), Vec::new(), DecodeStats::default());
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut n_events = 0usize;
        for (i, line) in data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            decoder.decode_line(i as u64, line, &mut events, &mut dead, &mut stats);
            if events.len() >= 8192 {
                n_events += events.len();
                events.clear();
            }
        }
        n_events += events.len();
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        println!(
            "decode only{}: {n_events} events, {:.0} MB in {wall:.2} s: {:.0} events/s, {:.0} events/CPU-s, {:.0} MB/s; {} dead letters",
            if strict { ", strict" } else { "" },
            bytes as f64 / 1e6,
            n_events as f64 / wall,
            n_events as f64 / cpu.max(1e-9),
            bytes as f64 / 1e6 / wall,
            dead.len()
        );
    }
    // Strict mode's start-up cost if every schema were needed at once (they compile lazily).
    let t0 = Instant::now();
    let n = SchemaSet::new().compile_all().expect("schemas compile");
    println!(
        "compiling all {n} OCPP schemas: {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    drop(data);
}
