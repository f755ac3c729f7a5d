//! JSON Lines: one JSON object per row, keys the column names in order, values with their
//! JSON type kept: integers exact, floats as numbers (NaN and infinities, which JSON lacks,
//! as `null`), booleans, `null`, timestamps as ISO-8601 UTC strings
//! (`2026-01-01T10:00:00.123Z`, with 6 or 9 fraction digits for micro- and nanosecond
//! columns), dates as `YYYY-MM-DD`, binary as base64, decimals as numbers, and anything else
//! (times, durations, lists, structs) as Arrow shows it, in a string.
//!
//! Written row by row into the batch's buffer; each column's type is matched once per batch
//! into a `Values` of typed slices, so a field costs one `match`, never a call through a
//! pointer or an allocation.

use std::io::Write as _;

use base64::Engine as _;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeBinaryArray,
    LargeBinaryArray, LargeStringArray, StringArray, StringViewArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt64Type,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::capped::write_value;
use super::time::{push_date, push_iso_utc};
use super::{EncodedRows, Encoder};

pub struct JsonlEncoder {
    /// `"name":` of each column, JSON-escaped once (empty when rows are arrays of values).
    keys: Vec<Vec<u8>>,
    /// What each row starts and ends with.
    open: Vec<u8>,
    close: Vec<u8>,
    /// Reused for values that go through Arrow's formatter.
    scratch: String,
}

impl JsonlEncoder {
    pub fn new(schema: &Schema) -> Self {
        let keys = schema
            .fields()
            .iter()
            .map(|f| {
                let mut key = Vec::with_capacity(f.name().len() + 3);
                push_json_str(&mut key, f.name().as_bytes());
                key.push(b':');
                key
            })
            .collect();
        Self { keys, open: b"{".to_vec(), close: b"}\n".to_vec(), scratch: String::new() }
    }

    /// Rows as JSON arrays of their values (same value rules), each written between `open`
    /// and `close`: ksqlDB's `{"row":{"columns":[…]}}` is `open` `{"row":{"columns":[` and
    /// `close` `]}}`.
    pub fn values(schema: &Schema, open: &[u8], close: &[u8]) -> Self {
        Self {
            keys: vec![Vec::new(); schema.fields().len()],
            open: open.to_vec(),
            close: close.to_vec(),
            scratch: String::new(),
        }
    }
}

impl Encoder for JsonlEncoder {
    fn header(&self) -> &[u8] {
        b""
    }

    fn rows(&mut self, batch: &RecordBatch, out: &mut EncodedRows) -> Result<(), ArrowError> {
        let arrays = batch.columns().iter().map(normalize).collect::<Result<Vec<_>, _>>()?;
        let mut columns = arrays.iter().map(Column::new).collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            out.bytes.extend_from_slice(&self.open);
            for (i, (column, key)) in columns.iter_mut().zip(&self.keys).enumerate() {
                if i > 0 {
                    out.bytes.push(b',');
                }
                out.bytes.extend_from_slice(key);
                column.write(row, &mut out.bytes, &mut self.scratch)?;
            }
            out.bytes.extend_from_slice(&self.close);
            out.end_row();
        }
        Ok(())
    }
}

/// Casts, once per batch, the types that share a writer: small integers to 64 bits, half
/// floats to single, dictionaries to their values, `Date64` to days.
fn normalize(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let to = match array.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        DataType::Dictionary(_, values) => values.as_ref().clone(),
        _ => return Ok(array.clone()),
    };
    normalize(&cast(array, &to)?)
}

