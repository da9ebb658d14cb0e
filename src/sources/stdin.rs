//! Stdin source: a live stream of envelope lines (`--input -`).
//!
//! Owns: reading stdin on a thread of its own, so the worker never blocks on a read: a chunk
//! holds whatever lines have arrived (up to `chunk_lines`), and the pipeline keeps up with
//! a live feed such as `kafka-console-consumer … | evflow run … --input -`. Only worker 0
//! reads stdin; its chunks have times 0, 1, 2, … and lines are numbered from 1.

use std::io::BufRead;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use super::{Chunk, Poll, Source, SourceError, SourceProgress};

pub struct StdinSource {
    lines: Option<Receiver<std::io::Result<Vec<u8>>>>,
    chunk_lines: usize,
    next_time: u64,
    seq: u64,
    bytes: u64,
}

impl StdinSource {
    /// Worker `index` of the run: only worker 0 reads.
    pub fn new(chunk_lines: usize, index: usize) -> StdinSource {
        let lines = (index == 0).then(|| {
            // Bounded: a fast producer waits for the pipeline instead of filling memory.
            let (tx, rx) = sync_channel(chunk_lines * 4);
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                let mut lock = stdin.lock();
                loop {
                    let mut buf = Vec::new();
                    match lock.read_until(b'\n', &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {
                            if tx.send(Ok(buf)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
            });
            rx
        });
        StdinSource {
            lines,
            chunk_lines,
            next_time: 0,
            seq: 0,
            bytes: 0,
        }
    }
}

impl Source for StdinSource {
    fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<Poll, SourceError> {
        let Some(rx) = &self.lines else {
            return Ok(Poll::End);
        };
        let mut ended = false;
        while chunk.seqs.len() < self.chunk_lines {
            match rx.try_recv() {
                Ok(Ok(line)) => {
                    self.seq += 1;
                    self.bytes += line.len() as u64;
                    let mut l: &[u8] = &line;
                    while let [rest @ .., b'\n' | b'\r'] = l {
                        l = rest;
                    }
                    if !l.iter().all(u8::is_ascii_whitespace) {
                        chunk.push_line(self.seq, l);
                    }
                }
                Ok(Err(source)) => {
                    return Err(SourceError::Io {
                        path: "stdin".into(),
                        source,
                    })
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        if chunk.seqs.is_empty() {
            if ended {
                self.lines = None;
                return Ok(Poll::End);
            }
            return Ok(Poll::Pending);
        }
        chunk.time = self.next_time;
        self.next_time += 1;
        Ok(Poll::Ready)
    }

    fn next_time(&self) -> u64 {
        self.next_time
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            done: self.bytes,
            total: None,
            unit: "bytes",
        }
    }
}
