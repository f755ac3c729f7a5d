//! The job store: a small trait whose operations fit one embedded SQLite file as well as a
//! PostgreSQL database shared by several workers (claim with a lease, heartbeat, checkpoint
//! at every completed part).

mod credentials;
mod emails_due;
mod migrations;
mod postgres;
mod queries;
mod rows;
mod sql;
mod sqlite;

pub use credentials::token_lookup;
pub use emails_due::{EMAIL_HOLD, EmailsDue};
pub use postgres::PostgresStore;
pub use queries::{QueryStore, RegisteredQuery};
pub use sqlite::SqliteStore;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::job::{Command, DestinationType, Job, JobStatus, PartRecord, Progress};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("job store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job store holds a malformed record for job {id}: {detail}")]
    Corrupt { id: String, detail: String },
    /// Another worker holds the job now (our lease expired), or it was removed.
    #[error("job {0} is no longer leased to this worker")]
    LeaseLost(Uuid),
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// `None`: every domain (operators, workers).
    pub domain: Option<String>,
    pub status: Option<JobStatus>,
    pub name_prefix: Option<String>,
    /// Jobs writing to this type of destination only.
    pub destination: Option<DestinationType>,
    pub limit: Option<u32>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// An operator asked the running job to stop or be removed.
    Requested(Command),
}

/// A job a worker claimed, with what its earlier runs left.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The job, now `RUNNING` and leased to the worker, with its parts so far.
    pub job: Job,
    /// Runs before this one that ended without a clean end (the process died, or the run
    /// panicked) since the job last made progress (a part) or ended a run cleanly.
    pub unclean_runs: u32,
}

/// The answer to an operator's [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: the job's status now (still `RUNNING` when its worker was told).
    Applied(JobStatus),
    /// Refused, with why: the transition is not valid. Nothing changed.
    Refused(String),
}

