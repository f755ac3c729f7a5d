//! RFC 4180 CSV for Arrow record batches, with the header row at the start of every part
//! (what Devo writes).

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use super::csv_quote::push_field;
use super::fields::FieldWriter;
use super::{EncodedRows, Encoder};

/// The CSV encoder: Devo's format.
pub struct CsvEncoder {
    header: Vec<u8>,
}

impl CsvEncoder {
    pub fn new(schema: &Schema) -> Self {
        Self { header: header(schema) }
    }
}

impl Encoder for CsvEncoder {
    fn header(&self) -> &[u8] {
        &self.header
    }

    fn rows(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<(), ArrowError> {
        let mut rows = BatchRows::new(batch)?;
        while rows.next_row(&mut out.bytes)? {
            out.end_row();
        }
        Ok(())
    }
}

/// The header row (with its line end) for `schema`.
pub fn header(schema: &Schema) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_field(&mut out, field.name().as_bytes());
    }
    out.push(b'\n');
    out
}

/// Formats the rows of one batch. Nulls are empty fields; timestamps are ISO-8601.
pub struct BatchRows<'a> {
    fields: Vec<FieldWriter<'a>>,
    rows: usize,
    next: usize,
}

impl<'a> BatchRows<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let fields = batch.columns().iter().map(FieldWriter::new).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { fields, rows: batch.num_rows(), next: 0 })
    }

    /// Writes the next row (with its `\n`) into `out`; `false` when the batch is done.
    pub fn next_row(&mut self, out: &mut Vec<u8>) -> Result<bool, ArrowError> {
        if self.next >= self.rows {
            return Ok(false);
        }
        let row = self.next;
        self.next += 1;
        for (i, field) in self.fields.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            field.write(row, out)?;
        }
        out.push(b'\n');
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("plain"), Some("x,\"y\"\nz"), None, Some("ünï")])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3), Some(4)])),
            ],
        )
        .unwrap();
        let mut rows = BatchRows::new(&batch).unwrap();
        let mut out = header(&schema);
        while rows.next_row(&mut out).unwrap() {}
        assert_eq!(String::from_utf8(out).unwrap(), "a,n\nplain,1\n\"x,\"\"y\"\"\nz\",\n,-3\nünï,4\n");
    }
}
