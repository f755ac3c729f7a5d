//! The embedded engine: Apache DataFusion over the catalog's tables, each seen through a
//! time-windowed view, with DDL, DML and statements refused.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, lit};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext, ident};

use datafusion::sql::parser::Statement as DfStatement;

use super::BATCH_ROWS;
use super::big_stack::{planned_on_big_stack, streamed_on_big_stack};
use super::bytes_read::{BytesRead, CountingStore};
use super::catalog::{Catalog, EpochUnit, split_name};
use super::error::QueryError;
use super::object_stores::TableStores;
use super::parse::PARSER_RECURSION_LIMIT;

/// The default of `worker.memory_margin_mb`, in bytes.
const DEFAULT_PROCESS_MARGIN: usize = 1024 << 20;

/// The time range a run may see: `[from_ms, to_ms)` on every table's time column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryWindow {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// How far behind "now" a window over new rows ends (a continuous job's, a push query's), so
/// that rows still being written are not missed.
pub const CONTINUOUS_LAG: std::time::Duration = std::time::Duration::from_secs(1);

/// A running query: its batches, where the time column is in them (if selected), and the
/// bytes it has fetched from its tables' storage so far.
pub struct QueryRun {
    pub stream: SendableRecordBatchStream,
    pub time_column: Option<TimeColumn>,
    pub bytes_read: BytesRead,
}

/// The time column in a query's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeColumn {
    pub index: usize,
    /// Milliseconds per unit when it is an integer (1, or 1000 for epoch seconds).
    pub millis_per_unit: i64,
}

#[async_trait]
pub trait QueryEngine: Send + Sync + 'static {
    /// Plans `query` over the catalog restricted to `window`, skips the first `skip` rows
    /// (a resumed run) and stops after `limit` rows in all.
    async fn run(
        &self,
        query: &str,
        window: QueryWindow,
        skip: u64,
        limit: Option<u64>,
    ) -> Result<QueryRun, QueryError>;

    /// Checks that `query` plans (tables and columns exist, it is a SELECT) without running it.
    async fn check(&self, query: &str) -> Result<QueryShape, QueryError>;

    /// As [`Self::check`], with [`QueryShape::source_bytes`] filled in for a sliceable query
    /// (the table's files listed): for a worker deciding how to slice a job, not for a request.
    async fn check_for_slicing(&self, query: &str) -> Result<QueryShape, QueryError>;
}

/// What planning learnt about a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryShape {
    /// It reads at least one table with a time column: `from`/`to` bound it, and a continuous
    /// job can move on to new rows. Without one, every window would return the same rows.
    pub windowed: bool,
    /// The catalog tables that have a time column (to name them when one is needed).
    pub windowed_tables: Vec<String>,
    /// A bounded job may run it in time slices ([`super::slices`]): row-wise over one table
    /// with a time column, read from a source that prunes by time.
    pub sliceable: bool,
    /// The size of the files of the table a sliceable query reads (`None`: not sliceable, the
    /// listing failed, or not asked for: only [`QueryEngine::check_for_slicing`] lists them).
    pub source_bytes: Option<u64>,
}

pub struct DataFusionEngine {
    catalog: Catalog,
    /// Memory one query may hold (sorts and aggregations spill or fail past it).
    memory_limit: Option<usize>,
    /// What the rest of the process may hold besides its running queries (see
    /// [`super::memory_backstop`]).
    process_margin: usize,
    /// Where tables at `s3://`, `gs://`, `az://` and `abfs[s]://` locations are read from.
    stores: TableStores,
}

