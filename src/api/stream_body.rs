//! The body of a `POST /v1/stream` answer: the export pipeline with an HTTP body as its sink.
//!
//! A task on the query runtime pulls record batches from the query into a small queue; a
//! blocking thread encodes each (TSV, CSV, JSON Lines; or Parquet row groups), compresses it (none, gzip, zstd) and
//! writes it into the body in chunks through a bounded channel. Every stage waits for the
//! next (backpressure), so a slow client slows the query down instead of growing a buffer:
//! memory stays flat however large the result.
//!
//! How it ends: the query's last row, and the compressor's trailer; or a failure (a query
//! error, `DELETE /v1/stream/{id}`), after which the body ends with the tagged exception
//! frame ([`super::exception_frame`]), compressed like the rest; or the client going away,
//! which closes the channel, stops the encoder, and drops the query at once.

use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::exception_frame;
use super::idle::{Activity, busy_until};
use super::stream_parquet::ParquetStream;
use super::stream_registry::Registered;
use super::stream_request::StreamFormat;
use crate::compress::{self, Compression, Compressor};
use crate::encode::{EncodedRows, Encoder};

/// Bytes handed to the HTTP body at a time.
const CHUNK: usize = 64 * 1024;
/// Chunks that may wait for the client.
const QUEUED_CHUNKS: usize = 4;
/// Record batches (8,192 rows each) the query may have ready ahead of the encoder.
const PREFETCH_BATCHES: usize = 2;
/// When the query is slower than the client, what is compressed is sent at least this often
/// (a compressor holds up to a block otherwise, and a slow query's rows would wait for it).
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One streamed answer: what to write and how.
pub struct StreamPlan {
    pub format: StreamFormat,
    pub compression: Option<Compression>,
    pub tag: String,
    pub query_id: String,
}

/// A query failure as the frame tells it (and the log): never a credential (see
/// [`crate::query::query_error_text`]).
pub fn failure_text(e: &DataFusionError) -> String {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return format!(
            "the query needs more memory than one query may use (worker.query_memory_mb): narrow it (fewer \
             groups, fewer rows sorted) or ask the operator to raise the limit ({})",
            crate::query::query_error_text(e)
        );
    }
    format!("query failed: {}", crate::query::query_error_text(e))
}

/// Starts the pipeline on `runtime` and returns the body it writes. `first` is the batch the
/// handler already pulled (to answer a query that fails at once with an error status).
pub fn start(
    runtime: &tokio::runtime::Handle,
    plan: StreamPlan,
    schema: SchemaRef,
    first: Option<RecordBatch>,
    stream: SendableRecordBatchStream,
    registered: Registered,
    activity: Option<Activity>,
) -> Body {
    let (batch_tx, batch_rx) = mpsc::channel(PREFETCH_BATCHES);
    let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    let cancel = registered.cancel.clone();
    runtime.spawn(pull(stream, first, batch_tx, registered, activity));
    runtime.spawn_blocking(move || {
        let query_id = plan.query_id.clone();
        if let Err(e) = write_body(plan, &schema, batch_rx, body_tx, &cancel) {
            // The client went away (or its connection broke): nobody is left to tell.
            tracing::info!(query_id, error = %e, "stream ended early: the client is gone");
        }
    });
    Body::from_stream(futures::stream::poll_fn(move |cx| {
        body_rx.poll_recv(cx).map(|chunk| chunk.map(Ok::<Bytes, Infallible>))
    }))
}

/// Feeds the query's batches to the encoder until the query ends, fails, is cancelled, or
/// the encoder is gone; the query is dropped (and stops) when this returns.
async fn pull(
    mut stream: SendableRecordBatchStream,
    first: Option<RecordBatch>,
    tx: mpsc::Sender<Result<RecordBatch, String>>,
    registered: Registered,
    activity: Option<Activity>,
) {
    let cancel = registered.cancel.clone();
    let mut next = first.map(Ok);
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tx.closed() => return,
                // Rows that take long to compute keep the connection busy, not idle.
                item = busy_until(activity.as_ref(), stream.next()) => match item {
                    None => return,
                    Some(Ok(batch)) => Ok(batch),
                    Some(Err(e)) => Err(failure_text(&e)),
                },
            },
        };
        let failed = item.is_err();
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = tx.send(item) => if sent.is_err() || failed { return },
        }
    }
}

