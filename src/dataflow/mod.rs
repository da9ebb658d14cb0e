//! Builds and drives the timely dataflow.
//!
//! Owns: the graph, the worker loop, event time (via [`watermark`]) and the run's lifecycle.
//!
//! ```text
//!  source ─ decode ─┬─ events ──(exchange by charge point)──▶ ChargerStages ──┐
//!  (per worker)     ├─ marks ───(broadcast)──────────────────▶     │           │
//!                   │                                               ▼           │
//!                   │                                 Aggregate (worker 0) ◀────┘
//!                   └─ dead letters ─────────────────────▶ Sinks (worker 0) ◀── records
//! ```
//!
//! The worker loop reads its source's chunks, decodes them (pure `ocpp`), and feeds three
//! inputs at the chunk's time. Operators hold no I/O; the sink operator is the only one that
//! writes, through `sinks`. Late-event policy: an event whose event time is already behind the
//! watermark when it arrives is *late*; it is counted (`evflow_late_events_total`) and applied
//! at once, as of its charger's current time — never dropped. A session it closes is marked
//! `late` and, if its revenue window was already written, produces a new revision of it.

pub mod commit;
pub mod operators;
pub mod watermark;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::config::{DataflowConfig, Registry, SourceConfig};
use crate::metrics::{label, Metrics};
use crate::model::{DeadLetter, Event, Output};
use crate::model::{PaymentEvent, WatchEvent};
use crate::ocpp::{DecodeOptions, DecodeStats, Decoder};
use crate::progress::Progress;
use crate::sinks::kafka::KafkaSink;
use crate::sinks::{OutputSinks, Summary};
use crate::sources::file::FileSource;
use crate::sources::kafka::KafkaSource;
use crate::sources::side_input::SideInputStart;
use crate::sources::simulator::{Fleet, SimulatorSource};
use crate::sources::stdin::StdinSource;
use crate::sources::watches::WatchConsumer;
use crate::sources::{Chunk, Poll, Source, SourceError};
use crate::stages::charger::ChargerStages;
use crate::stages::fleet::FleetDetectors;
use crate::stages::leakage::{LeakageConfig, LeakageLedger};
use crate::stages::revenue::RevenueWindows;
use crate::stages::{Reference, StageConfig};
use commit::{CommitError, Coordinator, RunIdentity, WorkerCommit};
use watermark::Mark;

#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataflow failed: {0}")]
    Timely(String),
    #[error("output failed: {0}")]
    Output(String),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub input_lines: u64,
    pub events: u64,
    pub elapsed: Duration,
    pub summary: Summary,
}

/// Simulated time per simulator chunk.
const SIM_SLICE_MS: i64 = 60_000;
/// Parquet files are closed whenever the watermark crosses a multiple of this.
const CHECKPOINT_EVERY_MS: i64 = 6 * 3_600_000;

