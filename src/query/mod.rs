//! Queries: a catalog file names the tables, the embedded engine (Apache DataFusion) runs a
//! job's query over time-windowed views of them and streams record batches.

mod big_stack;
mod bytes_read;
mod catalog;
mod csv_schema;
pub mod demo;
mod demo_parquet;
mod engine;
mod guarded_aggregates;
mod guarded_concat;
mod guarded_functions;
mod guarded_regexp;
pub mod memory_backstop;
mod object_stores;
mod parse;
pub mod slices;
mod table_source;
mod watched_plan;

pub use big_stack::QUERY_THREAD_STACK;
pub use bytes_read::BytesRead;
pub use catalog::{Catalog, EpochUnit, TableCompression, TableEntry, TableFormat};
pub use engine::{
    CONTINUOUS_LAG, DataFusionEngine, QueryEngine, QueryError, QueryRun, QueryShape, QueryWindow, TimeColumn,
    error_text as query_error_text,
};
pub use object_stores::{
    AzureTables, GcsTables, TableStores, TableStoresConfig, for_catalog as table_stores,
};
