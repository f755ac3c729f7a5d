//! A Parquet file written with its columns encoded in parallel.
//!
//! The parquet crate's `ArrowWriter` encodes a row group's columns one after the other on
//! the caller's thread: an export to Parquet used 1.0–1.4 of the machine's two cores, with the
//! encoder the bottleneck (DuckDB, encoding in parallel, wrote Parquet 1.1–1.4× faster). The
//! columns of a row group are independent until the row group is closed, so each batch's
//! columns are encoded on a thread per core, four at most ([`ParallelParquetWriter::write`]),
//! and each column's last pages compressed in parallel too ([`ParallelParquetWriter::flush`]).
//! Scoped threads, one per core and batch, rather than a pool: rayon's idle workers spin, and on
//! two cores that took CPU from the query feeding the writer (an export from a CSV table, whose
//! parsing is the bottleneck, was 9% slower on rayon than on one thread). The file is the
//! one `ArrowWriter` writes: the same properties, the Arrow schema in its metadata, row groups
//! in order. Row groups close where the caller says, as with `ArrowWriter::flush`.

use std::io::Write;
use std::sync::OnceLock;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::errors::Result;
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// Encodes record batches into one Parquet file written to `W`.
pub struct ParallelParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    open: Option<OpenRowGroup>,
}

/// The row group being encoded: one writer per leaf column, holding its encoded pages.
struct OpenRowGroup {
    columns: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl<W: Write + Send> ParallelParquetWriter<W> {
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        // Built as `ArrowWriter` builds its file (the Arrow schema goes into the metadata),
        // then taken apart into the file and the factory of column writers.
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(Self { file, factory, schema, open: None })
    }

    /// Adds every row of `batch` to the open row group, its columns encoded in parallel.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let open = match &mut self.open {
            Some(open) => open,
            none => none.insert(OpenRowGroup {
                columns: self.factory.create_column_writers(self.file.flushed_row_groups().len())?,
                rows: 0,
            }),
        };
        let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(open.columns.len());
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        let work: Vec<_> = open.columns.iter_mut().zip(leaves).collect();
        // Weighed by what each column encoded so far: its share of the work to come.
        in_parallel(
            work,
            |(writer, _)| writer.get_estimated_total_bytes(),
            |(writer, leaf)| writer.write(&leaf),
        )?;
        open.rows += batch.num_rows();
        Ok(())
    }

    /// Closes the open row group (if it holds rows) and writes it to the file.
    pub fn flush(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let chunks = in_parallel(open.columns, ArrowColumnWriter::memory_size, ArrowColumnWriter::close)?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Rows in the open row group.
    pub fn in_progress_rows(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.rows)
    }

    /// The open row group's estimated encoded size (as `ArrowWriter::in_progress_size`).
    pub fn in_progress_size(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.columns.iter().map(|c| c.get_estimated_total_bytes()).sum())
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
        Ok(metadata)
    }
}

/// Runs `work` on every item, in order: the items cut into one contiguous group per core,
/// balanced by `weight`, each group on a scoped thread but the first, which runs here.
fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    weight: impl Fn(&T) -> usize,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    // At most four per writer: each part or stream has its own writer, and on a big machine
    // running several jobs a thread per core for each would oversubscribe it many times over.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4));
    let threads = cores.min(items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    let weights: Vec<usize> = items.iter().map(|i| weight(i).saturating_add(1)).collect();
    let total: usize = weights.iter().sum();
    let mut groups: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    let mut before = 0usize;
    for (item, w) in items.into_iter().zip(weights) {
        // An item goes to the group its first byte of work falls in.
        let group = ((before as u128 * threads as u128) / total as u128) as usize;
        groups[group.min(threads - 1)].push(item);
        before += w;
    }
    let work = &work;
    std::thread::scope(|scope| {
        let mut groups = groups.into_iter();
        let here = groups.next().unwrap_or_default();
        let spawned: Vec<_> = groups
            .map(|group| scope.spawn(move || group.into_iter().map(work).collect::<Result<Vec<R>>>()))
            .collect();
        let mut out = here.into_iter().map(work).collect::<Result<Vec<R>>>()?;
        for thread in spawned {
            out.extend(thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use datafusion::arrow::array::{Int64Array, ListArray, StringArray, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn work_in_parallel_comes_back_in_order_and_errors_pass_through() {
        let items: Vec<usize> = (0..50).collect();
        let out = in_parallel(items.clone(), |i| if *i < 3 { 1_000 } else { 1 }, |i| Ok(i * 2)).unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let failed = in_parallel(
            items,
            |_| 1,
            |i| {
                if i == 40 { Err(parquet::errors::ParquetError::General("column 40".into())) } else { Ok(i) }
            },
        );
        assert!(failed.unwrap_err().to_string().contains("column 40"));
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
