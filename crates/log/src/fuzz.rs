//! An entry point for fuzzing and property tests: arbitrary bytes as a damaged journal. It
//! must never panic, hang or exhaust memory; errors are fine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::journal::{HEADER_LEN, segment_path};
use crate::{EmbeddedLog, EmbeddedLogConfig, Log};

/// Sets each entry's checksum to its payload's, so that damaged payloads reach the decoder
/// instead of being cut off as torn writes. An entry's header is its payload's length and
/// CRC-32, both little-endian `u32`.
fn fix_checksums(journal: &mut [u8]) {
    let header = HEADER_LEN as usize;
    let mut at = 0;
    while journal.len() - at >= header {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().expect("4 bytes")) as usize;
        let start = at + header;
        if journal.len() - start < len {
            return;
        }
        let crc = crc32fast::hash(&journal[start..start + len]);
        journal[at + 4..start].copy_from_slice(&crc.to_le_bytes());
        at = start + len;
    }
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "millrace-fuzz-journal-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Opens a data directory whose journal holds `data` and reads every partition of every
/// topic it declares. An odd first byte keeps the checksums as they are (damage is then
/// mostly cut off as a torn tail); an even one fixes them up first.
pub fn open_damaged_journal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut journal = rest.to_vec();
    if mode % 2 == 0 {
        fix_checksums(&mut journal);
    }
    let dir = scratch_dir();
    let segment = segment_path(&dir.join("log"), 0);
    std::fs::create_dir_all(segment.parent().expect("a parent")).expect("scratch directory");
    std::fs::write(&segment, &journal).expect("scratch journal");
    if let Ok(log) = EmbeddedLog::open(&dir, EmbeddedLogConfig::default()) {
        for topic in log.topics().unwrap_or_default() {
            for partition in 0..topic.partitions {
                let mut offset = 0;
                while let Ok(fetched) = log.read(&topic.name, partition, offset, 1000) {
                    if fetched.records.is_empty() {
                        break;
                    }
                    offset = fetched.next_offset;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