/// Every job store also keeps the emails its jobs' endings owe ([`EmailsDue`]).
#[async_trait]
pub trait JobStore: EmailsDue + Send + Sync + 'static {
    async fn insert(&self, job: &Job) -> Result<(), StoreError>;
    /// The job if it exists and (with `domain`) belongs to that domain.
    async fn get(&self, domain: Option<&str>, id: Uuid) -> Result<Option<Job>, StoreError>;
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;
    /// Claims a runnable job for `worker`: `CREATED`, or `RUNNING` with an expired lease (its
    /// worker died), of a domain with fewer than `max_running_per_domain` jobs running
    /// (`None`: no limit). Domains take turns: the oldest job of the domain whose last job
    /// start is the oldest (a domain that never started one first). The claim counts as a
    /// run that has not (yet) ended cleanly.
    async fn claim_next(
        &self,
        worker: &str,
        lease: Duration,
        max_running_per_domain: Option<u32>,
    ) -> Result<Option<Claim>, StoreError>;
    /// How many jobs of `domain` wait to run (status `CREATED`).
    async fn queued_count(&self, domain: &str) -> Result<u64, StoreError>;
    /// The workers whose id starts with `prefix` holding a lease on a running job or an
    /// email still due.
    async fn lease_owners(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Ends the leases `owners` hold now (they are known dead), so that their jobs are
    /// claimed at once instead of when the leases run out, and their emails due sent; how
    /// many jobs that frees.
    async fn expire_leases(&self, owners: &[String]) -> Result<u64, StoreError>;
    /// Extends the lease and saves progress; says whether an operator asked for something.
    async fn heartbeat(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
        progress: &Progress,
    ) -> Result<Lease, StoreError>;
    /// Records one uploaded part and the progress that goes with it, atomically.
    async fn checkpoint(
        &self,
        id: Uuid,
        worker: &str,
        part: &PartRecord,
        progress: &Progress,
    ) -> Result<(), StoreError>;
    /// Records the URL of the manifest the run wrote after the job's last part.
    async fn record_manifest(&self, id: Uuid, worker: &str, url: &str) -> Result<(), StoreError>;
    /// Ends the run: final status, progress and error (if any); releases the lease. The email
    /// about a completed, failed or stopped ending is due from then on, held by `worker`
    /// ([`EmailsDue`]).
    async fn finish(
        &self,
        id: Uuid,
        worker: &str,
        status: JobStatus,
        progress: &Progress,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Appends to the job's `error` list without touching its status (e.g. an email failure).
    async fn add_error(&self, id: Uuid, message: &str) -> Result<(), StoreError>;
    /// Gives the run back without ending the job (graceful shutdown): it becomes `CREATED`
    /// again, so that the next worker continues it from its last checkpoint. A stop or
    /// remove an operator asked for meanwhile takes effect instead.
    async fn release(&self, id: Uuid, worker: &str, progress: &Progress) -> Result<(), StoreError>;
    /// An operator's command, applied as [`crate::job::plan`] says: a job nobody runs changes
    /// status at once, a running one is told at its worker's next heartbeat. Removing
    /// forgets the job's sealed credentials. `None` when the job does not exist (in that
    /// domain).
    async fn command(
        &self,
        domain: Option<&str>,
        id: Uuid,
        command: Command,
    ) -> Result<Option<Outcome>, StoreError>;
    /// How many jobs the store holds in each status (every domain).
    async fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, StoreError>;
    /// Whether `worker` still holds the job. Asked just before a part is completed, so that
    /// a worker that lost the job (its lease expired and another took over) does not write a
    /// part that is now the other's to write.
    async fn holds(&self, id: Uuid, worker: &str) -> Result<bool, StoreError>;
    /// Reachable and answering (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the connections (at shutdown, once no job runs): every later call fails, and
    /// `ping` says so.
    async fn close(&self);
}

/// The job store and the credential store of a configuration: PostgreSQL when `store.url`
/// is set, else the SQLite file in the data directory.
pub async fn open(
    config: &crate::config::Config,
) -> Result<(Arc<dyn JobStore>, Arc<dyn CredentialStore>), StoreError> {
    let (jobs, credentials, _) = open_all(config).await?;
    Ok((jobs, credentials))
}

/// [`open`], with the registered queries of the async exports (the same database).
pub async fn open_all(
    config: &crate::config::Config,
) -> Result<(Arc<dyn JobStore>, Arc<dyn CredentialStore>, Arc<dyn QueryStore>), StoreError> {
    Ok(match &config.store.url {
        Some(url) => {
            let store = Arc::new(PostgresStore::connect(url.expose()).await?);
            (store.clone(), store.clone(), store)
        }
        None => {
            let store = Arc::new(SqliteStore::open(&config.data_dir.join("jobs.sqlite")).await?);
            (store.clone(), store.clone(), store)
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `Authorization: Bearer <token>`.
    Token,
    /// Devo's signed API key (`x-logtrust-apikey` + HMAC signature).
    ApiKey,
}

/// An API credential as stored: never the token itself, an API key's secret only sealed.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub kind: CredentialKind,
    pub domain: String,
    pub sealed: Option<Vec<u8>>,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// Credentials operators create and revoke (`forwarder auth …`).
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// Stores a credential found by `lookup` (a token's digest, an API key); returns its id.
    async fn add_credential(
        &self,
        kind: CredentialKind,
        domain: &str,
        lookup: &str,
        sealed: Option<&[u8]>,
    ) -> Result<String, StoreError>;
    /// The live (not revoked) credential with that lookup value.
    async fn find_credential(
        &self,
        kind: CredentialKind,
        lookup: &str,
    ) -> Result<Option<Credential>, StoreError>;
    async fn list_credentials(&self) -> Result<Vec<Credential>, StoreError>;
    /// `false`: no live credential has that id.
    async fn revoke_credential(&self, id: &str) -> Result<bool, StoreError>;
    /// Whether any credential was ever created (revoked ones count).
    async fn has_credentials(&self) -> Result<bool, StoreError>;
    /// Records `fingerprint` as the store's server key if it has none yet; `false` when the
    /// store was set up with another key.
    async fn adopt_server_key(&self, fingerprint: &str) -> Result<bool, StoreError>;
    /// Records a signed request's signature until `expires_at_ms`; `true` the first time it is
    /// seen (by any server sharing the store), so that a captured request is refused again.
    async fn first_use_of_signature(&self, signature: &str, expires_at_ms: i64) -> Result<bool, StoreError>;
}
