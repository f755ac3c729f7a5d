//! ClickHouse's `TabSeparatedWithNames`: a header row of column names, then one line per row,
//! fields separated by tabs. Nothing is quoted; instead backslash, tab, line feed, carriage
//! return, backspace, form feed, NUL and the single quote are escaped with a backslash
//! (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\0`, `\'`), as ClickHouse writes them, and a null
//! is `\N`. A line of TSV therefore never holds a raw tab, CR or LF inside a value: every
//! line feed ends a row.
//!
//! Values are laid out as in the CSV encoder (timestamps `2026-01-01 00:00:00.000`), with
//! fast paths for text and integers and Arrow's formatter for the rest.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::ArrayFormatter;

use super::fields::OPTIONS;
use super::time::TimestampLayout;
use super::{EncodedRows, Encoder};

pub struct TsvEncoder {
    header: Vec<u8>,
}

impl TsvEncoder {
    pub fn new(schema: &Schema) -> Self {
        let mut header = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if i > 0 {
                header.push(b'\t');
            }
            push_escaped(&mut header, field.name().as_bytes());
        }
        header.push(b'\n');
        Self { header }
    }
}

impl Encoder for TsvEncoder {
    fn header(&self) -> &[u8] {
        &self.header
    }

    fn rows(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<(), ArrowError> {
        let mut columns = batch.columns().iter().map(Column::new).collect::<Result<Vec<_>, _>>()?;
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            for (i, column) in columns.iter_mut().enumerate() {
                if i > 0 {
                    out.bytes.push(b'\t');
                }
                column.write(row, &mut out.bytes, &mut scratch)?;
            }
            out.bytes.push(b'\n');
            out.end_row();
        }
        Ok(())
    }
}

/// Appends `value` with ClickHouse's TSV escapes.
pub fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    // Folded over every byte rather than stopping at the first: the compiler vectorises it.
    let clean = !value
        .iter()
        .fold(false, |dirty, b| dirty | matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0x08 | 0x0c | 0 | b'\''));
    if clean {
        out.extend_from_slice(value);
        return;
    }
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0 => out.extend_from_slice(b"\\0"),
            b'\'' => out.extend_from_slice(b"\\'"),
            other => out.push(other),
        }
    }
}

/// Writes one integer's digits.
type WriteInteger<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

enum Values<'a> {
    Text(Box<dyn Fn(usize) -> &'a str + 'a>),
    Integer(WriteInteger<'a>),
    /// Milliseconds since the epoch, or `None` when the fast layout does not apply.
    TimestampMs(Box<dyn Fn(usize) -> Option<i64> + 'a>, TimestampLayout),
    Other,
}

struct Column<'a> {
    /// The array's own null bits (`Array::is_null` through `dyn Array` costs a call a field).
    nulls: Option<NullBuffer>,
    values: Values<'a>,
    general: ArrayFormatter<'a>,
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef) -> Result<Self, ArrowError> {
        let values = match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                Values::Text(Box::new(move |row| a.value(row)))
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                Values::Text(Box::new(move |row| a.value(row)))
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                Values::Text(Box::new(move |row| a.value(row)))
            }
            DataType::Int8 => integers::<Int8Type>(array),
            DataType::Int16 => integers::<Int16Type>(array),
            DataType::Int32 => integers::<Int32Type>(array),
            DataType::Int64 => integers::<Int64Type>(array),
            DataType::UInt8 => integers::<UInt8Type>(array),
            DataType::UInt16 => integers::<UInt16Type>(array),
            DataType::UInt32 => integers::<UInt32Type>(array),
            DataType::UInt64 => integers::<UInt64Type>(array),
            // With a time zone the formatter converts to it first: left to it.
            DataType::Timestamp(unit, None) => match unit {
                TimeUnit::Second => timestamps::<TimestampSecondType>(array, |v| v.checked_mul(1000)),
                TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(array, Some),
                TimeUnit::Microsecond => {
                    timestamps::<TimestampMicrosecondType>(array, |v| Some(v.div_euclid(1000)))
                }
                TimeUnit::Nanosecond => {
                    timestamps::<TimestampNanosecondType>(array, |v| Some(v.div_euclid(1_000_000)))
                }
            },
            _ => Values::Other,
        };
        let general = ArrayFormatter::try_new(array.as_ref(), &OPTIONS)?;
        Ok(Self { nulls: array.nulls().cloned(), values, general })
    }

    fn write(&mut self, row: usize, out: &mut Vec<u8>, scratch: &mut String) -> Result<(), ArrowError> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            out.extend_from_slice(b"\\N");
            return Ok(());
        }
        match &self.values {
            Values::Text(value) => {
                push_escaped(out, value(row).as_bytes());
                return Ok(());
            }
            Values::Integer(write) => {
                write(row, out);
                return Ok(());
            }
            Values::TimestampMs(ms, layout) => {
                if ms(row).is_some_and(|ms| layout.push_ms(out, ms)) {
                    return Ok(());
                }
            }
            Values::Other => {}
        }
        scratch.clear();
        super::capped::write_value(scratch, self.general.value(row))?;
        push_escaped(out, scratch.as_bytes());
        Ok(())
    }
}

fn integers<'a, T>(array: &'a ArrayRef) -> Values<'a>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    Values::Integer(Box::new(move |row, out| {
        out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
    }))
}

fn timestamps<'a, T>(array: &'a ArrayRef, to_millis: fn(i64) -> Option<i64>) -> Values<'a>
where
    T: ArrowPrimitiveType<Native = i64>,
{
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    Values::TimestampMs(Box::new(move |row| to_millis(a.value(row))), TimestampLayout::default())
}

/// Reads one TSV field back (the inverse of [`push_escaped`]); `None` for `\N`. For tests and
/// clients that check what they received.
pub fn unescape(field: &[u8]) -> Option<Vec<u8>> {
    if field == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'b') => out.push(0x08),
            Some(b'f') => out.push(0x0c),
            Some(b'0') => out.push(0),
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::Field;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_as_clickhouse_does() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a\tb", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("plain"), Some("x\ty\nz\\w'q\r"), None])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(-0.25), None])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_767_225_600_123), None, Some(0)])),
            ],
        )
        .unwrap();
        let mut encoder = TsvEncoder::new(&schema);
        let mut rows = EncodedRows::default();
        encoder.rows(&batch, &mut rows).unwrap();
        let text = [encoder.header(), &rows.bytes].concat();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a\\tb\tn\tf\tt\n\
             plain\t1\t1.5\t2026-01-01 00:00:00.123\n\
             x\\ty\\nz\\\\w\\'q\\r\t\\N\t-0.25\t\\N\n\
             \\N\t-3\t\\N\t1970-01-01 00:00:00.000\n"
        );
        assert_eq!(rows.len(), 3);
    }

    proptest! {
        #[test]
        fn any_text_reads_back_from_one_field(text in any::<String>()) {
            let mut out = Vec::new();
            push_escaped(&mut out, text.as_bytes());
            prop_assert!(!out.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r')));
            prop_assert_eq!(unescape(&out), Some(text.into_bytes()));
        }
    }
}