/// Runs a dataflow to completion (a bounded source) or until the process is stopped.
pub fn run(cfg: &DataflowConfig, metrics: &Metrics) -> Result<RunReport, DataflowError> {
    let started = Instant::now();
    let mut registry = match &cfg.registry.path {
        Some(p) => Registry::load(p)?,
        None => Registry::default(),
    };
    let fleet = match &cfg.source {
        SourceConfig::Simulator(sim) => {
            let fleet = Fleet::new(sim, &cfg.maintenance);
            let generated = fleet.registry();
            registry.sites.extend(generated.sites);
            registry.stations.extend(generated.stations);
            registry.tokens.extend(generated.tokens);
            registry.plans.extend(generated.plans);
            // Ground truth of the injected faults, beside the outputs unless placed elsewhere.
            let labels = sim
                .labels
                .clone()
                .unwrap_or_else(|| cfg.output.dir.join("labels.jsonl"));
            write_labels(&fleet, &labels)?;
            Some(Arc::new(fleet))
        }
        SourceConfig::File { .. } | SourceConfig::Kafka(_) => None,
    };
    let ocpi_tariffs = match &cfg.revenue.ocpi_tariffs {
        Some(path) => crate::config::load_ocpi_tariffs(path)?,
        None => Vec::new(),
    };
    let reference = Arc::new(Reference::new(cfg, &registry, ocpi_tariffs)?);
    let leakage_cfg = LeakageConfig {
        grace: cfg.revenue.leakage.grace.0,
        amount_tolerance: cfg.revenue.leakage.amount_tolerance.0,
        meter_tolerance_wh: cfg.revenue.leakage.meter_tolerance_wh,
        meter_tolerance_pct: cfg.revenue.leakage.meter_tolerance_pct.0,
        payments: cfg.revenue.payments.is_some(),
    };
    let stage_cfg = Arc::new(StageConfig::from_dataflow(cfg));
    let workers = cfg.pipeline.workers;

    // A Kafka source commits (see `commit`): resume from the last commit, if any.
    let identity = match &cfg.source {
        SourceConfig::Kafka(k) => Some(RunIdentity {
            topic: k.topic.clone(),
            group: k.group.clone(),
            chunk_lines: cfg.pipeline.chunk_lines,
            commit_every_chunks: cfg.kafka.commit_every_chunks,
            workers,
        }),
        _ => None,
    };
    let cdrs = cfg.output.ocpi_cdrs.then(|| {
        (
            cfg.output.cdr_country_code.clone(),
            cfg.output.cdr_party_id.clone(),
        )
    });
    let restore_started = Instant::now();
    let mut restored = match &identity {
        Some(id) => commit::load(&cfg.output.dir, id)?,
        None => None,
    };
    let mut output_sinks = OutputSinks::open(
        &cfg.output.dir,
        metrics.clone(),
        restored.as_mut().and_then(|r| r.sinks.take()),
        cdrs.clone(),
    )?;
    if let Some(k) = &cfg.output.kafka {
        output_sinks = output_sinks.with_kafka(KafkaSink::open(k, &cfg.kafka, metrics)?);
    }
    let output_sinks = output_sinks.with_routes(&cfg.notifications.routes)?;
    let sinks = Arc::new(Mutex::new(Some(output_sinks)));
    let summary: Arc<Mutex<Option<Result<Summary, String>>>> = Arc::new(Mutex::new(None));
    let resume = restored.as_ref().map(|r| r.resume());
    // Side inputs — payment events (revenue leakage) and driver watches (notifications): a
    // file is read whole at the start of a fresh run; a Kafka topic is read from the last
    // commit's positions — to its end before the run (`stop=end`), or polled as the run goes
    // (worker 0). Fed in event-time order as the watermark passes them. Bad lines are
    // dead-lettered (`bad_payment_event`, `bad_watch_event`).
    let restored_aggregate_ref = restored.as_ref().and_then(|r| r.aggregate.as_ref());
    let payments = SideInputStart::<PaymentEvent>::open(
        cfg.revenue.payments.as_deref(),
        &cfg.kafka,
        &restored_aggregate_ref
            .map(|a| a.payment_positions.clone())
            .unwrap_or_default(),
        restored.is_none(),
    )?;
    let mut watches = SideInputStart::<WatchEvent>::open(
        cfg.notifications.watches.as_deref(),
        &cfg.kafka,
        &restored_aggregate_ref
            .map(|a| a.watch_positions().clone())
            .unwrap_or_default(),
        restored.is_none(),
    )?;
    // The simulator's drivers watch their local sites and chargers.
    if let (Some(f), None, true) = (&fleet, &cfg.notifications.watches, restored.is_none()) {
        watches.initial = f.watches();
    }
    let (initial_payments, initial_positions, payment_consumer) =
        (payments.initial, payments.positions, payments.consumer);
    let bad_payments: Vec<DeadLetter> = payments.bad.into_iter().chain(watches.bad).collect();
    let initial_watches = Arc::new(Mutex::new(Some((watches.initial, watches.positions))));
    let watch_consumer = Arc::new(Mutex::new(watches.consumer));
    let initial_payments = Arc::new(Mutex::new(Some((initial_payments, initial_positions))));
    let payment_consumer = Arc::new(Mutex::new(payment_consumer));
    let resumed_manifest = restored.as_ref().map(|r| r.manifest.clone());
    let restored_aggregate = Arc::new(Mutex::new(
        restored.as_mut().and_then(|r| r.aggregate.take()),
    ));
    let restored_stages = Arc::new(Mutex::new(restored.map(|r| r.stages).unwrap_or_default()));
    let coordinator = Arc::new(Coordinator::new(
        workers,
        resumed_manifest.as_ref().map_or(0, |m| m.epoch),
    ));

    let timely_cfg = if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    let cfg = Arc::new(cfg.clone());
    let worker_metrics = metrics.clone();
    let summary_slot = summary.clone();
    let guards = timely::execute(timely_cfg, move |worker| -> Result<u64, String> {
        let metrics = &worker_metrics;
        let index = worker.index();
        let peers = worker.peers();
        let mut events_in: InputHandleVec<u64, Event> = InputHandleVec::new();
        let mut marks_in: InputHandleVec<u64, Mark> = InputHandleVec::new();
        let mut dead_in: InputHandleVec<u64, Output> = InputHandleVec::new();
        let probe = ProbeHandle::new();
        let bound = cfg.pipeline.out_of_orderness.0;
        let stage_state = Rc::new(RefCell::new(operators::ChargerStageState::new(
            ChargerStages::new(stage_cfg.clone(), reference.clone()),
            bound,
        )));
        let aggregate_state = Rc::new(RefCell::new(operators::AggregateState::new(
            RevenueWindows::new(stage_cfg.revenue_window),
            LeakageLedger::new(leakage_cfg.clone()),
            reference.clone(),
            bound,
            FleetDetectors::new(stage_cfg.anomalies.fleet.clone()),
            cfg.notifications.clone(),
        )));
        // This worker's share of the last commit's state.
        if let Ok(mut snapshots) = restored_stages.lock() {
            let mut st = stage_state.borrow_mut();
            for snap in snapshots.iter_mut() {
                st.restore(snap, |cp| {
                    operators::charge_point_hash(cp) % peers as u64 == index as u64
                });
            }
            for (kind, n) in st.stages.open_anomalies() {
                metrics
                    .anomalies_open
                    .get_or_create(&label("kind", kind.as_str()))
                    .inc_by(n);
            }
        }
        let mut payments_live = None;
        let mut watches_live: Option<WatchConsumer> = None;
        if index == 0 {
            if let Some(snap) = restored_aggregate.lock().ok().and_then(|mut a| a.take()) {
                let mut agg = aggregate_state.borrow_mut();
                agg.restore(snap);
                for (kind, n) in agg.fleet.open_anomalies() {
                    metrics
                        .anomalies_open
                        .get_or_create(&label("kind", kind.as_str()))
                        .inc_by(n);
                }
            }
            if let Some((events, positions)) =
                initial_payments.lock().ok().and_then(|mut p| p.take())
            {
                aggregate_state
                    .borrow_mut()
                    .add_payments(events, &positions);
            }
            payments_live = payment_consumer.lock().ok().and_then(|mut c| c.take());
            if let Some((events, positions)) =
                initial_watches.lock().ok().and_then(|mut p| p.take())
            {
                aggregate_state
                    .borrow_mut()
                    .router
                    .add_watches(events, &positions);
            }
            watches_live = watch_consumer.lock().ok().and_then(|mut c| c.take());
        }
        let mut polled_payments = Vec::new();
        let mut polled_watches = Vec::new();
        let mut polled_bad = Vec::new();
        let worker_sinks = Rc::new(RefCell::new(if index == 0 {
            sinks.lock().ok().and_then(|mut s| s.take())
        } else {
            None
        }));
        worker.dataflow::<u64, _, _>(|scope| {
            let events = events_in.to_stream(scope);
            let marks = marks_in.to_stream(scope).broadcast();
            let dead = dead_in.to_stream(scope);
            let staged = operators::charger_stage(
                events,
                marks.clone(),
                stage_state.clone(),
                metrics.clone(),
            );
            let aggregated = operators::aggregate(
                staged,
                marks,
                aggregate_state.clone(),
                CHECKPOINT_EVERY_MS,
                metrics.clone(),
            );
            let all = aggregated.concat(dead);
            // The probe follows what the sinks have written (commits wait for it).
            operators::sink(all, worker_sinks.clone(), summary_slot.clone()).probe_with(&probe);
        });

        let mut source: Box<dyn Source> = match (&cfg.source, &fleet) {
            (SourceConfig::File { path }, _) if path.as_os_str() == "-" => {
                Box::new(StdinSource::new(cfg.pipeline.chunk_lines, index))
            }
            (SourceConfig::File { path }, _) => Box::new(
                FileSource::open(path, cfg.pipeline.chunk_lines, index, peers)
                    .map_err(|e| e.to_string())?,
            ),
            (SourceConfig::Simulator(_), Some(f)) => {
                Box::new(SimulatorSource::new(f.clone(), index, peers, SIM_SLICE_MS))
            }
            (SourceConfig::Simulator(_), None) => return Err("simulator without a fleet".into()),
            (SourceConfig::Kafka(k), _) => Box::new(
                KafkaSource::open(
                    k,
                    &cfg.kafka,
                    cfg.pipeline.chunk_lines,
                    index,
                    peers,
                    resume.as_ref(),
                    metrics,
                )
                .map_err(|e| e.to_string())?,
            ),
        };
        let mut commits = match &identity {
            Some(id) => Some(
                WorkerCommit::new(
                    coordinator.clone(),
                    index,
                    peers,
                    &cfg.output.dir,
                    id.clone(),
                    source.partitions(),
                    resumed_manifest.as_ref(),
                    metrics.clone(),
                )
                .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        if index == 0 {
            metrics
                .restore_duration
                .set(restore_started.elapsed().as_secs_f64());
        }
        let speed = match &cfg.source {
            SourceConfig::Simulator(s) => s.speed,
            SourceConfig::File { .. } | SourceConfig::Kafka(_) => None,
        };
        let mut decoder = Decoder::new(DecodeOptions {
            max_clock_skew: cfg.pipeline.max_clock_skew.0,
            max_delivery_delay: cfg.pipeline.max_delivery_delay.0,
        })
        .with_versions(registry.ocpp_versions())
        .with_strict(cfg.strict);
        let mut progress = (index == 0).then(|| Progress::new(source.progress()));
        let mut chunk = Chunk::default();
        let mut events: Vec<Event> = Vec::new();
        let mut dead = Vec::new();
        let mut stats = DecodeStats::default();
        let mut pacer = Pacer::new(speed);
        let mut lines = 0u64;
        // Whether the sinks have written everything so far (after a failure, the run ends
        // with an error and nothing more is committed).
        let output_ok = || !matches!(summary_slot.lock().as_deref(), Ok(Some(Err(_))));
        // What a commit snapshot of this worker holds (see `commit`).
        let mut save = |w: &mut std::io::BufWriter<std::fs::File>| -> Result<bool, CommitError> {
            let snap = |e: bincode::Error| CommitError::Snapshot(e.to_string());
            let mut sinks = worker_sinks.borrow_mut();
            bincode::serialize_into(&mut *w, &sinks.is_some()).map_err(snap)?;
            if let Some(s) = sinks.as_mut() {
                if !output_ok() {
                    return Ok(false);
                }
                if let Err(e) = s.save(w) {
                    tracing::warn!("cannot commit now: {e}");
                    return Ok(false);
                }
            }
            bincode::serialize_into(&mut *w, &(index == 0)).map_err(snap)?;
            if index == 0 {
                aggregate_state.borrow().save(w).map_err(snap)?;
            }
            stage_state.borrow().save(w).map_err(snap)?;
            Ok(true)
        };
        // Bad payment lines go to the dead letters once (not again when resuming a commit).
        let mut bad_payments = if index == 0 {
            bad_payments.clone()
        } else {
            Vec::new()
        };
        for d in &bad_payments {
            count_dead_letter(metrics, d);
        }
        // Chunks in flight before the worker waits for the pipeline to catch up.
        let in_flight = 4 * peers as u64;
        // Holds the inputs at the commit boundary and commits there (see `commit`); the
        // value: whether every worker's source has ended. `ended`: this worker's has.
        macro_rules! commit_at_boundary {
            ($c:expr, $ended:expr) => {{
                let c: &mut WorkerCommit = $c;
                events_in.advance_to(c.boundary());
                marks_in.advance_to(c.boundary());
                dead_in.advance_to(c.boundary());
                let positions = source.positions().unwrap_or_default();
                let mut wait = commit::Waiting {
                    step: &mut || {
                        worker.step_or_park(Some(Duration::from_millis(1)));
                    },
                    written_before: &|t| !probe.less_than(&t),
                };
                let all_ended = c
                    .commit(false, $ended, positions, &mut wait, &mut save)
                    .map_err(|e| e.to_string())?;
                c.pass_upstream(source.as_mut(), false, &mut wait)
                    .map_err(|e| e.to_string())?;
                all_ended
            }};
        }
        loop {
            if let Some(c) = commits.as_mut() {
                // Every chunk before the boundary is handed out: commit there first.
                let next = source.next_time();
                if next == u64::MAX {
                    break;
                }
                if next >= c.boundary() {
                    commit_at_boundary!(c, false);
                    continue;
                }
            }
            chunk.clear();
            match source.next_chunk(&mut chunk).map_err(|e| e.to_string())? {
                Poll::End => break,
                Poll::Pending => {
                    worker.step_or_park(Some(Duration::from_millis(10)));
                    if let Some(c) = commits.as_mut() {
                        let mut wait = commit::Waiting {
                            step: &mut || {},
                            written_before: &|_| true,
                        };
                        c.pass_upstream(source.as_mut(), false, &mut wait)
                            .map_err(|e| e.to_string())?;
                    }
                    continue;
                }
                Poll::Ready => {}
            }
            let t = chunk.time;
            events_in.advance_to(t);
            marks_in.advance_to(t);
            dead_in.advance_to(t);
            stats.clear();
            for (seq, line) in chunk.lines() {
                decoder.decode_line(seq, line, &mut events, &mut dead, &mut stats);
            }
            lines += stats.lines;
            record_stats(metrics, &stats);
            // A chunk without events moves event time only when it ends its partition.
            if stats.max_event_time.is_some() || chunk.ended {
                marks_in.send(Mark {
                    max_event_time: stats.max_event_time,
                    partition: chunk.partition,
                    partitions: chunk.partitions.max(1),
                    ended: chunk.ended,
                });
            }
            events_in.send_batch(&mut events);
            events.clear();
            for d in dead.drain(..).chain(bad_payments.drain(..)) {
                dead_in.send(Output::DeadLetter(d));
            }
            // Inputs never pass the next commit boundary before the commit there.
            let next = commits
                .as_ref()
                .map_or(source.next_time(), |c| source.next_time().min(c.boundary()));
            events_in.advance_to(next);
            marks_in.advance_to(next);
            dead_in.advance_to(next);
            if let Some(m) = stats.max_event_time {
                pacer.wait_until(m, || {
                    worker.step_or_park(Some(Duration::from_millis(5)));
                });
            }
            while probe.less_than(&t.saturating_sub(in_flight)) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            worker.step();
            // Live payment events (worker 0): whatever has arrived joins the aggregation.
            if let Some(c) = payments_live.as_mut().filter(|c| !c.stop_at_end) {
                c.poll(Duration::ZERO, &mut polled_payments, &mut polled_bad)
                    .map_err(|e| e.to_string())?;
                aggregate_state
                    .borrow_mut()
                    .add_payments(polled_payments.drain(..), c.positions());
                for b in polled_bad.drain(..) {
                    let d = b.into_dead_letter();
                    count_dead_letter(metrics, &d);
                    dead_in.send(Output::DeadLetter(d));
                }
            }
            // Live watch events (worker 0), likewise.
            if let Some(c) = watches_live.as_mut().filter(|c| !c.stop_at_end) {
                c.poll(Duration::ZERO, &mut polled_watches, &mut polled_bad)
                    .map_err(|e| e.to_string())?;
                aggregate_state
                    .borrow_mut()
                    .router
                    .add_watches(polled_watches.drain(..), c.positions());
                for b in polled_bad.drain(..) {
                    let d = b.into_dead_letter();
                    count_dead_letter(metrics, &d);
                    dead_in.send(Output::DeadLetter(d));
                }
            }
            if let Some(p) = progress.as_mut() {
                p.update(source.progress(), metrics.events_decoded.get());
            }
        }
        // This worker's input has ended; with commits, it keeps meeting the others at every
        // boundary until every worker's has.
        if let Some(c) = commits.as_mut() {
            while !commit_at_boundary!(c, true) {}
        }
        drop(events_in);
        drop(marks_in);
        drop(dead_in);
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        // Everything is written and flushed: the final commit.
        if let Some(c) = commits.as_mut() {
            if !output_ok() {
                return Err("the outputs failed; nothing more is committed".into());
            }
            let positions = source.positions().unwrap_or_default();
            let mut wait = commit::Waiting {
                step: &mut || {
                    worker.step_or_park(Some(Duration::from_millis(1)));
                },
                written_before: &|_| true,
            };
            c.commit(true, true, positions, &mut wait, &mut save)
                .map_err(|e| e.to_string())?;
            c.pass_upstream(source.as_mut(), true, &mut wait)
                .map_err(|e| e.to_string())?;
        }
        // Everything is written (and committed): wait for the webhooks to acknowledge it.
        if let Some(s) = worker_sinks.borrow_mut().as_mut() {
            s.drain_deliveries(Duration::from_millis(
                cfg.notifications.drain_timeout.0.max(0) as u64,
            ));
            if let Ok(mut slot) = summary_slot.lock() {
                if let Some(Ok(summary)) = slot.as_mut() {
                    summary.deliveries = s.summary.deliveries.clone();
                }
            }
        }
        if let Some(c) = payments_live.as_ref() {
            c.commit();
        }
        if let Some(c) = watches_live.as_ref() {
            c.commit();
        }
        if let Some(p) = progress.as_mut() {
            p.finish(metrics.events_decoded.get());
        }
        Ok(lines)
    })
    .map_err(DataflowError::Timely)?;

    let mut total_lines = 0;
    for r in guards.join() {
        match r {
            Ok(Ok(n)) => total_lines += n,
            Ok(Err(e)) | Err(e) => return Err(DataflowError::Timely(e)),
        }
    }
    let summary = summary
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .unwrap_or_else(|| Err("the sink did not finish".into()))
        .map_err(DataflowError::Output)?;
    let events = metrics.events_decoded.get();
    Ok(RunReport {
        input_lines: total_lines,
        events,
        elapsed: started.elapsed(),
        summary,
    })
}

/// A dead letter produced outside the decoder (a bad payment event), in the decoder's metrics.
fn count_dead_letter(m: &Metrics, d: &DeadLetter) {
    m.decode_errors
        .get_or_create(&label("reason", d.reason.as_str()))
        .inc();
    m.dead_letters.inc();
}

fn record_stats(m: &Metrics, s: &DecodeStats) {
    m.input_lines.inc_by(s.lines);
    let mut n = 0;
    for (action, c) in s.events_by_action.iter() {
        m.events.get_or_create(&label("action", action)).inc_by(c);
        n += c;
    }
    m.events_decoded.inc_by(n);
    for (action, c) in &s.ignored_by_action {
        m.events_ignored
            .get_or_create(&label("action", action.as_str()))
            .inc_by(*c);
    }
    for (reason, c) in &s.dead_by_reason {
        m.decode_errors
            .get_or_create(&label("reason", reason.as_str()))
            .inc_by(*c);
        m.dead_letters.inc_by(*c);
    }
    m.clock_skew_events.inc_by(s.clock_skew);
    for (quirk, c) in &s.quirks {
        m.ocpp_quirks
            .get_or_create(&label("quirk", *quirk))
            .inc_by(*c);
    }
}

fn write_labels(fleet: &Fleet, path: &std::path::Path) -> Result<(), DataflowError> {
    use std::io::Write;
    let io = |source| DataflowError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for l in fleet.labels() {
        serde_json::to_writer(&mut f, l).map_err(|e| io(e.into()))?;
        f.write_all(b"\n").map_err(io)?;
    }
    f.flush().map_err(io)
}

/// Real-time pacing: event time advances at `speed` × wall-clock time.
struct Pacer {
    speed: Option<f64>,
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    fn new(speed: Option<f64>) -> Self {
        Pacer {
            speed: speed.filter(|s| *s > 0.0),
            origin: None,
        }
    }

    fn wait_until(&mut self, event_time: i64, mut idle: impl FnMut()) {
        let Some(speed) = self.speed else { return };
        let (t0, wall0) = *self.origin.get_or_insert((event_time, Instant::now()));
        let due =
            wall0 + Duration::from_secs_f64(((event_time - t0).max(0) as f64 / 1000.0) / speed);
        while Instant::now() < due {
            idle();
        }
    }
}
