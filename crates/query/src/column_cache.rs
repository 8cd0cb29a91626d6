//! Decoded segment columns kept in memory between queries, the role Druid's memory-mapped
//! segments and the page cache play: a query decodes from a segment file only the columns it
//! reads that no earlier query left here. Bounded in bytes; the least recently used columns go
//! first.
//!
//! Segment files never change once written (a new version is a new file), so a column is
//! found by its file's path and size and needs no invalidation; a file removed from disk is
//! simply never asked for again and ages out.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use arrow::array::{Array, ArrayRef, new_empty_array};
use arrow::compute::concat;
use datafusion::common::{DataFusionError, Result};
use millrace_segments::view::SegmentFile;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// What a query server keeps when nothing says otherwise: 1 GiB.
pub const DEFAULT_BUDGET_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ColumnKey {
    path: PathBuf,
    size: u64,
    column: String,
}

#[derive(Debug)]
struct Cached {
    array: ArrayRef,
    bytes: usize,
    /// When it was last read (a tick of the cache's clock).
    used: u64,
}

#[derive(Debug, Default)]
struct Held {
    columns: HashMap<ColumnKey, Cached>,
    bytes: usize,
    clock: u64,
}

/// Segment columns in memory, shared by every query of an engine.
#[derive(Debug)]
pub struct ColumnCache {
    budget: usize,
    held: Mutex<Held>,
}

/// How much a cache holds, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    pub columns: usize,
    pub bytes: usize,
}

impl ColumnCache {
    /// A cache holding at most `budget` bytes of decoded columns (0: holds nothing).
    pub fn new(budget: usize) -> ColumnCache {
        ColumnCache {
            budget,
            held: Mutex::new(Held::default()),
        }
    }

    pub fn usage(&self) -> CacheUsage {
        let held = self.held.lock().expect("column cache lock");
        CacheUsage {
            columns: held.columns.len(),
            bytes: held.bytes,
        }
    }

