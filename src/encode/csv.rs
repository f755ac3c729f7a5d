//! RFC 4180 CSV for Arrow record batches, with the header row at the start of every part
//! (what Devo writes).

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

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

/// Appends `value` as one CSV field, quoted only when it holds a comma, quote, CR or LF.
pub fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    if needs_quotes(value) {
        // Copied between the quotes it holds, which are doubled: user agents and URLs hold
        // commas, so this path is hot, and a push per byte took a quarter of a CSV stream's CPU.
        out.reserve(value.len() + 2);
        out.push(b'"');
        let mut copied = 0;
        for quote in memchr::memchr_iter(b'"', value) {
            out.extend_from_slice(&value[copied..=quote]);
            out.push(b'"');
            copied = quote + 1;
        }
        out.extend_from_slice(&value[copied..]);
        out.push(b'"');
    } else {
        out.extend_from_slice(value);
    }
}

pub(super) fn needs_quotes(value: &[u8]) -> bool {
    // Most fields are short, where two calls into memchr cost more than one folded pass (which
    // the compiler vectorises); long ones are searched by memchr.
    if value.len() < 64 {
        value.iter().fold(false, |quote, b| quote | matches!(b, b',' | b'"' | b'\n' | b'\r'))
    } else {
        memchr::memchr3(b',', b'"', b'\n', value).is_some() || memchr::memchr(b'\r', value).is_some()
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

    /// Every string of up to five characters from the ones that matter, quoted as RFC 4180 says
    /// (a byte at a time, the plain way).
    #[test]
    fn fields_are_quoted_as_the_rfc_says() {
        let reference = |v: &[u8]| {
            if !v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
                return v.to_vec();
            }
            let mut out = vec![b'"'];
            for &b in v {
                out.extend_from_slice(if b == b'"' { b"\"\"" } else { std::slice::from_ref(&b) });
            }
            out.push(b'"');
            out
        };
        let alphabet = b"a,\"\n\r";
        let mut values = vec![Vec::new()];
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|v| alphabet.iter().map(move |c| [v.as_slice(), &[*c]].concat()))
                .collect();
            values.extend(last.iter().cloned());
        }
        assert!(values.len() > 3_000);
        // Short fields and long ones (searched differently).
        let long: Vec<Vec<u8>> = values.iter().map(|v| [&[b'a'; 70][..], v].concat()).collect();
        for v in values.iter().chain(&long) {
            let mut out = b"x".to_vec();
            push_field(&mut out, v);
            assert_eq!(out[1..], reference(v)[..], "{:?}", String::from_utf8_lossy(v));
        }
    }

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
