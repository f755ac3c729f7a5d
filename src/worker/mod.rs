//! The worker: claims a job from the store, runs its query, writes and uploads its parts,
//! checkpoints each one, ends the job and sends the email. [`Worker::try_run_next_job`] runs
//! exactly one job, so tests never race a background loop; [`Worker::run`] is that in a loop.

mod crash;
mod dead_leases;
pub mod direct;
mod export;
mod manifest;
mod parts;

pub use export::{Close, Ended, Export, ExportError, Interrupt};
pub use parts::{PartEvent, PartWriter, Start};

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt as _;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::{Config, UploadConfig, WorkerConfig};
use crate::job::{Command, Job, JobSecrets, JobStatus, Progress, ResumePoint, now_ms};
use crate::metrics::Metrics;
use crate::notify::EndReporter;
use crate::part::{PartOptions, RotationPolicy};
use crate::query::{CONTINUOUS_LAG, QueryEngine, QueryWindow, slices};
use crate::secret::SecretBox;
use crate::store::{Claim, JobStore, Lease, StoreError};
use crate::upload::{DestinationSettings, Uploader};

/// Builds the uploader for one job's destination (a trait so tests can swap the target).
#[async_trait]
pub trait UploaderFactory: Send + Sync + 'static {
    async fn for_job(&self, job: &Job, secrets: &JobSecrets) -> Result<Arc<dyn Uploader>, String>;
}

/// Every destination type, by the job's `destination.type`.
#[async_trait]
impl UploaderFactory for DestinationSettings {
    async fn for_job(&self, job: &Job, secrets: &JobSecrets) -> Result<Arc<dyn Uploader>, String> {
        self.uploader(&job.id.to_string(), &job.spec.destination, secrets).await
    }
}

pub struct Worker {
    pub id: String,
    /// Keeps `id` known as a live worker of this process (see [`dead_leases`]).
    _registered: dead_leases::WorkerId,
    host: String,
    store: Arc<dyn JobStore>,
    engine: Arc<dyn QueryEngine>,
    reporter: Arc<EndReporter>,
    uploaders: Arc<dyn UploaderFactory>,
    secrets: SecretBox,
    metrics: Arc<Metrics>,
    worker: WorkerConfig,
    upload: UploadConfig,
    /// The async exports' directory and the most its files may take (`export.disk_quota_mb`;
    /// `None`: no quota).
    export_quota: Option<(std::path::PathBuf, u64)>,
    /// Cancelled when the worker begins to shut down: jobs checkpoint and give their lease back.
    draining: CancellationToken,
    /// Cancelled when the shutdown deadline passes: jobs abort their in-flight uploads.
    deadline: CancellationToken,
    /// Told when this process queues a job, so that it starts now rather than at the next
    /// poll (jobs queued elsewhere are found by polling).
    queued: Arc<Notify>,
}

impl Worker {
    pub fn new(
        config: &Config,
        store: Arc<dyn JobStore>,
        engine: Arc<dyn QueryEngine>,
        reporter: Arc<EndReporter>,
        uploaders: Arc<dyn UploaderFactory>,
        secrets: SecretBox,
        metrics: Arc<Metrics>,
    ) -> Self {
        crash::install_panic_hook();
        let host = gethostname();
        let registered = dead_leases::WorkerId::new(&host);
        Self {
            id: registered.as_str().to_string(),
            _registered: registered,
            host,
            store,
            engine,
            reporter,
            uploaders,
            secrets,
            metrics,
            worker: config.worker.clone(),
            upload: config.upload.clone(),
            export_quota: (config.export.disk_quota_mb > 0).then(|| {
                (config.export.dir(&config.data_dir), config.export.disk_quota_mb.saturating_mul(1_000_000))
            }),
            draining: CancellationToken::new(),
            deadline: CancellationToken::new(),
            queued: Arc::new(Notify::new()),
        }
    }

    /// What to tell (`notify_one`) when a job is queued or started in this process.
    pub fn queued_signal(&self) -> Arc<Notify> {
        self.queued.clone()
    }

