//! Forwarder: runs a query and forwards its result, as compressed CSV or JSON Lines part
//! files, to an S3 bucket. The API is wire-compatible with Devo's Query API v2.
//!
//! The export pipeline: [`query`] (the source) → [`encode`] (rows to bytes) → [`compress`]
//! (bytes packed) → [`part`] (parts rotated by size and time) → [`upload`] (S3 multipart).

pub mod api;
pub mod app;
pub mod auth_cli;
pub mod compress;
pub mod config;
pub mod demo;
pub mod encode;
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
