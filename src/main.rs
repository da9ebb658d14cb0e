//! The `evflow` command line: `run` a dataflow, `simulate` a fleet to a file, `price` a CDR,
//! `eval` anomalies against fault labels.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use evflow::config::{DataflowConfig, SimulatorConfig, SourceConfig};
use evflow::dataflow::{self, RunReport};
use evflow::metrics::Metrics;
use evflow::sources::simulator::{write_all, Fleet};

#[derive(Parser)]
#[command(
    name = "evflow",
    version,
    about = "Streaming analytics for EV charger networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a dataflow (a TOML file under dataflows/).
    Run {
        dataflow: PathBuf,
        /// Replace the dataflow's source with this JSONL file (`-` for stdin), or a Kafka
        /// topic: `kafka://HOST:PORT/TOPIC?group=GROUP[&stop=end][&PROPERTY=VALUE…]`.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output directory (default: the dataflow's `output.dir`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Timely worker threads.
        #[arg(long)]
        workers: Option<usize>,
        /// Where to serve /metrics (HOST:PORT; port 0 picks a free port; "" disables).
        #[arg(long)]
        metrics_addr: Option<String>,
        /// Keep earlier outputs in the output directory and add to them.
        #[arg(long)]
        append: bool,
        /// Strict mode: dead-letter CALLs whose payload violates the official OCPP JSON schema
        /// of their action (`schema_violation`), as the dataflow's `strict = true` does.
        #[arg(long)]
        strict: bool,
    },
    /// Write a simulated fleet's OCPP traffic to a JSONL file.
    Simulate {
        #[arg(long, default_value_t = 300)]
        chargers: u32,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The traffic (envelope JSONL).
        #[arg(long)]
        out: PathBuf,
        /// Ground-truth fault labels (JSONL).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// The fleet's station and token registry (JSON), for `registry.path` in a dataflow.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// The fleet's drivers' watches (JSONL), for `notifications.watches` in a dataflow.
        #[arg(long)]
        watches: Option<PathBuf>,
        /// Simulate without injected faults.
        #[arg(long)]
        no_faults: bool,
        /// Faults of each kind per 100 chargers per day.
        #[arg(long, default_value_t = 2.0)]
        fault_rate: f64,
    },
    /// Produce an envelope JSONL file (e.g. from `simulate`) to a Kafka topic, each record
    /// keyed by its charge point id: to try a Kafka dataflow or replay a capture.
    Produce {
        /// Envelope JSONL (`-` for stdin).
        file: PathBuf,
        /// `kafka://HOST:PORT/TOPIC[?PROPERTY=VALUE…]` (librdkafka producer properties).
        #[arg(long)]
        to: String,
    },
    /// Price an OCPI 2.2.1 CDR with an OCPI tariff; prints the CDR with its totals (JSON).
    Price {
        /// The OCPI Tariff (JSON).
        #[arg(long)]
        tariff: PathBuf,
        /// The OCPI CDR (JSON); its charging periods are priced.
        #[arg(long)]
        cdr: PathBuf,
        /// The location's IANA time zone (e.g. Europe/Amsterdam) for the tariff's times of day
        /// [default: the CDR's cdr_location.time_zone, else UTC].
        #[arg(long)]
        time_zone: Option<String>,
    },
    /// Score detected anomalies against the simulator's fault labels: precision, recall and
    /// detection delay per anomaly kind (matching rules: docs/evaluation.md).
    Eval {
        /// Ground-truth labels (JSONL, from `simulate --labels`).
        #[arg(long)]
        labels: PathBuf,
        /// Anomaly records (a run's anomalies.jsonl).
        #[arg(long)]
        anomalies: PathBuf,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Score a `timestamp,value` CSV with the streaming anomaly detector (docs/detector.md);
    /// writes `timestamp,value,anomaly_score`.
    Detect {
        /// The input CSV (a header with `timestamp` and `value` columns).
        #[arg(long)]
        csv: PathBuf,
        /// The scored CSV to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Ctrl-C or SIGTERM stops a simulator run cleanly: the source ends at its next chunk and
/// the run finishes as a bounded one does (outputs flushed, summary printed). A second signal
/// exits at once.
fn stop_simulator_on_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered before returning, so that a signal from now on is ours.
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("evflow-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                for n in 0.. {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    if n == 0 {
                        tracing::info!(
                            "stopping: flushing the outputs (signal again to exit at once)"
                        );
                        evflow::sources::simulator::stop();
                    } else {
                        tracing::warn!("exiting without flushing the outputs");
                        std::process::exit(130);
                    }
                }
            })
        })?;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Run {
            dataflow,
            input,
            out,
            workers,
            metrics_addr,
            append,
            strict,
        } => {
            let mut cfg = DataflowConfig::load(&dataflow)?;
            if let Some(path) = input {
                cfg.source = match path.to_str().filter(|s| s.starts_with("kafka://")) {
                    Some(url) => SourceConfig::Kafka(
                        evflow::sources::kafka::parse_url(url).map_err(anyhow::Error::msg)?,
                    ),
                    None => SourceConfig::File { path },
                };
            }
            if let Some(dir) = out {
                cfg.output.dir = dir;
            }
            if let Some(n) = workers {
                cfg.pipeline.workers = n;
            }
            if let Some(addr) = metrics_addr {
                cfg.metrics.addr = addr;
            }
            cfg.strict |= strict;
            cfg.validate()?;
            // A Kafka run whose output directory holds a commit continues from it (a
            // restart after a crash or a stop): its outputs are not cleared.
            let resumes = matches!(cfg.source, SourceConfig::Kafka(_))
                && evflow::dataflow::commit::has_manifest(&cfg.output.dir);
            if resumes {
                tracing::info!(
                    "{} holds a commit of this Kafka source: continuing from it (delete the \
                     directory, or use another, to start over)",
                    cfg.output.dir.display()
                );
            } else if !append {
                clear_outputs(&cfg.output.dir, &cfg.notifications.routes)?;
            }
            let metrics = Metrics::with_config(&cfg.metrics);
            if !cfg.metrics.addr.is_empty() {
                let addr = metrics
                    .serve(&cfg.metrics.addr)
                    .with_context(|| format!("cannot serve metrics on {}", cfg.metrics.addr))?;
                tracing::info!("metrics on http://{addr}/metrics");
            }
            tracing::info!(
                "running {} with {} worker(s){}, output in {}",
                cfg.name.as_deref().unwrap_or("dataflow"),
                cfg.pipeline.workers,
                if cfg.strict { ", strict" } else { "" },
                cfg.output.dir.display()
            );
            if matches!(cfg.source, SourceConfig::Simulator(_)) {
                stop_simulator_on_signal()?;
            }
            let report = dataflow::run(&cfg, &metrics)?;
            print_summary(&report, &cfg.output.dir)?;
        }
        Command::Simulate {
            chargers,
            hours,
            seed,
            out,
            labels,
            registry,
            watches,
            no_faults,
            fault_rate,
        } => {
            if chargers == 0 || hours == 0 {
                bail!("--chargers and --hours must be at least 1");
            }
            let sim = SimulatorConfig {
                chargers,
                hours,
                seed,
                faults: !no_faults,
                fault_rate,
                ..SimulatorConfig::default()
            };
            let fleet = Fleet::new(&sim, &[]);
            let file = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let n = write_all(&fleet, &mut w)
                .with_context(|| format!("cannot write {}", out.display()))?;
            w.flush()?;
            if let Some(path) = labels {
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                for l in fleet.labels() {
                    serde_json::to_writer(&mut f, l)?;
                    f.write_all(b"\n")?;
                }
                f.flush()?;
            }
            if let Some(path) = registry {
                std::fs::write(&path, serde_json::to_vec_pretty(&fleet.registry())?)?;
            }
            if let Some(path) = watches {
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                fleet.write_watches(&mut f)?;
                f.flush()?;
            }
            println!(
                "wrote {n} lines for {chargers} chargers over {hours} h to {}",
                out.display()
            );
        }
        Command::Produce { file, to } => {
            let started = std::time::Instant::now();
            let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                ))
            };
            let n = evflow::sinks::kafka::produce_lines(&to, input)?;
            println!(
                "produced {n} records to {to} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Command::Price {
            tariff,
            cdr,
            time_zone,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let priced = evflow::tariff::ocpi::price_cdr_document(
                &read(&tariff)?,
                &read(&cdr)?,
                time_zone.as_deref(),
            )?;
            println!("{priced}");
        }
        Command::Eval {
            labels,
            anomalies,
            json,
        } => {
            fn read<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Vec<T>> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                evflow::eval::parse_jsonl(&text)
                    .with_context(|| format!("bad line in {}", p.display()))
            }
            let report = evflow::eval::evaluate(
                &read(&labels)?,
                &read(&anomalies)?,
                &evflow::eval::EvalConfig::default(),
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", evflow::eval::format_table(&report));
            }
        }
        Command::Detect { csv, out } => {
            let cfg = evflow::stages::detector::DetectorConfig::default();
            let input = std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&csv)
                    .with_context(|| format!("cannot open {}", csv.display()))?,
            );
            let output = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let s = evflow::detect::detect_csv(input, output, &cfg).with_context(|| {
                format!("cannot score {} into {}", csv.display(), out.display())
            })?;
            println!(
                "scored {} rows of {} into {}: {} bad rows, {} bad values, max score {:.3}, {} rows with score >= {}",
                s.rows,
                csv.display(),
                out.display(),
                s.bad_rows,
                s.bad_values,
                s.max_score,
                s.anomalies,
                cfg.threshold
            );
        }
    }
    Ok(())
}

