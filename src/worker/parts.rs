//! The CPU side of an export: record batches in, part events out. Runs on a blocking thread.
//! Row encodings (CSV, JSON Lines) encode each batch at once (one call to the encoder) and
//! decide, row by row, where each part ends; Parquet is written by slices of batches sized to
//! fit the part ([`columnar`]).

use std::time::Instant;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use uuid::Uuid;

use crate::encode::{self, EncodedRows, Encoder};
use crate::job::{Format, ResumePoint, part_content_type, part_file_name};
use crate::part::{FinishedPart, ParquetPart, PartFile, PartOptions, Rotation, RotationPolicy};
use crate::query::TimeColumn;

/// Rows encoded at once (DataFusion's own batch size): the encoded buffer stays a few MB.
const ENCODE_ROWS: usize = 8192;

/// What the upload side must do, in order.
#[derive(Debug)]
pub enum PartEvent {
    Opened { index: u32, key: String, content_type: &'static str },
    Chunk { index: u32, data: Bytes },
    Closed { index: u32, part: FinishedPart, rows_before: u64, max_time_ms: Option<i64>, resume: ResumePoint },
}

/// The file of the open part, in the job's encoding.
enum OpenFile {
    Rows(PartFile),
    // Boxed: the Parquet writer is large, and a row part is the common case.
    Parquet(Box<ParquetPart>),
}

struct OpenPart {
    file: OpenFile,
    index: u32,
    opened_at: Instant,
    rows_before: u64,
    max_time_ms: Option<i64>,
}

pub struct PartWriter {
    job_id: Uuid,
    prefix: String,
    options: PartOptions,
    policy: RotationPolicy,
    /// The row encoder; `None` for Parquet, which is written by [`columnar`].
    encoder: Option<Box<dyn Encoder>>,
    schema: SchemaRef,
    time_column: Option<TimeColumn>,
    open: Option<OpenPart>,
    next_index: u32,
    /// Rows of the job's result written so far (including earlier runs of a resumed job).
    rows_total: u64,
    /// The query window being written: where it starts and `rows_total` when it started.
    window_from_ms: Option<i64>,
    window_base: u64,
    /// The current batch, encoded (reused from batch to batch).
    encoded: EncodedRows,
}

impl PartWriter {
    pub fn new(
        job_id: Uuid,
        prefix: String,
        options: PartOptions,
        policy: RotationPolicy,
        schema: &Schema,
        time_column: Option<TimeColumn>,
        start: Start,
    ) -> Self {
        Self {
            job_id,
            prefix,
            encoder: encode::encoder(options.encoding, schema),
            schema: std::sync::Arc::new(schema.clone()),
            options,
            policy,
            time_column,
            open: None,
            next_index: start.next_index,
            rows_total: start.rows_total,
            window_from_ms: start.resume.from_ms,
            window_base: start.rows_total - start.resume.skip.min(start.rows_total),
            encoded: EncodedRows::default(),
        }
    }

    pub fn format(&self) -> Format {
        self.options.compression
    }

    pub fn key(&self, index: u32) -> String {
        format!(
            "{}{}",
            self.prefix,
            part_file_name(&self.job_id, index, self.options.encoding, self.options.compression)
        )
    }

    pub fn rows_total(&self) -> u64 {
        self.rows_total
    }

    /// The rows that follow come from the query window starting at `from_ms` (continuous
    /// jobs run one window after another).
    pub fn start_window(&mut self, from_ms: Option<i64>) {
        self.window_from_ms = from_ms;
        self.window_base = self.rows_total;
    }

    /// Where a run resumed after everything written so far would continue.
    pub fn resume_point(&self) -> ResumePoint {
        ResumePoint { from_ms: self.window_from_ms, skip: self.rows_total - self.window_base, slice_ms: None }
    }

    /// When the open part must be closed by time (`retention.time`), if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().and_then(|p| self.policy.deadline(p.opened_at))
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn open_part(&mut self, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        let index = self.next_index;
        self.next_index += 1;
        let key = self.key(index);
        let mut options = self.options.clone();
        options.entry_name = part_file_name(&self.job_id, index, self.options.encoding, Format::Plain);
        let file = match &self.encoder {
            Some(encoder) => {
                let header = if options.header { encoder.header() } else { &[] };
                OpenFile::Rows(PartFile::new(&options, header)?)
            }
            None => OpenFile::Parquet(Box::new(ParquetPart::new(
                &self.schema,
                options.parquet_compression,
                options.zstd_level,
                options.chunk_size,
                options.row_group_bytes,
            )?)),
        };
        let content_type = part_content_type(self.options.encoding, self.options.compression);
        events.push(PartEvent::Opened { index, key, content_type });
        self.open = Some(OpenPart {
            file,
            index,
            opened_at: Instant::now(),
            rows_before: self.rows_total,
            max_time_ms: None,
        });
        Ok(())
    }

