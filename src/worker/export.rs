//! The I/O side of an export: pulls batches from the query, has the [`PartWriter`] encode
//! them on a blocking thread, uploads the chunks while parts are still being written, and
//! checkpoints every completed part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;
use uuid::Uuid;

use super::parts::{PartEvent, PartWriter};
use crate::job::{Command, PartRecord, Progress, ResumePoint, now_ms};
use crate::metrics::Metrics;
use crate::store::{JobStore, StoreError};
use crate::upload::{ObjectMeta, ObjectUpload, UploadError, Uploader};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Upload(#[from] UploadError),
    #[error("writing a part failed: {0}")]
    Encode(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker's shutdown deadline passed before the job reached a checkpoint.
    #[error("the worker shut down before the open part was uploaded")]
    ShutdownDeadline,
    /// Async exports: the export files passed `export.disk_quota_mb` while this one was written.
    #[error(
        "the export files reached {:.1} MB while this export was written, past the {:.1} MB this server keeps \
         (export.disk_quota_mb): download and DELETE finished exports, or wait for unfetched ones to expire \
         (export.ttl), then ask for this one again",
        *used as f64 / 1e6, *quota as f64 / 1e6
    )]
    OverQuota { used: u64, quota: u64 },
}

/// How often an async export measures the export directory against its quota: every this many
/// bytes it writes (and before its first). Exports written at once can pass the quota by this
/// much each before one of them sees it.
const QUOTA_CHECK_EVERY: u64 = 4 << 20;

/// Async exports: the directory their files share and the most those may take.
struct DiskQuota {
    dir: std::path::PathBuf,
    bytes: u64,
    /// Bytes written since the directory was last measured.
    unmeasured: u64,
}

/// Record batches (8,192 rows each) the query may have ready ahead of the encoder.
const PREFETCH_BATCHES: usize = 2;

/// How [`Export::close_part`] closes the open part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Only if it has been open for `retention.time`.
    IfExpired,
    /// Now (the run stops before the end of the result).
    Now,
    /// Now, at the end of the whole result: an async export's result with no rows still gets
    /// its one file here (not when it is stopped).
    Last,
}

/// Why a run ends before its query is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// An operator asked to stop or remove the job.
    Operator(Command),
    /// The worker is shutting down: upload the open part and give the job back.
    Shutdown,
    /// Another worker holds the job now: stop at once, upload nothing more.
    LeaseLost,
}

/// How an export ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The query has no more rows (the open part is still open).
    Exhausted,
    /// An operator or the worker's shutdown interrupted it.
    Interrupted(Interrupt),
}

/// Everything the export of one job needs, and what it has done so far.
pub struct Export {
    pub job_id: Uuid,
    pub worker_id: String,
    pub store: Arc<dyn JobStore>,
    pub uploader: Arc<dyn Uploader>,
    pub concurrency: usize,
    pub progress: Arc<Mutex<Progress>>,
    /// Time range of a bounded job, for `percentComplete`.
    pub window: Option<(i64, i64)>,
    metrics: Arc<Metrics>,
    uploads: BTreeMap<u32, ObjectUpload>,
    /// Async exports: the progress is saved every this many rows (and the lease to extend).
    save_every: Option<(u64, Duration)>,
    /// Async exports: more rows than this fail the job (`export.max_rows`).
    max_rows: Option<u64>,
    /// Async exports: the result is one file even when it has no rows (a header, or a
    /// Parquet file's schema), so that a completed export always has a file to download.
    one_file_even_if_empty: bool,
    /// Async exports: `export.disk_quota_mb`, held while the file is written (the API only
    /// checks it when an export is asked for, and exports asked for at once all pass that).
    quota: Option<DiskQuota>,
    /// The length of the time slices this run's queries cover (0: one query over the window),
    /// kept with every checkpoint so that a resumed run continues on the same grid.
    pub slice_ms: i64,
}

