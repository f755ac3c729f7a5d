//! A Parquet file written with its columns encoded in parallel, batches pipelined.
//!
//! The parquet crate's `ArrowWriter` encodes a row group's columns one after the other on
//! the caller's thread. The columns of a row group are independent until the row group is
//! closed, so each column's writer lives on a thread of its own ([`ColumnWorker`], one per
//! leaf column, [`MAX_WORKERS`] at most) and a batch is handed to every worker through a
//! short queue: the caller goes back for the next batch while the columns are still encoding
//! this one. Only closing a row group waits for every worker.
//!
//! Why a thread per column and a queue, rather than splitting each batch's columns between
//! the cores and waiting for them (as this file did before): the work per column and batch is
//! lumpy (a column compresses a whole page with zstd every few batches and nothing between),
//! so a wait per batch left a core idle much of the time, and an export to Parquet used 1.1-1.3
//! of two cores. With queues the lumps of different columns and batches overlap, and the OS
//! spreads the threads over the cores. Not rayon: its idle workers spin, and on two cores that
//! took CPU from the query feeding the writer. Blocked threads cost nothing.
//!
//! The file is the one `ArrowWriter` writes: the same properties, the Arrow schema in its
//! metadata, row groups in order. Row groups close where the caller says, as with
//! `ArrowWriter::flush`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// Threads per writer at most: a table with more leaf columns shares them out round-robin.
const MAX_WORKERS: usize = 16;

/// Batches a worker may have waiting: enough to even out the lumps (a page compressed every
/// few batches), few enough that the batches held stay a few MB.
const QUEUED_BATCHES: usize = 4;

/// Encodes record batches into one Parquet file written to `W`.
pub struct ParallelParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Started on the first batch (a writer that gets none spawns no thread).
    workers: Vec<ColumnWorker>,
    /// Rows handed to the workers in the open row group, `None` when no row group is open.
    open_rows: Option<usize>,
    /// Arrow's size of the batches handed to the workers in the open row group: the estimate
    /// of a worker that has encoded nothing yet and has no earlier row group to go by (above
    /// the encoded size, so a first row group errs towards closing early).
    open_arrow_bytes: usize,
    /// Leaf columns in all (for each worker's share of `open_arrow_bytes`).
    leaves: usize,
}

/// A thread holding the writers of some leaf columns (`columns`, in file order) for the open
/// row group.
struct ColumnWorker {
    columns: Vec<usize>,
    tasks: SyncSender<Task>,
    progress: Arc<Progress>,
    /// Encoded bytes per row of its columns in the last row group closed: the estimate for a
    /// new row group before the worker has encoded any of it.
    last_bytes_per_row: f64,
    thread: Option<JoinHandle<()>>,
}

/// What a worker has done in the open row group, for the size estimate.
#[derive(Default)]
struct Progress {
    /// Its columns' estimated encoded size.
    bytes: AtomicUsize,
    /// Rows its columns have encoded.
    rows: AtomicUsize,
}

enum Task {
    /// A new row group: the writers of this worker's columns.
    Start(Vec<ArrowColumnWriter>),
    /// This worker's leaves of one batch, and its row count.
    Write(Vec<ArrowLeafColumn>, usize),
    /// Close the row group's columns and send back their chunks.
    Close(SyncSender<Result<Vec<ArrowColumnChunk>>>),
    /// Answer once every task before this one is done.
    Ping(SyncSender<()>),
}

fn worker_gone() -> ParquetError {
    ParquetError::General("a Parquet column encoder thread ended unexpectedly".into())
}

impl ColumnWorker {
    fn spawn(columns: Vec<usize>) -> Result<Self> {
        let (tasks, queue) = sync_channel(QUEUED_BATCHES);
        let progress = Arc::new(Progress::default());
        let thread = std::thread::Builder::new()
            .name("parquet-column".into())
            .spawn({
                let progress = progress.clone();
                move || encode_columns(&queue, &progress)
            })
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Self { columns, tasks, progress, last_bytes_per_row: 0.0, thread: Some(thread) })
    }

    fn send(&self, task: Task) -> Result<()> {
        self.tasks.send(task).map_err(|_| worker_gone())
    }
}

