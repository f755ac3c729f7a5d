//! `a || b` on text, held to the query's memory budget like the functions of
//! [`super::guarded_functions`].
//!
//! DataFusion evaluates the operator inside its own expression code, which no memory pool
//! sees, and nesting it (`s || s || …` in a subquery that does the same) multiplies a row's
//! size at each level. The SQL planner asks this planner how to plan `||`: text on both sides
//! becomes a call of [`StringConcat`], which first reserves its output's bound from the
//! query's pool and then concatenates as the operator does (NULL when either side is NULL).
//! Its name in a schema is the operator's, so a column `a || b` keeps its header.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_dyn;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::logical_expr::binary::string_coercion;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable as _, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use super::guarded_output::{reserve_output, sum_rows};

/// Plans `text || text` as a guarded [`StringConcat`]; everything else as DataFusion does.
#[derive(Debug)]
pub struct GuardedConcatPlanner {
    concat: Arc<ScalarUDF>,
}

impl GuardedConcatPlanner {
    pub fn new(pool: Arc<dyn MemoryPool>) -> Self {
        let concat = StringConcat { pool, signature: Signature::any(2, Volatility::Immutable) };
        Self { concat: Arc::new(ScalarUDF::new_from_impl(concat)) }
    }
}

impl ExprPlanner for GuardedConcatPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let (left, right) = (expr.left.get_type(schema)?, expr.right.get_type(schema)?);
        if common_text_type(&left, &right).is_none() {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(self.concat.call(vec![expr.left, expr.right])))
    }
}

/// The type `||` gives two texts (as DataFusion's coercion of the operator does); `None` when
/// either side is not text.
fn common_text_type(left: &DataType, right: &DataType) -> Option<DataType> {
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    (text(left) && text(right)).then(|| string_coercion(left, right)).flatten()
}

#[derive(Debug)]
struct StringConcat {
    pool: Arc<dyn MemoryPool>,
    signature: Signature,
}

impl PartialEq for StringConcat {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for StringConcat {}

impl Hash for StringConcat {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        "string_concat"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [left, right] => common_text_type(left, right).ok_or_else(|| {
                datafusion::common::plan_datafusion_err!("|| joins two texts, not {left} and {right}")
            }),
            _ => datafusion::common::plan_err!("|| takes two values"),
        }
    }

    /// As the operator's own name, so that `SELECT a || b` keeps its column header.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => Ok(self.name().to_string()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bound = sum_rows(&args, |r| r.bytes(0) + r.bytes(1));
        reserve_output(&self.pool, "||", bound, args.number_rows)?;
        let output = args.return_field.data_type().clone();
        let scalars = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [left, right] = [&arrays[0], &arrays[1]].map(|a| cast(a, &output));
        let joined = concat_elements_dyn(&left?, &right?)?;
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&joined, 0)?)
        } else {
            ColumnarValue::Array(joined)
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    fn context(budget: usize) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(budget)))
            .build_arc()
            .unwrap();
        let mut ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let pool = ctx.runtime_env().memory_pool.clone();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(GuardedConcatPlanner::new(pool)),
        )
        .unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<(Vec<String>, Vec<Option<String>>)> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let header = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        let column = datafusion::arrow::compute::cast(batches[0].column(0), &DataType::Utf8)?;
        Ok((header, column.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()))
    }

    #[tokio::test]
    async fn text_concatenation_gives_what_the_operator_gave_under_its_name() {
        let ctx = context(1 << 20);
        let sql = "SELECT s || '-' || arrow_cast(s, 'Utf8View') || t FROM (VALUES ('a', 'x'), ('b', NULL), (NULL, 'z')) AS v(s, t)";
        let (header, values) = rows(&ctx, sql).await.unwrap();
        assert_eq!(values, vec![Some("a-ax".to_string()), None, None]);
        assert!(header[0].contains(" || ") && !header[0].contains("string_concat"), "{header:?}");
        // Not text: as DataFusion plans it.
        let (_, values) = rows(&ctx, "SELECT make_array(1) || make_array(2)").await.unwrap();
        assert_eq!(values, vec![Some("[1, 2]".to_string())]);
    }

    #[tokio::test]
    async fn nested_concatenation_past_the_budget_fails_before_it_is_built() {
        let ctx = context(1 << 20);
        // Each row 100 KB; `s || s` over 8 rows would build 1.6 MB, over the 1 MiB budget.
        let sql = "SELECT s || s || s || s FROM (SELECT repeat(CAST(value AS VARCHAR), 100000) AS s FROM generate_series(1, 8))";
        let Err(err) = rows(&ctx, sql).await else { panic!("the concatenation was built past the budget") };
        assert!(
            matches!(err.find_root(), datafusion::error::DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
    }
}
