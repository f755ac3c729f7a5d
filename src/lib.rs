//! Forwarder: runs a query and forwards its result, as compressed CSV, JSON Lines or Parquet
//! part files, to S3, GCS, Azure or a directory, or streams it straight to the caller. The API
//! is wire-compatible with Devo's Query API v2.
//!
//! # Layout
//!
//! The folders follow the export pipeline, source → encoder → compressor → sink:
//!
//! | stage | module | what it holds |
//! |---|---|---|
//! | source | [`query`] | the catalog of tables and the DataFusion engine that streams record batches; SQL text to plan is the `forwarder-sql` crate (`crates/`), built apart for build time |
//! | encoder | [`encode`] | rows to bytes: CSV, TSV, JSON Lines, Parquet (pure) |
//! | compressor | [`compress`] | gzip, zstd, zip (+AES), none (pure) |
//! | part | [`part`] | encoder + compressor into upload-sized chunks, and when a part ends (pure) |
//! | sink | [`upload`] | multipart uploads to S3 (aws-sdk-s3), GCS and Azure (`object_store`) and a directory, with their `[s3]`, `[upload]` and `[destinations]` settings |
//!
//! Around it: [`api`] (the HTTP API: Devo's paths, streams, ksqlDB's `/query`, async exports with
//! download, the one-call export, `/openapi.json`,
//! health, metrics) takes requests that [`job`] parses into a job (the model and its status
//! machine, pure); [`store`] keeps jobs (SQLite or PostgreSQL); [`worker`] claims a job and runs it through the pipeline, then
//! [`notify`] sends the email. [`config`] reads the configuration, [`app`] builds everything
//! from it, and [`metrics`], [`telemetry`] and [`secret`] serve them all. The CLI is [`cli`]
//! (`main.rs` only calls it), its own commands [`jobs_cli`], [`export_cli`], [`auth_cli`] and
//! [`demo`].
//!
//! Dependencies point down the pipeline and from the outer modules inwards: no top-level
//! module uses one that uses it back, and no file uses a sibling that uses it back (a module's
//! settings live in it, `config` gathers them). `tests/it/layout.rs` checks both.

pub mod api;
pub mod app;
pub mod auth_cli;
pub mod cli;
pub mod cli_http;
pub mod compress;
pub mod config;
pub mod demo;
pub mod encode;
pub mod export_cli;
pub mod job;
pub mod jobs_cli;
pub mod metrics;
pub mod notify;
pub mod part;
pub mod query;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod upload;
pub mod worker;

// jemalloc, as Vector and TiKV use (here, so that every binary and test of the crate has it, and
// the memory backstop can read its count of live bytes): with glibc's malloc a long export's RSS crept upwards
// (upload buffers are allocated on whichever blocking thread encodes a batch, and each thread's
// arena keeps some freed memory), 10M rows peaking 8-13% above 1M; with jemalloc both peak at
// 108-112 MiB and the RSS holds steady while the job runs (bench/export.sh).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
