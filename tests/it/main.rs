//! Integration tests: the real HTTP API, the real worker, LocalStack (S3) and a real SMTP
//! server. Run them with `scripts/test.sh`, which starts those services.

mod auth;
mod common;
mod devo_sdk;
mod edges;
mod export;
mod hostile;
mod faults;
mod lifecycle;
mod store;
