//! Aggregates whose output is as large as their input (`string_agg`, `array_agg`), emitted a
//! slice of the groups at a time with the process's headroom checked in between.
//!
//! A grouped aggregation builds its whole output in one call (`GroupsAccumulator::evaluate`
//! over every group), nothing can stop it part way, and `string_agg` holds each group's string
//! and their copy in the output array at once: `string_agg` of a 4M-row join grouped by 2,000
//! keys was stopped by the watchdog at 627 MB live, then peaked at 1,261 MiB RSS finishing that
//! one call. Each such aggregate is replaced, under its own name, by one whose groups emit in
//! [`SLICES`] slices (`EmitTo::First`), failing with `ResourcesExhausted` (reported as over
//! `worker.query_memory_mb`) as soon as the process is past its limit, and before the slices are
//! joined when the joined array would not fit. The ungrouped form (one value) is left as it is:
//! its accumulator's size is in the query's pool.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue, human_readable_size};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, WindowFunctionParams};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator, Operator,
    ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use datafusion::prelude::SessionContext;

/// The aggregates guarded: the ones that keep every input value.
const GUARDED: &[&str] = &["string_agg", "array_agg"];

/// Into how many slices a large emission is cut: the most the process can pass its limit by
/// is about one slice of the output.
const SLICES: usize = 16;

/// Groups below this emit at once.
const MIN_SLICE: usize = 64;

/// Replaces, in `ctx`, each aggregate of [`GUARDED`] by its guarded self.
pub fn register(ctx: &SessionContext) {
    let state = ctx.state();
    for name in GUARDED {
        if let Some(inner) = state.aggregate_functions().get(*name) {
            let guarded = Guarded { udf: inner.as_ref().clone() };
            ctx.register_udaf(AggregateUDF::new_from_impl(guarded));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    udf: AggregateUDF,
}

impl Guarded {
    fn inner(&self) -> &Arc<dyn AggregateUDFImpl> {
        self.udf.inner()
    }
}

/// Delegates every method, but for the groups accumulator, which it wraps.
#[warn(clippy::missing_trait_methods)]
impl AggregateUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner().name()
    }
    fn signature(&self) -> &Signature {
        self.inner().signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner().return_type(arg_types)
    }
    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner().accumulator(acc_args)
    }
    fn aliases(&self) -> &[String] {
        self.inner().aliases()
    }
    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().schema_name(params)
    }
    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().human_display(params)
    }
    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner().window_function_schema_name(params)
    }
    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().display_name(params)
    }
    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner().window_function_display_name(params)
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner().state_fields(args)
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner().groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        let inner = self.inner().create_groups_accumulator(args)?;
        Ok(Box::new(SlicedEmit { inner, groups: 0, name: self.inner().name().to_string() }))
    }
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner().create_sliding_accumulator(args)
    }
    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        let reordered = Arc::clone(self.inner()).with_beneficial_ordering(beneficial_ordering)?;
        Ok(reordered.map(|inner| {
            Arc::new(Guarded { udf: AggregateUDF::new_from_shared_impl(inner) }) as Arc<dyn AggregateUDFImpl>
        }))
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner().order_sensitivity()
    }
    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner().simplify()
    }
    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.inner().simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner().reverse_expr()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner().coerce_types(arg_types)
    }
    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner().return_field(arg_fields)
    }
    fn is_nullable(&self) -> bool {
        self.inner().is_nullable()
    }
    fn is_descending(&self) -> Option<bool> {
        self.inner().is_descending()
    }
    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner().value_from_stats(statistics_args)
    }
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner().default_value(data_type)
    }
    fn supports_null_handling_clause(&self) -> bool {
        self.inner().supports_null_handling_clause()
    }
    fn supports_within_group_clause(&self) -> bool {
        self.inner().supports_within_group_clause()
    }
    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner().set_monotonicity(data_type)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner().documentation()
    }
}

/// A groups accumulator whose output (and intermediate state) is built a slice at a time.
struct SlicedEmit {
    inner: Box<dyn GroupsAccumulator>,
    /// Groups held and not yet emitted.
    groups: usize,
    name: String,
}

