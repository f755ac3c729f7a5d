//! An export run inside one HTTP request (`POST /v1/data/export-temp`): the job pipeline —
//! query, [`PartWriter`], [`ObjectUpload`] — without a job. Nothing is queued, stored or
//! checkpointed, and the run ends with every file written or none: on a failure, or when
//! `cancel` fires (the client went away, the request timed out), the uploads in flight are
//! aborted and the files already complete are deleted before [`run`] returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::parts::{PartEvent, PartWriter};
use crate::query::memory_backstop;
use crate::upload::{ObjectMeta, ObjectUpload, UploadError, Uploader};

/// Record batches (8,192 rows each) the query may have ready ahead of the encoder.
const PREFETCH_BATCHES: usize = 2;

/// Where the files of one run go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Parts named by the part writer (its prefix is the directory).
    Parts,
    /// One object at exactly this key, whatever the part writer would name it.
    Single(String),
}

/// One file the run wrote.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub key: String,
    pub url: String,
    pub bytes: u64,
    pub rows: u64,
    /// Uncompressed size of each row group (Parquet; empty for JSON Lines).
    pub row_group_sizes: Vec<u64>,
    /// Size of the rows as encoded, before compression (JSON Lines).
    pub encoded_bytes: u64,
}

/// What a finished run did, and where its time went.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub files: Vec<WrittenFile>,
    /// Waiting for the query's next batch.
    pub query_time: Duration,
    /// Encoding and compressing on a blocking thread.
    pub encode_time: Duration,
    /// Handing chunks to the uploads and completing the files.
    pub upload_time: Duration,
    /// The process's live heap at its highest sampled (once per batch) during the run.
    pub peak_memory_bytes: Option<u64>,
}

/// Why a run ended without its files; whatever it wrote is removed by then.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The query failed on its own terms (arithmetic, casts, memory): the caller's to fix.
    #[error("{0}")]
    Query(String),
    /// The query could not read its tables: the server's.
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("writing a file failed: {0}")]
    Encode(#[from] std::io::Error),
    #[error("the export was cancelled")]
    Cancelled,
}

/// Runs `stream` through `writer` into `uploader`. When it returns an error, nothing it
/// wrote is left at the destination.
pub async fn run(
    uploader: Arc<dyn Uploader>,
    writer: PartWriter,
    stream: SendableRecordBatchStream,
    place: Place,
    concurrency: usize,
    cancel: CancellationToken,
) -> Result<Outcome, RunError> {
    let mut run =
        Run { uploader, place, concurrency, cancel, uploads: Vec::new(), outcome: Outcome::default() };
    match run.pump(writer, stream).await {
        Ok(()) => Ok(run.outcome),
        Err(e) => {
            run.remove_everything().await;
            Err(e)
        }
    }
}

struct Run {
    uploader: Arc<dyn Uploader>,
    place: Place,
    concurrency: usize,
    /// Looked at between steps, never in the middle of a call to the store: a file whose
    /// completion was cut off could be left complete but unknown to the cleanup.
    cancel: CancellationToken,
    /// The files being uploaded, by part index (at most one but while a part closes).
    uploads: Vec<(u32, ObjectUpload)>,
    outcome: Outcome,
}

impl Run {
    async fn pump(
        &mut self,
        mut writer: PartWriter,
        mut stream: SendableRecordBatchStream,
    ) -> Result<(), RunError> {
        // The query decodes the next batches while this one is encoded (it is dropped, and
        // stops, when the run ends however it ends).
        let (tx, mut batches) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        let _query = AbortOnDropHandle::new(tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }));
        loop {
            let waited = Instant::now();
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(RunError::Cancelled),
                next = batches.recv() => next,
            };
            self.outcome.query_time += waited.elapsed();
            let batch = match next {
                None => break,
                Some(Err(e)) => return Err(query_failed(&e)),
                Some(Ok(batch)) => batch,
            };
            self.sample_memory();
            let encoding = Instant::now();
            let (w, events) = tokio::task::spawn_blocking(move || {
                let mut events = Vec::new();
                let res = writer.write_batch(&batch, &mut events);
                (writer, res.map(|()| events))
            })
            .await
            .map_err(|e| RunError::Encode(std::io::Error::other(e)))?;
            self.outcome.encode_time += encoding.elapsed();
            writer = w;
            self.apply(events?).await?;
        }
        let mut events = Vec::new();
        writer.close(&mut events)?;
        self.apply(events).await
    }

    fn sample_memory(&mut self) {
        if let Some(live) = memory_backstop::allocated() {
            let peak = self.outcome.peak_memory_bytes.get_or_insert(0);
            *peak = (*peak).max(live as u64);
        }
    }

    async fn apply(&mut self, events: Vec<PartEvent>) -> Result<(), RunError> {
        let started = Instant::now();
        for event in events {
            if self.cancel.is_cancelled() {
                return Err(RunError::Cancelled);
            }
            match event {
                PartEvent::Opened { index, key, content_type } => {
                    let key = match &self.place {
                        Place::Parts => key,
                        Place::Single(key) => key.clone(),
                    };
                    let upload = ObjectUpload::new(
                        self.uploader.clone(),
                        ObjectMeta { key, content_type },
                        self.concurrency,
                    );
                    self.uploads.push((index, upload));
                }
                PartEvent::Chunk { index, data } => {
                    if let Some((_, upload)) = self.uploads.iter_mut().find(|(i, _)| *i == index) {
                        upload.put_chunk(data).await?;
                    }
                }
                PartEvent::Closed { index, part, .. } => {
                    let Some(at) = self.uploads.iter().position(|(i, _)| *i == index) else { continue };
                    let mut chunks = part.chunks;
                    let last = chunks.pop().unwrap_or_default();
                    let upload = &mut self.uploads[at].1;
                    for chunk in chunks {
                        upload.put_chunk(chunk).await?;
                    }
                    let bytes = upload.finish(last).await?;
                    let key = upload.key().to_string();
                    self.uploads.remove(at);
                    tracing::info!(key, bytes, rows = part.rows, "export-temp file written");
                    self.outcome.files.push(WrittenFile {
                        url: self.uploader.url(&key),
                        key,
                        bytes,
                        rows: part.rows,
                        row_group_sizes: part.row_group_sizes,
                        encoded_bytes: part.encoded_bytes,
                    });
                }
            }
        }
        self.outcome.upload_time += started.elapsed();
        Ok(())
    }

    /// Aborts the uploads in flight and deletes the files already complete.
    async fn remove_everything(&mut self) {
        for (_, upload) in std::mem::take(&mut self.uploads) {
            upload.abort().await;
        }
        for file in std::mem::take(&mut self.outcome.files) {
            if let Err(e) = self.uploader.delete_object(&file.key).await {
                tracing::warn!(key = file.key, error = %e, "could not remove a file of a failed export");
            }
        }
    }
}

/// A query error as the caller reads it (never a credential); a failure to read the tables
/// is the server's.
fn query_failed(e: &DataFusionError) -> RunError {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return RunError::Query(format!(
            "the query needs more memory than one query may use (worker.query_memory_mb): narrow it (fewer \
             groups, fewer rows sorted) or ask the operator to raise the limit ({})",
            crate::query::query_error_text(e)
        ));
    }
    let text = format!("query failed: {}", crate::query::query_error_text(e));
    match e.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => RunError::Source(text),
        _ => RunError::Query(text),
    }
}
