//! The commit protocol: exactly-once Parquet output across crashes for a resumable source
//! (Kafka). `docs/commit-protocol.md` is the full description; in short:
//!
//! - **Boundaries.** Chunk times are a function of the input (`sources`). Every
//!   `commit_every_chunks × P` chunk times (P: the topic's partitions) is a commit boundary `B`:
//!   every partition has handed out exactly its chunks before `B`. Every worker holds its inputs
//!   at `B` until the commit at `B` is made, so no operator anywhere has seen anything at or
//!   after `B`, and once the probe (which follows the sinks) reaches `B`, every record of the
//!   chunks before `B` has been handed to the sinks.
//! - **Snapshots.** Then every worker writes its operators' state — open sessions, anomalies,
//!   health accumulators, events waiting for the watermark, the watermark itself; on worker 0
//!   also the revenue windows and the sinks' state (rows buffered for Parquet, the tables' file
//!   numbers, the JSONL files' lengths, after syncing them and waiting for Kafka
//!   acknowledgements) — to `OUT/_state/epoch-E/worker-I.bin` (temporary name, fsync, rename).
//! - **Manifest.** When every worker has written its snapshot, worker 0 writes
//!   `OUT/_state/manifest.json` (atomically): the epoch, the boundary, every partition's next
//!   offset, the snapshot files. The manifest *is* the commit. Only after it are the consumer
//!   group's offsets committed (for monitoring; a restart reads the manifest).
//! - **Restart.** The manifest's snapshots are loaded (each worker takes the charge points it
//!   owns, so the worker count may change), Parquet files numbered after the commit's file
//!   numbers are deleted (the replay writes them again, identically), JSONL files are cut back
//!   to their committed length, and every partition is read again from its committed offset
//!   with its chunk index, so chunk times, marks and the watermark repeat exactly.
//!
//! Owns: the state directory `OUT/_state/`, the manifest format and the coordination of the
//! workers at a boundary. What a snapshot holds is each operator's business (`operators`,
//! `sinks`); this module only frames it. The coordination is in-process (the workers of one
//! `evflow run`), which is what `pipeline.workers` gives.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::operators::{AggregateSnapshot, StageSnapshot};
use crate::metrics::Metrics;
use crate::sinks::{OutputSinks, SinkState};
use crate::sources::{Position, Resume};

