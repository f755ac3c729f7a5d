//! How much a guarded function's output for one batch may take, and the check that it fits the
//! query's memory now ([`super::guarded_functions`], `guarded_concat`, `guarded_regexp`): an
//! upper bound summed over the batch's rows from its arguments' sizes and values.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::Result;
use datafusion::common::human_readable_size;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

/// Checks that `bytes` of output for `rows` rows fit in the query's pool now, or fails with the
/// pool's `ResourcesExhausted` (which the job reports as over `worker.query_memory_mb`).
pub(super) fn reserve_output(pool: &Arc<dyn MemoryPool>, name: &str, bytes: u128, rows: usize) -> Result<()> {
    let reservation = MemoryConsumer::new(format!("{name}()")).register(pool);
    reservation.try_grow(usize::try_from(bytes).unwrap_or(usize::MAX)).map_err(|e| {
        let size = u64::try_from(bytes)
            .map_or_else(|_| format!("{bytes} bytes"), |b| human_readable_size(b as usize));
        DataFusionError::ResourcesExhausted(format!(
            "{name}() would build up to {size} of values for {rows} rows at once ({})",
            e.find_root()
        ))
    })?;
    // What other calls in the same batch built is not in the pool any more, but it is still
    // allocated: the process's headroom counts it.
    if let Some((headroom, limit)) = super::memory_backstop::headroom()
        && bytes > headroom as u128
    {
        let size = |b: u128| human_readable_size(usize::try_from(b).unwrap_or(usize::MAX));
        return Err(DataFusionError::ResourcesExhausted(format!(
            "{name}() would build up to {} of values for {rows} rows at once, and the worker has {} \
             left of the {} it may hold while its queries run",
            size(bytes),
            size(headroom as u128),
            size(limit as u128)
        )));
    }
    Ok(())
}

/// Sums `row_bound` over the rows of one call.
pub(super) fn sum_rows(args: &ScalarFunctionArgs, row_bound: impl Fn(&Row) -> u128) -> u128 {
    let columns: Vec<Sizes> = args.args.iter().map(Sizes::of).collect();
    (0..args.number_rows.max(1))
        .map(|index| row_bound(&Row { args: &columns, index }))
        .fold(0, u128::saturating_add)
}

/// One row's arguments, as sizes and counts.
pub(super) struct Row<'a> {
    pub(super) args: &'a [Sizes],
    index: usize,
}

impl Row<'_> {
    /// This row's place in the batch.
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// The bytes argument `i` takes in this row.
    pub(super) fn bytes(&self, i: usize) -> u128 {
        self.args.get(i).map_or(0, |a| a.bytes(self.index))
    }

    /// Argument `i` as a count (negative or absent: none).
    pub(super) fn count(&self, i: usize) -> u128 {
        self.args.get(i).and_then(|a| a.integer(self.index)).map_or(0, |n| n.max(0) as u128)
    }

    /// How many values `range(start, stop, step)` (or `range(stop)`) gives.
    pub(super) fn series_length(&self) -> u128 {
        let value = |i: usize| self.args.get(i).and_then(|a| a.integer(self.index));
        let (start, stop, step) = match self.args.len() {
            1 => (Some(0), value(0), Some(1)),
            2 => (value(0), value(1), Some(1)),
            _ => (value(0), value(1), value(2)),
        };
        match (start, stop, step) {
            (Some(start), Some(stop), Some(step)) => stop.abs_diff(start) / step.unsigned_abs().max(1) + 1,
            _ => 0,
        }
    }
}

/// An argument's per-row byte sizes and, when it is a number, time or interval, its values as
/// integers (times in nanoseconds; an interval as its shortest length in nanoseconds).
pub(super) struct Sizes {
    bytes: Vec<u128>,
    integers: Option<Vec<Option<i128>>>,
}

impl Sizes {
    /// A scalar gives one value, which stands for every row.
    fn of(arg: &ColumnarValue) -> Self {
        let array = match arg {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => match s.to_array() {
                Ok(a) => a,
                Err(_) => return Sizes { bytes: vec![s.size() as u128], integers: None },
            },
        };
        Sizes { bytes: value_bytes(&array), integers: integers(&array) }
    }

    fn bytes(&self, row: usize) -> u128 {
        self.bytes.get(row).or(self.bytes.first()).copied().unwrap_or(0)
    }

    fn integer(&self, row: usize) -> Option<i128> {
        let values = self.integers.as_ref()?;
        values.get(row).or(values.first()).copied().flatten()
    }
}

/// The bytes each value of `array` takes: its length for text, binary and lists of fixed-size
/// values; an even share of the array's memory otherwise.
fn value_bytes(array: &ArrayRef) -> Vec<u128> {
    let lengths = match array.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => length(array).ok().and_then(|l| cast(&l, &DataType::Int64).ok()),
        _ => None,
    };
    match lengths {
        Some(l) => l.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(0).max(0) as u128).collect(),
        None => {
            let share = array.get_array_memory_size() / array.len().max(1);
            vec![share as u128; array.len()]
        }
    }
}

/// The values of an integer, date, timestamp or interval array as integers; `None` for others.
fn integers(array: &ArrayRef) -> Option<Vec<Option<i128>>> {
    const DAY_NS: i128 = 86_400 * 1_000_000_000;
    match array.data_type() {
        t if t.is_integer() => {
            let values = cast(array, &DataType::Int64).ok()?;
            Some(values.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)).collect())
        }
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
            let as_ns = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None)).ok()?;
            let values = cast(&as_ns, &DataType::Int64).ok()?;
            Some(values.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)).collect())
        }
        DataType::Interval(_) => {
            let values =
                cast(array, &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano))
                    .ok()?;
            // A month is at least 28 days: the shortest step gives the most values.
            let shortest = |v: <IntervalMonthDayNanoType as datafusion::arrow::datatypes::ArrowPrimitiveType>::Native| {
                i128::from(v.months) * 28 * DAY_NS + i128::from(v.days) * DAY_NS + i128::from(v.nanoseconds)
            };
            Some(values.as_primitive::<IntervalMonthDayNanoType>().iter().map(|v| v.map(shortest)).collect())
        }
        _ => None,
    }
}
