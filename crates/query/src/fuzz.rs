//! An entry point for fuzzing and property tests: arbitrary text as a Druid SQL query over a
//! datasource of sample posts. Planning and running must never panic; errors are fine.

use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use millrace_segments::columns::SegmentSchema;
use millrace_segments::fuzz::sample_posts;
use millrace_segments::view::DatasourceView;

use crate::{QuerySource, SqlEngine};

/// One datasource, `posts`, of realtime rows.
struct SamplePosts(DatasourceView);

impl QuerySource for SamplePosts {
    fn datasource_names(&self) -> Vec<String> {
        vec!["posts".into()]
    }

    fn datasource(&self, name: &str) -> Option<DatasourceView> {
        (name == "posts").then(|| self.0.clone())
    }

    fn datasource_schema(&self, name: &str) -> Option<SegmentSchema> {
        (name == "posts").then(|| self.0.schema())
    }

    fn system_table(&self, _name: &str) -> Option<RecordBatch> {
        None
    }
}

/// Plans and runs `data` as SQL against 100 sample posts.
pub fn sql_query(data: &[u8]) {
    static ENGINE: OnceLock<(SqlEngine, tokio::runtime::Runtime)> = OnceLock::new();
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let (engine, runtime) = ENGINE.get_or_init(|| {
        let view = DatasourceView {
            realtime: sample_posts(100),
            ..DatasourceView::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        (SqlEngine::new(Arc::new(SamplePosts(view))), runtime)
    });
    let _ = runtime.block_on(engine.query(sql, Vec::new()));
}