    /// Opens the job's first part if it has none, in this run or an earlier one: a result with
    /// no rows then still closes into a file (its header, or a Parquet file with the schema
    /// and no row group), for a destination that promises one.
    pub fn open_if_none_yet(&mut self, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        if self.open.is_none() && self.next_index == 1 {
            self.open_part(events)?;
        }
        Ok(())
    }

    /// Closes the open part (if any).
    pub fn close(&mut self, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        if let Some(open) = self.open.take() {
            let part = match (open.file, self.encoder.as_mut()) {
                (OpenFile::Rows(file), Some(encoder)) => {
                    let trailer = encoder.finish().map_err(std::io::Error::other)?;
                    file.finish(&trailer)?
                }
                (OpenFile::Parquet(file), _) => file.finish()?,
                (OpenFile::Rows(_), None) => unreachable!("row parts are opened only with a row encoder"),
            };
            events.push(PartEvent::Closed {
                index: open.index,
                part,
                rows_before: open.rows_before,
                max_time_ms: open.max_time_ms,
                resume: self.resume_point(),
            });
        }
        Ok(())
    }

    /// Closes the open part if it has been open for `retention.time`.
    pub fn close_if_expired(&mut self, now: Instant, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        if self.open.as_ref().is_some_and(|p| self.policy.expired(p.opened_at, now)) {
            self.close(events)?;
        }
        Ok(())
    }

    /// Appends every row of `batch`, starting and closing parts as the policy says.
    pub fn write_batch(&mut self, batch: &RecordBatch, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        // A batch is encoded whole before its rows are placed: slices of it (zero-copy) keep
        // that buffer small whatever size of batch a source yields.
        if batch.num_rows() > ENCODE_ROWS {
            for start in (0..batch.num_rows()).step_by(ENCODE_ROWS) {
                let len = ENCODE_ROWS.min(batch.num_rows() - start);
                self.write_slice(&batch.slice(start, len), events)?;
            }
            return Ok(());
        }
        self.write_slice(batch, events)
    }

    fn write_slice(&mut self, batch: &RecordBatch, events: &mut Vec<PartEvent>) -> std::io::Result<()> {
        let times = self.time_column.and_then(|c| time_values(batch.column(c.index), c.millis_per_unit));
        let Some(encoder) = self.encoder.as_mut() else {
            return self.write_columns(batch, times.as_deref(), events);
        };
        self.encoded.clear();
        encoder
            .rows(batch, &mut self.encoded)
            .map_err(|e| std::io::Error::other(crate::encode::error_text(&e)))?;
        for i in 0..self.encoded.len() {
            let row_len = self.encoded.row(i).len() as u64;
            // The bound first (cheap); the settled size only when the bound says so.
            if let Some(OpenPart { file: OpenFile::Rows(file), .. }) = self.open.as_mut()
                && self.policy.before_row(file.rows(), file.stored_bound(), row_len) == Rotation::Rotate
                && self.policy.before_row(file.rows(), file.settled_size()?, row_len) == Rotation::Rotate
            {
                self.close(events)?;
            }
            if self.open.is_none() {
                self.open_part(events)?;
            }
            let open = self.open.as_mut().expect("a part is open");
            let OpenFile::Rows(file) = &mut open.file else { unreachable!("row encodings open row parts") };
            file.write_row(self.encoded.row(i))?;
            if let Some(t) = times.as_ref().and_then(|t| t[i]) {
                open.max_time_ms = Some(open.max_time_ms.map_or(t, |m| m.max(t)));
            }
            self.rows_total += 1;
            let index = open.index;
            events.extend(file.take_chunks().into_iter().map(|data| PartEvent::Chunk { index, data }));
            if self.policy.after_row(file.stored_bound(), row_len) == Rotation::Rotate
                && self.policy.after_row(file.settled_size()?, row_len) == Rotation::Rotate
            {
                self.close(events)?;
            }
        }
        Ok(())
    }
}

/// Where a writer starts: the index of its first part, the rows of the job's result already
/// sent by earlier runs, and where in the query the first row it gets comes from.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub next_index: u32,
    pub rows_total: u64,
    pub resume: ResumePoint,
}