enum Values<'a> {
    Null,
    Bool(&'a BooleanArray),
    I64(&'a [i64]),
    U64(&'a [u64]),
    F64(&'a [f64]),
    F32(&'a [f32]),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Binary(&'a BinaryArray),
    LargeBinary(&'a LargeBinaryArray),
    BinaryView(&'a BinaryViewArray),
    FixedBinary(&'a FixedSizeBinaryArray),
    Timestamp(&'a [i64], TimeUnit),
    Date(&'a [i32]),
    /// A number in Arrow's own text (decimals), written bare.
    Number(ArrayFormatter<'a>),
    /// Anything else, as Arrow shows it, in a string.
    Text(ArrayFormatter<'a>),
}

struct Column<'a> {
    nulls: Option<&'a NullBuffer>,
    values: Values<'a>,
}

const TEXT: FormatOptions<'static> = FormatOptions::new().with_display_error(false);

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef) -> Result<Self, ArrowError> {
        let values = match array.data_type() {
            DataType::Null => Values::Null,
            DataType::Boolean => Values::Bool(array.as_boolean()),
            DataType::Int64 => Values::I64(array.as_primitive::<Int64Type>().values()),
            DataType::UInt64 => Values::U64(array.as_primitive::<UInt64Type>().values()),
            DataType::Float64 => Values::F64(array.as_primitive::<Float64Type>().values()),
            DataType::Float32 => Values::F32(array.as_primitive::<Float32Type>().values()),
            DataType::Utf8 => Values::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Values::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Values::Utf8View(array.as_string_view()),
            DataType::Binary => Values::Binary(array.as_binary::<i32>()),
            DataType::LargeBinary => Values::LargeBinary(array.as_binary::<i64>()),
            DataType::BinaryView => Values::BinaryView(array.as_binary_view()),
            DataType::FixedSizeBinary(_) => Values::FixedBinary(array.as_fixed_size_binary()),
            // With or without a time zone the values are UTC instants.
            DataType::Timestamp(unit, _) => {
                let values = match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
                };
                Values::Timestamp(values, *unit)
            }
            DataType::Date32 => Values::Date(array.as_primitive::<Date32Type>().values()),
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Values::Number(ArrayFormatter::try_new(array.as_ref(), &TEXT)?),
            _ => Values::Text(ArrayFormatter::try_new(array.as_ref(), &TEXT)?),
        };
        Ok(Self { nulls: array.nulls(), values })
    }

    fn write(&mut self, row: usize, out: &mut Vec<u8>, scratch: &mut String) -> Result<(), ArrowError> {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        match &self.values {
            Values::Null => out.extend_from_slice(b"null"),
            Values::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
            Values::I64(v) => out.extend_from_slice(itoa::Buffer::new().format(v[row]).as_bytes()),
            Values::U64(v) => out.extend_from_slice(itoa::Buffer::new().format(v[row]).as_bytes()),
            Values::F64(v) => push_float(out, v[row]),
            Values::F32(v) => push_float(out, v[row]),
            Values::Utf8(a) => push_json_str(out, a.value(row).as_bytes()),
            Values::LargeUtf8(a) => push_json_str(out, a.value(row).as_bytes()),
            Values::Utf8View(a) => push_json_str(out, a.value(row).as_bytes()),
            Values::Binary(a) => push_base64(out, a.value(row)),
            Values::LargeBinary(a) => push_base64(out, a.value(row)),
            Values::BinaryView(a) => push_base64(out, a.value(row)),
            Values::FixedBinary(a) => push_base64(out, a.value(row)),
            Values::Timestamp(v, unit) => push_timestamp(out, v[row], *unit),
            Values::Date(v) => {
                out.push(b'"');
                if !push_date(out, v[row].into()) {
                    // Years past 9999 (or before 0): chrono's expanded form.
                    let day = chrono::NaiveDate::default()
                        .checked_add_signed(chrono::TimeDelta::days(v[row].into()));
                    let _ = write!(out, "{}", day.map_or_else(|| v[row].to_string(), |d| d.to_string()));
                }
                out.push(b'"');
            }
            Values::Number(f) => write_value(out, f.value(row))?,
            Values::Text(f) => {
                scratch.clear();
                write_value(scratch, f.value(row))?;
                push_json_str(out, scratch.as_bytes());
            }
        }
        Ok(())
    }
}

/// A finite float as its shortest exact text; NaN and the infinities, which JSON has no
/// number for, as `null`.
fn push_float<F: Finite>(out: &mut Vec<u8>, v: F) {
    if v.finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

trait Finite: ryu::Float + Copy {
    fn finite(self) -> bool;
}

impl Finite for f64 {
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl Finite for f32 {
    fn finite(self) -> bool {
        self.is_finite()
    }
}

fn push_timestamp(out: &mut Vec<u8>, v: i64, unit: TimeUnit) {
    let (per_sec, digits) = match unit {
        TimeUnit::Second => (1, 3),
        TimeUnit::Millisecond => (1_000, 3),
        TimeUnit::Microsecond => (1_000_000, 6),
        TimeUnit::Nanosecond => (1_000_000_000, 9),
    };
    let (secs, sub) = (v.div_euclid(per_sec), v.rem_euclid(per_sec));
    let fraction = if per_sec == 1 { 0 } else { sub };
    out.push(b'"');
    if !push_iso_utc(out, secs, fraction, digits) {
        // Years past 9999 (or before 0): chrono's expanded ISO form (`+10000-…`).
        let nanos = (sub * (1_000_000_000 / per_sec)) as u32;
        let precision = match digits {
            3 => chrono::SecondsFormat::Millis,
            6 => chrono::SecondsFormat::Micros,
            _ => chrono::SecondsFormat::Nanos,
        };
        match chrono::DateTime::from_timestamp(secs, nanos) {
            Some(t) => out.extend_from_slice(t.to_rfc3339_opts(precision, true).as_bytes()),
            None => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        }
    }
    out.push(b'"');
}

fn push_base64(out: &mut Vec<u8>, value: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(value.len(), true).expect("a value in memory has a base64 length");
    out.resize(start + 2 + len, b'"');
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(value, &mut out[start + 1..start + 1 + len])
        .expect("sized by encoded_len");
    debug_assert_eq!(written, len);
}

/// How each byte is written inside a JSON string: 0 as itself, `u` as `\u00XX`, `E` maybe
/// the start of U+2028/U+2029 (valid JSON, but line breaks to JavaScript: escaped, as
/// serde_json and most writers do not but careful ones do), anything else after a backslash.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[0xE2] = b'E';
    t
};

/// Appends `s` (UTF-8) as a JSON string: copied in runs, escaped only where it must be.
pub fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        if escape == b'E' {
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9; the bytes after an E2 are never
            // themselves escaped, so the run resumes after them.
            if let [0x80, last @ (0xA8 | 0xA9)] = s.get(i + 1..i + 3).unwrap_or_default() {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(if *last == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                start = i + 3;
            }
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

#[cfg(test)]
#[path = "jsonl_tests.rs"]
mod tests;
