//! Wiring: builds the store, engine, notifier and worker from a validated [`Config`], and
//! serves the API until `shutdown` (zero2prod's `run(listener, shutdown)`).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, SignatureBindings, router};
use anyhow::Context as _;

use crate::config::{Config, TlsConfig};
use crate::metrics::Metrics;
use crate::notify::{EndReporter, notifier_from_config};
use crate::query::{Catalog, DataFusionEngine, demo};
use crate::secret::SecretBox;
use crate::store::{CredentialKind, CredentialStore, token_lookup};
use crate::upload::DestinationSettings;
use crate::worker::Worker;

pub struct App {
    pub state: AppState,
    pub worker: Arc<Worker>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        // Before anything is written: a bad smtp.url leaves no half-made data directory.
        let notifier = notifier_from_config(&config).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let catalog_path = config.catalog_path();
        if config.catalog.is_none() {
            // Kept as it is when it already has `demo_rows` rows.
            tracing::info!(
                rows = config.demo_rows,
                "the demo table demo.ecommerce.data (generated when missing or resized)"
            );
            demo::create(catalog_path.parent().expect("catalog has a directory"), config.demo_rows)?;
        }
        let catalog = Catalog::load(&catalog_path)?;
        let table_stores =
            crate::query::table_stores(&catalog, &config.s3, &config.tables).map_err(anyhow::Error::msg)?;
        let (store, credentials, queries) = crate::store::open_all(&config).await?;
        let secrets = server_key(&config, credentials.as_ref()).await?;
        ensure_a_credential(&config, credentials.as_ref()).await?;
        let engine = Arc::new(
            DataFusionEngine::new(catalog)
                .with_memory_limit((config.worker.query_memory_mb as usize) << 20)
                .with_process_margin((config.worker.memory_margin_mb as usize) << 20)
                .with_table_stores(table_stores),
        );
        let metrics = Arc::new(Metrics::default());
        let uploaders = Arc::new(DestinationSettings {
            s3: config.s3.clone(),
            upload: config.upload.clone(),
            destinations: config.destinations.clone(),
            download_dir: Some(config.export.dir(&config.data_dir)),
            metrics: metrics.clone(),
        });
        let reporter = Arc::new(EndReporter::new(store.clone(), notifier, metrics.clone(), &config.smtp));
        let worker = Arc::new(Worker::new(
            &config,
            store.clone(),
            engine.clone(),
            reporter.clone(),
            uploaders,
            secrets.clone(),
            metrics.clone(),
        ));
        let job_runnable = worker.queued_signal();
        let streams = Arc::new(crate::api::StreamRegistry::new(config.server.max_streams_per_domain));
        let state = AppState {
            config: Arc::new(config),
            store,
            engine,
            secrets,
            metrics,
            credentials,
            queries,
            reporter,
            job_runnable,
            signatures: Arc::new(SignatureBindings::new(crate::api::MAX_SIGNATURES)),
            streams,
        };
        Ok(Self { state, worker })
    }

    /// Serves the API on `listener` (and runs the worker when `worker.enabled`) until
    /// `shutdown` is cancelled; running jobs then reach their end or next checkpoint.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker_task = self
            .state
            .config
            .worker
            .enabled
            .then(|| run_jobs_apart(self.worker.clone(), shutdown.clone()))
            .transpose()?;
        let (tls, limits) = (self.state.config.tls.clone(), self.state.config.server.clone());
        let (store, reporter) = (self.state.store.clone(), self.state.reporter.clone());
        let deadline = self.state.config.worker.shutdown_deadline;
        // Ends with this function: the sweep of export files past export.ttl.
        let _sweep =
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(crate::api::exports_files::sweep_forever(
                store.clone(),
                self.state.config.export.dir(&self.state.config.data_dir),
                self.state.config.export.ttl,
            )));
        let app = router(self.state);
        let acceptor = match &tls {
            None => None,
            Some(tls) => Some(tls_acceptor(tls).await?),
        };
        match &acceptor {
            None => tracing::info!(address = %listener.local_addr()?, "API listening (http)"),
            Some(_) => tracing::info!(address = %listener.local_addr()?, "API listening (https)"),
        }
        crate::api::serve(listener, app, &limits, acceptor, shutdown.clone(), deadline).await?;
        if let Some(done) = worker_task {
            let _ = done.await;
        }
        reporter.drain(deadline).await;
        store.close().await;
        Ok(())
    }

    /// Runs the worker alone (no API) until `shutdown` is cancelled.
    pub async fn run_worker(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.worker.clone().run(shutdown).await;
        self.state.store.close().await;
        Ok(())
    }
}

