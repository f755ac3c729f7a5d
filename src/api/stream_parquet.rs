//! Parquet into a streamed body: row groups are written out as they close (a row group is
//! closed early once its encoded size reaches [`ROW_GROUP_BYTES`], so memory stays bounded),
//! and the footer, which a reader needs first, comes last. A stream that fails part way has no
//! footer and ends with the exception frame instead: no Parquet reader takes it for a file.

use std::io::{self, Write};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::encode::parquet::ROW_GROUP_ROWS;
use crate::encode::parquet_columns::ParallelParquetWriter;

/// The encoded size at which a row group is closed and sent.
const ROW_GROUP_BYTES: usize = 32 << 20;

pub struct ParquetStream<W: Write + Send> {
    writer: ParallelParquetWriter<W>,
}

impl<W: Write + Send> ParquetStream<W> {
    /// zstd inside, statistics and dictionaries as the writer's defaults keep them.
    pub fn new(schema: &SchemaRef, out: W) -> io::Result<Self> {
        let level = ZstdLevel::try_new(3).map_err(io::Error::other)?;
        let props = WriterProperties::builder().set_compression(Compression::ZSTD(level)).build();
        let writer = ParallelParquetWriter::try_new(out, schema.clone(), props).map_err(io::Error::other)?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        self.writer.write(batch).map_err(io::Error::other)?;
        if self.writer.in_progress_size() >= ROW_GROUP_BYTES
            || self.writer.in_progress_rows() >= ROW_GROUP_ROWS
        {
            self.writer.flush().map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Closes the last row group and writes the footer.
    pub fn finish(self) -> io::Result<()> {
        self.writer.finish().map(drop).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn what_it_writes_reads_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("uri", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("/a"), None, Some("/c")])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut stream = ParquetStream::new(&schema, &mut out).unwrap();
        stream.write(&batch).unwrap();
        stream.write(&batch).unwrap();
        stream.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out)).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 6);
        assert_eq!(batches[0].slice(0, 3), batch);
    }
}
