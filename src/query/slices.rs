//! Time slices: a bounded job over a table with a time column may run as a sequence of
//! queries over consecutive slices of its window instead of one query over the whole window.
//! Each part's checkpoint then names the slice its last row came from and the rows of that
//! slice already sent, so a resumed or taken-over run re-reads at most one slice, not
//! everything before the crash (90 GB of a 100 GB export). Parquet's statistics make each
//! slice read only its own row groups; a source that cannot prune by time (CSV, NDJSON)
//! would be read whole once per slice, so it is never sliced.
//!
//! Slicing must not change the result, so only row-wise queries are sliced: projections and
//! filters over exactly one table. Anything that looks across rows (aggregates, ORDER BY,
//! LIMIT, DISTINCT, window functions, joins, unions) runs as one query, as before.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

/// The query's plan only projects and filters the rows of one table scan. Subqueries are
/// visited too: one that reads a table is a second scan. Window functions, aggregates, sorts,
/// limits, joins and unions are plan nodes of their own, none of them row-wise.
pub fn row_wise_over_one_scan(plan: &LogicalPlan) -> bool {
    let mut scans = 0;
    let mut row_wise = true;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(_) => scans += 1,
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {}
            _ => row_wise = false,
        }
        Ok(TreeNodeRecursion::Continue)
    });
    row_wise && scans == 1
}

/// No slice is shorter than this: every slice's query opens the table again (its files
/// listed, their Parquet footers read), which must stay small beside the rows it reads.
pub const MIN_SLICE_MS: i64 = 3_600_000;

/// How many slices a window is cut into: `count` (`worker.time_slices`), fewer when the
/// table's files are small, so that each slice covers about `min_slice_bytes` or more of them
/// (`source_bytes`: the files' size, the whole table's, so a window narrower than the table
/// errs towards more slices; `None`: unknown, `count`). Every slice re-reads the row groups it
/// shares with the next (cut inside them, the same pages are decoded twice) and opens the
/// table again: on a 100 MB table cut into 23 one-hour slices that cost 15-20% of the export,
/// while a crash there costs seconds of re-reading whatever the slices.
pub fn slice_count(count: u32, source_bytes: Option<u64>, min_slice_bytes: u64) -> u32 {
    match source_bytes {
        Some(bytes) if min_slice_bytes > 0 => {
            u32::try_from(bytes.div_ceil(min_slice_bytes)).unwrap_or(u32::MAX).clamp(1, count.max(1))
        }
        _ => count,
    }
}

/// The length of the slices of `[from_ms, to_ms)` cut into `count` equal slices (the last
/// may be shorter; none shorter than [`MIN_SLICE_MS`]), the grid a run and every resumed run
/// share: a slice is named by its start. `None`: the window is one slice.
pub fn slice_length(from_ms: i64, to_ms: i64, count: u32) -> Option<i64> {
    let span = to_ms.saturating_sub(from_ms).max(1);
    let count = i64::from(count.max(1));
    let length = ((span + count - 1) / count).max(MIN_SLICE_MS);
    (length < span).then_some(length)
}

/// The end of the slice that starts at or contains `at`.
pub fn slice_end(from_ms: i64, to_ms: i64, length: i64, at: i64) -> i64 {
    let k = (at.saturating_sub(from_ms)).max(0) / length.max(1);
    from_ms.saturating_add((k + 1).saturating_mul(length)).min(to_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn row_wise(sql: &str) -> bool {
        use std::sync::Arc;

        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::prelude::SessionContext;

        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let column = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_new(schema, vec![column.clone(), column]).unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch).unwrap();
        let df = ctx.sql(sql).await.unwrap();
        row_wise_over_one_scan(df.logical_plan())
    }

    #[tokio::test]
    async fn only_row_wise_queries_over_one_table_are_sliced() {
        for sql in
            ["SELECT * FROM t", "SELECT a, b + 1 AS c FROM t WHERE a > 1 AND b < 3", "SELECT x.a FROM t x"]
        {
            assert!(row_wise(sql).await, "{sql}");
        }
        for sql in [
            "SELECT count(*) FROM t",
            "SELECT a, sum(b) FROM t GROUP BY a",
            "SELECT * FROM t ORDER BY a",
            "SELECT * FROM t LIMIT 2",
            "SELECT DISTINCT a FROM t",
            "SELECT a, row_number() OVER (ORDER BY a) FROM t",
            "SELECT * FROM t WHERE a IN (SELECT b FROM t)",
            "SELECT * FROM t WHERE a > (SELECT min(b) FROM t)",
            "SELECT * FROM t UNION ALL SELECT * FROM t",
            "SELECT * FROM t x JOIN t y ON x.a = y.b",
            "SELECT 1",
        ] {
            assert!(!row_wise(sql).await, "{sql}");
        }
    }

    #[test]
    fn small_tables_get_fewer_slices() {
        const GIB: u64 = 1 << 30;
        assert_eq!(slice_count(64, Some(100 << 20), GIB), 1, "a 100 MB table is one slice");
        assert_eq!(slice_count(64, Some(10 * GIB + 1), GIB), 11);
        assert_eq!(slice_count(64, Some(1000 * GIB), GIB), 64, "never more than time_slices");
        assert_eq!(slice_count(64, Some(0), GIB), 1);
        assert_eq!(slice_count(64, None, GIB), 64, "unknown size: time_slices");
        assert_eq!(slice_count(64, Some(100), 0), 64, "0: by time only");
    }

    #[test]
    fn slices_tile_the_window() {
        let (from, to) = (1_000_000, 1_000_000 + 64 * 3 * 3_600_000);
        let len = slice_length(from, to, 64).unwrap();
        assert_eq!(len, 3 * 3_600_000);
        let mut at = from;
        let mut n = 0;
        while at < to {
            let end = slice_end(from, to, len, at);
            assert!(end > at && end <= to);
            at = end;
            n += 1;
        }
        assert_eq!(n, 64);
        // A resumed run that starts inside a slice ends it where the first run would have.
        assert_eq!(slice_end(from, to, len, from + len + 5), from + 2 * len);
        assert_eq!(slice_length(0, 10 * 3_600_000, 64), Some(3_600_000), "never shorter than an hour");
        assert_eq!(slice_length(0, 3_600_000, 64), None, "an hour's job is one query");
        assert_eq!(slice_end(0, 10, 1000, 0), 10);
    }
}
