//! Sources: where OCPP-J envelope lines come from (a file, stdin, the built-in simulator, a
//! Kafka topic).
//!
//! Owns: all input I/O and the cutting of input into [`Chunk`]s. A source never decodes OCPP
//! (that is `ocpp`'s job) and never touches dataflow state: it hands raw lines and their
//! sequence numbers to the worker loop in `dataflow`.
//!
//! Chunks are the unit of progress. Each chunk has a `time` (the timely timestamp its events
//! enter the dataflow with); a worker's source yields chunks with strictly increasing times,
//! and the chunk times of all workers together, and each line's `seq`, are a function of the
//! input alone — so a run's output does not depend on the number of workers or on timing.

pub mod file;
pub mod kafka;
pub mod payments;
pub mod side_input;
pub mod simulator;
pub mod stdin;
pub mod watches;

/// A batch of newline-separated envelope lines.
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    /// The timely timestamp of this chunk.
    pub time: u64,
    /// Lines, each terminated by `\n`.
    pub data: Vec<u8>,
    /// One sequence number per line: a total order of all lines of the input.
    pub seqs: Vec<u64>,
    /// The input partition the chunk belongs to (a Kafka partition; 0 for the other sources).
    pub partition: u32,
    /// How many partitions the input has (0 is read as 1).
    pub partitions: u32,
    /// The chunk is its partition's last (or, live, the partition is idle): the partition
    /// stops holding the watermark back (see `dataflow::watermark`).
    pub ended: bool,
}

impl Chunk {
    pub fn clear(&mut self) {
        self.data.clear();
        self.seqs.clear();
        self.ended = false;
    }

    /// Iterates over `(seq, line)` pairs, lines without their `\n`.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let mut rest: &[u8] = &self.data;
        self.seqs.iter().map(move |&seq| {
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or(&[]);
            (seq, line)
        })
    }

    pub fn push_line(&mut self, seq: u64, line: &[u8]) {
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.seqs.push(seq);
    }
}

/// What a source has to say when asked for its next chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The chunk was filled (possibly with no lines: time still advances).
    Ready,
    /// Nothing now (a live source waiting for data); ask again later.
    Pending,
    /// The input is exhausted.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    Kafka(String),
}

/// Progress of a bounded source, for the progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceProgress {
    pub done: u64,
    pub total: Option<u64>,
    /// What `done`/`total` count (`bytes`, `simulated seconds`).
    pub unit: &'static str,
}

/// Where a resumable source (Kafka) stands in one input partition after the chunks it has
/// handed out: a commit records it (`dataflow::commit`), a restart continues from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub partition: u32,
    /// The next offset to read; `None` if nothing has been read (the start position then
    /// applies again: the group's committed offset, else the earliest).
    pub next_offset: Option<i64>,
    /// The partition has ended (`stop=end`).
    pub done: bool,
}

/// Where a restarted source continues: the positions of a commit and the index of the
/// next chunk of every partition (chunk times continue where the commit left them).
#[derive(Clone, Debug)]
pub struct Resume {
    pub positions: Vec<Position>,
    pub next_chunk: u64,
    /// Partitions that had ended stay ended (a restart in the middle of a bounded run).
    pub keep_done: bool,
}

/// One worker's view of a source.
pub trait Source {
    /// Fills `chunk` (cleared by the caller) with the next chunk this worker owns.
    fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<Poll, SourceError>;
    /// A lower bound on the time of every chunk this worker will still produce.
    fn next_time(&self) -> u64;
    fn progress(&self) -> SourceProgress;
    /// How many input partitions the source has (all workers together).
    fn partitions(&self) -> u32 {
        1
    }
    /// A resumable source's positions after the chunks it has handed out (its partitions
    /// only); `None` for a source that cannot resume (a file, stdin, the simulator).
    fn positions(&self) -> Option<Vec<Position>> {
        None
    }
    /// The positions are committed (a manifest holds them): a source with an upstream
    /// notion of position (a Kafka consumer group) records them there too. `sync`: wait
    /// for it (at the end of a run).
    fn commit(&mut self, _positions: &[Position], _sync: bool) -> Result<(), SourceError> {
        Ok(())
    }
}
