//! The emails a job's ending still owes its recipients, kept in the store so that none is lost.
//!
//! The statement that records a job's end (a worker's `finish`, a stop applied at hand-back or
//! by the API) also records the email as due (`email_due`: the status it ended as), held by
//! whoever ended it (`email_owner`) for [`EMAIL_HOLD`]. The holder sends it and marks it told
//! ([`EmailsDue::email_told`]). A process killed between the two (the end recorded, the email
//! not yet sent) leaves it due: when the hold runs out, or at once when a worker on the same
//! machine finds its holder's process gone ([`super::JobStore::expire_leases`]), a worker
//! claims it ([`EmailsDue::claim_due_email`]) and sends it. So an ending is told at least once;
//! twice only if a process dies after sending and before marking it told, or takes longer than
//! the hold to send.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::job::JobStatus;

/// How long the process that ended a job has to send its email before another may. Longer than
/// any send with its retries (`smtp.max_attempts`, each bounded by the SMTP timeouts), so that
/// a live sender is not doubled; short enough that an email whose sender died on another
/// machine goes out within minutes.
pub const EMAIL_HOLD: Duration = Duration::from_secs(10 * 60);

/// The ending an email is due for when a job ends as `status`: completed, failed or stopped
/// (DESIGN §4); not removed (the caller asked for the job to be forgotten).
pub fn ending_to_tell(status: JobStatus) -> Option<&'static str> {
    matches!(status, JobStatus::Completed | JobStatus::Failed | JobStatus::Stopped).then_some(status.as_str())
}

#[async_trait]
pub trait EmailsDue: Send + Sync {
    /// Takes one email whose hold ran out, for `worker`, for another [`EMAIL_HOLD`]: the job and
    /// the ending it is due for. `None`: nothing is overdue.
    async fn claim_due_email(&self, worker: &str) -> Result<Option<(Uuid, JobStatus)>, StoreError>;
    /// The email about the job ending as `ended_as` was sent, or given up on: no longer due.
    /// Does nothing if the job has ended again since (that ending's email is due instead).
    async fn email_told(&self, id: Uuid, ended_as: JobStatus) -> Result<(), StoreError>;
}

/// Implements [`EmailsDue`] for a SQL store, in the module that holds its `lease_clock`.
macro_rules! sql_emails_due {
    ($store:ty) => {
        #[async_trait]
        impl $crate::store::emails_due::EmailsDue for $store {
            async fn claim_due_email(&self, worker: &str) -> Result<Option<(Uuid, JobStatus)>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let now = Self::lease_clock(&mut *tx).await?;
                let hold = $crate::store::emails_due::EMAIL_HOLD.as_millis() as i64;
                // The outer condition again: of two workers racing for one row, the second
                // finds it held (PostgreSQL re-reads the row it waited for).
                let claimed: Option<(String, String)> = sqlx::query_as(
                    "UPDATE jobs SET email_owner = $1, email_until = $2
                     WHERE id = (SELECT id FROM jobs WHERE email_due IS NOT NULL AND COALESCE(email_until, 0) < $3
                                 ORDER BY email_until LIMIT 1)
                       AND email_due IS NOT NULL AND COALESCE(email_until, 0) < $3
                     RETURNING id, email_due",
                )
                .bind(worker)
                .bind(now + hold)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                let Some((id, due)) = claimed else { return Ok(None) };
                let id = Uuid::parse_str(&id).map_err(|e| corrupt(&id, e.to_string()))?;
                let status = JobStatus::parse(&due).ok_or_else(|| corrupt(&id.to_string(), format!("email_due {due}")))?;
                Ok(Some((id, status)))
            }

            async fn email_told(&self, id: Uuid, ended_as: JobStatus) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE jobs SET email_due = NULL, email_owner = NULL, email_until = NULL
                     WHERE id = $1 AND email_due = $2",
                )
                .bind(id.to_string())
                .bind(ended_as.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

pub(super) use sql_emails_due;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_final_ending_but_removal_is_told() {
        assert_eq!(ending_to_tell(JobStatus::Completed), Some("COMPLETED"));
        assert_eq!(ending_to_tell(JobStatus::Failed), Some("FAILED"));
        assert_eq!(ending_to_tell(JobStatus::Stopped), Some("STOPPED"));
        assert_eq!(ending_to_tell(JobStatus::Removed), None);
        assert_eq!(ending_to_tell(JobStatus::Running), None);
        assert_eq!(ending_to_tell(JobStatus::Created), None);
    }
}