    fn max_running_per_domain(&self) -> Option<u32> {
        self.worker.running_cap_per_domain()
    }

    /// Expires the leases of this machine's dead workers (a process killed and restarted),
    /// so that the claim that follows takes their jobs back now rather than a lease later.
    async fn take_back_dead_leases(&self) {
        let owners = match self.store.lease_owners(&format!("{}-", self.host)).await {
            Ok(owners) => owners,
            Err(e) => return tracing::warn!(error = %e, "could not look for leases of dead workers"),
        };
        let dead = dead_leases::dead_on_this_host(&self.host, &owners);
        if dead.is_empty() {
            return;
        }
        match self.store.expire_leases(&dead).await {
            Ok(jobs) => {
                tracing::info!(jobs, workers = ?dead, "taking back the jobs of dead workers on this machine")
            }
            Err(e) => tracing::warn!(error = %e, "could not expire the leases of dead workers"),
        }
    }

    async fn claim(&self) -> Result<Option<Claim>, StoreError> {
        self.take_back_dead_leases().await;
        // Emails whose sender died after recording its job's end (a few per poll: sending
        // must not hold up the claim; each is sent on a task of its own).
        self.reporter.send_overdue(&self.id, 4).await;
        self.store.claim_next(&self.id, self.worker.lease, self.max_running_per_domain()).await
    }

    /// Asks running jobs to upload their open part and give themselves back to the store
    /// (status `CREATED`, continued by the next worker from that checkpoint).
    pub fn begin_shutdown(&self) {
        self.draining.cancel();
    }

    /// Claims one runnable job and runs it to its end. `None`: nothing to do.
    pub async fn try_run_next_job(&self) -> Result<Option<Uuid>, StoreError> {
        let Some(claim) = self.claim().await? else {
            return Ok(None);
        };
        let id = claim.job.id;
        self.execute(claim).await;
        Ok(Some(id))
    }