/// A worker's loop: runs until its writer is dropped. A failed write is kept and reported when
/// the row group is closed (the caller learns of it then, and the file is abandoned).
fn encode_columns(queue: &Receiver<Task>, progress: &Progress) {
    let mut writers: Vec<ArrowColumnWriter> = Vec::new();
    let mut failed: Option<ParquetError> = None;
    while let Ok(task) = queue.recv() {
        match task {
            Task::Start(new) => {
                writers = new;
                progress.bytes.store(0, Ordering::Relaxed);
                progress.rows.store(0, Ordering::Relaxed);
            }
            Task::Write(leaves, rows) => {
                if failed.is_some() {
                    continue;
                }
                for (writer, leaf) in writers.iter_mut().zip(leaves) {
                    if let Err(e) = writer.write(&leaf) {
                        failed = Some(e);
                        break;
                    }
                }
                let bytes = writers.iter().map(ArrowColumnWriter::get_estimated_total_bytes).sum();
                progress.bytes.store(bytes, Ordering::Relaxed);
                progress.rows.fetch_add(rows, Ordering::Release);
            }
            Task::Close(reply) => {
                let chunks = match failed.take() {
                    Some(e) => Err(e),
                    None => std::mem::take(&mut writers).into_iter().map(ArrowColumnWriter::close).collect(),
                };
                // The writer waits for the answer; if it went away there is no one to tell.
                let _ = reply.send(chunks);
            }
            Task::Ping(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

impl<W: Write + Send> ParallelParquetWriter<W> {
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        // Built as `ArrowWriter` builds its file (the Arrow schema goes into the metadata),
        // then taken apart into the file and the factory of column writers.
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(Self {
            file,
            factory,
            schema,
            workers: Vec::new(),
            open_rows: None,
            open_arrow_bytes: 0,
            leaves: 0,
        })
    }

    /// Hands every row of `batch` to the column workers (the open row group's, a new one if
    /// none is open). Returns once it is queued; an error in encoding it surfaces at
    /// [`Self::flush`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut leaves: Vec<Option<ArrowLeafColumn>> = Vec::new();
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?.into_iter().map(Some));
        }
        if self.open_rows.is_none() {
            let mut writers: Vec<Option<ArrowColumnWriter>> = self
                .factory
                .create_column_writers(self.file.flushed_row_groups().len())?
                .into_iter()
                .map(Some)
                .collect();
            if self.workers.is_empty() {
                self.leaves = writers.len();
                self.workers = spawn_workers(writers.len())?;
            }
            for worker in &self.workers {
                let mine = worker.columns.iter().filter_map(|&c| writers[c].take()).collect();
                worker.send(Task::Start(mine))?;
            }
            self.open_rows = Some(0);
        }
        for worker in &self.workers {
            let mine =
                worker.columns.iter().filter_map(|&c| leaves.get_mut(c).and_then(Option::take)).collect();
            worker.send(Task::Write(mine, rows))?;
        }
        *self.open_rows.get_or_insert(0) += rows;
        self.open_arrow_bytes += batch.get_array_memory_size();
        Ok(())
    }

    /// Closes the open row group (if it holds rows) and writes it to the file: waits for
    /// every column to be encoded.
    pub fn flush(&mut self) -> Result<()> {
        if self.open_rows.take().is_none() {
            return Ok(());
        }
        self.open_arrow_bytes = 0;
        let mut replies = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            let (reply, answer) = sync_channel(1);
            worker.send(Task::Close(reply))?;
            replies.push(answer);
        }
        let mut chunks: Vec<Option<ArrowColumnChunk>> = Vec::new();
        for (worker, answer) in self.workers.iter_mut().zip(replies) {
            let closed = answer.recv().map_err(|_| worker_gone())??;
            // Read after the answer: the worker's last write is counted.
            let rows = worker.progress.rows.load(Ordering::Acquire);
            worker.last_bytes_per_row =
                worker.progress.bytes.load(Ordering::Relaxed) as f64 / rows.max(1) as f64;
            for (&column, chunk) in worker.columns.iter().zip(closed) {
                if chunks.len() <= column {
                    chunks.resize_with(column + 1, || None);
                }
                chunks[column] = Some(chunk);
            }
        }
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks.into_iter().flatten() {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Waits until every batch handed to the workers is encoded: [`Self::in_progress_size`]
    /// is then what the encoders hold, not an extrapolation.
    pub fn wait_encoded(&mut self) -> Result<()> {
        if self.open_rows.is_none() {
            return Ok(());
        }
        let mut replies = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            let (reply, answer) = sync_channel(1);
            worker.send(Task::Ping(reply))?;
            replies.push(answer);
        }
        replies.into_iter().try_for_each(|answer| answer.recv().map_err(|_| worker_gone()))
    }

    /// Rows in the open row group.
    pub fn in_progress_rows(&self) -> usize {
        self.open_rows.unwrap_or(0)
    }

    /// The open row group's estimated encoded size (as `ArrowWriter::in_progress_size`): what
    /// each worker's columns have encoded, scaled up to the rows handed to them but still
    /// queued (a worker that has encoded none yet counts at its last row group's bytes per
    /// row, or in the first row group at Arrow's size of what it was handed). Cheap and without
    /// waiting; [`Self::wait_encoded`] and [`Self::flush`] make it exact.
    pub fn in_progress_size(&self) -> usize {
        let Some(rows) = self.open_rows else { return 0 };
        self.workers
            .iter()
            .map(|w| {
                let done = w.progress.rows.load(Ordering::Acquire);
                let bytes = w.progress.bytes.load(Ordering::Relaxed);
                if done == 0 && w.last_bytes_per_row == 0.0 {
                    self.open_arrow_bytes / self.leaves.max(1) * w.columns.len()
                } else if done == 0 {
                    (w.last_bytes_per_row * rows as f64) as usize
                } else {
                    (bytes as u128 * rows as u128 / done as u128) as usize
                }
            })
            .sum()
    }

    /// Bytes written to the output so far.
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    pub fn flushed_row_groups(&self) -> &[RowGroupMetaData] {
        self.file.flushed_row_groups()
    }

    /// Closes the open row group and writes the footer; the output then holds the whole file.
    pub fn finish(mut self) -> Result<ParquetMetaData> {
        self.flush()?;
        let metadata = self.file.finish()?;
        // The file writer buffers: dropped, it has handed every byte to the output.
        drop(self.file);
        for mut worker in self.workers {
            drop(worker.tasks);
            if let Some(thread) = worker.thread.take() {
                thread.join().map_err(|_| worker_gone())?;
            }
        }
        Ok(metadata)
    }
}

