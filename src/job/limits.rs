//! `[limits]`: the operator's bounds of the destination parameters a request may give
//! (`retention_size_mb`, `retention_time_secs`), read when a submission is parsed.

use serde::{Deserialize, Serialize};

/// Operator bounds for destination parameters. The defaults are Devo's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub retention_size_mb_min: f64,
    pub retention_size_mb_max: f64,
    pub retention_size_mb_default: f64,
    pub retention_time_secs_min: u64,
    pub retention_time_secs_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            retention_size_mb_min: 50.0,
            retention_size_mb_max: 500.0,
            retention_size_mb_default: 500.0,
            retention_time_secs_min: 300,
            retention_time_secs_max: 86_400,
        }
    }
}
