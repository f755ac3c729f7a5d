//! Wiring: builds the store, engine, notifier and worker from a validated [`Config`], and
//! serves the API until `shutdown` (zero2prod's `run(listener, shutdown)`).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify::notifier_from_config;
use crate::query::{Catalog, DataFusionEngine, demo};
use crate::secret::SecretBox;
use crate::store::{JobStore, SqliteStore};
use crate::worker::{S3UploaderFactory, Worker};

pub struct App {
    pub state: AppState,
    pub worker: Arc<Worker>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)?;
        let catalog_path = config.catalog_path();
        if config.catalog.is_none() && !catalog_path.exists() {
            tracing::info!(rows = config.demo_rows, "generating the demo table demo.ecommerce.data");
            demo::create(catalog_path.parent().expect("catalog has a directory"), config.demo_rows)?;
        }
        let catalog = Catalog::load(&catalog_path)?;
        let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&config.data_dir.join("jobs.sqlite")).await?);
        let secrets = SecretBox::load_or_create(&config.data_dir.join("server.key"))?;
        let engine = Arc::new(DataFusionEngine::new(catalog));
        let notifier = notifier_from_config(&config).map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(Metrics::default());
        let uploaders = Arc::new(S3UploaderFactory {
            defaults: config.s3.clone(),
            upload: config.upload.clone(),
            metrics: metrics.clone(),
        });
        let worker = Arc::new(Worker::new(&config, store.clone(), engine.clone(), notifier, uploaders, secrets.clone(), metrics.clone()));
        let state = AppState { config: Arc::new(config), store, engine, secrets, metrics };
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
            .then(|| tokio::spawn(self.worker.clone().run(shutdown.clone())));
        tracing::info!(address = %listener.local_addr()?, "API listening");
        let app = router(self.state);
        let stop = shutdown.clone();
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
        if let Some(task) = worker_task {
            let _ = task.await;
        }
        Ok(())
    }

    /// Runs the worker alone (no API) until `shutdown` is cancelled.
    pub async fn run_worker(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.worker.clone().run(shutdown).await;
        Ok(())
    }
}

/// Cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}
