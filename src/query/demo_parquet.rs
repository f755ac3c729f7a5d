//! The demo table as Parquet (`forwarder gen-demo --parquet`), so that exports can be
//! measured from a Parquet table as data lakes hold them: the demo CSV, converted by
//! DataFusion's own Parquet writer (zstd, row groups of 128 Ki rows, about 1.5 hours of demo
//! events each, sorted by time as generated), with a catalog of its own naming it.

use std::io;
use std::path::{Path, PathBuf};

use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};

use super::catalog::{Catalog, TableEntry, TableFormat};
use super::demo::{TABLE, TIME_COLUMN, create};

/// Rows per row group: small enough that a window of an hour or two skips most of a big table.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Creates the demo table as CSV (as [`create`]) and as `<dir>/parquet/ecommerce-000.parquet`,
/// and `<dir>/catalog-parquet.toml` naming the Parquet one `demo.ecommerce.data`; returns that
/// catalog's path. An existing Parquet file of the same size is kept.
pub async fn create_parquet(dir: &Path, rows: u64) -> io::Result<PathBuf> {
    create(dir, rows)?;
    let parquet = dir.join("parquet");
    std::fs::create_dir_all(&parquet)?;
    let marker = dir.join(".parquet-rows");
    let file = parquet.join("ecommerce-000.parquet");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&rows.to_string()) || !file.exists() {
        let tmp = parquet.join(".ecommerce-000.parquet.tmp");
        convert(&dir.join("data").join("ecommerce-000.csv"), &tmp).await.map_err(io::Error::other)?;
        std::fs::rename(&tmp, &file)?;
        std::fs::write(&marker, rows.to_string())?;
    }
    let catalog = Catalog {
        tables: vec![TableEntry {
            name: TABLE.into(),
            location: "parquet".into(),
            format: TableFormat::Parquet,
            compression: None,
            time_column: Some(TIME_COLUMN.into()),
            time_unit: Default::default(),
        }],
    };
    let path = dir.join("catalog-parquet.toml");
    if !path.exists() {
        catalog.save(&path)?;
    }
    Ok(path)
}

/// The CSV file at `csv`, its column types inferred as the CSV table's are, written as one
/// Parquet file at `out` in the CSV's row order.
async fn convert(csv: &Path, out: &Path) -> Result<(), datafusion::error::DataFusionError> {
    // One partition keeps the rows in order: row groups then cover short time ranges.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let options = CsvReadOptions::new().file_extension("").schema_infer_max_records(10_000);
    let df = ctx.read_csv(csv.to_string_lossy().to_string(), options).await?;
    let mut parquet = TableParquetOptions::default();
    parquet.global.max_row_group_size = ROW_GROUP_ROWS;
    parquet.global.compression = Some("zstd(3)".into());
    let write = DataFrameWriteOptions::new().with_single_file_output(true);
    df.write_parquet(&out.to_string_lossy(), write, Some(parquet)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{DataFusionEngine, QueryEngine, QueryWindow, demo};

    #[tokio::test]
    async fn the_parquet_demo_holds_the_csv_demo_rows() {
        use datafusion::arrow::util::pretty::pretty_format_batches;
        let dir = std::env::temp_dir().join(format!("forwarder-demo-parquet-{}", uuid::Uuid::new_v4()));
        let rows = 3_000;
        let parquet = create_parquet(&dir, rows).await.unwrap();
        let csv = dir.join("catalog.toml");
        let (from, to) = demo::time_range(rows);
        // A window inside the table: the same rows from both, in the same order.
        let window = QueryWindow { from_ms: Some(from + 10_000), to_ms: Some(to - 10_000) };
        let mut seen = Vec::new();
        for catalog in [csv, parquet] {
            let engine = DataFusionEngine::new(Catalog::load(&catalog).unwrap());
            let query = "SELECT CAST(eventdate AS VARCHAR) AS t, uri, statusCode FROM demo.ecommerce.data";
            let run = engine.run(query, window, 0, None).await.unwrap();
            let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(run.stream).await.unwrap();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3_000 - 500);
            seen.push(pretty_format_batches(&batches).unwrap().to_string());
        }
        assert_eq!(seen[0], seen[1]);
    }
}
