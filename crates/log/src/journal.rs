//! The journal: one append-only sequence of checksummed entries over segment files
//! (`journal/<first byte position>.log`).
//!
//! Every change to the embedded log (records, topic creation, offset commits) is one entry, so a
//! single write decides whether a change happened: an entry is `u32 payload length`,
//! `u32 CRC-32 of the payload`, payload. On open, a torn or corrupt tail of the newest segment
//! (a crash mid-write) is detected by its length or checksum and truncated.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::LogError;

pub(crate) const HEADER_LEN: u64 = 8;
/// Entries larger than this are treated as corruption when reading back a length.
const MAX_ENTRY_LEN: u32 = 1 << 30;

/// A segment file and where it starts in the journal's byte positions.
#[derive(Clone)]
pub struct Segment {
    pub base: u64,
    pub len: u64,
    pub file: Arc<File>,
    pub path: PathBuf,
    pub last_write: SystemTime,
}

/// Read access to the journal's segments that does not hold the writer's lock.
#[derive(Clone)]
pub struct SegmentView {
    segments: Vec<(u64, Arc<File>)>,
}

impl SegmentView {
    /// Reads `len` bytes at a journal position.
    pub fn read_at(&self, position: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let index = self
            .segments
            .partition_point(|(base, _)| *base <= position)
            .checked_sub(1)
            .ok_or_else(|| std::io::Error::other("position before the first segment"))?;
        let (base, file) = &self.segments[index];
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, position - base)?;
        Ok(buf)
    }
}

/// The segment files and the writer of the journal.
pub struct Journal {
    dir: PathBuf,
    segments: Vec<Segment>,
    sync_writes: bool,
    /// Reused buffer for header + payload, so an append is one write call.
    scratch: Vec<u8>,
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, calling `replay(position, payload)` for every
    /// entry in order; `position` is where the payload starts.
    pub fn open(
        dir: &Path,
        sync_writes: bool,
        mut replay: impl FnMut(u64, &[u8]) -> Result<(), LogError>,
    ) -> Result<Journal, LogError> {
        fs::create_dir_all(dir)
            .map_err(|e| LogError::io(format!("create {}", dir.display()), e))?;
        let mut bases = Vec::new();
        for entry in
            fs::read_dir(dir).map_err(|e| LogError::io(format!("list {}", dir.display()), e))?
        {
            let entry = entry.map_err(|e| LogError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|s| s.parse::<u64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let mut segments = Vec::with_capacity(bases.len());
        let last = bases.len() - 1;
        for (i, base) in bases.into_iter().enumerate() {
            let path = segment_path(dir, base);
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| LogError::io(format!("open {}", path.display()), e))?;
            let valid_len = scan_segment(&file, &path, base, i == last, &mut replay)?;
            let meta = file
                .metadata()
                .map_err(|e| LogError::io(format!("stat {}", path.display()), e))?;
            if valid_len < meta.len() {
                tracing::warn!(
                    file = %path.display(),
                    valid = valid_len,
                    found = meta.len(),
                    "truncating a torn journal tail left by a crash"
                );
                file.set_len(valid_len)
                    .map_err(|e| LogError::io(format!("truncate {}", path.display()), e))?;
            }
            segments.push(Segment {
                base,
                len: valid_len,
                file: Arc::new(file),
                path,
                last_write: meta.modified().unwrap_or(SystemTime::now()),
            });
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            segments,
            sync_writes,
            scratch: Vec::new(),
        })
    }

    /// Appends one entry; returns the journal position of its payload. The entry is in the
    /// operating system's hands when this returns (and on disk with `sync_writes`).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let segment = self.segments.last_mut().expect("journal has a segment");
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.scratch
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.scratch.extend_from_slice(payload);
        let mut file: &File = &segment.file;
        if let Err(e) = file.write_all(&self.scratch) {
            // Leave no partial entry behind: later appends must follow a whole one.
            let _ = segment.file.set_len(segment.len);
            return Err(LogError::io(
                format!("append to {}", segment.path.display()),
                e,
            ));
        }
        if self.sync_writes {
            segment
                .file
                .sync_data()
                .map_err(|e| LogError::io(format!("sync {}", segment.path.display()), e))?;
        }
        let position = segment.base + segment.len + HEADER_LEN;
        segment.len += self.scratch.len() as u64;
        segment.last_write = SystemTime::now();
        Ok(position)
    }

    /// Bytes in the newest segment.
    pub fn active_len(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.len)
    }

    /// Bytes in all segments.
    pub fn total_len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Starts a new segment at the current end position.
    pub fn roll(&mut self) -> Result<(), LogError> {
        let last = self.segments.last().expect("journal has a segment");
        let base = last.base + last.len;
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| LogError::io(format!("create {}", path.display()), e))?;
        self.segments.push(Segment {
            base,
            len: 0,
            file: Arc::new(file),
            path,
            last_write: SystemTime::now(),
        });
        Ok(())
    }

    /// The segments that are no longer written to, oldest first.
    pub fn closed(&self) -> &[Segment] {
        &self.segments[..self.segments.len() - 1]
    }

    /// The oldest segment, unless it is the only (active) one.
    pub fn oldest_closed(&self) -> Option<&Segment> {
        (self.segments.len() > 1).then(|| &self.segments[0])
    }

    /// Deletes the oldest closed segment; returns the position where the journal now starts.
    pub fn delete_oldest(&mut self) -> Result<u64, LogError> {
        let oldest = self.segments.remove(0);
        fs::remove_file(&oldest.path)
            .map_err(|e| LogError::io(format!("delete {}", oldest.path.display()), e))?;
        Ok(self.segments[0].base)
    }

    pub fn view(&self) -> SegmentView {
        SegmentView {
            segments: self
                .segments
                .iter()
                .map(|s| (s.base, Arc::clone(&s.file)))
                .collect(),
        }
    }
}

/// Reads a segment's entries, replaying each; returns the length of its valid prefix.
/// Damage is tolerated (and later truncated) only in the newest segment: anywhere else it is
/// reported as corruption rather than silently dropping the records after it.
fn scan_segment(
    file: &File,
    path: &Path,
    base: u64,
    is_last: bool,
    replay: &mut impl FnMut(u64, &[u8]) -> Result<(), LogError>,
) -> Result<u64, LogError> {
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io(format!("stat {}", path.display()), e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    let mut payload = Vec::new();
    let damaged = |pos: u64, reason: &str| -> Result<u64, LogError> {
        if is_last {
            Ok(pos)
        } else {
            Err(LogError::Corrupt {
                file: path.display().to_string(),
                position: pos,
                reason: reason.to_string(),
            })
        }
    };
    while pos < file_len {
        if file_len - pos < HEADER_LEN {
            return damaged(pos, "entry header cut short");
        }
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|e| LogError::io(format!("read {}", path.display()), e))?;
        let len = u32::from_le_bytes(header[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        if len > MAX_ENTRY_LEN || file_len - pos - HEADER_LEN < u64::from(len) {
            return damaged(pos, "entry cut short");
        }
        payload.resize(len as usize, 0);
        reader
            .read_exact(&mut payload)
            .map_err(|e| LogError::io(format!("read {}", path.display()), e))?;
        if crc32fast::hash(&payload) != crc {
            return damaged(pos, "checksum mismatch");
        }
        replay(base + pos + HEADER_LEN, &payload)?;
        pos += HEADER_LEN + u64::from(len);
    }
    Ok(pos)
}
