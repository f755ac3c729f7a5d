//! Integration tests: the real HTTP API, the real worker, LocalStack (S3), real SMTP servers
//! and PostgreSQL. Run them with `scripts/test.sh`, which starts those services.

mod auth;
mod backends;
mod common;
mod demo;
mod dest_exports;
mod destinations;
mod devo_sdk;
mod edges;
mod export;
mod faults;
mod formats;
mod hostile;
mod lifecycle;
mod scale_out;
mod store;
