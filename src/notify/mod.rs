//! The notification email sent when a job ends: composed from the job ([`compose`]), then
//! delivered over SMTP or written to the outbox by a [`Notifier`], with retries.

mod compose;
mod reporter;
mod transport;

pub use compose::{JobSummary, compose};
pub use reporter::EndReporter;
pub use transport::{Notifier, OutboxNotifier, SmtpNotifier, notifier_from_config};

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

#[derive(Debug, Clone, thiserror::Error)]
#[error("email to {recipients} failed: {message}")]
pub struct NotifyError {
    pub recipients: String,
    pub message: String,
}

/// Sends `summary` to its recipients, retrying with exponential backoff and jitter. Returns
/// where the email went (SMTP server or outbox file).
pub async fn notify_with_retry(
    notifier: &dyn Notifier,
    summary: &JobSummary,
    from: &str,
    attempts: u32,
    first_backoff: Duration,
) -> Result<String, NotifyError> {
    let message = compose(summary, from)
        .map_err(|message| NotifyError { recipients: summary.recipients.join(", "), message })?;
    (|| notifier.send(&message, &summary.recipients))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(first_backoff)
                .with_max_delay(first_backoff * 30)
                .with_max_times(attempts.saturating_sub(1) as usize)
                .with_jitter(),
        )
        .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "email delivery failed, retrying"))
        .await
}
