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

/// Emails sent on tasks of their own at once, at most: a backlog of overdue emails and a slow
/// SMTP server must not open a connection per email.
const MAX_SENDING: usize = 8;

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
    /// Either way the store's due email is marked told; if this cannot even read the job, it
    /// stays due, and a worker sends it when its hold runs out.
    pub async fn job_ended(&self, id: Uuid, ended_as: JobStatus, ran_for: Duration) {
        if self.tell(id, ended_as, ran_for).await == Told::Yes
            && let Err(e) = self.store.email_told(id, ended_as).await
        {
            tracing::error!(error = %e, "could not record that the email was sent; it may be sent again");
        }
    }

    /// Sends the emails whose holder went away before sending them (its process ended between
    /// recording the job's end and sending): up to `most`, each on a task of its own, while
    /// fewer than [`MAX_SENDING`] are being sent; how many.
    pub async fn send_overdue(self: &Arc<Self>, worker: &str, most: usize) -> usize {
        let mut claimed = 0;
        while claimed < most && self.background.len() < MAX_SENDING {
            let (id, ended_as) = match self.store.claim_due_email(worker).await {
                Ok(Some(due)) => due,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for emails still due");
                    break;
                }
            };
            claimed += 1;
            let span = tracing::info_span!("overdue_email", job = %id, ended_as = %ended_as);
            let this = self.clone();
            self.background.spawn(
                async move {
                    tracing::info!("sending the email whose sender went away before sending it");
                    let ran_for = match this.store.get(None, id).await {
                        Ok(Some(job)) => {
                            ran_between(job.started_at_ms, job.finished_at_ms.or(Some(job.updated_at_ms)))
                        }
                        _ => Duration::ZERO,
                    };
                    this.job_ended(id, ended_as, ran_for).await;
                }
                .instrument(span),
            );
        }
        claimed
    }

    async fn tell(&self, id: Uuid, ended_as: JobStatus, ran_for: Duration) -> Told {
        let job = match self.store.get(None, id).await {
            Ok(Some(job)) => job,
            Ok(None) => return Told::Yes,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job back to email its recipients");
                return Told::No;
            }
        };
        if job.spec.destination.notification_emails.is_empty() || job.status == JobStatus::Removed {
            return Told::Yes;
        }
        if job.status != ended_as {
            tracing::debug!(ended_as = %ended_as, now = %job.status, "the job does not stand at that ending: no email");
            return Told::Yes;
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
        Told::Yes
    }
}

/// Whether an ending is dealt with: told, given up on after the retries, or nothing to tell.
#[derive(Debug, PartialEq, Eq)]
enum Told {
    Yes,
    /// The job could not be read: its email stays due.
    No,
}

/// How long a run took, from the store's times (epoch ms).
fn ran_between(started_ms: Option<i64>, ended_ms: Option<i64>) -> Duration {
    match (started_ms, ended_ms) {
        (Some(start), Some(end)) if end > start => Duration::from_millis((end - start) as u64),
        _ => Duration::ZERO,
    }
}
