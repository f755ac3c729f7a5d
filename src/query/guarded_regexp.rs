//! The bound of `regexp_replace`'s output, for [`super::guarded_functions`].
//!
//! `regexp_replace(s, '', repeat('y', 60000), 'g')` puts the replacement between every two
//! characters of every value: one batch of ordinary rows would build tens of gigabytes in one
//! call. The bound counts the matches a value can hold (from the pattern's shortest match, all
//! of them with the `g` flag, else one) times the replacement's length, plus, for each group
//! reference in the replacement (`\1`, `$1`), the value's length again (the groups of
//! non-overlapping matches never take more than the value).

use std::cell::RefCell;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

use super::guarded_output::sum_rows;

/// An upper bound, in bytes, of `regexp_replace(s, pattern, replacement[, flags])` over one batch.
pub(super) fn replace_bound(args: &ScalarFunctionArgs) -> u128 {
    let pattern = texts(args.args.get(1));
    let replacement = texts(args.args.get(2));
    let flags = texts(args.args.get(3));
    // Flags given but unreadable: as if they said `g`.
    let unread_flags = if args.args.len() > 3 && flags.is_none() { "g" } else { "" };
    // Parsed once per distinct pattern and flags in a row: mostly both are constants.
    let last: RefCell<Option<(String, String, Option<usize>)>> = RefCell::new(None);
    sum_rows(args, |row| {
        let value = row.bytes(0);
        let flags = at(&flags, row.index()).unwrap_or(unread_flags);
        let shortest = match at(&pattern, row.index()) {
            None => Some(0),
            Some(p) => {
                let mut last = last.borrow_mut();
                match last.as_ref() {
                    Some((lp, lf, n)) if lp == p && lf == flags => *n,
                    _ => {
                        let n = shortest_match(p, flags);
                        *last = Some((p.to_string(), flags.to_string(), n));
                        n
                    }
                }
            }
        };
        let Some(shortest) = shortest else { return value };
        let matches = match (flags.contains('g'), shortest) {
            (false, _) => 1,
            (true, 0) => value + 1,
            (true, n) => value / n as u128 + 1,
        };
        let (literal, references) = match at(&replacement, row.index()) {
            Some(r) => (r.len() as u128, r.chars().filter(|c| matches!(c, '\\' | '$')).count() as u128),
            // Unreadable: as long as its bytes, every one a reference.
            None => (row.bytes(2), row.bytes(2)),
        };
        value + matches * literal + references * value
    })
}

/// The shortest text `pattern` matches under `flags` as DataFusion applies them (`None`: it
/// matches nothing, or does not parse and the call fails anyway; 0 when unsure).
fn shortest_match(pattern: &str, flags: &str) -> Option<usize> {
    let inline = flags.replace('g', "");
    let full = if inline.is_empty() { pattern.to_string() } else { format!("(?{inline}){pattern}") };
    match regex_syntax::Parser::new().parse(&full) {
        Ok(hir) => hir.properties().minimum_len(),
        Err(_) => Some(0),
    }
}

/// The text values of an argument (a scalar gives one, which stands for every row); `None`
/// when it is absent or not text.
fn texts(arg: Option<&ColumnarValue>) -> Option<Vec<Option<String>>> {
    let array = match arg? {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array().ok()?,
    };
    let utf8 = cast(&array, &DataType::Utf8).ok()?;
    Some(utf8.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect())
}

fn at(values: &Option<Vec<Option<String>>>, row: usize) -> Option<&str> {
    let values = values.as_ref()?;
    values.get(row).or(values.first())?.as_deref()
}
