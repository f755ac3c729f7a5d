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