impl DataFusionEngine {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog, memory_limit: None, process_margin: DEFAULT_PROCESS_MARGIN, stores: Vec::new() }
    }

    /// The object stores of the catalog's tables in S3, GCS and Azure.
    pub fn with_table_stores(mut self, stores: TableStores) -> Self {
        self.stores = stores;
        self
    }

    /// Each query runs under its own memory pool of `bytes`, so that one job cannot take the
    /// worker down; and the whole process is held to `bytes` per running query plus the
    /// process margin.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// What the rest of the process may hold besides its running queries (with a memory limit).
    pub fn with_process_margin(mut self, bytes: usize) -> Self {
        self.process_margin = bytes;
        self
    }

    /// A session holding the tables `query` names, each windowed to `window`. Only those: a
    /// table is opened (its files listed, its schema read) only by the queries that use it.
    /// Also says whether any of them has a time column, and counts the bytes read from them.
    async fn context(
        &self,
        window: QueryWindow,
        statement: &DfStatement,
    ) -> Result<(SessionContext, bool, BytesRead), QueryError> {
        // One partition keeps the row order of a run stable, so that a resumed run can skip
        // exactly the rows already uploaded. Identifiers stay case-sensitive: Devo field
        // names are camelCase (`statusCode`).
        let mut config = SessionConfig::new().with_target_partitions(1).with_batch_size(BATCH_ROWS);
        config.options_mut().sql_parser.enable_ident_normalization = false;
        config.options_mut().sql_parser.recursion_limit =
            datafusion::config::ConfigNonZeroUsize::try_new(PARSER_RECURSION_LIMIT)?;
        // Parquet: a window's bounds also filter rows inside the row groups that statistics
        // could not prune, before the other columns are decoded.
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.reorder_filters = true;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = self.memory_limit {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        let mut ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        super::guarded_functions::register(&ctx);
        super::guarded_aggregates::register(&ctx);
        let pool = ctx.runtime_env().memory_pool.clone();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(super::guarded_concat::GuardedConcatPlanner::new(pool)),
        )?;
        // Every read of a table goes through a store that counts its bytes.
        let bytes_read = BytesRead::default();
        let local: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        let file_url = url::Url::parse("file://").map_err(|e| QueryError::Execution(e.to_string()))?;
        ctx.register_object_store(&file_url, Arc::new(CountingStore::new(local, bytes_read.clone())));
        for (url, store) in &self.stores {
            ctx.register_object_store(url, Arc::new(CountingStore::new(store.clone(), bytes_read.clone())));
        }
        let named = named_tables(&ctx, statement);
        let mut windowed = false;
        for table in
            self.catalog.tables.iter().filter(|t| resolved(&ctx, &t.name).is_some_and(|r| named.contains(&r)))
        {
            let mut df = super::table_source::open(&ctx, table).await?;
            if let Some(time) = &table.time_column {
                windowed = true;
                let data_type = df
                    .schema()
                    .field_with_unqualified_name(time)
                    .map_err(|_| {
                        QueryError::Execution(format!(
                            "catalog: table {} has no time column {time}",
                            table.name
                        ))
                    })?
                    .data_type()
                    .clone();
                let (column, data_type) = comparable_time(ident(time), data_type);
                let bound = |ms: i64| time_literal(&data_type, table.time_unit, ms);
                if let Some(from) = window.from_ms {
                    df = df.filter(column.clone().gt_eq(bound(from)))?;
                }
                if let Some(to) = window.to_ms {
                    df = df.filter(column.lt(bound(to)))?;
                }
            }
            register(&ctx, &table.name, df.into_view())?;
        }
        Ok((ctx, windowed, bytes_read))
    }

    /// Plans the parsed `statement` (DDL, DML and statements refused).
    async fn plan(
        &self,
        ctx: &SessionContext,
        statement: DfStatement,
    ) -> Result<datafusion::dataframe::DataFrame, QueryError> {
        let options =
            SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let planned = async {
            let plan = forwarder_sql::statement_to_plan(ctx.state(), statement).await?;
            options.verify_plan(&plan)?;
            ctx.execute_logical_plan(plan).await
        };
        planned.await.map_err(|e| match e.find_root() {
            DataFusionError::Execution(m) | DataFusionError::Plan(m) => {
                QueryError::Invalid(self.name_the_tables(m.clone()))
            }
            DataFusionError::SchemaError(..) => {
                QueryError::Invalid(without_settings_hint(e.find_root().to_string()))
            }
            _ => e.into(),
        })
    }

    /// DataFusion names a missing table by its internal path (`datafusion.public.nope`): say
    /// which tables there are instead.
    fn name_the_tables(&self, message: String) -> String {
        let Some(missing) = message.strip_prefix("table '").and_then(|m| m.strip_suffix("' not found"))
        else {
            return message;
        };
        let name = missing.strip_prefix("datafusion.public.").unwrap_or(missing);
        let known: Vec<&str> = self.catalog.tables.iter().map(|t| t.name.as_str()).collect();
        format!("there is no table {name}; the catalog has {}", known.join(", "))
    }
}

