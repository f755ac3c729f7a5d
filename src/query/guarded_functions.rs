//! Scalar functions whose output can dwarf their input, held to the query's memory budget.
//!
//! The memory pool limits only the operators that reserve memory (sorts, aggregations,
//! joins). `repeat('x', 2000000000)` or `lpad(s, 2147483647)` allocate their result unseen,
//! over a literal (at plan time, when the optimizer folds constants) or over every row of a
//! batch, and took the worker to 8 GiB or aborted it. Each such function is replaced, under
//! its own name, by one that first reserves from the query's pool an upper bound of what the
//! whole batch's output can take, computed from its arguments, and fails with the pool's
//! `ResourcesExhausted` when that does not fit. A constant that a projection would repeat over
//! a whole batch is bounded the same way ([`constants_fit`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use super::guarded_output::{reserve_output, sum_rows};

/// An upper bound, in bytes, of what a function's output for one call (a whole batch) takes.
type OutputBound = fn(&ScalarFunctionArgs) -> u128;

/// The functions guarded, each with the bound of its output.
const GUARDED: &[(&str, OutputBound)] = &[
    ("repeat", |a| sum_rows(a, |r| r.bytes(0) * r.count(1))),
    // A padded character takes up to 4 bytes.
    ("lpad", |a| sum_rows(a, |r| r.bytes(0) + 4 * r.count(1))),
    ("rpad", |a| sum_rows(a, |r| r.bytes(0) + 4 * r.count(1))),
    // At most one `to` per `from` found, or per character when `from` is empty.
    ("replace", |a| sum_rows(a, |r| r.bytes(0) + (r.bytes(0) / r.bytes(1).max(1) + 1) * r.bytes(2))),
    ("overlay", |a| sum_rows(a, |r| r.bytes(0) + r.bytes(1))),
    ("concat", |a| sum_rows(a, |r| (0..r.args.len()).map(|i| r.bytes(i)).sum())),
    ("concat_ws", |a| sum_rows(a, |r| (1..r.args.len()).map(|i| r.bytes(0) + r.bytes(i)).sum())),
    ("array_repeat", |a| sum_rows(a, |r| (r.bytes(0) + 8) * r.count(1))),
    ("array_resize", |a| sum_rows(a, |r| r.bytes(0) + 16 * r.count(1))),
    ("range", |a| sum_rows(a, |r| 8 * r.series_length())),
    ("generate_series", |a| sum_rows(a, |r| 8 * r.series_length())),
    ("regexp_replace", super::guarded_regexp::replace_bound),
];

/// Replaces, in `ctx`, each function of [`GUARDED`] by its guarded self, reserving from the
/// session's memory pool.
pub fn register(ctx: &SessionContext) {
    let pool = ctx.runtime_env().memory_pool.clone();
    let state = ctx.state();
    for (name, bound) in GUARDED {
        if let Some(inner) = state.scalar_functions().get(*name) {
            let guarded = Guarded { inner: inner.clone(), bound: *bound, pool: pool.clone() };
            ctx.register_udf(ScalarUDF::new_from_impl(guarded));
        }
    }
}

#[derive(Debug)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    bound: OutputBound,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Guarded {}

impl Hash for Guarded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    // `simplify` is left out on purpose: it rewrites a call into the unguarded function.

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        reserve_output(&self.pool, self.name(), (self.bound)(&args), args.number_rows)?;
        // The result is handed on to operators that account for what they keep.
        self.inner.invoke_with_args(args)
    }
}

