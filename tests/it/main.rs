//! Integration tests: the real HTTP API, the real worker, LocalStack (S3), real SMTP servers
//! and PostgreSQL. Run them with `scripts/test.sh`, which starts those services.

mod async_export;
mod auth;
mod backends;
mod common;
mod demo;
mod deploy;
mod deploy_config;
mod dest_exports;
mod destinations;
mod devo_sdk;
mod edges;
mod export;
mod export_cli;
mod export_temp;
mod faults;
mod formats;
mod hostile;
mod ksql;
mod layout;
mod lifecycle;
mod openapi;
mod parquet;
mod scale_out;
mod store;
mod store_emails_due;
mod stream;
mod tables;
mod version;
