//! Telling a job's recipients that it ended, from wherever the ending happens: the worker when
//! a run ends, the API when an operator stops a job that was still waiting in the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{JobSummary, Notifier, notify_with_retry};
use crate::config::SmtpConfig;
use crate::job::JobStatus;
use crate::metrics::Metrics;
use crate::store::JobStore;

pub struct EndReporter {
    store: Arc<dyn JobStore>,
    notifier: Arc<dyn Notifier>,
    metrics: Arc<Metrics>,
    from: String,
    attempts: u32,
    /// Reports running on their own (an ending the API saw), awaited at shutdown.
    background: TaskTracker,
}

impl EndReporter {
    pub fn new(
        store: Arc<dyn JobStore>,
        notifier: Arc<dyn Notifier>,
        metrics: Arc<Metrics>,
        smtp: &SmtpConfig,
    ) -> Self {
        Self {
            store,
            notifier,
            metrics,
            from: smtp.from.clone(),
            attempts: smtp.max_attempts,
            background: TaskTracker::new(),
        }
    }

    /// [`Self::job_ended`] on a task of its own, in the caller's span, so that an API call
    /// does not wait for SMTP; [`Self::drain`] waits for it at shutdown.
    pub fn job_ended_in_background(self: &Arc<Self>, id: Uuid, ended_as: JobStatus, ran_for: Duration) {
        let this = self.clone();
        self.background.spawn(async move { this.job_ended(id, ended_as, ran_for).await }.in_current_span());
    }

    /// Waits up to `deadline` for the reports still running (at shutdown, before the store
    /// closes); says how many it gave up on.
    pub async fn drain(&self, deadline: Duration) {
        self.background.close();
        if tokio::time::timeout(deadline, self.background.wait()).await.is_err() {
            tracing::warn!(
                unsent = self.background.len(),
                "shutdown deadline reached with notification emails still being sent"
            );
        }
    }

    /// Emails the job's recipients (if it has any) that it ended as `ended_as`; `ran_for` is
    /// how long the run took. Nothing is sent when the store no longer holds that status (an
    /// operator started the job again meanwhile: its next ending will be told). A final
    /// delivery failure is recorded in the job's `error` list; the job keeps its status.
    pub async fn job_ended(&self, id: Uuid, ended_as: JobStatus, ran_for: Duration) {
        let job = match self.store.get(None, id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job back to email its recipients");
                return;
            }
        };
        if job.spec.destination.notification_emails.is_empty() || job.status == JobStatus::Removed {
            return;
        }
        if job.status != ended_as {
            tracing::debug!(ended_as = %ended_as, now = %job.status, "the job does not stand at that ending: no email");
            return;
        }
        let summary = JobSummary {
            job_id: id.to_string(),
            status: job.status,
            query: job.spec.query.clone(),
            rows: job.progress.events_sent,
            parts: job.parts.clone(),
            duration: ran_for,
            errors: job.errors.clone(),
            recipients: job.spec.destination.notification_emails.clone(),
        };
        let backoff = Duration::from_millis(500);
        match notify_with_retry(self.notifier.as_ref(), &summary, &self.from, self.attempts, backoff).await {
            Ok(place) => {
                self.metrics.emails_sent.inc();
                tracing::info!(to = %summary.recipients.join(", "), via = %place, "notification email sent");
            }
            Err(e) => {
                self.metrics.smtp_errors.inc();
                tracing::error!(error = %e, "notification email failed");
                if let Err(e) = self.store.add_error(id, &e.to_string()).await {
                    tracing::error!(error = %e, "could not record the email failure in the job");
                }
            }
        }
    }
}
