//! Row encoders: how the rows of a record batch become bytes. Pure.
//!
//! - [`csv`]: RFC 4180 CSV with a header row in every part (Devo's format).
//! - [`jsonl`]: JSON Lines, one object per row, with JSON types kept.
//! - [`parquet`]: Parquet files, columnar: written by slices of batches, not row by row
//!   (see there), so not an [`Encoder`].
//!
//! An encoder writes a whole batch at once into a reused buffer ([`EncodedRows`]) and says
//! where each row ends, so that the part writer can end a part between any two rows without
//! a call per row or per field across the seam.

mod capped;
pub mod csv;
pub mod csv_quote;
mod fields;
pub mod jsonl;
pub mod parquet;
pub mod parquet_columns;
mod time;
pub mod tsv;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// The encoded rows of one batch: `bytes`, with `ends[i]` the offset just past row `i`.
#[derive(Debug, Default)]
pub struct EncodedRows {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
}

impl EncodedRows {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of row `i`, line end included.
    pub fn row(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Marks the end of a row at the current end of `bytes`.
    pub fn end_row(&mut self) {
        self.ends.push(self.bytes.len());
    }
}

/// What an encoder's error tells a person: the message alone for the ones worded here (a
/// value past [`capped::MAX_VALUE_BYTES`]), Arrow's whole text otherwise.
pub fn error_text(e: &ArrowError) -> String {
    match e {
        ArrowError::ComputeError(message) => message.clone(),
        e => e.to_string(),
    }
}

/// Turns record batches into the bytes of one part at a time.
pub trait Encoder: Send {
    /// What starts every part (CSV's header row; nothing for JSON Lines).
    fn header(&self) -> &[u8];
    /// Appends the rows of `batch` to `out`, one end per row. Rows are independent of the
    /// part they land in, so the caller may split them across parts anywhere between rows.
    fn rows(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<(), ArrowError>;
    /// What ends every part (nothing for row formats).
    fn finish(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(Vec::new())
    }
}

/// The shape of the rows in a part: `file.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Csv,
    Jsonl,
    Parquet,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Csv, Encoding::Jsonl, Encoding::Parquet];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name().eq_ignore_ascii_case(s))
    }

    /// The name as the API takes it, and the file extension.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Csv => "csv",
            Encoding::Jsonl => "jsonl",
            Encoding::Parquet => "parquet",
        }
    }

    /// The content type of an uncompressed part.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Csv => "text/csv",
            Encoding::Jsonl => "application/x-ndjson",
            Encoding::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Columnar: written by slices of batches into row groups, compressed inside the file.
    pub fn is_columnar(self) -> bool {
        self == Encoding::Parquet
    }
}

/// A row encoder of `encoding` for rows of `schema`; `None` for the columnar encoding.
pub fn encoder(encoding: Encoding, schema: &Schema) -> Option<Box<dyn Encoder>> {
    match encoding {
        Encoding::Csv => Some(Box::new(csv::CsvEncoder::new(schema))),
        Encoding::Jsonl => Some(Box::new(jsonl::JsonlEncoder::new(schema))),
        Encoding::Parquet => None,
    }
}