impl Export {
    #[expect(
        clippy::too_many_arguments,
        reason = "the export's whole context, built in one place (Worker::export): a struct of them would only be taken apart here"
    )]
    pub fn new(
        job_id: Uuid,
        worker_id: String,
        store: Arc<dyn JobStore>,
        uploader: Arc<dyn Uploader>,
        concurrency: usize,
        progress: Arc<Mutex<Progress>>,
        window: Option<(i64, i64)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            job_id,
            worker_id,
            store,
            uploader,
            concurrency,
            progress,
            window,
            metrics,
            uploads: BTreeMap::new(),
            save_every: None,
            max_rows: None,
            one_file_even_if_empty: false,
            quota: None,
            slice_ms: 0,
        }
    }

    /// Saves the progress each time another `rows` rows are written, besides the heartbeat's
    /// saves, so that a client polling an async export sees it move in steps of `rows`.
    pub fn save_progress_every(&mut self, rows: u64, lease: Duration) {
        self.save_every = Some((rows.max(1), lease));
    }

    /// Fails the export as soon as its result passes `rows` rows: its file is never completed.
    pub fn fail_past(&mut self, rows: u64) {
        self.max_rows = Some(rows);
    }

    /// Writes a file for a result with no rows too (see `one_file_even_if_empty`).
    pub fn one_file_even_if_empty(&mut self) {
        self.one_file_even_if_empty = true;
    }

    /// Fails the export once the files under `dir` take more than `bytes` (measured before
    /// the first chunk it writes and every [`QUOTA_CHECK_EVERY`] bytes after).
    pub fn hold_to_quota(&mut self, dir: std::path::PathBuf, bytes: u64) {
        self.quota = Some(DiskQuota { dir, bytes, unmeasured: QUOTA_CHECK_EVERY });
    }

    /// Before `len` more bytes are written: past the quota, the export fails.
    async fn writing(&mut self, len: usize) -> Result<(), ExportError> {
        let Some(quota) = self.quota.as_mut() else { return Ok(()) };
        quota.unmeasured += len as u64;
        if quota.unmeasured < QUOTA_CHECK_EVERY {
            return Ok(());
        }
        quota.unmeasured = 0;
        let used = crate::upload::used_bytes(&quota.dir).await?;
        if used > quota.bytes {
            return Err(ExportError::OverQuota { used, quota: quota.bytes });
        }
        Ok(())
    }

    /// After `rows` more rows: fails past `max_rows`, saves the progress at a step.
    async fn counted(&mut self, rows: u64) -> Result<(), ExportError> {
        let (before, after) = {
            let mut p = self.progress();
            p.events_generated += rows;
            (p.events_generated - rows, p.events_generated)
        };
        if let Some(max) = self.max_rows
            && after > max
        {
            return Err(ExportError::Query(format!(
                "the query's result has more than {max} rows, the most one export may have \
                 (export.max_rows): narrow the query (a WHERE clause, a shorter from/to, a LIMIT)"
            )));
        }
        if let Some((step, lease)) = self.save_every
            && before / step != after / step
        {
            let snapshot = self.progress().clone();
            // An operator's request is left for the heartbeat to hand on.
            self.store.heartbeat(self.job_id, &self.worker_id, lease, &snapshot).await?;
        }
        Ok(())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `stream` through `writer` until it is exhausted or an operator request arrives.
    /// `writer` comes back (it moves to a blocking thread for every batch).
    pub async fn pump(
        &mut self,
        mut writer: PartWriter,
        mut stream: SendableRecordBatchStream,
        control: &mut watch::Receiver<Option<Interrupt>>,
    ) -> Result<(PartWriter, Ended), ExportError> {
        // The query decodes the next batches while this one is encoded and compressed, so
        // that both run at once (the query is dropped, and stops, when the pump returns).
        let (tx, mut batches) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        let mut query = AbortOnDropHandle::new(tokio::spawn(
            async move {
                while let Some(item) = stream.next().await {
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            }
            .in_current_span(),
        ));
        loop {
            if let Some(interrupt) = *control.borrow() {
                return Ok((writer, Ended::Interrupted(interrupt)));
            }
            let deadline = writer.deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = batches.recv() => match next {
                    // The query ended: exhausted, unless its task panicked.
                    None => match (&mut query).await {
                        Ok(()) => return Ok((writer, Ended::Exhausted)),
                        Err(e) => return Err(ExportError::Query(format!("query failed: {e}"))),
                    },
                    Some(Err(e)) if matches!(e.find_root(), datafusion::error::DataFusionError::ResourcesExhausted(_)) => {
                        return Err(ExportError::Query(format!(
                            "the query needs more memory than one query may use (worker.query_memory_mb): \
                             narrow it (fewer groups, a shorter from/to) or ask the operator to raise the limit ({})",
                            crate::query::query_error_text(&e)
                        )));
                    }
                    Some(Err(e)) => return Err(ExportError::Query(format!("query failed: {}", crate::query::query_error_text(&e)))),
                    Some(Ok(batch)) => {
                        let rows = batch.num_rows() as u64;
                        let (w, events) = tokio::task::spawn_blocking(move || {
                            let mut events = Vec::new();
                            let res = writer.write_batch(&batch, &mut events);
                            (writer, res.map(|_| events))
                        })
                        .await
                        .map_err(|e| ExportError::Encode(std::io::Error::other(e)))?;
                        writer = w;
                        self.counted(rows).await?;
                        self.apply(events?).await?;
                    }
                },
                () = sleep => {
                    writer = self.close_part(writer, Close::IfExpired).await?;
                }
                _ = control.changed() => {}
            }
        }
    }

    /// Closes the open part as `how` says and uploads what remains of it.
    pub async fn close_part(
        &mut self,
        mut writer: PartWriter,
        how: Close,
    ) -> Result<PartWriter, ExportError> {
        let mut events = Vec::new();
        match how {
            Close::IfExpired => writer.close_if_expired(std::time::Instant::now(), &mut events)?,
            Close::Now => writer.close(&mut events)?,
            Close::Last => {
                if self.one_file_even_if_empty {
                    writer.open_if_none_yet(&mut events)?;
                }
                writer.close(&mut events)?;
            }
        }
        self.apply(events).await?;
        Ok(writer)
    }

    async fn apply(&mut self, events: Vec<PartEvent>) -> Result<(), ExportError> {
        for event in events {
            match event {
                PartEvent::Opened { index, key, content_type } => {
                    let meta = ObjectMeta { key, content_type };
                    let upload = ObjectUpload::new(self.uploader.clone(), meta, self.concurrency);
                    self.uploads.insert(index, upload);
                }
                PartEvent::Chunk { index, data } => {
                    self.writing(data.len()).await?;
                    if let Some(upload) = self.uploads.get_mut(&index) {
                        upload.put_chunk(data).await?;
                    }
                }
                PartEvent::Closed { index, part, rows_before, max_time_ms, resume } => {
                    self.writing(part.chunks.iter().map(Bytes::len).sum()).await?;
                    // The upload stays in `uploads` until it is complete: if this is cut off
                    // (the shutdown deadline), `abort_all` still finds it.
                    let Some(upload) = self.uploads.get_mut(&index) else { continue };
                    let key = upload.key().to_string();
                    let mut chunks = part.chunks;
                    let last = chunks.pop().unwrap_or_default();
                    for c in chunks {
                        upload.put_chunk(c).await?;
                    }
                    // Fencing: a worker whose job was taken over writes no more parts.
                    if !self.store.holds(self.job_id, &self.worker_id).await? {
                        return Err(ExportError::Store(StoreError::LeaseLost(self.job_id)));
                    }
                    let bytes = upload.finish(last).await?;
                    self.uploads.remove(&index);
                    let record = PartRecord {
                        index,
                        url: self.uploader.url(&key),
                        key,
                        bytes,
                        rows: part.rows,
                        rows_before,
                        completed_at_ms: now_ms(),
                        resume: ResumePoint { slice_ms: Some(self.slice_ms), ..resume },
                        sha256: part.sha256,
                    };
                    let snapshot = {
                        let mut p = self.progress();
                        p.events_sent = rows_before + part.rows;
                        if let Some(t) = max_time_ms {
                            p.last_datetime_ms = Some(p.last_datetime_ms.map_or(t, |m| m.max(t)));
                        }
                        if let (Some((from, to)), Some(t)) = (self.window, p.last_datetime_ms)
                            && to > from
                        {
                            let pct =
                                ((t - from + 1) as f64 / (to - from) as f64 * 100.0).clamp(0.0, 99.0) as u8;
                            p.percent_complete = p.percent_complete.max(pct);
                        }
                        p.clone()
                    };
                    tracing::info!(part = index, key = %record.key, bytes, rows = record.rows, "part uploaded");
                    self.store.checkpoint(self.job_id, &self.worker_id, &record, &snapshot).await?;
                    self.metrics.parts_uploaded.inc();
                    self.metrics.rows_exported.inc_by(record.rows);
                    self.metrics.bytes_uploaded.inc_by(record.bytes);
                }
            }
        }
        Ok(())
    }

    /// Aborts every upload still in flight: nothing is left half-done in the bucket.
    pub async fn abort_all(&mut self) {
        for (_, upload) in std::mem::take(&mut self.uploads) {
            upload.abort().await;
        }
    }
}
