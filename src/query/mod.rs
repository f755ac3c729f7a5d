//! Queries: a catalog file names the tables, the embedded engine (Apache DataFusion) runs a
//! job's query over time-windowed views of them and streams record batches.

mod big_stack;
mod bytes_read;
mod catalog;
mod csv_schema;
pub mod demo;
pub mod demo_parquet;
mod engine;
mod error;
mod guarded_aggregates;
mod guarded_concat;
mod guarded_functions;
mod guarded_output;
mod guarded_regexp;
pub mod memory_backstop;
mod object_stores;
mod parse;
pub mod slices;
mod table_files;
mod table_source;
mod watched_plan;

pub use big_stack::QUERY_THREAD_STACK;
pub use bytes_read::BytesRead;
pub use catalog::{Catalog, EpochUnit, TableCompression, TableEntry, TableFormat};
pub use engine::{
    CONTINUOUS_LAG, DataFusionEngine, QueryEngine, QueryRun, QueryShape, QueryWindow, TimeColumn,
};
pub use error::{QueryError, error_text as query_error_text};
pub use object_stores::{
    AzureTables, GcsTables, TableStores, TableStoresConfig, for_catalog as table_stores,
};

/// The rows of one record batch: the engine's batch size, by which the guarded functions bound
/// what one call may build.
const BATCH_ROWS: usize = 8192;
