//! JSONL sink: one JSON object per line, appended, flushed at every completed time.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::SinkError;

pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlWriter {
    pub fn open(path: &Path) -> Result<JsonlWriter, SinkError> {
        Self::open_at(path, None)
    }

    /// Opens for appending after cutting the file back to `length` bytes (what a commit
    /// recorded; lines written after it are written again by the replay).
    pub fn open_at(path: &Path, length: Option<u64>) -> Result<JsonlWriter, SinkError> {
        if let Some(len) = length {
            let io = |source| SinkError::Io {
                path: path.to_path_buf(),
                source,
            };
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io)?;
            let actual = f.metadata().map_err(io)?.len();
            if actual < len {
                tracing::warn!(
                    "{}: {actual} bytes, shorter than the {len} the last commit recorded",
                    path.display()
                );
            } else if actual > len {
                tracing::info!(
                    "{}: dropping {} byte(s) written after the last commit",
                    path.display(),
                    actual - len
                );
                f.set_len(len).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    fn io(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, record).map_err(|e| self.io(e.into()))?;
        self.out.write_all(b"\n").map_err(|e| self.io(e))
    }

    /// Writes a line that is already JSON (without its newline).
    pub fn write_raw(&mut self, line: &str) -> Result<(), SinkError> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| self.io(e))
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))
    }

    /// Flushes to disk; returns the file's length.
    pub fn sync(&mut self) -> Result<u64, SinkError> {
        self.flush()?;
        let file = self.out.get_ref();
        file.sync_data().map_err(|e| self.io(e))?;
        Ok(file.metadata().map_err(|e| self.io(e))?.len())
    }
}