/// Encodes and compresses every batch into the body; on a failure, ends it with the frame.
/// An error here means the client is gone.
fn write_body(
    plan: StreamPlan,
    schema: &SchemaRef,
    mut batches: mpsc::Receiver<Result<RecordBatch, String>>,
    body: mpsc::Sender<Bytes>,
    cancel: &tokio_util::sync::CancellationToken,
) -> io::Result<()> {
    let writer = BodyWriter::new(body);
    let mut sink = Sink::new(&plan, schema, writer.clone())?;
    let mut flushed = Instant::now();
    let outcome = loop {
        let item = match batches.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                // The query is behind: send what is ready rather than hold it.
                if flushed.elapsed() >= FLUSH_EVERY {
                    sink.settle()?;
                    writer.flush_chunk()?;
                    flushed = Instant::now();
                }
                batches.blocking_recv()
            }
        };
        if cancel.is_cancelled() {
            break Err(format!(
                "the query was cancelled (DELETE /v1/stream/{}): the result is incomplete",
                plan.query_id
            ));
        }
        match item {
            None => break Ok(()),
            Some(Err(message)) => break Err(message),
            Some(Ok(batch)) => {
                if let Err(message) = sink.write(&batch)? {
                    break Err(message);
                }
            }
        }
    };
    match outcome {
        Ok(()) => sink.finish()?,
        Err(message) => {
            tracing::warn!(query_id = plan.query_id, error = %message, "stream failed after its first byte");
            sink.fail(&exception_frame::frame(&plan.tag, &message), writer.clone())?;
        }
    }
    writer.flush_chunk()
}

/// Where batches become body bytes: a row format through a compressor, or Parquet.
enum Sink {
    Rows { encoder: Box<dyn Encoder>, compressor: Box<dyn Compressor>, rows: EncodedRows },
    Parquet(Box<ParquetStream<BodyWriter>>),
}

impl Sink {
    fn new(plan: &StreamPlan, schema: &SchemaRef, writer: BodyWriter) -> io::Result<Self> {
        let encoder: Box<dyn Encoder> = match plan.format {
            StreamFormat::Parquet => return Ok(Sink::Parquet(Box::new(ParquetStream::new(schema, writer)?))),
            StreamFormat::CsvWithNames => Box::new(crate::encode::csv::CsvEncoder::new(schema)),
            StreamFormat::JsonEachRow => Box::new(crate::encode::jsonl::JsonlEncoder::new(schema)),
            StreamFormat::TabSeparatedWithNames => Box::new(crate::encode::tsv::TsvEncoder::new(schema)),
        };
        let options = compress::Options {
            // ClickHouse's default for HTTP (http_zlib_compression_level): fast, for a live stream.
            deflate_level: 3,
            zstd_level: 3,
            password: None,
            entry_name: String::new(),
        };
        let mut compressor =
            compress::compressor(plan.compression.unwrap_or(Compression::Plain), &options, writer)?;
        compressor.write(encoder.header())?;
        Ok(Sink::Rows { encoder, compressor, rows: EncodedRows::default() })
    }

    /// Writes one batch. The outer error is the client gone; the inner one a row that cannot
    /// be encoded (which ends the stream with the frame).
    fn write(&mut self, batch: &RecordBatch) -> io::Result<Result<(), String>> {
        match self {
            Sink::Rows { encoder, compressor, rows } => {
                rows.clear();
                if let Err(e) = encoder.rows(batch, rows) {
                    return Ok(Err(format!("encoding a row failed: {}", crate::encode::error_text(&e))));
                }
                compressor.write(&rows.bytes)?;
            }
            Sink::Parquet(parquet) => parquet.write(batch)?,
        }
        Ok(Ok(()))
    }

    /// Hands out what the compressor holds (a Parquet row group goes out when it closes).
    fn settle(&mut self) -> io::Result<()> {
        match self {
            Sink::Rows { compressor, .. } => compressor.settle(),
            Sink::Parquet(_) => Ok(()),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Rows { compressor, .. } => compressor.finish(),
            Sink::Parquet(parquet) => parquet.finish(),
        }
    }

    /// Ends the body with `frame`: inside the compression for a row format; after the last
    /// row group, with no footer, for Parquet.
    fn fail(self, frame: &[u8], mut writer: BodyWriter) -> io::Result<()> {
        match self {
            Sink::Rows { mut compressor, .. } => {
                compressor.write(frame)?;
                compressor.finish()
            }
            Sink::Parquet(parquet) => {
                drop(parquet);
                writer.write_all(frame)
            }
        }
    }
}

/// Cuts what the compressor writes into body chunks of [`CHUNK`] bytes and sends each,
/// waiting while the client is [`QUEUED_CHUNKS`] behind. Shared: the compressor owns one
/// clone, the pipeline flushes through another.
#[derive(Clone)]
struct BodyWriter {
    state: Arc<Mutex<(Vec<u8>, mpsc::Sender<Bytes>)>>,
}

impl BodyWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self { state: Arc::new(Mutex::new((Vec::with_capacity(CHUNK), tx))) }
    }

    /// Sends what is buffered, however little.
    fn flush_chunk(&self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (buf, tx) = &mut *state;
        if buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(buf, Vec::with_capacity(CHUNK)));
        tx.blocking_send(chunk).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client is gone"))
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let full = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.0.extend_from_slice(data);
            state.0.len() >= CHUNK
        };
        if full {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