/// Removes what an earlier run wrote to `dir` (only evflow's own outputs).
fn clear_outputs(dir: &Path, routes: &[evflow::config::RouteConfig]) -> Result<()> {
    for table in [
        "sessions",
        "charging_periods",
        "revenue",
        "health",
        "uptime",
        "outages",
    ] {
        let p = dir.join(table);
        if p.exists() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let state = evflow::dataflow::commit::state_dir(dir);
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot remove {}", state.display()))?;
    }
    for file in [
        "anomalies.jsonl",
        "notifications.jsonl",
        "dead-letter.jsonl",
        "leakage.jsonl",
        "cdrs.jsonl",
    ] {
        let p = dir.join(file);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    // Route files too; not `delivery/`, whose outboxes may hold what is not delivered yet.
    for p in routes
        .iter()
        .filter_map(|r| r.jsonl.as_ref())
        .map(|f| dir.join(f))
    {
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(())
}

fn print_summary(r: &RunReport, out: &Path) -> Result<()> {
    let s = &r.summary;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mut o = std::io::stdout().lock();
    writeln!(o, "\nevflow run complete in {secs:.1} s")?;
    writeln!(o, "  input lines      {:>12}", r.input_lines)?;
    writeln!(
        o,
        "  events           {:>12}   ({:.0} events/s)",
        r.events,
        r.events as f64 / secs
    )?;
    writeln!(o, "  dead letters     {:>12}", s.dead_letters)?;
    writeln!(
        o,
        "  sessions         {:>12}   ({:.1} kWh)",
        s.sessions,
        s.energy_wh as f64 / 1000.0
    )?;
    for (cur, incl) in &s.revenue_incl_vat {
        let excl = s.revenue_excl_vat.get(cur).copied().unwrap_or_default();
        writeln!(
            o,
            "  revenue {cur:<8} {:>12} incl. VAT ({excl} excl.)",
            incl.to_string()
        )?;
    }
    writeln!(o, "  anomalies opened:")?;
    for (k, n) in &s.anomalies {
        writeln!(o, "    {k:<28} {n:>6}")?;
    }
    writeln!(o, "  notifications:")?;
    for (k, n) in &s.notifications {
        writeln!(o, "    {k:<28} {n:>6}")?;
    }
    if !s.leakage.is_empty() {
        writeln!(o, "  revenue leakage:")?;
        for (k, n) in &s.leakage {
            writeln!(o, "    {k:<28} {n:>6}")?;
        }
    }
    writeln!(
        o,
        "  uptime rows      {:>12}   ({} outages)",
        s.uptime_rows, s.outages
    )?;
    for (route, (delivered, dead, pending)) in &s.deliveries {
        writeln!(
            o,
            "  webhook {route}: {delivered} delivered, {dead} dead-lettered, {pending} pending"
        )?;
    }
    writeln!(o, "  outputs in {}/: sessions/ charging_periods/ revenue/ health/ uptime/ outages/ (Parquet), anomalies.jsonl, notifications.jsonl, leakage.jsonl, dead-letter.jsonl", out.display())?;
    writeln!(
        o,
        "\nRead the revenue with DuckDB (latest revision of each window):"
    )?;
    writeln!(
        o,
        "  duckdb -c \"SELECT window_start, site_id, payment_method, sum(sessions) AS sessions, sum(total_incl_vat) AS incl_vat, sum(net) AS net FROM (SELECT * FROM read_parquet('{}/revenue/*/*.parquet', hive_partitioning = true) QUALIFY row_number() OVER (PARTITION BY window_start, site_id, charge_point_id, payment_method, tariff_id, currency ORDER BY revision DESC) = 1) GROUP BY ALL ORDER BY window_start, site_id LIMIT 20\"",
        out.display()
    )?;
    Ok(())
}
