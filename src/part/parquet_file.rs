//! One Parquet part being written: slices of record batches in, a complete Parquet file out
//! as upload-sized chunks. The writer ([`ParallelParquetWriter`], columns encoded in parallel)
//! writes straight into the chunk sink, so a part is uploaded row group by row group as it is
//! written; what it holds in
//! memory is the open row group's encoded pages (at most [`ROW_GROUP_BYTES`]). No temporary
//! file is needed: a Parquet file is written front to back, its footer last.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;

use super::file::FinishedPart;
use super::sink::ChunkSink;
pub use crate::encode::parquet::ROW_GROUP_BYTES;
use crate::encode::parquet::{ParquetCompression, ROW_GROUP_ROWS, writer_properties};
use crate::encode::parquet_columns::ParallelParquetWriter;

/// What a part's footer takes at most beyond the data written: the schema, and per column
/// and row group its metadata, statistics and page index (min/max values are truncated to
/// 64 bytes). Counted so that a part's size is known before it ends.
/// How near its limit a part's size is judged on encoded bytes only (see
/// [`ParquetPart::stored_bound`]): well above what the column encoders may have queued (a few
/// batches, a few hundred KB of encoded Parquet each).
const EXACT_WITHIN: u64 = 8 << 20;

fn footer_allowance(columns: usize, row_groups: usize) -> u64 {
    (4096 + 512 * columns * (row_groups + 1)) as u64
}

pub struct ParquetPart {
    writer: ParallelParquetWriter<ChunkSink>,
    sink: ChunkSink,
    rows: u64,
    columns: usize,
    /// Bytes the rows took in Arrow's memory, a stand-in for "encoded size" in the job's
    /// figures (Parquet has no text form).
    arrow_bytes: u64,
    /// The encoded size at which the open row group closes.
    row_group_bytes: u64,
}

fn parquet_error(e: parquet::errors::ParquetError) -> io::Error {
    io::Error::other(e)
}

impl ParquetPart {
    pub fn new(
        schema: &Schema,
        compression: ParquetCompression,
        zstd_level: i32,
        chunk_size: usize,
        row_group_bytes: u64,
    ) -> io::Result<Self> {
        let sink = ChunkSink::new(chunk_size);
        let row_group_bytes = row_group_bytes.max(1);
        let props = writer_properties(compression, zstd_level, row_group_bytes);
        let writer = ParallelParquetWriter::try_new(sink.clone(), Arc::new(schema.clone()), props)
            .map_err(parquet_error)?;
        Ok(Self { writer, sink, rows: 0, columns: schema.fields().len(), arrow_bytes: 0, row_group_bytes })
    }

    /// Row groups written out so far (the open one not counted).
    pub fn row_groups(&self) -> usize {
        self.writer.flushed_row_groups().len()
    }

    /// How many rows the open row group can still take so that one write closes at most
    /// this row group (the writer would otherwise split a large slice into several, past a
    /// cap on row groups per file); `None` when it is full and must be closed first
    /// ([`Self::close_row_group`]). An empty row group is sized from `arrow_bytes_per_row`
    /// (Arrow's size, above the encoded one, so a first slice errs small), a started one from
    /// its own encoded bytes per row.
    pub fn rows_fitting_row_group(&self, arrow_bytes_per_row: f64) -> Option<usize> {
        let (rows, size) = (self.writer.in_progress_rows(), self.writer.in_progress_size() as u64);
        if rows == 0 {
            return Some(
                ((self.row_group_bytes as f64 / arrow_bytes_per_row.max(1.0)) as usize)
                    .clamp(1, ROW_GROUP_ROWS),
            );
        }
        if size >= self.row_group_bytes || rows >= ROW_GROUP_ROWS {
            return None;
        }
        let per_row = (size as f64 / rows as f64).max(1.0);
        let by_size = ((self.row_group_bytes - size) as f64 / per_row) as usize;
        let fit = by_size.min(ROW_GROUP_ROWS - rows);
        (fit > 0).then_some(fit)
    }

    /// Writes the open row group out (if it holds rows).
    pub fn close_row_group(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(parquet_error)
    }

    /// Appends every row of `batch` (a slice the caller sized to fit the part); closes the
    /// row group when that made it full.
    pub fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        self.writer.write(batch).map_err(parquet_error)?;
        if self.writer.in_progress_rows() >= ROW_GROUP_ROWS
            || self.writer.in_progress_size() as u64 >= self.row_group_bytes
        {
            self.writer.flush().map_err(parquet_error)?;
        }
        self.rows += batch.num_rows() as u64;
        self.arrow_bytes += batch.get_array_memory_size() as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// About the stored size if the part ended now: the row groups written, the open one's
    /// estimated encoded size (its finished pages compressed, the current page not yet) and
    /// room for the footer. Cheap while the part is far from `limit`; within
    /// [`EXACT_WITHIN`] of it, it first waits for the queued batches to be encoded, so that the
    /// last rows of a part are placed on what the encoders hold rather than an extrapolation.
    pub fn stored_bound(&mut self, limit: u64) -> io::Result<u64> {
        let estimate = self.estimate();
        if estimate.saturating_add(EXACT_WITHIN) < limit {
            return Ok(estimate);
        }
        self.writer.wait_encoded().map_err(parquet_error)?;
        Ok(self.estimate())
    }

    fn estimate(&self) -> u64 {
        self.writer.bytes_written() as u64 + self.writer.in_progress_size() as u64 + self.footer()
    }

    fn footer(&self) -> u64 {
        footer_allowance(self.columns, self.writer.flushed_row_groups().len())
    }

    /// Closes the open row group early, so that the size is exact but for the footer: used
    /// when the part nears its limit, so that the last rows of a part are placed on real sizes.
    pub fn settled_size(&mut self) -> io::Result<u64> {
        self.writer.flush().map_err(parquet_error)?;
        Ok(self.writer.bytes_written() as u64 + self.footer())
    }

    /// Stored bytes per row so far (compressed), for sizing the next slice; `None` before
    /// the first row group is written.
    pub fn stored_bytes_per_row(&self) -> Option<f64> {
        let flushed_rows: i64 = self.writer.flushed_row_groups().iter().map(|g| g.num_rows()).sum();
        (flushed_rows > 0).then(|| self.writer.bytes_written() as f64 / flushed_rows as f64)
    }

    /// Full chunks ready for upload.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        self.sink.take_ready()
    }

    /// Writes the footer: the part is a complete Parquet file.
    pub fn finish(self) -> io::Result<FinishedPart> {
        let metadata = self.writer.finish().map_err(parquet_error)?;
        let row_group_sizes =
            metadata.row_groups().iter().map(|g| u64::try_from(g.total_byte_size()).unwrap_or(0)).collect();
        let chunks = self.sink.take_all();
        Ok(FinishedPart {
            chunks,
            bytes: self.sink.written(),
            sha256: self.sink.sha256(),
            rows: self.rows,
            encoded_bytes: self.arrow_bytes,
            row_group_sizes,
        })
    }
}