/// One worker per leaf column, [`MAX_WORKERS`] at most (columns dealt out round-robin).
fn spawn_workers(columns: usize) -> Result<Vec<ColumnWorker>> {
    let threads = columns.clamp(1, MAX_WORKERS);
    (0..threads).map(|t| ColumnWorker::spawn((t..columns).step_by(threads).collect())).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use datafusion::arrow::array::{Int64Array, ListArray, StringArray, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    /// A table wider than the workers (columns shared out round-robin) is written as
    /// `ArrowWriter` writes it, over several row groups.
    #[test]
    fn a_wide_table_shares_the_workers() {
        let columns = MAX_WORKERS * 2 + 3;
        let schema = Arc::new(Schema::new(
            (0..columns).map(|c| Field::new(format!("c{c}"), DataType::Int64, true)).collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            (0..columns)
                .map(|c| {
                    Arc::new(Int64Array::from_iter(
                        (0..3_000i64).map(|i| (i % (c as i64 + 2) > 0).then_some(i * c as i64)),
                    )) as _
                })
                .collect(),
        )
        .unwrap();
        let props = || WriterProperties::builder().set_max_row_group_row_count(None).build();
        let mut parallel = Vec::new();
        let mut writer = ParallelParquetWriter::try_new(&mut parallel, schema.clone(), props()).unwrap();
        let mut reference_out = Vec::new();
        let mut reference = ArrowWriter::try_new(&mut reference_out, schema.clone(), Some(props())).unwrap();
        for round in 0..3 {
            for _ in 0..=round {
                writer.write(&batch).unwrap();
                reference.write(&batch).unwrap();
            }
            writer.flush().unwrap();
            reference.flush().unwrap();
        }
        assert_eq!(writer.finish().unwrap().num_row_groups(), 3);
        reference.close().unwrap();
        assert!(parallel == reference_out, "the parallel writer's file differs from ArrowWriter's");
    }

    /// Flat, nested and repeated columns come back as they went in, row group by row group,
    /// and the file is byte for byte the one `ArrowWriter` writes.
    #[test]
    fn the_file_is_the_one_arrow_writer_writes() {
        let point = DataType::Struct(
            vec![Field::new("x", DataType::Int64, true), Field::new("label", DataType::Utf8, true)].into(),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("uri", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("point", point, true),
            Field::new("tags", DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), true),
        ]));
        let rows = 5_000;
        let points = StructArray::from(vec![
            (
                Arc::new(Field::new("x", DataType::Int64, true)),
                Arc::new(Int64Array::from_iter((0..rows).map(|i| (i % 3 > 0).then_some(i)))) as _,
            ),
            (
                Arc::new(Field::new("label", DataType::Utf8, true)),
                Arc::new(StringArray::from_iter((0..rows).map(|i| Some(format!("p{}", i % 17))))) as _,
            ),
        ]);
        let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(
            (0..rows).map(|i| (i % 5 > 0).then(|| (0..i % 4).map(Some).collect::<Vec<_>>())),
        );
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i % 7 > 0).then(|| format!("/item/{i}"))),
                )),
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(points),
                Arc::new(tags),
            ],
        )
        .unwrap();
        let props = || WriterProperties::builder().set_max_row_group_row_count(None).build();

        let mut parallel = Vec::new();
        let mut writer = ParallelParquetWriter::try_new(&mut parallel, schema.clone(), props()).unwrap();
        writer.write(&batch).unwrap();
        writer.write(&batch.slice(0, 10)).unwrap();
        writer.flush().unwrap();
        assert_eq!((writer.in_progress_rows(), writer.flushed_row_groups().len()), (0, 1));
        writer.write(&batch).unwrap();
        assert_eq!(writer.in_progress_rows(), rows as usize);
        assert!(writer.in_progress_size() > 0);
        let metadata = writer.finish().unwrap();
        assert_eq!(metadata.num_row_groups(), 2);

        let mut serial = Vec::new();
        let mut reference = ArrowWriter::try_new(&mut serial, schema.clone(), Some(props())).unwrap();
        reference.write(&batch).unwrap();
        reference.write(&batch.slice(0, 10)).unwrap();
        reference.flush().unwrap();
        reference.write(&batch).unwrap();
        reference.close().unwrap();
        assert!(parallel == serial, "the parallel writer's file differs from ArrowWriter's");

        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(parallel))
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let all = datafusion::arrow::compute::concat_batches(&schema, &read).unwrap();
        let expected =
            datafusion::arrow::compute::concat_batches(&schema, &[batch.clone(), batch.slice(0, 10), batch])
                .unwrap();
        assert_eq!(all, expected);
    }
}
