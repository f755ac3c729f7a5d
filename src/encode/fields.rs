//! One CSV field at a time, without `fmt` for the types exports are mostly made of: text is
//! copied, integers go through `itoa`, timestamps are laid out digit by digit. Every other type
//! (and any value the fast paths do not cover) goes through Arrow's own formatter, so the
//! output is the same either way; a property test holds the two to that.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::csv_quote::{needs_quotes, push_field};
use super::time::TimestampLayout;

/// Timestamps as Devo shows them: `2026-01-01 00:00:00.000`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

pub const OPTIONS: FormatOptions<'static> =
    FormatOptions::new().with_display_error(false).with_timestamp_format(Some(TIMESTAMP_FORMAT));

type Fast<'a> = Box<dyn Fn(usize, &mut Vec<u8>) -> bool + 'a>;

/// Writes the fields of one column, quoted as RFC 4180 asks.
pub struct FieldWriter<'a> {
    /// The array's own null bits (`Array::is_null` through `dyn Array` cost a call per field).
    nulls: Option<NullBuffer>,
    /// Writes the value at a row and says `true`, or says `false` (having written nothing)
    /// when the value is one for the general formatter.
    fast: Option<Fast<'a>>,
    general: ArrayFormatter<'a>,
    scratch: Vec<u8>,
}

impl<'a> FieldWriter<'a> {
    pub fn new(array: &'a ArrayRef) -> Result<Self, ArrowError> {
        let general = ArrayFormatter::try_new(array.as_ref(), &OPTIONS)?;
        Ok(Self {
            nulls: array.nulls().cloned(),
            fast: fast_writer(array),
            general,
            scratch: Vec::with_capacity(64),
        })
    }

    /// Appends the value at `row` (nothing for a null).
    pub fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return Ok(());
        }
        if let Some(fast) = &self.fast
            && fast(row, out)
        {
            return Ok(());
        }
        let start = out.len();
        super::capped::write_value(out, self.general.value(row))?;
        if needs_quotes(&out[start..]) {
            self.scratch.clear();
            self.scratch.extend_from_slice(&out[start..]);
            out.truncate(start);
            push_field(out, &self.scratch);
        }
        Ok(())
    }
}

fn fast_writer(array: &ArrayRef) -> Option<Fast<'_>> {
    Some(match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Box::new(move |row, out| text(a.value(row), out))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Box::new(move |row, out| text(a.value(row), out))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            Box::new(move |row, out| text(a.value(row), out))
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
        _ => return None,
    })
}

fn text(value: &str, out: &mut Vec<u8>) -> bool {
    push_field(out, value.as_bytes());
    true
}

fn integers<T>(array: &ArrayRef) -> Fast<'_>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    Box::new(move |row, out| {
        out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
        true
    })
}

fn timestamps<T>(array: &ArrayRef, to_millis: fn(i64) -> Option<i64>) -> Fast<'_>
where
    T: ArrowPrimitiveType<Native = i64>,
{
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    let layout = TimestampLayout::default();
    Box::new(move |row, out| to_millis(a.value(row)).is_some_and(|ms| layout.push_ms(out, ms)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Int32Array, LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
    };
    use proptest::prelude::*;

    use super::*;

    /// What the general formatter alone writes for every row.
    fn general(array: &ArrayRef) -> Vec<u8> {
        let mut w = FieldWriter::new(array).unwrap();
        w.fast = None;
        every_row(&mut w, array.len())
    }

    fn fast(array: &ArrayRef) -> Vec<u8> {
        let mut w = FieldWriter::new(array).unwrap();
        assert!(w.fast.is_some(), "{} has a fast path", array.data_type());
        every_row(&mut w, array.len())
    }

    fn every_row(w: &mut FieldWriter<'_>, rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for row in 0..rows {
            w.write(row, &mut out).unwrap();
            out.push(b'|');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn fast_paths_write_what_the_general_formatter_writes(
            // Whole milliseconds from year -300 to 12000: both fallbacks and the fast range.
            ms in proptest::option::of(-71_700_000_000_000i64..316_500_000_000_000),
            sub_ms in 0i64..1_000_000,
            text in proptest::option::of(any::<String>()),
            int in any::<i32>(),
            uint in any::<u64>(),
        ) {
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(TimestampMillisecondArray::from(vec![ms])),
                Arc::new(TimestampSecondArray::from(vec![ms.map(|v| v.div_euclid(1000))])),
                Arc::new(TimestampMicrosecondArray::from(vec![ms.map(|v| v * 1000 + sub_ms / 1000)])),
                Arc::new(TimestampNanosecondArray::from(vec![ms.and_then(|v| v.checked_mul(1_000_000)).map(|v| v + sub_ms)])),
                Arc::new(StringArray::from(vec![text.clone()])),
                Arc::new(LargeStringArray::from(vec![text.clone()])),
                Arc::new(StringViewArray::from(vec![text])),
                Arc::new(Int32Array::from(vec![Some(int), None])),
                Arc::new(UInt64Array::from(vec![uint])),
            ];
            for array in &arrays {
                let (fast, general) = (fast(array), general(array));
                prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&general), "{}", array.data_type());
            }
        }
    }

    #[test]
    fn timestamps_at_the_edges_of_the_fast_range() {
        for ms in [
            0,
            -1,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            951_782_400_000,
        ] {
            let array: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![ms]));
            assert_eq!(
                String::from_utf8(fast(&array)).unwrap(),
                String::from_utf8(general(&array)).unwrap(),
                "{ms}"
            );
        }
    }
}
