//! The shared job store: one PostgreSQL database for every worker on every machine. The same
//! operations as the SQLite store ([`super::sql`]); claims are serialised by a
//! transaction-scoped advisory lock, so that two workers never take the same job and the
//! per-domain cap holds exactly.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::emails_due::{EMAIL_HOLD, ending_to_tell};
use super::rows::{corrupt, job_from_row, part_from_row, unclean_runs_from_row};
use super::{Claim, JobFilter, JobStore, Lease, Outcome, StoreError};
use crate::job::{Command, Effect, Job, JobStatus, PartRecord, Progress, now_ms, plan};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (`postgres://user:password@host:port/database`) and brings the schema up to
    /// date. The URL holds a password: it is never logged, nor put in an error.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        super::migrations::postgres().run(&pool).await?;
        Ok(Self { pool })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

super::sql::sql_job_store!(
    PostgresStore,
    Postgres,
    PgRow,
    clock: Some("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"),
    // An arbitrary number, the same in every worker: "fwd" claim.
    claim_lock: Some("SELECT pg_advisory_xact_lock(440005404524)"),
    append_error: "(errors::jsonb || jsonb_build_array(CAST($1 AS TEXT)))::text"
);

super::emails_due::sql_emails_due!(PostgresStore);
