//! The body of a `POST /query` answer: a JSON array written element by element,
//! `[{"header":…}`, then `,\n{"row":{"columns":[…]}}` per row, then `,\n{"finalMessage":…}]`
//! or `,\n{"errorMessage":{…}}]`: whatever ends it, the array is whole.
//!
//! A task on the query runtime pulls the query's record batches one at a time and writes each
//! in slices of rows into the body through a small bounded channel: a slow client slows the
//! query down, and a query holds at most one batch (`forwarder_ksql_batch_bytes_held`). A push
//! query then polls its tables, on an interval, for the rows whose time lies in the next window
//! `[end of the last one, now − lag)` (as a continuous job does), one window's query at a time,
//! and writes a newline (whitespace, valid between elements, as ksqlDB does) while it waits, so
//! that a client that left is noticed. The client going away drops the body, which ends the
//! task at once, its query with it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::idle::{Activity, busy_until};
use super::ksql_error::{KsqlError, failure, refused};
use super::ksql_request::schema_text;
use super::stream_registry::Registered;
use crate::encode::jsonl::JsonlEncoder;
use crate::encode::{EncodedRows, Encoder};
use crate::job::now_ms;
use crate::metrics::{KindLabel, Metrics};
use crate::query::{CONTINUOUS_LAG, QueryEngine, QueryWindow};

/// Chunks that may wait for the client.
const QUEUED_CHUNKS: usize = 4;
/// Rows written into one chunk (a batch is sliced, without copying, into pieces this long).
const ROWS_PER_CHUNK: usize = 256;
/// How often a push query looks for new rows (and tells whether its client is still there).
const POLL_EVERY: Duration = Duration::from_secs(1);

/// A running `/query` query, counted in `forwarder_ksql_queries_running` while it lives.
pub struct Live {
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl Live {
    pub fn new(metrics: Arc<Metrics>, kind: &'static str) -> Self {
        metrics.ksql_queries.get_or_create(&KindLabel { kind }).inc();
        Self { metrics, kind }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.metrics.ksql_queries.get_or_create(&KindLabel { kind: self.kind }).dec();
    }
}

/// What a push query needs to look for new rows.
pub struct PushPlan {
    pub engine: Arc<dyn QueryEngine>,
    pub sql: String,
    /// Where the next window starts: the end of the first one.
    pub from_ms: i64,
}

/// A query whose first batch the handler already pulled.
pub struct Opened {
    pub query_id: String,
    pub stream: SendableRecordBatchStream,
    pub first: Option<RecordBatch>,
    /// A push query's `LIMIT`.
    pub limit: Option<u64>,
    pub push: Option<PushPlan>,
    /// The connection's, kept busy while the query computes its next rows.
    pub activity: Option<Activity>,
}

/// How writing ended short of a final message.
enum Stop {
    /// The client is gone: nobody is left to tell.
    Gone,
    /// `POST /close-query`.
    Closed,
    Failed(KsqlError),
}

/// Starts writing on `runtime` and returns the body.
pub fn start(runtime: &tokio::runtime::Handle, opened: Opened, registered: Registered, live: Live) -> Body {
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    runtime.spawn(async move {
        let query_id = opened.query_id.clone();
        let cancel = registered.cancel.clone();
        let mut out = Out { tx, cancel, metrics: live.metrics.clone(), rows: 0, activity: None };
        let last = match write(&mut out, opened).await {
            Ok(message) => format!(",\n{}]\n", serde_json::json!({ "finalMessage": message })),
            Err(Stop::Closed) => format!(",\n{}]\n", serde_json::json!({ "finalMessage": "Query Closed" })),
            Err(Stop::Failed(e)) => {
                tracing::warn!(query_id, error = ?e, "ksql query failed after its header");
                format!(",\n{}]\n", serde_json::json!({ "errorMessage": e.body() }))
            }
            Err(Stop::Gone) => {
                tracing::info!(query_id, rows = out.rows, "ksql query ended: the client is gone");
                return;
            }
        };
        let _ = out.tx.send(Bytes::from(last)).await;
        tracing::info!(query_id, rows = out.rows, "ksql query ended");
        drop((registered, live));
    });
    Body::from_stream(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|chunk| chunk.map(Ok::<Bytes, Infallible>))
    }))
}

