//! The embedded job store: one SQLite file in the data directory (WAL mode). Its operations
//! are the PostgreSQL store's ([`super::sql`]); SQLite runs one writer at a time, so a claim
//! needs no lock of its own.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::emails_due::{EMAIL_HOLD, ending_to_tell};
use super::rows::{corrupt, job_from_row, part_from_row, unclean_runs_from_row};
use super::{Claim, JobFilter, JobStore, Lease, Outcome, StoreError};
use crate::job::{Command, Effect, Job, JobStatus, PartRecord, Progress, now_ms, plan};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A removed job's sealed secrets are overwritten in the file, not only unlinked
            // from the table (free pages keep old bytes otherwise).
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        super::migrations::sqlite().run(&pool).await?;
        Ok(Self { pool })
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

super::sql::sql_job_store!(
    SqliteStore,
    Sqlite,
    SqliteRow,
    clock: None,
    claim_lock: None,
    append_error: "json_insert(errors, '$[#]', $1)"
);

super::emails_due::sql_emails_due!(SqliteStore);