    /// The named columns of a segment file, each whole, in the order asked; None for a name
    /// the file does not have. Columns not held are decoded from the file together, in one
    /// read of only those columns.
    pub fn columns(&self, file: &SegmentFile, names: &[&str]) -> Result<Vec<Option<ArrayRef>>> {
        let key = |column: &str| ColumnKey {
            path: file.path.clone(),
            size: file.size,
            column: column.to_string(),
        };
        let mut found: Vec<Option<ArrayRef>> = vec![None; names.len()];
        let mut missing = Vec::new();
        {
            let mut held = self.held.lock().expect("column cache lock");
            held.clock += 1;
            let now = held.clock;
            for (i, name) in names.iter().enumerate() {
                match held.columns.get_mut(&key(name)) {
                    Some(cached) => {
                        cached.used = now;
                        found[i] = Some(cached.array.clone());
                    }
                    None => missing.push(i),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let wanted: Vec<&str> = missing.iter().map(|&i| names[i]).collect();
        let decoded = read_columns(file, &wanted)?;
        let mut held = self.held.lock().expect("column cache lock");
        for (&i, array) in missing.iter().zip(decoded) {
            if let Some(array) = &array {
                self.keep(&mut held, key(names[i]), array.clone());
            }
            found[i] = array;
        }
        Ok(found)
    }

    /// Holds a column, letting the least recently used ones go to stay within the budget.
    fn keep(&self, held: &mut Held, key: ColumnKey, array: ArrayRef) {
        let bytes = array.get_array_memory_size();
        if bytes > self.budget {
            return;
        }
        held.clock += 1;
        let used = held.clock;
        if let Some(old) = held.columns.insert(key, Cached { array, bytes, used }) {
            held.bytes -= old.bytes;
        }
        held.bytes += bytes;
        while held.bytes > self.budget {
            let Some(oldest) = held
                .columns
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = held.columns.remove(&oldest) {
                held.bytes -= gone.bytes;
            }
        }
    }
}

/// Decodes the named columns of a Parquet segment file, each as one array (None for a name the
/// file lacks).
fn read_columns(file: &SegmentFile, names: &[&str]) -> Result<Vec<Option<ArrayRef>>> {
    let failed = |e: &dyn std::fmt::Display| {
        DataFusionError::Execution(format!("reading {}: {e}", file.path.display()))
    };
    let opened = File::open(&file.path).map_err(|e| failed(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(opened).map_err(|e| failed(&e))?;
    let schema = builder.schema().clone();
    // Columns are chosen by position: names may hold dots (`kafka.key`), which
    // `ProjectionMask::columns` would read as nested paths.
    let positions: Vec<usize> = names
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), positions);
    let rows = usize::try_from(file.num_rows).unwrap_or(usize::MAX).max(1);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(rows)
        .build()
        .map_err(|e| failed(&e))?;
    let batches: Vec<_> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| failed(&e))?;
    names
        .iter()
        .map(|name| {
            let Some((_, field)) = schema.column_with_name(name) else {
                return Ok(None);
            };
            let parts: Vec<&ArrayRef> = batches
                .iter()
                .filter_map(|b| b.column_by_name(name))
                .collect();
            match parts.as_slice() {
                [] => Ok(Some(new_empty_array(field.data_type()))),
                [one] => Ok(Some((*one).clone())),
                _ => {
                    let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                    concat(&parts).map(Some).map_err(|e| failed(&e))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use millrace_segments::columns::{SegmentSchema, write_parquet};
    use millrace_segments::shard::ShardKeys;

    use super::*;
    use std::sync::Arc;

    /// A segment file of `rows` rows with columns `user` and `views`.
    fn segment(dir: &std::path::Path, name: &str, rows: i64) -> SegmentFile {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("views", DataType::Int64, true),
        ]));
        let users: StringArray = (0..rows).map(|i| Some(format!("user{}", i % 3))).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(users),
                Arc::new(Int64Array::from_iter_values(0..rows)),
            ],
        )
        .unwrap();
        let path = dir.join(name);
        let size = write_parquet(&path, &batch).unwrap();
        SegmentFile {
            id: name.into(),
            start: 0,
            end: 1,
            path,
            size,
            num_rows: rows as u64,
            schema: SegmentSchema::default(),
            keys: ShardKeys::Any,
        }
    }

    #[test]
    fn columns_read_once_are_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = segment(dir.path(), "a.parquet", 1000);
        let cache = ColumnCache::new(DEFAULT_BUDGET_BYTES);
        let read = cache.columns(&file, &["views", "absent"]).unwrap();
        let views = read[0].as_ref().unwrap().as_primitive::<Int64Type>();
        assert_eq!((views.len(), views.value(999)), (1000, 999));
        assert!(read[1].is_none(), "a column the file lacks is None");
        assert_eq!(cache.usage().columns, 1, "only the column read is held");

        std::fs::remove_file(&file.path).unwrap();
        let again = cache.columns(&file, &["views"]).unwrap();
        assert_eq!(
            again[0]
                .as_ref()
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(5),
            5,
            "served without the file"
        );
        assert!(
            cache.columns(&file, &["user"]).is_err(),
            "a column never read needs the file"
        );
    }

    #[test]
    fn the_least_recently_used_columns_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = segment(dir.path(), "a.parquet", 10_000);
        let second = segment(dir.path(), "b.parquet", 10_000);
        let probe = ColumnCache::new(DEFAULT_BUDGET_BYTES);
        probe.columns(&first, &["views"]).unwrap();
        let one = probe.usage().bytes;
        // Room for two such columns, not three.
        let cache = ColumnCache::new(one * 2 + one / 2);
        cache.columns(&first, &["views"]).unwrap();
        cache.columns(&second, &["views"]).unwrap();
        cache.columns(&first, &["views"]).unwrap();
        let users = cache.columns(&second, &["user"]).unwrap();
        assert_eq!(
            users[0].as_ref().unwrap().as_string::<i32>().value(4),
            "user1"
        );
        assert!(cache.usage().bytes <= one * 2 + one / 2);
        std::fs::remove_file(&first.path).unwrap();
        std::fs::remove_file(&second.path).unwrap();
        assert!(
            cache.columns(&first, &["views"]).is_ok(),
            "used recently, still held"
        );
        assert!(
            cache.columns(&second, &["views"]).is_err(),
            "used least recently, let go"
        );
    }
}