/// The state directory under the output directory (`_`: ignored by Spark/Hive globs).
pub const STATE_DIR: &str = "_state";
const MANIFEST: &str = "manifest.json";
// 2: the aggregation's snapshot holds the notification router; the sinks', route lengths.
const VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the output directory's commit state does not fit this run: {0}")]
    Mismatch(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CommitError + '_ {
    move |source| CommitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The commit record: `OUT/_state/manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    /// Commits of this output directory, counted from 1.
    pub epoch: u64,
    /// The chunk time the snapshot was taken at: every chunk before it is in the outputs
    /// or in the snapshot, none after it.
    pub boundary: u64,
    /// Taken at the end of a bounded run (after its final flush): a later run continues
    /// from it with every partition open again.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub workers: usize,
    pub topic: String,
    pub group: String,
    pub partitions: u32,
    pub chunk_lines: usize,
    pub commit_every_chunks: u64,
    /// Every partition's position at the boundary, in partition order.
    pub positions: Vec<Position>,
    /// Snapshot files, relative to the state directory, in worker order.
    pub snapshots: Vec<String>,
    /// Wall-clock time of the commit (informational).
    pub committed_at: String,
}

/// What identifies the run's input and chunking: a manifest of another input is refused.
#[derive(Clone, Debug)]
pub struct RunIdentity {
    pub topic: String,
    pub group: String,
    pub chunk_lines: usize,
    pub commit_every_chunks: u64,
    pub workers: usize,
}

/// A manifest and its snapshots, read at start.
pub struct Restored {
    pub manifest: Manifest,
    pub sinks: Option<SinkState>,
    pub aggregate: Option<AggregateSnapshot>,
    /// Every worker's charger stage, to be shared out by charge point.
    pub stages: Vec<StageSnapshot>,
}

impl Restored {
    /// Where the source continues.
    pub fn resume(&self) -> Resume {
        let p = self.manifest.partitions.max(1) as u64;
        Resume {
            positions: self.manifest.positions.clone(),
            next_chunk: self.manifest.boundary / p,
            keep_done: !self.manifest.is_final,
        }
    }
}

pub fn state_dir(out_dir: &Path) -> PathBuf {
    out_dir.join(STATE_DIR)
}

/// Whether `out_dir` holds a commit to continue from.
pub fn has_manifest(out_dir: &Path) -> bool {
    state_dir(out_dir).join(MANIFEST).is_file()
}

fn epoch_dir_name(epoch: u64) -> String {
    format!("epoch-{epoch:012}")
}

/// Reads the last commit of `out_dir`, if any, and removes snapshot directories it does not
/// reference (left by a crash between a snapshot and its manifest).
pub fn load(out_dir: &Path, run: &RunIdentity) -> Result<Option<Restored>, CommitError> {
    let started = Instant::now();
    let dir = state_dir(out_dir);
    let path = dir.join(MANIFEST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Snapshots without a manifest: a crash before the first commit.
            remove_stale(&dir, None, None)?;
            return Ok(None);
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| CommitError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if manifest.version != VERSION {
        return Err(CommitError::Mismatch(format!(
            "manifest version {} (this evflow writes {VERSION})",
            manifest.version
        )));
    }
    if manifest.topic != run.topic || manifest.group != run.group {
        return Err(CommitError::Mismatch(format!(
            "{} holds the commits of topic {:?}, group {:?}, not {:?}, {:?}; use another output \
             directory",
            out_dir.display(),
            manifest.topic,
            manifest.group,
            run.topic,
            run.group
        )));
    }
    if manifest.chunk_lines != run.chunk_lines
        || manifest.commit_every_chunks != run.commit_every_chunks
    {
        tracing::warn!(
            "chunking changed since the last commit (chunk_lines {} → {}, commit_every_chunks \
             {} → {}): the run continues exactly once, but chunk times (and so late-event \
             decisions) differ from an uninterrupted run",
            manifest.chunk_lines,
            run.chunk_lines,
            manifest.commit_every_chunks,
            run.commit_every_chunks
        );
    }
    let mut sinks = None;
    let mut aggregate = None;
    let mut stages = Vec::new();
    for (i, name) in manifest.snapshots.iter().enumerate() {
        let file = dir.join(name);
        let corrupt = |detail: String| CommitError::Corrupt {
            path: file.clone(),
            detail,
        };
        let mut r = BufReader::new(File::open(&file).map_err(io_err(&file))?);
        let (version, epoch, worker): (u32, u64, u32) =
            bincode::deserialize_from(&mut r).map_err(|e| corrupt(e.to_string()))?;
        if version != VERSION || epoch != manifest.epoch || worker as usize != i {
            return Err(corrupt(format!(
                "snapshot of version {version}, epoch {epoch}, worker {worker}; the manifest \
                 expects {VERSION}, {}, {i}",
                manifest.epoch
            )));
        }
        let has_sinks: bool =
            bincode::deserialize_from(&mut r).map_err(|e| corrupt(e.to_string()))?;
        if has_sinks {
            sinks = Some(OutputSinks::read_state(&mut r).map_err(|e| corrupt(e.to_string()))?);
        }
        let has_aggregate: bool =
            bincode::deserialize_from(&mut r).map_err(|e| corrupt(e.to_string()))?;
        if has_aggregate {
            aggregate = Some(AggregateSnapshot::read(&mut r).map_err(|e| corrupt(e.to_string()))?);
        }
        stages.push(
            super::operators::ChargerStageState::read_snapshot(&mut r)
                .map_err(|e| corrupt(e.to_string()))?,
        );
    }
    remove_stale(&dir, Some(manifest.epoch), None)?;
    tracing::info!(
        "resuming from commit {} (boundary {}, {} worker snapshot(s), {}) read in {:.0} ms",
        manifest.epoch,
        manifest.boundary,
        manifest.snapshots.len(),
        manifest.committed_at,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(Some(Restored {
        manifest,
        sinks,
        aggregate,
        stages,
    }))
}

/// Removes snapshot directories other than `keep`'s; with `below`, only those of older epochs.
fn remove_stale(dir: &Path, keep: Option<u64>, below: Option<u64>) -> Result<(), CommitError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(epoch) = name
            .to_str()
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if Some(epoch) == keep || below.is_some_and(|b| epoch >= b) {
            continue;
        }
        let path = entry.path();
        fs::remove_dir_all(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), CommitError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), CommitError> {
    Ok(())
}

/// What the workers tell each other about one epoch.
#[derive(Default)]
struct Round {
    reported: usize,
    read: usize,
    positions: Vec<Position>,
    all_ended: bool,
    committable: bool,
    bytes: u64,
}

/// What every worker learns once all have reported an epoch.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub positions: Vec<Position>,
    pub all_ended: bool,
    pub committable: bool,
    pub bytes: u64,
}

/// The in-process meeting point of the workers at a commit.
pub struct Coordinator {
    workers: usize,
    rounds: Mutex<BTreeMap<u64, Round>>,
    /// The last epoch whose manifest is written.
    committed: AtomicU64,
}

impl Coordinator {
    pub fn new(workers: usize, committed: u64) -> Self {
        Coordinator {
            workers,
            rounds: Mutex::new(BTreeMap::new()),
            committed: AtomicU64::new(committed),
        }
    }

    fn report(&self, epoch: u64, positions: &[Position], ended: bool, ok: bool, bytes: u64) {
        let Ok(mut rounds) = self.rounds.lock() else {
            return;
        };
        let r = rounds.entry(epoch).or_insert_with(|| Round {
            all_ended: true,
            committable: true,
            ..Round::default()
        });
        r.reported += 1;
        r.positions.extend_from_slice(positions);
        r.all_ended &= ended;
        r.committable &= ok;
        r.bytes += bytes;
    }

    /// The epoch's outcome once every worker has reported it (each worker reads it once).
    fn outcome(&self, epoch: u64) -> Option<Outcome> {
        let mut rounds = self.rounds.lock().ok()?;
        let r = rounds.get_mut(&epoch)?;
        if r.reported < self.workers {
            return None;
        }
        r.read += 1;
        let mut positions = r.positions.clone();
        positions.sort_by_key(|p| p.partition);
        let out = Outcome {
            positions,
            all_ended: r.all_ended,
            committable: r.committable,
            bytes: r.bytes,
        };
        if r.read >= self.workers {
            rounds.remove(&epoch);
        }
        Some(out)
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

/// How a worker waits: run the dataflow a little, and tell whether everything before a time
/// has been written.
pub struct Waiting<'a> {
    pub step: &'a mut dyn FnMut(),
    pub written_before: &'a dyn Fn(u64) -> bool,
}

/// One worker's side of the protocol.
pub struct WorkerCommit {
    coordinator: std::sync::Arc<Coordinator>,
    index: usize,
    peers: usize,
    dir: PathBuf,
    run: RunIdentity,
    partitions: u32,
    step: u64,
    boundary: u64,
    epoch: u64,
    /// This worker's positions of commits whose manifest may not be written yet.
    upstream: Vec<(u64, Vec<Position>)>,
    metrics: Metrics,
}

impl WorkerCommit {
    /// `partitions`: the source's; `resumed`: the manifest the run started from.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        coordinator: std::sync::Arc<Coordinator>,
        index: usize,
        peers: usize,
        out_dir: &Path,
        run: RunIdentity,
        partitions: u32,
        resumed: Option<&Manifest>,
        metrics: Metrics,
    ) -> Result<WorkerCommit, CommitError> {
        let step = run.commit_every_chunks.max(1) * partitions.max(1) as u64;
        if let Some(m) = resumed {
            if m.partitions != partitions {
                return Err(CommitError::Mismatch(format!(
                    "topic {} had {} partition(s) at the last commit and has {partitions} now",
                    m.topic, m.partitions
                )));
            }
        }
        let dir = state_dir(out_dir);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(WorkerCommit {
            coordinator,
            index,
            peers,
            dir,
            run,
            partitions,
            step,
            // A fresh run commits at 0 first: a crash before its next commit then restarts
            // from the outputs as they were (files numbered on, JSONL lengths), not from
            // whatever it had written meanwhile.
            boundary: resumed.map_or(0, |m| m.boundary + step),
            epoch: resumed.map_or(0, |m| m.epoch),
            upstream: Vec::new(),
            metrics,
        })
    }

    /// The next boundary: the worker's inputs may not pass it before the commit there.
    pub fn boundary(&self) -> u64 {
        self.boundary
    }

    /// Commits at the current boundary (or, `is_final`, after the end of the input): waits
    /// until everything before it is written, writes this worker's snapshot with `save`,
    /// meets the other workers, and (worker 0) writes the manifest. `ended`: this worker's
    /// source has ended. Returns whether every worker's source has ended. `save` returns
    /// `false` when the outputs cannot be made durable now (the commit is then skipped).
    pub fn commit(
        &mut self,
        is_final: bool,
        ended: bool,
        positions: Vec<Position>,
        wait: &mut Waiting<'_>,
        save: &mut dyn FnMut(&mut BufWriter<File>) -> Result<bool, CommitError>,
    ) -> Result<bool, CommitError> {
        let boundary = self.boundary;
        if !is_final {
            while !(wait.written_before)(boundary) {
                (wait.step)();
            }
        }
        let started = Instant::now();
        self.epoch += 1;
        let epoch = self.epoch;
        let epoch_dir = self.dir.join(epoch_dir_name(epoch));
        fs::create_dir_all(&epoch_dir).map_err(io_err(&epoch_dir))?;
        let name = format!("worker-{}.bin", self.index);
        let path = epoch_dir.join(&name);
        let tmp = epoch_dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        bincode::serialize_into(&mut w, &(VERSION, epoch, self.index as u32))
            .map_err(|e| CommitError::Snapshot(e.to_string()))?;
        let ok = save(&mut w)?;
        let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        let bytes = file.metadata().map_err(io_err(&tmp))?.len();
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.coordinator.report(epoch, &positions, ended, ok, bytes);
        let outcome = loop {
            if let Some(o) = self.coordinator.outcome(epoch) {
                break o;
            }
            (wait.step)();
        };
        if self.index == 0 {
            if outcome.committable {
                self.write_manifest(epoch, boundary, is_final, &outcome, &epoch_dir)?;
                remove_stale(&self.dir, Some(epoch), Some(epoch))?;
                self.coordinator.committed.store(epoch, Ordering::Release);
                let m = &self.metrics;
                m.commits.inc();
                m.commit_duration.observe(started.elapsed().as_secs_f64());
                m.snapshot_bytes.set(outcome.bytes as i64);
                m.last_commit.set(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                for p in &outcome.positions {
                    if let Some(o) = p.next_offset {
                        m.kafka_committed_offset
                            .get_or_create(&crate::metrics::labels2(
                                "topic",
                                &self.run.topic,
                                "partition",
                                p.partition.to_string(),
                            ))
                            .set(o);
                    }
                }
            } else {
                self.metrics.commits_postponed.inc();
                tracing::warn!(
                    "commit {epoch} postponed: the outputs could not be made durable (see above)"
                );
                let _ = fs::remove_dir_all(&epoch_dir);
                // The epoch number is not reused: the next commit gets a new directory.
            }
        }
        if outcome.committable {
            self.upstream.push((epoch, positions));
        }
        if !is_final {
            self.boundary += self.step;
        }
        Ok(outcome.all_ended)
    }

    fn write_manifest(
        &self,
        epoch: u64,
        boundary: u64,
        is_final: bool,
        outcome: &Outcome,
        epoch_dir: &Path,
    ) -> Result<(), CommitError> {
        sync_dir(epoch_dir)?;
        let manifest = Manifest {
            version: VERSION,
            epoch,
            boundary,
            is_final,
            workers: self.peers,
            topic: self.run.topic.clone(),
            group: self.run.group.clone(),
            partitions: self.partitions,
            chunk_lines: self.run.chunk_lines,
            commit_every_chunks: self.run.commit_every_chunks,
            positions: outcome.positions.clone(),
            snapshots: (0..self.peers)
                .map(|i| format!("{}/worker-{i}.bin", epoch_dir_name(epoch)))
                .collect(),
            committed_at: crate::time::format_rfc3339(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
        };
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| CommitError::Snapshot(e.to_string()))?;
        f.write_all(&text).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)
    }

    /// Passes committed positions on to the source (the consumer group's offsets) once
    /// their manifest is written. `sync`: wait for the last commit's manifest and for the
    /// group commit (the end of a run).
    pub fn pass_upstream(
        &mut self,
        source: &mut dyn crate::sources::Source,
        sync: bool,
        wait: &mut Waiting<'_>,
    ) -> Result<(), crate::sources::SourceError> {
        if sync {
            if let Some((last, _)) = self.upstream.last() {
                let deadline = Instant::now() + std::time::Duration::from_secs(60);
                while self.coordinator.committed() < *last && Instant::now() < deadline {
                    (wait.step)();
                }
            }
        }
        let committed = self.coordinator.committed();
        let ready = self.upstream.iter().rposition(|(e, _)| *e <= committed);
        if let Some(i) = ready {
            let positions = self.upstream[i].1.clone();
            self.upstream.drain(..=i);
            source.commit(&positions, sync)?;
        }
        Ok(())
    }
}
