//! Row encoders: how the rows of a record batch become bytes. Pure.
//!
//! - [`csv`]: RFC 4180 CSV with a header row in every part (Devo's format).
//! - [`jsonl`]: JSON Lines, one object per row, with JSON types kept.
//!
//! An encoder writes a whole batch at once into a reused buffer ([`EncodedRows`]) and says
//! where each row ends, so that the part writer can end a part between any two rows without
//! a call per row or per field across the seam. Parquet (later) fits the same seam: its
//! `header`/`finish` are a file's magic and footer, and the rows it holds back in an open row
//! group are reported by [`Encoder::buffered`] so that the part's size is known as it goes.

pub mod csv;
mod fields;
pub mod jsonl;
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

/// Turns record batches into the bytes of one part at a time.
pub trait Encoder: Send {
    /// What starts every part (CSV's header row; nothing for JSON Lines).
    fn header(&self) -> &[u8];
    /// Appends the rows of `batch` to `out`, one end per row. Rows are independent of the
    /// part they land in, so the caller may split them across parts anywhere between rows.
    fn rows(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<(), ArrowError>;
    /// Bytes held back for the open part, not yet given out (none for row formats).
    fn buffered(&self) -> u64 {
        0
    }
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
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::Csv, Encoding::Jsonl];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name().eq_ignore_ascii_case(s))
    }

    /// The name as the API takes it, and the file extension.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Csv => "csv",
            Encoding::Jsonl => "jsonl",
        }
    }

    /// The content type of an uncompressed part.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Csv => "text/csv",
            Encoding::Jsonl => "application/x-ndjson",
        }
    }
}

/// An encoder of `encoding` for rows of `schema`.
pub fn encoder(encoding: Encoding, schema: &Schema) -> Box<dyn Encoder> {
    match encoding {
        Encoding::Csv => Box::new(csv::CsvEncoder::new(schema)),
        Encoding::Jsonl => Box::new(jsonl::JsonlEncoder::new(schema)),
    }
}
