//! Segment files as a DataFusion source: each partition reads its share of the files, only
//! the columns the query projects, through the [`ColumnCache`], and hands them on in slices
//! DataFusion can spread over its threads. Filters stay with DataFusion (the table tells it
//! they are inexact); the files a query reads are already chosen by time and partition range.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::Field;
use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::datasource::source::DataSource;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::DisplayFormatType;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use millrace_segments::columns::conform;
use millrace_segments::view::{PersistedFile, SegmentFile};

use crate::column_cache::ColumnCache;

/// Rows per batch handed on: small enough for DataFusion to share a segment between threads.
const SLICE_ROWS: usize = 64 * 1024;

/// A file a query reads.
#[derive(Debug, Clone)]
pub enum ScanFile {
    Published(Arc<SegmentFile>),
    /// Held by the plan, so the file stays on disk until the query is done even when its
    /// task publishes meanwhile.
    Persisted(Arc<PersistedFile>),
}

impl ScanFile {
    pub fn segment(&self) -> &SegmentFile {
        match self {
            ScanFile::Published(file) => file,
            ScanFile::Persisted(persisted) => &persisted.0,
        }
    }
}

/// Segment files read through a column cache.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    files: Vec<ScanFile>,
    /// The columns handed on (the table's, projected).
    schema: SchemaRef,
    partitions: usize,
    cache: Arc<ColumnCache>,
}

impl SegmentScan {
    /// Reads `files` as `schema` (columns a file lacks are null, others cast to the schema's
    /// type) in at most `partitions` partitions.
    pub fn new(
        files: Vec<ScanFile>,
        schema: SchemaRef,
        partitions: usize,
        cache: Arc<ColumnCache>,
    ) -> SegmentScan {
        let partitions = partitions.clamp(1, files.len().max(1));
        SegmentScan {
            files,
            schema,
            partitions,
            cache,
        }
    }

    /// The files partition `partition` reads (every `partitions`-th one).
    fn files_of(&self, partition: usize) -> impl Iterator<Item = &ScanFile> {
        self.files.iter().skip(partition).step_by(self.partitions)
    }

    fn statistics_of<'a>(&self, files: impl Iterator<Item = &'a ScanFile>) -> Statistics {
        let mut statistics = Statistics::new_unknown(&self.schema);
        statistics.num_rows = Precision::Exact(
            files
                .map(|f| usize::try_from(f.segment().num_rows).unwrap_or(usize::MAX))
                .sum(),
        );
        statistics
    }
}

/// A file's rows as batches of `schema`, in slices of [`SLICE_ROWS`].
fn read(cache: &ColumnCache, file: &SegmentFile, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let rows = usize::try_from(file.num_rows).unwrap_or(usize::MAX);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let whole = if names.is_empty() {
        // COUNT(*) and the like: rows without columns.
        RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?
    } else {
        let columns = cache.columns(file, &names)?;
        if let Some(column) = columns.iter().flatten().find(|c| c.len() != rows) {
            return Err(DataFusionError::Execution(format!(
                "{} holds {} rows in a column, not the {rows} its record says",
                file.path.display(),
                column.len()
            )));
        }
        // The file's own types: `conform` casts them to the table's (a dimension may have
        // changed type between segments) and fills the columns the file lacks with nulls.
        let present: Vec<_> = schema
            .fields()
            .iter()
            .zip(columns)
            .filter_map(|(field, column)| {
                column.map(|c| (Field::new(field.name(), c.data_type().clone(), true), c))
            })
            .collect();
        let (fields, arrays): (Vec<_>, Vec<_>) = present.into_iter().unzip();
        let found = RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        conform(&found, schema)?
    };
    let total = whole.num_rows();
    Ok((0..total)
        .step_by(SLICE_ROWS)
        .map(|start| whole.slice(start, SLICE_ROWS.min(total - start)))
        .collect())
}

impl DataSource for SegmentScan {
    fn open(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files: Vec<ScanFile> = self.files_of(partition).cloned().collect();
        let (cache, schema) = (self.cache.clone(), self.schema.clone());
        let batches = futures::stream::iter(files).flat_map(move |file| {
            let read = read(&cache, file.segment(), &schema);
            let batches: Vec<Result<RecordBatch>> = match read {
                Ok(batches) => batches.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(batches)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }

    /// Names every file read (EXPLAIN shows which segments a query reads).
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self
            .files
            .iter()
            .map(|file| file.segment().path.display().to_string())
            .collect();
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "SegmentScan: partitions={}, files=[{}], columns=[{}]",
            self.partitions,
            paths.join(", "),
            columns.join(", ")
        )
    }

    fn output_partitioning(&self) -> Partitioning {
        Partitioning::UnknownPartitioning(self.partitions)
    }

    fn eq_properties(&self) -> EquivalenceProperties {
        EquivalenceProperties::new(self.schema.clone())
    }

    /// Row counts are exact (the catalog has them), so COUNT(*) is answered without reading.
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let statistics = match partition {
            Some(p) => self.statistics_of(self.files_of(p)),
            None => self.statistics_of(self.files.iter()),
        };
        Ok(Arc::new(statistics))
    }

    fn with_fetch(&self, _limit: Option<usize>) -> Option<Arc<dyn DataSource>> {
        None
    }

    fn fetch(&self) -> Option<usize> {
        None
    }

    fn try_swapping_with_projection(
        &self,
        _projection: &ProjectionExprs,
    ) -> Result<Option<Arc<dyn DataSource>>> {
        Ok(None)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
}