/// DataFusion ends an unknown column's message with a hint at a session setting callers
/// cannot change: say what holds here instead.
fn without_settings_hint(message: String) -> String {
    match message.find(" You can use double quotes") {
        Some(cut) => {
            format!("{} Column names are case-sensitive (as in Devo: statusCode).", message[..cut].trim_end())
        }
        None => message,
    }
}

/// The time column as windows compare it: text (`2026-01-01T10:00:00Z`, as NDJSON gives
/// times) is read as a timestamp; timestamps, dates and integers as they are (the window's
/// bounds are put in their unit, so that Parquet statistics can prune by them).
fn comparable_time(column: Expr, data_type: DataType) -> (Expr, DataType) {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let as_time = DataType::Timestamp(TimeUnit::Millisecond, None);
            // A value that is not a time (`""`, `n/a`) is no row of any window, not a failed job.
            (datafusion::logical_expr::try_cast(column, as_time.clone()), as_time)
        }
        other => (column, other),
    }
}

/// A literal comparable with the time column: timestamps in the column's own unit (so that
/// the column is compared as stored, uncast, and Parquet statistics can prune by it),
/// integers in the catalog's epoch unit. In seconds, a bound is rounded up: for a whole
/// number of seconds `t`, `t * 1000 >= ms` is `t >= ⌈ms / 1000⌉`, and `t * 1000 < ms` is
/// `t < ⌈ms / 1000⌉`, exact at the window's edges.
fn time_literal(data_type: &DataType, unit: EpochUnit, ms: i64) -> Expr {
    let seconds = ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0);
    match data_type {
        t if t.is_integer() && unit == EpochUnit::Seconds => lit(seconds),
        DataType::Timestamp(TimeUnit::Second, tz) => {
            lit(ScalarValue::TimestampSecond(Some(seconds), tz.clone()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            lit(ScalarValue::TimestampMicrosecond(Some(ms.saturating_mul(1000)), tz.clone()))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
            lit(ScalarValue::TimestampNanosecond(Some(ms.saturating_mul(1_000_000)), tz.clone()))
        }
        DataType::Timestamp(_, tz) => lit(ScalarValue::TimestampMillisecond(Some(ms), tz.clone())),
        DataType::Date32 | DataType::Date64 => lit(ScalarValue::Date64(Some(ms))),
        _ => lit(ms),
    }
}

/// The tables a query names, resolved against the session's defaults.
fn named_tables(ctx: &SessionContext, statement: &DfStatement) -> Vec<(String, String, String)> {
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    state
        .resolve_table_references(statement)
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let r = r.resolve(&defaults.default_catalog, &defaults.default_schema);
            (r.catalog.to_string(), r.schema.to_string(), r.table.to_string())
        })
        .collect()
}

/// A catalog name (`demo.ecommerce.data`, `ecommerce.data`, `data`) as the session resolves it.
fn resolved(ctx: &SessionContext, name: &str) -> Option<(String, String, String)> {
    let (catalog, schema, table) = split_name(name).ok()?;
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    Some((
        catalog.unwrap_or(&defaults.default_catalog).to_string(),
        schema.unwrap_or(&defaults.default_schema).to_string(),
        table.to_string(),
    ))
}