/// Refuses a plan holding a constant so large that repeating it over one batch (as a
/// projection does) takes more than the query's memory budget: no pool sees that copy.
/// Such constants mostly come from folding (`repeat('x', 1000000) AS s` over a table).
pub fn constants_fit(
    plan: &datafusion::logical_expr::LogicalPlan,
    budget: usize,
) -> Result<(), super::QueryError> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut largest = 0;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let datafusion::logical_expr::Expr::Literal(value, _) = e {
                    largest = largest.max(value.size());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    let rows = super::BATCH_ROWS;
    let most = budget / rows;
    if largest > most {
        let size = datafusion::common::human_readable_size;
        return Err(super::QueryError::OverBudget(format!(
            "it holds a constant value of {}, which a batch of {rows} rows repeats ({}); keep constants under {}",
            size(largest),
            size(largest.saturating_mul(rows)),
            size(most)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use crate::query::{Catalog, DataFusionEngine, QueryEngine, QueryWindow};

    /// The single value `sql` gives, as text, under a 64 MiB budget.
    async fn value(sql: &str) -> Result<String, String> {
        use datafusion::arrow::util::display::array_value_to_string;
        let engine = DataFusionEngine::new(Catalog::default()).with_memory_limit(64 << 20);
        let run = engine.run(sql, QueryWindow::default(), 0, None).await.map_err(|e| e.to_string())?;
        let batches: Vec<_> = run.stream.try_collect().await.map_err(|e| e.to_string())?;
        Ok(array_value_to_string(batches[0].column(0), 0).unwrap())
    }

    #[tokio::test]
    async fn guarded_functions_give_what_they_gave() {
        for (sql, want) in [
            ("SELECT repeat('ab', 3)", "ababab"),
            ("SELECT lpad('x', 3, 'é')", "ééx"),
            ("SELECT rpad('x', 3)", "x  "),
            ("SELECT replace('aXa', 'a', 'bb')", "bbXbb"),
            ("SELECT overlay('Txxxxas' placing 'hom' from 2 for 4)", "Thomas"),
            ("SELECT concat('a', 1, NULL, 'b')", "a1b"),
            ("SELECT concat_ws('-', 'a', 'b')", "a-b"),
            ("SELECT array_repeat(1, 3)", "[1, 1, 1]"),
            ("SELECT range(1, 4)", "[1, 2, 3]"),
            ("SELECT generate_series(1, 3)", "[1, 2, 3]"),
            ("SELECT array_resize(make_array(1), 2, 0)", "[1, 0]"),
            ("SELECT regexp_replace('foobarbaz', 'b(..)', 'X\\1Y', 'g')", "fooXarYXazY"),
            ("SELECT regexp_replace('aBc', '(b|d)', 'Ab\\1a', 'i')", "aAbBac"),
            ("SELECT length(regexp_replace(repeat('x', 1000000), 'x', 'yy'))", "1000001"),
            ("SELECT cardinality(range(DATE '2026-01-01', DATE '2026-02-01', INTERVAL '1 day'))", "31"),
        ] {
            assert_eq!(value(sql).await.as_deref(), Ok(want), "{sql}");
        }
    }

    #[tokio::test]
    async fn outputs_over_the_budget_fail_before_they_are_built() {
        for sql in [
            "SELECT repeat('x', 2000000000)",
            "SELECT lpad('x', 2147483647)",
            "SELECT repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000)",
            "SELECT replace(repeat('x', 1000000), '', repeat('y', 1000))",
            "SELECT array_repeat('x', 100000000)",
            "SELECT range(1, 1000000000000)",
            "SELECT range(TIMESTAMP '2026-01-01', TIMESTAMP '2027-01-01', INTERVAL '1 millisecond')",
            "SELECT array_resize(make_array(1), 1000000000)",
            "SELECT length(concat(s, s, s, s, s, s, s, s)) FROM (SELECT repeat('x', 10000000) AS s)",
        ] {
            let err = value(sql).await.unwrap_err();
            // Refused when built, or once folded into a constant too large to repeat.
            let refused = err.contains("Resources exhausted") && err.contains("would build up to");
            assert!(refused || err.contains("holds a constant value"), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn constants_a_batch_cannot_repeat_within_the_budget_are_refused() {
        // Folded into a 100 KB constant, which a batch of 8192 rows would repeat (800 MB).
        let over_rows = |n: u32| {
            format!(
                "SELECT length(concat(s, v)) FROM (SELECT repeat('x', {n}) AS s, v FROM (VALUES (1), (2)) AS t(v))"
            )
        };
        let err = value(&over_rows(100_000)).await.unwrap_err();
        assert!(
            err.starts_with("the query needs more memory than one query may use") && err.contains("constant"),
            "{err}"
        );
        assert_eq!(value(&over_rows(1000)).await.as_deref(), Ok("1001"));
    }

    #[tokio::test]
    async fn regexp_replace_is_bounded_by_the_matches_a_value_can_hold() {
        // 5,000 characters, a 1,000-byte replacement at each of their 5,001 places: 5 MB a value.
        for pattern in ["''", "'x*?'", "'(?:)'"] {
            let sql = format!(
                "SELECT length(regexp_replace(v, {pattern}, repeat('y', 1000), 'g')) FROM \
                 (SELECT repeat('x', 5000) || n AS v FROM generate_series(1, 20) AS t(n))"
            );
            let err = value(&sql).await.unwrap_err();
            assert!(err.contains("regexp_replace() would build up to"), "{sql}: {err}");
        }
        // Without `g`, one match a value: the same call fits.
        let once = "SELECT length(regexp_replace(repeat('x', 5000), '', repeat('y', 1000)))";
        assert_eq!(value(once).await.as_deref(), Ok("6000"));
    }
}