    /// Runs jobs (up to `worker.concurrency` at once) until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.worker.concurrency));
        tracing::info!(worker = %self.id, concurrency = self.worker.concurrency, "worker started");
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                () = shutdown.cancelled() => break,
            };
            match self.claim().await {
                Ok(Some(claim)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.execute(claim).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not claim a job"),
            }
            drop(permit);
            tokio::select! {
                () = tokio::time::sleep(self.worker.poll_interval) => {}
                () = self.queued.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
        // Running jobs upload their open part and give themselves back, within the deadline;
        // past it they abort their in-flight uploads (the next start redoes that part).
        self.begin_shutdown();
        let all = self.worker.concurrency as u32;
        if tokio::time::timeout(self.worker.shutdown_deadline, slots.acquire_many(all)).await.is_err() {
            tracing::warn!(deadline = ?self.worker.shutdown_deadline, "shutdown deadline passed: aborting in-flight uploads");
            self.deadline.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
        }
        // The overdue emails it was sending run on this runtime: they end (or are given up on,
        // and stay due for the next start) before the runtime does.
        self.reporter.drain(self.worker.shutdown_deadline).await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    #[tracing::instrument(skip_all, fields(job = %claim.job.id))]
    async fn execute(&self, claim: Claim) {
        let Claim { job, unclean_runs } = claim;
        if unclean_runs >= self.worker.max_crashed_runs {
            return self.give_up(job, unclean_runs).await;
        }
        let started = Instant::now();
        tracing::info!(query = %job.spec.query, resumed_after_part = job.parts.last().map(|p| p.index), "job started");
        let secrets = self.open_secrets(&job);
        // What the job's error, log lines and email must not quote.
        let known = secrets.clone().unwrap_or_default();
        let progress = Arc::new(Mutex::new(job.progress.clone()));
        let (control_tx, mut control) = watch::channel(None);
        let control_tx = Arc::new(control_tx);
        // Both helpers end with this run, even one that is dropped half-way: a heartbeat that
        // outlived its run would keep the job from ever being taken over.
        let heartbeat =
            AbortOnDropHandle::new(self.spawn_heartbeat(job.id, progress.clone(), control_tx.clone()));
        let draining = self.draining.clone();
        let drain_watch = AbortOnDropHandle::new(tokio::spawn(async move {
            draining.cancelled().await;
            // An operator's stop or remove, if one came first, still wins.
            control_tx.send_if_modified(|c| c.is_none().then(|| *c = Some(Interrupt::Shutdown)).is_some());
        }));
        let run = async {
            let secrets = secrets.as_ref().map_err(|e| ExportError::Query(e.clone()))?;
            crash::test_hooks(&job.spec.query, secrets);
            self.export(&job, secrets, progress.clone(), &mut control).await
        };
        // A panic fails this job, at once and for good; the worker goes on. While the run is
        // polled, the panic hook knows which secrets to take out of a panic's message.
        let result = match crash::RUNNING_JOB.scope(known.clone(), AssertUnwindSafe(run).catch_unwind()).await
        {
            Ok(result) => result,
            Err(panic) => {
                let error = crash::panicked(panic.as_ref(), &known);
                tracing::error!(error = %error, "the job's run panicked");
                self.abort_uploads_left_open(job.id, &known).await;
                Err(ExportError::Query(error))
            }
        };
        heartbeat.abort();
        drain_watch.abort();

        let mut final_progress = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (status, error) = match result {
            Ok(Ended::Exhausted) => {
                final_progress.percent_complete = 100;
                (JobStatus::Completed, None)
            }
            Ok(Ended::Interrupted(Interrupt::Operator(Command::Remove))) => (JobStatus::Removed, None),
            Ok(Ended::Interrupted(Interrupt::Operator(_))) => (JobStatus::Stopped, None),
            Ok(Ended::Interrupted(Interrupt::Shutdown)) | Err(ExportError::ShutdownDeadline) => {
                match self.store.release(job.id, &self.id, &final_progress).await {
                    Ok(()) => tracing::info!(
                        rows = final_progress.events_sent,
                        "job handed back for the next start"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "could not hand the job back; it is taken over when its lease expires")
                    }
                }
                // An operator's stop that was pending when the worker shut down ends the job
                // STOPPED (release applies it): that ending is told like any other.
                self.reporter.job_ended(job.id, JobStatus::Stopped, started.elapsed()).await;
                return;
            }
            Err(ExportError::Store(StoreError::LeaseLost(_)))
            | Ok(Ended::Interrupted(Interrupt::LeaseLost)) => {
                tracing::warn!("lease lost: another worker owns the job now");
                return;
            }
            Err(e) => (JobStatus::Failed, Some(crash::scrub(&e.to_string(), &known))),
        };
        if let Err(e) = self.store.finish(job.id, &self.id, status, &final_progress, error.as_deref()).await {
            tracing::error!(error = %e, "could not record the end of the job");
            return;
        }
        self.metrics.job_ended(status);
        match &error {
            Some(e) => tracing::warn!(%status, error = %e, "job ended"),
            None => tracing::info!(%status, rows = final_progress.events_sent, "job ended"),
        }
        crash::test_hook_before_email(&job.spec.query);
        self.reporter.job_ended(job.id, status, started.elapsed()).await;
    }

    /// A job whose last runs each ended the process (or panicked) without progress: failed
    /// instead of run again, its uploads left open aborted, its recipients told.
    async fn give_up(&self, job: Job, runs: u32) {
        let error = crash::gave_up(runs);
        tracing::error!(
            runs,
            "the job ended its worker {runs} times without progress: failing it, not running it again"
        );
        if let Err(e) =
            self.store.finish(job.id, &self.id, JobStatus::Failed, &job.progress, Some(&error)).await
        {
            return tracing::error!(error = %e, "could not record the end of the job");
        }
        self.metrics.job_ended(JobStatus::Failed);
        // After the job is recorded FAILED: should this crash too, the job is not run again.
        let secrets = self.open_secrets(&job).unwrap_or_default();
        self.abort_uploads_left_open(job.id, &secrets).await;
        self.reporter.job_ended(job.id, JobStatus::Failed, Duration::ZERO).await;
    }

    fn open_secrets(&self, job: &Job) -> Result<JobSecrets, String> {
        match &job.sealed_secrets {
            Some(sealed) => self.secrets.open(sealed).map_err(|e| e.to_string()),
            None => Ok(JobSecrets::default()),
        }
    }

    /// Aborts the multipart uploads a run cut short (by a panic, or by the end of its
    /// process) left open after the job's last recorded part. Best effort: a failure, even a
    /// panic, only costs a warning.
    async fn abort_uploads_left_open(&self, id: Uuid, secrets: &JobSecrets) {
        let abort = async {
            let Some(job) = self.store.get(None, id).await.ok().flatten() else { return };
            match self.uploaders.for_job(&job, secrets).await {
                Ok(uploader) => {
                    let next_index = job.parts.last().map_or(1, |p| p.index + 1);
                    abort_uploads_left_behind(&job, uploader.as_ref(), next_index).await;
                }
                Err(e) => {
                    tracing::warn!(error = %crash::scrub(&e, secrets), "could not look for uploads left open")
                }
            }
        };
        if AssertUnwindSafe(abort).catch_unwind().await.is_err() {
            tracing::warn!("looking for uploads left open panicked");
        }
    }

    fn spawn_heartbeat(
        &self,
        id: Uuid,
        progress: Arc<Mutex<Progress>>,
        control: Arc<watch::Sender<Option<Interrupt>>>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let (worker, lease) = (self.id.clone(), self.worker.lease);
        tokio::spawn(
            async move {
                let every = (lease / 3).max(Duration::from_millis(200)).min(Duration::from_secs(5));
                loop {
                    tokio::time::sleep(every).await;
                    let snapshot = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    match store.heartbeat(id, &worker, lease, &snapshot).await {
                        Ok(Lease::Held) => {}
                        Ok(Lease::Requested(command)) => {
                            control.send_replace(Some(Interrupt::Operator(command)));
                        }
                        Err(StoreError::LeaseLost(_)) => {
                            // Our lease expired (a stall, a partition) and another worker took
                            // the job over: every part from here on is its to write.
                            control.send_replace(Some(Interrupt::LeaseLost));
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }
            // Heartbeat lines carry the job id too.
            .in_current_span(),
        )
    }

    /// Runs `step` unless the shutdown deadline passes first.
    async fn before_deadline<T>(
        &self,
        step: impl Future<Output = Result<T, ExportError>>,
    ) -> Result<T, ExportError> {
        tokio::select! {
            r = step => r,
            () = self.deadline.cancelled() => Err(ExportError::ShutdownDeadline),
        }
    }

    /// The slice length of a bounded job's run (`None`: one query over the window). A resumed
    /// run keeps the grid its checkpoint was written on; a first run decides it from
    /// `worker.time_slices`, the query's shape and the size of its table.
    async fn slice_length(&self, job: &Job, from: i64, to: i64) -> Option<i64> {
        let kept = job.parts.last().map(|p| p.resume.slice_ms);
        if let Some(Some(length)) = kept {
            return (length > 0).then_some(length);
        }
        if self.worker.time_slices <= 1 {
            return None;
        }
        let shape = self.engine.check_for_slicing(&job.spec.query).await.ok().filter(|s| s.sliceable)?;
        let count = match kept {
            // Written before the length was kept: that run sliced by time only.
            Some(None) => self.worker.time_slices,
            _ => slices::slice_count(
                self.worker.time_slices,
                shape.source_bytes,
                self.worker.min_slice_mb.saturating_mul(1 << 20),
            ),
        };
        slices::slice_length(from, to, count)
    }

    async fn export(
        &self,
        job: &Job,
        secrets: &JobSecrets,
        progress: Arc<Mutex<Progress>>,
        control: &mut watch::Receiver<Option<Interrupt>>,
    ) -> Result<Ended, ExportError> {
        let uploader = self.uploaders.for_job(job, secrets).await.map_err(ExportError::Query)?;
        let manifest_uploader = uploader.clone();
        let dest = &job.spec.destination;
        if job.started_at_ms.is_some_and(|first| first < job.updated_at_ms) {
            let next_index = job.parts.last().map_or(1, |p| p.index + 1);
            abort_uploads_left_behind(job, uploader.as_ref(), next_index).await;
        }
        let options = PartOptions {
            encoding: dest.file_format,
            compression: dest.format,
            parquet_compression: dest.parquet_compression,
            level: self.worker.compression_level,
            zstd_level: self.worker.zstd_level,
            password: secrets.file_password.clone(),
            entry_name: String::new(),
            chunk_size: (self.upload.part_size_mib as usize) << 20,
            header: dest.download.as_ref().is_none_or(|d| d.include_header),
            row_group_bytes: self.worker.parquet_row_group_mb << 20,
        };
        let policy = RotationPolicy {
            max_bytes: dest.retention_bytes,
            max_age: dest.retention_time,
            max_row_groups: None,
        };
        // Resume after the last checkpoint: part numbers continue, and the query continues
        // from the window and row the last uploaded part ended at.
        let next_index = job.parts.last().map_or(1, |p| p.index + 1);
        let rows_done = job.parts.last().map_or(0, |p| p.rows_before + p.rows);
        let resume = job
            .parts
            .last()
            .map_or(ResumePoint { from_ms: job.spec.from_ms, skip: 0, slice_ms: None }, |p| p.resume);
        let start = Start { next_index, rows_total: rows_done, resume };
        {
            // Rows generated but not uploaded by an earlier run are generated again.
            let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
            p.events_sent = rows_done;
            p.events_generated = rows_done;
        }
        // Without `from` there is no start to measure progress from (1970 would make it 99% at
        // once): such a job shows 0 until it completes.
        let window = job.spec.from_ms.zip(job.spec.to_ms);
        let mut export = Export::new(
            job.id,
            self.id.clone(),
            self.store.clone(),
            uploader,
            self.upload.concurrency,
            progress,
            window,
            self.metrics.clone(),
        );
        if let Some(download) = &dest.download {
            export.save_progress_every(download.chunk_rows, self.worker.lease);
            export.fail_past(download.max_rows);
            export.one_file_even_if_empty();
            if let Some((dir, bytes)) = &self.export_quota {
                export.hold_to_quota(dir.clone(), *bytes);
            }
        }

        let mut from_ms = resume.from_ms;
        let mut skip = resume.skip;
        let mut writer: Option<PartWriter> = None;
        // The query's schema, for the manifest.
        let mut schema = None;
        // A bounded job over a source that prunes by time runs slice by slice (query::slices).
        let slicing = match (job.spec.from_ms, job.spec.to_ms) {
            (Some(from), Some(to)) => self.slice_length(job, from, to).await.map(|length| (from, to, length)),
            _ => None,
        };
        export.slice_ms = slicing.map_or(0, |(_, _, length)| length);
        // What this run's queries fetched from the tables' storage: with Parquet's pruning, a
        // short window of a long table reads little of it.
        let mut source_bytes = 0u64;
        let result = loop {
            let to_ms = match (slicing, from_ms) {
                (Some((from, to, length)), Some(at)) => Some(slices::slice_end(from, to, length, at)),
                _ => job.spec.to_ms.or_else(|| Some(now_ms() - CONTINUOUS_LAG.as_millis() as i64)),
            };
            // `limit` caps the rows of the whole job, over every window and every resumed run.
            let remaining = job
                .spec
                .limit
                .map(|l| l.saturating_sub(writer.as_ref().map_or(rows_done, |w| w.rows_total())));
            if remaining == Some(0)
                && let Some(w) = writer.take()
            {
                break self
                    .before_deadline(export.close_part(w, Close::Last))
                    .await
                    .map(|_| Ended::Exhausted);
            }
            let run = match self
                .engine
                .run(&job.spec.query, QueryWindow { from_ms, to_ms }, skip, remaining.map(|r| r + skip))
                .await
            {
                Ok(run) => run,
                Err(e) => break Err(ExportError::Query(e.to_string())),
            };
            schema.get_or_insert_with(|| run.stream.schema());
            let w = match writer.take() {
                Some(w) => w,
                None => PartWriter::new(
                    job.id,
                    dest.prefix.clone(),
                    options.clone(),
                    policy,
                    &run.stream.schema(),
                    run.time_column,
                    start,
                ),
            };
            let read = run.bytes_read.clone();
            let pumped = self.before_deadline(export.pump(w, run.stream, control)).await;
            self.metrics.source_bytes_read.inc_by(read.get());
            source_bytes += read.get();
            match pumped {
                Ok((mut w, Ended::Exhausted)) if slicing.is_some() && to_ms < job.spec.to_ms => {
                    // This slice is done; the next one starts where it ended, in the same part.
                    from_ms = to_ms;
                    skip = 0;
                    w.start_window(from_ms);
                    writer = Some(w);
                }
                Ok((mut w, Ended::Exhausted)) if job.spec.to_ms.is_none() => {
                    // Continuous: this window is done; the next one starts where it ended.
                    // Keep `retention.time` on time while waiting for it.
                    from_ms = to_ms;
                    skip = 0;
                    w.start_window(from_ms);
                    match self.before_deadline(export.close_part(w, Close::IfExpired)).await {
                        Ok(w) => writer = Some(w),
                        Err(e) => break Err(e),
                    }
                    let wait = tokio::time::sleep(self.worker.poll_interval.max(Duration::from_secs(1)));
                    tokio::select! { () = wait => {}, _ = control.changed() => {} }
                }
                Ok((w, Ended::Interrupted(Interrupt::Operator(Command::Remove)))) => {
                    drop(w);
                    break Ok(Ended::Interrupted(Interrupt::Operator(Command::Remove)));
                }
                Ok((w, Ended::Interrupted(Interrupt::LeaseLost))) => {
                    drop(w);
                    break Err(ExportError::Store(StoreError::LeaseLost(job.id)));
                }
                Ok((w, ended)) => {
                    let how = if ended == Ended::Exhausted { Close::Last } else { Close::Now };
                    break self.before_deadline(export.close_part(w, how)).await.map(|_| ended);
                }
                Err(e) => break Err(e),
            }
        };
        tracing::info!(source_bytes_read = source_bytes, "the job's queries read its tables");
        let result = match result {
            // Every part is uploaded and recorded: the manifest can list them all.
            Ok(Ended::Exhausted) if dest.manifest => self
                .write_job_manifest(job, manifest_uploader.as_ref(), schema.as_deref())
                .await
                .map(|()| Ended::Exhausted),
            other => other,
        };
        if !matches!(
            result,
            Ok(Ended::Exhausted
                | Ended::Interrupted(Interrupt::Operator(Command::Stop) | Interrupt::Shutdown))
        ) {
            export.abort_all().await;
        }
        result
    }
}

fn gethostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// A run of a job that ran before (taken over from a worker that died, or resumed) aborts the
/// multipart uploads earlier runs left open: a worker killed mid-part never aborted its own,
/// and S3 keeps (and bills) their chunks until someone does. Only the part after the last one
/// recorded and the one after it can have been open (a part is being written while the one
/// before it completes). They are asked for by name: MinIO lists uploads for one exact name,
/// not for a prefix. This run's own uploads come later, so they are not touched; a failure
/// only costs a warning.
async fn abort_uploads_left_behind(job: &Job, uploader: &dyn crate::upload::Uploader, next_index: u32) {
    let now = std::time::SystemTime::now();
    let mut aborted = 0;
    for index in next_index..next_index + 2 {
        let key = format!(
            "{}{}",
            job.spec.destination.prefix,
            crate::job::part_file_name(
                &job.id,
                index,
                job.spec.destination.file_format,
                job.spec.destination.format
            )
        );
        match uploader.abort_all_under(&key, now).await {
            Ok(n) => aborted += n,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "could not look for multipart uploads an earlier run left open")
            }
        }
    }
    if aborted > 0 {
        tracing::info!(job = %job.id, uploads = aborted, "aborted multipart uploads an earlier run left open");
    }
}