impl SlicedEmit {
    /// Emits `emit_to` through `emit`, in slices when it is large, checking the headroom
    /// before each slice and before the slices are joined.
    fn sliced(
        &mut self,
        emit_to: EmitTo,
        mut emit: impl FnMut(&mut dyn GroupsAccumulator, EmitTo) -> Result<Vec<ArrayRef>>,
    ) -> Result<Vec<ArrayRef>> {
        // `First(n)` emits n groups whatever this count says (a miscount must never drop a
        // group), and `All` ends with `All` below.
        let wanted = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n,
        };
        self.groups = self.groups.saturating_sub(wanted);
        let slice = wanted.div_ceil(SLICES).max(MIN_SLICE);
        if wanted <= slice {
            self.fits(0, wanted)?;
            return emit(self.inner.as_mut(), emit_to);
        }
        let mut slices: Vec<Vec<ArrayRef>> = Vec::with_capacity(SLICES + 1);
        let mut left = wanted;
        while left > slice {
            self.fits(0, wanted)?;
            slices.push(emit(self.inner.as_mut(), EmitTo::First(slice))?);
            left -= slice;
        }
        // The last slice as asked: `All` takes whatever the count above missed.
        self.fits(0, wanted)?;
        let last = match emit_to {
            EmitTo::All => EmitTo::All,
            EmitTo::First(_) => EmitTo::First(left),
        };
        slices.push(emit(self.inner.as_mut(), last)?);
        let bytes: usize = slices.iter().flatten().map(|a| a.get_array_memory_size()).sum();
        self.fits(bytes, wanted)?;
        let columns = slices[0].len();
        (0..columns)
            .map(|c| {
                let parts: Vec<&dyn datafusion::arrow::array::Array> =
                    slices.iter().map(|s| s[c].as_ref()).collect();
                Ok(concat(&parts)?)
            })
            .collect()
    }

    /// Fails when the process is past its limit, or has less than `bytes` left under it.
    fn fits(&self, bytes: usize, groups: usize) -> Result<()> {
        match super::memory_backstop::headroom() {
            Some((left, limit)) if left == 0 || left < bytes => {
                Err(DataFusionError::ResourcesExhausted(format!(
                    "{}() over {groups} groups would take the worker past the {} it may hold while its \
                     queries run",
                    self.name,
                    human_readable_size(limit)
                )))
            }
            _ => Ok(()),
        }
    }
}

impl GroupsAccumulator for SlicedEmit {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        self.inner.update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut out = self.sliced(emit_to, |inner, to| Ok(vec![inner.evaluate(to)?]))?;
        Ok(out.remove(0))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.sliced(emit_to, |inner, to| inner.state(to))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_num_groups);
        self.inner.merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionConfig;

    use super::*;

    /// Thousands of groups, over two partitions (partial state then final output, both
    /// sliced): the same rows as DataFusion's own aggregates give.
    #[tokio::test]
    async fn sliced_groups_give_the_same_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let batch = |offset: i64| {
            let keys: Vec<i64> = (0..20_000).map(|i| (i * 7 + offset) % 5_003).collect();
            let values: Vec<Option<String>> =
                (0..20_000).map(|i| (i % 11 != 0).then(|| format!("v{}", (i + offset) % 97))).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(keys)), Arc::new(StringArray::from(values))],
            )
            .unwrap()
        };
        let table = MemTable::try_new(schema.clone(), vec![vec![batch(0)], vec![batch(1)]]).unwrap();
        let table = Arc::new(table);
        let query = "SELECT k, string_agg(v, ',' ORDER BY v) AS s, array_agg(v ORDER BY v) AS a, \
                     string_agg(v, ';') IS NULL AS unordered_null, count(*) AS n \
                     FROM t GROUP BY k ORDER BY k";
        let run = |guarded: bool| {
            let table = table.clone();
            async move {
                let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
                if guarded {
                    register(&ctx);
                }
                ctx.register_table("t", table).unwrap();
                let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
                pretty_format_batches(&batches).unwrap().to_string()
            }
        };
        let (plain, guarded) = (run(false).await, run(true).await);
        assert_eq!(guarded.lines().count(), 5_003 + 4);
        assert!(plain == guarded, "the guarded aggregates' rows differ from DataFusion's");
    }
}