/// Runs the worker on a runtime of its own, on threads of its own, and tells when it has
/// stopped. Queries are CPU work that DataFusion runs on the runtime's threads: on the API's
/// runtime, two heavy jobs took every thread and `/healthz` stopped answering (nobody could
/// even stop the jobs). Apart, the kernel shares the cores between both, and the API answers.
fn run_jobs_apart(
    worker: Arc<crate::worker::Worker>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("forwarder-job")
        .thread_stack_size(crate::query::QUERY_THREAD_STACK)
        .enable_all()
        .build()
        .context("starting the job runtime")?;
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("forwarder-jobs".into()).spawn(move || {
        runtime.block_on(worker.run(shutdown));
        // Dropped here, outside any runtime: its tasks are ended before the API is told.
        drop(runtime);
        let _ = done.send(());
    })?;
    Ok(stopped)
}

/// The certificate and key of `[tls]`, ready to accept connections (HTTP/2 and HTTP/1.1 by ALPN).
async fn tls_acceptor(tls: &TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    // ring is the one crypto back end linked; named so that rustls never has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key).await.with_context(
            || format!("loading the TLS certificate {} and key {}", tls.cert.display(), tls.key.display()),
        )?;
    Ok(tokio_rustls::TlsAcceptor::from(config.get_inner()))
}

/// Raises this process's open-file limit (soft) to its hard limit: every connection holds a
/// descriptor, and the usual soft limit (1024) is below `server.max_connections`. Says so when
/// even the hard limit is below the connection cap plus room for files and uploads.
pub fn raise_open_file_limit(config: &Config) {
    let wanted = config.server.max_connections as u64 + 1024;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            max_connections = config.server.max_connections,
            "the open-file limit is below server.max_connections plus 1024 for files and uploads: raise the hard limit \
             (LimitNOFILE= in a systemd unit, ulimit -Hn) or lower server.max_connections"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// The key that seals the jobs' secrets (created on first start), checked against the one
/// the job store was set up with: a process with another key could open no job's secrets.
pub async fn server_key(config: &Config, credentials: &dyn CredentialStore) -> anyhow::Result<SecretBox> {
    let secrets = SecretBox::load_or_create(&config.key_file())?;
    if !credentials.adopt_server_key(secrets.fingerprint()).await? {
        anyhow::bail!(
            "the server key {} is not the one this job store was set up with: every process sharing a store \
             needs the same key file (copy it from the first machine, or point store.key_file at it)",
            config.key_file().display()
        );
    }
    Ok(secrets)
}

/// Where the token created on first start is written (readable by the owner only).
pub fn initial_token_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("initial-token")
}

/// The API is never open: on the first start of a server with no credential at all, a token
/// for the domain `default` is created and written to `initial-token` in the data directory
/// (never to the log).
async fn ensure_a_credential(config: &Config, credentials: &dyn CredentialStore) -> anyhow::Result<()> {
    if !config.auth.tokens.is_empty()
        || !config.auth.api_keys.is_empty()
        || credentials.has_credentials().await?
    {
        return Ok(());
    }
    let token = new_token();
    // The file first: a token stored but never written would lock the API until an operator
    // ran `forwarder auth create-token`.
    let path = initial_token_path(config);
    write_private(&path, &format!("{token}\n"))?;
    let id =
        credentials.add_credential(CredentialKind::Token, "default", &token_lookup(&token), None).await?;
    tracing::info!(id = %id, file = %path.display(), "no API credential existed: created a token for domain `default`; it is in the file named here");
    Ok(())
}

/// A new random bearer token (`fwd_` + 43 characters of base64url, 256 bits).
pub fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!("fwd_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Writes a file only its owner can read.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}
