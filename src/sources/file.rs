//! File and stdin source: one envelope per line.
//!
//! Owns: reading the file and cutting it into chunks of `chunk_lines` lines. Chunk `c` holds
//! lines `c·L+1 ..= (c+1)·L` (1-based line numbers are the `seq`s); with N workers, worker `w`
//! owns the chunks with `c mod N = w`. Every worker reads the whole file but keeps only its own
//! chunks — splitting lines is cheap next to decoding them. (Stdin is `stdin::StdinSource`.)
//!
//! Blank lines (and a trailing `\r`) are skipped: they carry no data.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{Chunk, Poll, Source, SourceError, SourceProgress};

pub struct FileSource {
    reader: Option<Box<dyn BufRead>>,
    path: PathBuf,
    chunk_lines: u64,
    /// Chunk index of the next chunk to be read (owned or not).
    next_chunk: u64,
    /// Owned chunks are those with index ≡ `owner_rem` (mod `owner_step`).
    owner_step: u64,
    owner_rem: u64,
    bytes_read: u64,
    total_bytes: Option<u64>,
}

impl FileSource {
    /// Opens `path` for worker `index` of `peers`.
    pub fn open(
        path: &Path,
        chunk_lines: usize,
        index: usize,
        peers: usize,
    ) -> Result<FileSource, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = File::open(path).map_err(io_err)?;
        let len = f.metadata().map_err(io_err)?.len();
        let reader: Option<Box<dyn BufRead>> = Some(Box::new(BufReader::with_capacity(1 << 20, f)));
        let (total_bytes, step, rem) = (Some(len), peers as u64, index as u64);
        Ok(FileSource {
            reader,
            path: path.to_path_buf(),
            chunk_lines: chunk_lines as u64,
            next_chunk: 0,
            owner_step: step,
            owner_rem: rem,
            bytes_read: 0,
            total_bytes,
        })
    }

    fn owns(&self, chunk: u64) -> bool {
        chunk % self.owner_step == self.owner_rem
    }
}

impl Source for FileSource {
    fn next_chunk(&mut self, chunk: &mut Chunk) -> Result<Poll, SourceError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Poll::End);
        };
        loop {
            let c = self.next_chunk;
            let owned = c % self.owner_step == self.owner_rem;
            let mut seq = c * self.chunk_lines;
            let mut lines = 0;
            while lines < self.chunk_lines {
                let io = |source| SourceError::Io {
                    path: self.path.display().to_string(),
                    source,
                };
                // Owned lines are read straight into the chunk, other workers' lines are
                // skipped: no copy of a line that is not decoded here, one copy of the rest.
                let start = chunk.data.len();
                let n = if owned {
                    reader.read_until(b'\n', &mut chunk.data).map_err(io)?
                } else {
                    reader.skip_until(b'\n').map_err(io)?
                };
                if n == 0 {
                    break;
                }
                self.bytes_read += n as u64;
                lines += 1;
                seq += 1;
                if owned {
                    let mut end = chunk.data.len();
                    while end > start && matches!(chunk.data[end - 1], b'\n' | b'\r') {
                        end -= 1;
                    }
                    if chunk.data[start..end].iter().all(u8::is_ascii_whitespace) {
                        chunk.data.truncate(start);
                    } else {
                        chunk.data.truncate(end);
                        chunk.data.push(b'\n');
                        chunk.seqs.push(seq);
                    }
                }
            }
            self.next_chunk += 1;
            if lines == 0 {
                self.reader = None;
                return Ok(Poll::End);
            }
            if owned {
                chunk.time = c;
                return Ok(Poll::Ready);
            }
        }
    }

    fn next_time(&self) -> u64 {
        // The next owned chunk index at or after `next_chunk`.
        let mut c = self.next_chunk;
        while !self.owns(c) {
            c += 1;
        }
        c
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            done: self.bytes_read,
            total: self.total_bytes,
            unit: "bytes",
        }
    }
}

/// Reads a whole file into memory (for small reference files, not traffic).
pub fn read_to_string(path: &Path) -> Result<String, SourceError> {
    let mut s = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|source| SourceError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        path: &Path,
        chunk_lines: usize,
        index: usize,
        peers: usize,
    ) -> Vec<(u64, u64, String)> {
        let mut src = FileSource::open(path, chunk_lines, index, peers).unwrap();
        let mut out = vec![];
        let mut chunk = Chunk::default();
        loop {
            chunk.clear();
            let t = src.next_time();
            match src.next_chunk(&mut chunk).unwrap() {
                Poll::End => break,
                Poll::Pending => unreachable!(),
                Poll::Ready => {
                    assert!(chunk.time >= t);
                    for (seq, line) in chunk.lines() {
                        out.push((chunk.time, seq, String::from_utf8(line.to_vec()).unwrap()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn workers_split_chunks_and_together_see_every_line_once() {
        let dir = std::env::temp_dir().join(format!("evflow-file-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.jsonl");
        let text: String =
            (1..=10).map(|i| format!("line{i}\r\n")).collect::<String>() + "\n  \nlast";
        std::fs::write(&path, text).unwrap();

        let all = collect(&path, 3, 0, 1);
        assert_eq!(all.len(), 11);
        assert_eq!(all[0], (0, 1, "line1".into()));
        assert_eq!(all[10], (4, 13, "last".into()));

        let mut split: Vec<_> = collect(&path, 3, 0, 2);
        let w1 = collect(&path, 3, 1, 2);
        assert!(split.iter().all(|(t, _, _)| t % 2 == 0));
        assert!(w1.iter().all(|(t, _, _)| t % 2 == 1));
        split.extend(w1);
        split.sort();
        assert_eq!(split, all);
        std::fs::remove_dir_all(&dir).ok();
    }
}
