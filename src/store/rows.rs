//! Jobs and parts read back from a row, the same way for every SQL store (SQLite and
//! PostgreSQL hold the same columns).

use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use super::StoreError;
use crate::job::{Job, JobStatus, PartRecord, Progress, ResumePoint};

pub(super) fn corrupt(id: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { id: id.to_string(), detail: detail.to_string() }
}

pub(super) fn job_from_row<'r, R>(row: &'r R) -> Result<Job, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let spec: String = row.try_get("spec")?;
    let errors: String = row.try_get("errors")?;
    Ok(Job {
        id: Uuid::parse_str(&id).map_err(|e| corrupt(&id, e))?,
        domain: row.try_get("domain")?,
        owner: row.try_get("owner")?,
        friendly_name: row.try_get("friendly_name")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt(&id, format!("status {status}")))?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt(&id, e))?,
        sealed_secrets: row.try_get("sealed_secrets")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
        started_at_ms: row.try_get("started_at")?,
        finished_at_ms: row.try_get("finished_at")?,
        progress: Progress {
            events_generated: row.try_get::<i64, _>("events_generated")? as u64,
            events_sent: row.try_get::<i64, _>("events_sent")? as u64,
            last_datetime_ms: row.try_get("last_datetime")?,
            percent_complete: row.try_get::<i64, _>("percent_complete")?.clamp(0, 100) as u8,
        },
        parts: vec![],
        errors: serde_json::from_str(&errors).map_err(|e| corrupt(&id, e))?,
        manifest_url: row.try_get("manifest_url")?,
    })
}

pub(super) fn part_from_row<'r, R>(row: &'r R) -> Result<PartRecord, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(PartRecord {
        index: row.try_get::<i64, _>("idx")? as u32,
        key: row.try_get("key")?,
        url: row.try_get("url")?,
        bytes: row.try_get::<i64, _>("bytes")? as u64,
        rows: row.try_get::<i64, _>("rows")? as u64,
        rows_before: row.try_get::<i64, _>("rows_before")? as u64,
        completed_at_ms: row.try_get("completed_at")?,
        resume: ResumePoint {
            from_ms: row.try_get("resume_from")?,
            skip: row.try_get::<i64, _>("resume_skip")? as u64,
            slice_ms: row.try_get("resume_slice_ms")?,
        },
        sha256: row.try_get("sha256")?,
    })
}

/// The claim's count of runs that have not ended cleanly (this one included).
pub(super) fn unclean_runs_from_row<'r, R>(row: &'r R) -> Result<u32, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(row.try_get::<i64, _>("unclean_runs")?.clamp(0, i64::from(u32::MAX)) as u32)
}