fn register(
    ctx: &SessionContext,
    name: &str,
    view: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<(), QueryError> {
    let bad = |e: super::catalog::CatalogError| QueryError::Execution(e.to_string());
    let (catalog_name, schema_name, table) = split_name(name).map_err(bad)?;
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    let catalog_name = catalog_name.unwrap_or(&defaults.default_catalog).to_string();
    let schema_name = schema_name.unwrap_or(&defaults.default_schema).to_string();
    let catalog = match ctx.catalog(&catalog_name) {
        Some(c) => c,
        None => {
            let c: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
            ctx.register_catalog(&catalog_name, c.clone());
            c
        }
    };
    let schema = match catalog.schema(&schema_name) {
        Some(s) => s,
        None => {
            let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog.register_schema(&schema_name, s.clone())?;
            s
        }
    };
    schema.register_table(table.to_string(), view)?;
    Ok(())
}

/// The steps of a query, each on the stack it happens to be polled on.
impl DataFusionEngine {
    async fn run_here(
        &self,
        query: &str,
        window: QueryWindow,
        skip: u64,
        limit: Option<u64>,
    ) -> Result<QueryRun, QueryError> {
        let statement = super::parse::only_one_select(query)?;
        let (ctx, _, bytes_read) = self.context(window, &statement).await?;
        let mut df = self.plan(&ctx, statement).await?;
        if skip > 0 || limit.is_some() {
            let fetch = limit.map(|l| l.saturating_sub(skip) as usize);
            df = df.limit(skip as usize, fetch)?;
        }
        let time_column = df.schema().fields().iter().enumerate().find_map(|(index, f)| {
            let table =
                self.catalog.tables.iter().find(|t| t.time_column.as_deref() == Some(f.name().as_str()))?;
            Some(TimeColumn { index, millis_per_unit: table.time_unit.millis() })
        });
        // As `DataFrame::execute_stream`, with the memory guards between the steps.
        let state = ctx.state();
        let optimized = state.optimize(df.logical_plan())?;
        if let Some(budget) = self.memory_limit {
            super::guarded_functions::constants_fit(&optimized, budget)?;
        }
        // Held to the process's memory limit as well as to its own pool, for as long as it runs.
        let registration = self.memory_limit.map(|budget| {
            let pool = ctx.runtime_env().memory_pool.clone();
            super::memory_backstop::Registration::new(budget, self.process_margin, pool)
        });
        let mut physical = state.query_planner().create_physical_plan(&optimized, &state).await?;
        if let Some(registration) = &registration {
            physical = super::watched_plan::watched(physical, &registration.stop_signal())?;
        }
        let mut stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        if let Some(registration) = registration {
            stream = registration.output(stream);
        }
        let stream = streamed_on_big_stack(stream);
        Ok(QueryRun { stream, time_column, bytes_read })
    }

    async fn check_here(&self, query: &str, list_source: bool) -> Result<QueryShape, QueryError> {
        let statement = super::parse::only_one_select(query)?;
        let (ctx, windowed, _) = self.context(QueryWindow::default(), &statement).await?;
        let named = named_tables(&ctx, &statement);
        let df = self.plan(&ctx, statement).await?;
        // Optimised too, as a run will: what only the optimizer finds wrong (a negative LIMIT)
        // is refused now rather than failing every run.
        let state = ctx.state();
        state.optimize(df.logical_plan())?;
        let windowed_tables =
            self.catalog.tables.iter().filter(|t| t.time_column.is_some()).map(|t| t.name.clone()).collect();
        let mut tables = self
            .catalog
            .tables
            .iter()
            .filter(|t| resolved(&ctx, &t.name).is_some_and(|r| named.contains(&r)));
        let sliced_table = match (tables.next(), tables.next()) {
            (Some(t), None)
                if t.time_column.is_some()
                    && t.format.prunes_by_time()
                    && super::slices::row_wise_over_one_scan(df.logical_plan()) =>
            {
                Some(t)
            }
            _ => None,
        };
        // Unknown if the listing fails: the run will say why, with the table's name.
        let source_bytes = match sliced_table {
            Some(t) if list_source => super::table_source::files_size(&ctx, t).await.ok(),
            _ => None,
        };
        Ok(QueryShape { windowed, windowed_tables, sliceable: sliced_table.is_some(), source_bytes })
    }
}

/// Every step of a query walks its tree, dropping it too: all of them on a big stack.
#[async_trait]
impl QueryEngine for DataFusionEngine {
    async fn run(
        &self,
        query: &str,
        window: QueryWindow,
        skip: u64,
        limit: Option<u64>,
    ) -> Result<QueryRun, QueryError> {
        planned_on_big_stack(self.run_here(query, window, skip, limit)).await
    }

    async fn check(&self, query: &str) -> Result<QueryShape, QueryError> {
        planned_on_big_stack(self.check_here(query, false)).await
    }

    async fn check_for_slicing(&self, query: &str) -> Result<QueryShape, QueryError> {
        planned_on_big_stack(self.check_here(query, true)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::TableFormat;

    /// What only the optimizer finds wrong is the query's fault: refused as invalid at the
    /// check, not reported as an execution failure.
    #[tokio::test]
    async fn what_the_optimizer_refuses_is_an_invalid_query() {
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        let engine =
            DataFusionEngine::new(Catalog::load(&crate::query::demo::create(&dir, 10).unwrap()).unwrap());
        for query in [
            "SELECT * FROM demo.ecommerce.data LIMIT -1",
            "SELECT CAST('abc' AS INT) FROM demo.ecommerce.data",
        ] {
            match engine.check(query).await {
                Err(QueryError::Invalid(msg)) => assert!(!msg.contains("Optimizer rule"), "{query}: {msg}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Only a worker deciding how to slice a job lists the table's files: a request's check
    /// does not pay for a listing it does not use.
    #[tokio::test]
    async fn only_the_check_for_slicing_lists_the_files() {
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        let engine = DataFusionEngine::new(
            Catalog::load(&crate::query::demo_parquet::create_parquet(&dir, 1_000).await.unwrap()).unwrap(),
        );
        let query = "SELECT uri, statusCode FROM demo.ecommerce.data WHERE statusCode >= 200";
        let checked = engine.check(query).await.unwrap();
        assert!(checked.sliceable && checked.source_bytes.is_none(), "{checked:?}");
        let for_slicing = engine.check_for_slicing(query).await.unwrap();
        let size: u64 = std::fs::read_dir(dir.join("parquet"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(for_slicing.source_bytes, Some(size), "the Parquet files' size: {for_slicing:?}");
        let aggregate = engine.check_for_slicing("SELECT count(*) FROM demo.ecommerce.data").await.unwrap();
        assert_eq!((aggregate.sliceable, aggregate.source_bytes), (false, None));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The deepest queries the parser lets through plan, run and drop wherever they are
    /// polled from: here a thread with a quarter of the stack a runtime thread has.
    #[test]
    fn deep_queries_run_on_a_small_stack() {
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        let engine =
            DataFusionEngine::new(Catalog::load(&crate::query::demo::create(&dir, 10).unwrap()).unwrap());
        let chain = vec!["statusCode"; 1_000].join(" + ");
        let nested = format!(
            "{}SELECT {chain} AS n FROM demo.ecommerce.data{}",
            "SELECT n FROM (".repeat(20),
            ") AS t".repeat(20)
        );
        let rows = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let run = engine.run(&nested, QueryWindow::default(), 0, None).await.unwrap();
                    let batches = futures::TryStreamExt::try_collect::<Vec<_>>(run.stream).await.unwrap();
                    batches.iter().map(|b| b.num_rows()).sum::<usize>()
                })
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(rows, 10);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn a_query_opens_only_the_tables_it_names() {
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        let path = crate::query::demo::create(&dir, 10).unwrap();
        let mut catalog = Catalog::load(&path).unwrap();
        // A table whose files are gone: only the queries that read it may fail.
        let mut gone = catalog.tables[0].clone();
        gone.name = "archive.old".into();
        gone.location = dir.join("no-such-directory/");
        catalog.tables.push(gone);
        let engine = DataFusionEngine::new(catalog);
        assert!(engine.check("SELECT * FROM demo.ecommerce.data").await.unwrap().windowed);
        let cte = "WITH t AS (SELECT statusCode FROM demo.ecommerce.data) SELECT * FROM t";
        assert!(engine.check(cte).await.unwrap().windowed);
        assert!(!engine.check("SELECT 1").await.unwrap().windowed);
        assert!(engine.check("SELECT * FROM archive.old").await.is_err());
    }

    /// The `v` values a query over one file sees in the window 00:30–03:00 of 2026-01-01, and
    /// the time column's place and scale in the output.
    async fn windowed(
        file: &str,
        lines: &[String],
        format: TableFormat,
        time_unit: EpochUnit,
    ) -> (Vec<i64>, Option<TimeColumn>) {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), lines.join("\n")).unwrap();
        let table = super::super::TableEntry {
            name: "ev".into(),
            location: dir.join(file),
            format,
            compression: None,
            time_column: Some("t".into()),
            time_unit,
        };
        let engine = DataFusionEngine::new(Catalog { tables: vec![table] });
        let hour = 3_600_000;
        let start = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let window = QueryWindow { from_ms: Some(start + hour / 2), to_ms: Some(start + 3 * hour) };
        let run = engine.run("SELECT v, t FROM ev", window, 0, None).await.unwrap();
        let time_column = run.time_column;
        let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(run.stream).await.unwrap();
        let seen =
            batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        (seen, time_column)
    }

    #[tokio::test]
    async fn an_ndjson_file_with_text_times_is_windowed_by_them() {
        let mut lines: Vec<String> =
            (0..4).map(|h| format!(r#"{{"t":"2026-01-01T0{h}:00:00Z","v":{h}}}"#)).collect();
        lines.push(r#"{"t":"n/a","v":9}"#.into());
        let (seen, _) = windowed("events.ndjson", &lines, TableFormat::Json, EpochUnit::default()).await;
        assert_eq!(seen, vec![1, 2]);
    }

    #[tokio::test]
    async fn an_integer_time_column_in_epoch_seconds_is_windowed_by_them() {
        let mut lines = vec!["t,v".to_string()];
        lines.extend((0..4).map(|h| format!("{},{h}", 1_767_225_600 + h * 3600)));
        let (seen, time_column) = windowed("events.csv", &lines, TableFormat::Csv, EpochUnit::Seconds).await;
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(time_column, Some(TimeColumn { index: 1, millis_per_unit: 1000 }));
        // The same numbers read as milliseconds are all in 1970: none is in the window.
        let (seen, _) = windowed("events.csv", &lines, TableFormat::Csv, EpochUnit::Milliseconds).await;
        assert_eq!(seen, Vec::<i64>::new());
    }

    #[test]
    fn window_bounds_in_seconds_round_up() {
        let bound = |ms| time_literal(&DataType::Int32, EpochUnit::Seconds, ms);
        assert_eq!((bound(1_500), bound(2_000), bound(-1_500)), (lit(2_i64), lit(2_i64), lit(-1_i64)));
        let ns = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        assert_eq!(
            time_literal(&ns, EpochUnit::Milliseconds, 1_500),
            lit(ScalarValue::TimestampNanosecond(Some(1_500_000_000), Some("UTC".into())))
        );
    }

    #[tokio::test]
    async fn an_unknown_table_is_named_with_the_ones_there_are() {
        let dir = std::env::temp_dir().join(format!("forwarder-engine-{}", uuid::Uuid::new_v4()));
        let catalog = crate::query::demo::create(&dir, 10).unwrap();
        let engine = DataFusionEngine::new(Catalog::load(&catalog).unwrap());
        let err = engine.check("SELECT * FROM nope").await.unwrap_err().to_string();
        assert_eq!(err, "query refused: there is no table nope; the catalog has demo.ecommerce.data");
        let err = engine
            .check("SELECT * FROM demo.ecommerce.data WHERE statuscode > 1")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("statuscode")
                && err.contains("case-sensitive")
                && !err.contains("enable_ident_normalization"),
            "{err}"
        );
    }
}
