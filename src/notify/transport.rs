//! Delivery: SMTP (lettre) when a server is configured, otherwise `.eml` files in the outbox.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::NotifyError;
use crate::config::Config;

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one message; returns where it went.
    async fn send(&self, message: &Message, recipients: &[String]) -> Result<String, NotifyError>;
}

pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
}

impl SmtpNotifier {
    pub fn new(url: &str, username: Option<&str>, password: Option<&str>) -> Result<Self, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("smtp.url is not a usable SMTP URL (smtp://host:port, smtps://host:465, smtp://host:587?tls=required): {e}"))?
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let (Some(u), Some(p)) = (username, password) {
            builder = builder.credentials(Credentials::new(u.to_string(), p.to_string()));
        }
        // Only the host part is ever shown: the URL may carry a password.
        let server = url.rsplit('@').next().unwrap_or(url).trim_start_matches("smtp://").to_string();
        Ok(Self { transport: builder.build(), server })
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    async fn send(&self, message: &Message, recipients: &[String]) -> Result<String, NotifyError> {
        self.transport.send(message.clone()).await.map_err(|e| NotifyError {
            recipients: recipients.join(", "),
            message: format!("SMTP server {}: {e}", self.server),
        })?;
        Ok(format!("SMTP server {}", self.server))
    }
}

pub struct OutboxNotifier {
    dir: PathBuf,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl OutboxNotifier {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { transport: AsyncFileTransport::new(&dir), dir })
    }
}

#[async_trait]
impl Notifier for OutboxNotifier {
    async fn send(&self, message: &Message, recipients: &[String]) -> Result<String, NotifyError> {
        let id = self.transport.send(message.clone()).await.map_err(|e| NotifyError {
            recipients: recipients.join(", "),
            message: format!("outbox {}: {e}", self.dir.display()),
        })?;
        Ok(self.dir.join(format!("{id}.eml")).display().to_string())
    }
}

pub fn notifier_from_config(config: &Config) -> Result<Arc<dyn Notifier>, String> {
    match &config.smtp.url {
        Some(url) => Ok(Arc::new(SmtpNotifier::new(
            url,
            config.smtp.username.as_deref(),
            config.smtp.password.as_ref().map(|p| p.expose()),
        )?)),
        None => Ok(Arc::new(
            OutboxNotifier::new(config.outbox_dir())
                .map_err(|e| format!("outbox {}: {e}", config.outbox_dir().display()))?,
        )),
    }
}