/// The time column as epoch milliseconds, when it is a timestamp or an integer.
fn time_values(col: &dyn Array, millis_per_unit: i64) -> Option<Vec<Option<i64>>> {
    match col.data_type() {
        DataType::Timestamp(..)
        | DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => {
            let ms = cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None)).ok()?;
            Some(ms.as_primitive::<TimestampMillisecondType>().iter().collect())
        }
        DataType::Int64 => Some(
            col.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v.saturating_mul(millis_per_unit)))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn writer(max_bytes: u64) -> (PartWriter, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let values: Vec<String> = (0..2000).map(|i| format!("row-{i:05}-{}", "x".repeat(40))).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))]).unwrap();
        let options = PartOptions { chunk_size: 1 << 20, ..PartOptions::new(Format::Plain) };
        let policy = RotationPolicy { max_bytes: Some(max_bytes), ..RotationPolicy::default() };
        let start = Start { next_index: 1, rows_total: 0, resume: ResumePoint::default() };
        (PartWriter::new(Uuid::nil(), "p/".into(), options, policy, &schema, None, start), batch)
    }

    #[test]
    fn time_values_are_epoch_milliseconds() {
        use datafusion::arrow::array::Int64Array;
        let seconds = Int64Array::from(vec![Some(1_767_225_600), None]);
        assert_eq!(time_values(&seconds, 1000), Some(vec![Some(1_767_225_600_000), None]));
        let text = StringArray::from(vec!["2026-01-01T00:00:00Z", "n/a"]);
        assert_eq!(time_values(&text, 1), Some(vec![Some(1_767_225_600_000), None]));
    }

    #[test]
    fn rotates_between_rows_and_keeps_every_row_once() {
        let (mut w, batch) = writer(10_000);
        let mut events = Vec::new();
        w.write_batch(&batch, &mut events).unwrap();
        w.close(&mut events).unwrap();
        let mut rows_before = 0;
        let mut seen = 0;
        let mut indexes = Vec::new();
        for e in &events {
            if let PartEvent::Closed { index, part, rows_before: rb, .. } = e {
                assert_eq!(*rb, rows_before);
                rows_before += part.rows;
                seen += part.rows;
                indexes.push(*index);
                // Plain parts: the size estimate is exact, so a part ends at the first row
                // that reaches the limit.
                assert!(part.bytes >= 10_000 || *index == indexes.len() as u32 && seen == 2000);
                assert!(part.bytes < 10_000 + 100);
            }
        }
        assert_eq!(seen, 2000);
        let resumes: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PartEvent::Closed { resume, .. } => Some(resume.skip),
                _ => None,
            })
            .collect();
        assert_eq!(resumes.last(), Some(&2000));
        assert_eq!(indexes, (1..=indexes.len() as u32).collect::<Vec<_>>());
        assert!(
            matches!(&events[0], PartEvent::Opened { key, .. } if key == &format!("p/apiv2_{}_001.csv", Uuid::nil()))
        );
    }

    #[test]
    fn a_large_batch_is_encoded_in_slices() {
        let (mut w, batch) = writer(1 << 30);
        let big = datafusion::arrow::compute::concat_batches(&batch.schema(), &vec![batch; 10]).unwrap();
        let mut events = Vec::new();
        w.write_batch(&big, &mut events).unwrap();
        w.close(&mut events).unwrap();
        let Some(PartEvent::Closed { part, .. }) = events.last() else { panic!("closed last") };
        assert_eq!(part.rows, 20_000);
        assert!(
            w.encoded.ends.capacity() < 2 * ENCODE_ROWS,
            "the encoded buffer holds a slice, not the batch"
        );
    }

    #[test]
    fn resume_points_follow_windows() {
        let (mut w, batch) = writer(1 << 30);
        let mut events = Vec::new();
        w.write_batch(&batch, &mut events).unwrap();
        assert_eq!(w.resume_point(), ResumePoint { from_ms: None, skip: 2000, slice_ms: None });
        w.start_window(Some(5_000));
        assert_eq!(w.resume_point(), ResumePoint { from_ms: Some(5_000), skip: 0, slice_ms: None });
        w.write_batch(&batch.slice(0, 10), &mut events).unwrap();
        w.close(&mut events).unwrap();
        let Some(PartEvent::Closed { resume, rows_before, part, .. }) = events.last() else {
            panic!("closed last")
        };
        assert_eq!(
            (*resume, *rows_before, part.rows),
            (ResumePoint { from_ms: Some(5_000), skip: 10, slice_ms: None }, 0, 2010)
        );
    }
}

#[path = "parts_columnar.rs"]
mod columnar;

#[cfg(test)]
#[path = "parts_formats.rs"]
mod formats;