/// Writes the header and the rows; the final message on success.
async fn write(out: &mut Out, opened: Opened) -> Result<&'static str, Stop> {
    let Opened { query_id, mut stream, first, limit, push, activity } = opened;
    out.activity = activity;
    let schema = stream.schema();
    let header = serde_json::json!({"header": {"queryId": query_id, "schema": schema_text(&schema)}});
    out.send(format!("[{header}").into_bytes()).await?;
    let mut encoder = JsonlEncoder::values(&schema, b",\n{\"row\":{\"columns\":[", b"]}}");
    let mut next = first;
    let Some(push) = push else {
        loop {
            if let Some(batch) = next.take() {
                out.batch(&mut encoder, &batch).await?;
            }
            match out.next(&mut stream).await? {
                Some(batch) => next = Some(batch),
                None => return Ok("Query Completed"),
            }
        }
    };
    let mut from_ms = push.from_ms;
    loop {
        // This window's rows, up to the limit.
        loop {
            if let Some(batch) = next.take() {
                let left = limit.map_or(u64::MAX, |l| l.saturating_sub(out.rows));
                let rows = batch.num_rows().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.batch(&mut encoder, &batch.slice(0, rows)).await?;
            }
            if limit.is_some_and(|l| out.rows >= l) {
                return Ok("Limit Reached");
            }
            match out.next(&mut stream).await? {
                Some(batch) => next = Some(batch),
                None => break,
            }
        }
        // The next window, once time has moved past this one.
        let to_ms = loop {
            out.wait(POLL_EVERY).await?;
            let to_ms = now_ms() - CONTINUOUS_LAG.as_millis() as i64;
            if to_ms > from_ms {
                break to_ms;
            }
        };
        let window = QueryWindow { from_ms: Some(from_ms), to_ms: Some(to_ms) };
        let left = limit.map(|l| l.saturating_sub(out.rows));
        let run = tokio::select! {
            biased;
            () = out.cancel.cancelled() => return Err(Stop::Closed),
            () = out.tx.closed() => return Err(Stop::Gone),
            run = push.engine.run(&push.sql, window, 0, left) => run,
        };
        stream = run.map_err(|e| Stop::Failed(refused(e, &push.sql)))?.stream;
        from_ms = to_ms;
    }
}

/// The body's end of the channel, with what it takes to stop at once.
struct Out {
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    /// Rows written so far.
    rows: u64,
    activity: Option<Activity>,
}

impl Out {
    async fn send(&self, bytes: Vec<u8>) -> Result<(), Stop> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Stop::Closed),
            sent = self.tx.send(Bytes::from(bytes)) => sent.map_err(|_| Stop::Gone),
        }
    }

    /// The query's next batch, unless the client leaves or the query is closed first.
    async fn next(&self, stream: &mut SendableRecordBatchStream) -> Result<Option<RecordBatch>, Stop> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Stop::Closed),
            () = self.tx.closed() => Err(Stop::Gone),
            item = busy_until(self.activity.as_ref(), stream.next()) => item.transpose().map_err(|e| Stop::Failed(failure(&e))),
        }
    }

    /// Waits `interval`, then writes a newline: if the client left, a write is what tells.
    async fn wait(&self, interval: Duration) -> Result<(), Stop> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(Stop::Closed),
            () = self.tx.closed() => return Err(Stop::Gone),
            () = tokio::time::sleep(interval) => {}
        }
        self.send(b"\n".to_vec()).await
    }

    /// Writes `batch`'s rows, a slice at a time; its bytes count as held until it is written.
    async fn batch(&mut self, encoder: &mut JsonlEncoder, batch: &RecordBatch) -> Result<(), Stop> {
        let held = batch.get_array_memory_size() as i64;
        self.metrics.ksql_batch_bytes.inc_by(held);
        let written = self.slices(encoder, batch).await;
        self.metrics.ksql_batch_bytes.dec_by(held);
        written
    }

    async fn slices(&mut self, encoder: &mut JsonlEncoder, batch: &RecordBatch) -> Result<(), Stop> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let rows = ROWS_PER_CHUNK.min(batch.num_rows() - offset);
            let mut encoded = EncodedRows::default();
            encoder.rows(&batch.slice(offset, rows), &mut encoded).map_err(|e| {
                Stop::Failed(KsqlError::from(super::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    500,
                    format!("encoding a row failed: {}", crate::encode::error_text(&e)),
                )))
            })?;
            self.send(encoded.bytes).await?;
            self.rows += rows as u64;
            offset += rows;
        }
        Ok(())
    }
}
