//! Druid SQL over datasources, with DataFusion: Druid's functions (so far its time functions;
//! tables over segments and sys tables come next).

pub mod functions;
