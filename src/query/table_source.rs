//! Opens a catalog table for one query: its files (one file, or a directory or `s3://`
//! prefix), read by DataFusion's listing tables as CSV, NDJSON or Parquet, CSV and NDJSON
//! plain or gzip / zstd compressed. Parquet is read with its statistics: a time window's
//! bounds prune whole files and row groups (and, with filter pushdown, the rows within).

use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

use super::catalog::{TableCompression, TableEntry, TableFormat};
use super::error::{QueryError, error_text};
use super::table_files::TableFiles;

/// How many records of a CSV table its column types are inferred from.
const CSV_INFER_RECORDS: usize = 10_000;

/// How many bytes at the end of a Parquet file are fetched at once to read its footer.
/// DataFusion's default, 512 KiB, suits files of hundreds of MB; a table of small files (an
/// hour or a day of logs each) would fetch half of each file that way, whatever a window
/// prunes. A footer longer than this costs one more request.
const PARQUET_FOOTER_HINT: usize = 16 * 1024;

/// The table's rows, unfiltered. An error names the table and says what could not be read.
pub(super) async fn open(ctx: &SessionContext, table: &TableEntry) -> Result<DataFrame, QueryError> {
    let files = TableFiles::of(table);
    read(ctx, table.format, &files).await.map_err(|e| {
        let what = match (table.format, files.compression) {
            (format, TableCompression::None) => format.as_str().to_string(),
            (format, c) => format!("{}-compressed {}", c.as_str(), format.as_str()),
        };
        let detail = match &e {
            DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
            other => error_text(other),
        };
        // DataFusion's advice (declare a schema) is not one a catalog can follow.
        let detail =
            if detail.contains("No files found at") { no_files(table.format, &files) } else { detail };
        QueryError::Execution(format!(
            "catalog: table {} ({what} at {}) cannot be read: {detail}",
            table.name, files.location
        ))
    })
}

/// The size of the table's files, all of them (what reading the whole table fetches): how
/// finely a job over it is worth slicing ([`super::slices::slice_count`]). One listing, no
/// file read.
pub(super) async fn files_size(ctx: &SessionContext, table: &TableEntry) -> Result<u64, DataFusionError> {
    use futures::StreamExt as _;

    let files = TableFiles::of(table);
    let url = ListingTableUrl::parse(&files.location)?;
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let state = ctx.state();
    let mut listed = url.list_all_files(&state, store.as_ref(), &files.extension).await?;
    let mut total = 0u64;
    while let Some(meta) = listed.next().await {
        total = total.saturating_add(meta?.size);
    }
    Ok(total)
}

/// What to check when a directory or prefix holds no file the table reads.
fn no_files(format: TableFormat, files: &TableFiles) -> String {
    let ext =
        if files.extension.is_empty() { format!(".{}", format.as_str()) } else { files.extension.clone() };
    let compressed = match (format, files.compression) {
        (TableFormat::Parquet, _) | (_, TableCompression::Gzip | TableCompression::Zstd) => "",
        _ => "; gzip or zstd files are read with compression = \"gzip\" (.gz) or \"zstd\" (.zst)",
    };
    format!("no {ext} file there (a directory or prefix is read for its files ending in {ext}{compressed})")
}

async fn read(
    ctx: &SessionContext,
    format: TableFormat,
    files: &TableFiles,
) -> Result<DataFrame, DataFusionError> {
    let location = files.location.clone();
    let compression = files.compression_type();
    match format {
        TableFormat::Csv => {
            // Values may hold newlines (RFC 4180): read each file whole, in order, never
            // from a byte offset that may fall inside quotes.
            let mut opts = CsvReadOptions::new()
                .newlines_in_values(true)
                .schema_infer_max_records(CSV_INFER_RECORDS)
                .file_compression_type(compression)
                .file_extension(&files.extension);
            let schema = super::csv_schema::infer(ctx, files, CSV_INFER_RECORDS).await?;
            if let Some(schema) = &schema {
                opts = opts.schema(schema);
            }
            ctx.read_csv(location, opts).await
        }
        TableFormat::Json => {
            let opts = JsonReadOptions::default()
                .file_compression_type(compression)
                .file_extension(&files.extension);
            ctx.read_json(location, opts).await
        }
        TableFormat::Parquet => {
            let opts = ParquetReadOptions {
                file_extension: &files.extension,
                parquet_pruning: Some(true),
                metadata_size_hint: Some(PARQUET_FOOTER_HINT),
                ..Default::default()
            };
            ctx.read_parquet(location, opts).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(location: &str, format: TableFormat, compression: Option<TableCompression>) -> TableEntry {
        TableEntry {
            name: "t".into(),
            location: location.into(),
            format,
            compression,
            time_column: None,
            time_unit: Default::default(),
        }
    }

    #[test]
    fn files_are_chosen_by_format_and_compression() {
        let f = TableFiles::of(&entry("s3://b/logs/", TableFormat::Csv, Some(TableCompression::Gzip)));
        assert_eq!(f.extension, ".csv.gz");
        let f = TableFiles::of(&entry("s3://b/logs/", TableFormat::Json, Some(TableCompression::Zstd)));
        assert_eq!(f.extension, ".json.zst");
        let f = TableFiles::of(&entry("s3://b/year", TableFormat::Parquet, None));
        assert_eq!(f.extension, ".parquet");
        // One file: its name says its compression, unless the catalog does.
        let f = TableFiles::of(&entry("s3://b/a.ndjson.zst", TableFormat::Json, None));
        assert_eq!((f.compression, f.extension.as_str()), (TableCompression::Zstd, ""));
        let f = TableFiles::of(&entry("s3://b/a.gz", TableFormat::Csv, Some(TableCompression::None)));
        assert_eq!(f.compression, TableCompression::None);
    }

    /// The error of `SELECT * FROM t` over `bytes` in a file named `file`, read as `format`
    /// (when opening the table or while reading it).
    async fn error_reading(file: &str, bytes: &[u8], format: TableFormat) -> String {
        use crate::query::{Catalog, DataFusionEngine, QueryEngine};
        let dir = std::env::temp_dir().join(format!("forwarder-table-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
        let table = entry(&dir.join(file).display().to_string(), format, None);
        let engine = DataFusionEngine::new(Catalog { tables: vec![table] });
        match engine.run("SELECT * FROM t", Default::default(), 0, None).await {
            Err(e) => e.to_string(),
            Ok(run) => {
                let drained: Result<Vec<_>, _> = futures::TryStreamExt::try_collect(run.stream).await;
                drained.expect_err("the table cannot be read").to_string()
            }
        }
    }

    #[tokio::test]
    async fn unreadable_files_are_a_clear_error() {
        let err = error_reading("t.parquet", b"id,name\n1,a\n", TableFormat::Parquet).await;
        assert!(err.contains("catalog: table t (parquet at ") && err.contains("cannot be read"), "{err}");
        let err = error_reading("t.csv.gz", b"id,name\n1,a\n", TableFormat::Csv).await;
        assert!(err.contains("gzip"), "{err}");
        let err = error_reading("t.json.zst", b"{\"id\": 1}\n", TableFormat::Json).await;
        assert!(err.to_lowercase().contains("zstd") || err.contains("Unknown frame descriptor"), "{err}");
        // A location with nothing there.
        use crate::query::{Catalog, DataFusionEngine, QueryEngine};
        let table = entry("/no/such/dir/", TableFormat::Parquet, None);
        let err = DataFusionEngine::new(Catalog { tables: vec![table] }).check("SELECT * FROM t").await;
        let err = err.unwrap_err().to_string();
        assert!(err.contains("catalog: table t (parquet at /no/such/dir/) cannot be read"), "{err}");
    }

    #[tokio::test]
    async fn a_directory_of_compressed_files_without_the_key_says_which_key() {
        use crate::query::{Catalog, DataFusionEngine, QueryEngine};
        let dir = std::env::temp_dir().join(format!("forwarder-table-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.csv.gz"), b"").unwrap();
        for format in [TableFormat::Csv, TableFormat::Json, TableFormat::Parquet] {
            let table = entry(&format!("{}/", dir.display()), format, None);
            let err = DataFusionEngine::new(Catalog { tables: vec![table] }).check("SELECT * FROM t").await;
            let err = err.unwrap_err().to_string();
            assert!(err.contains(&format!("no .{} file there", format.as_str())), "{err}");
            assert_eq!(err.contains("compression = \"gzip\""), format != TableFormat::Parquet, "{err}");
        }
    }

    /// Bytes read by `SELECT *` over the window `[from, to)` of a Parquet file of `rows`
    /// rows, one a minute from 0, in row groups of 1000; and the file's size.
    async fn parquet_bytes_read(rows: i64, from: i64, to: i64) -> (u64, u64, usize) {
        use std::sync::Arc;

        use datafusion::arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::properties::WriterProperties;

        use crate::query::{Catalog, DataFusionEngine, QueryEngine, QueryWindow};
        let dir = std::env::temp_dir().join(format!("forwarder-table-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMillisecondArray::from_iter_values((0..rows).map(|i| i * 60_000))
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|i| i.wrapping_mul(0x1e37_79b9_7f4a_7c15)),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let file = std::fs::File::create(dir.join("t.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let size = std::fs::metadata(dir.join("t.parquet")).unwrap().len();
        let mut table = entry(&dir.join("t.parquet").display().to_string(), TableFormat::Parquet, None);
        table.time_column = Some("t".into());
        let engine = DataFusionEngine::new(Catalog { tables: vec![table] });
        let window = QueryWindow { from_ms: Some(from), to_ms: Some(to) };
        let run = engine.run("SELECT * FROM t", window, 0, None).await.unwrap();
        let read = run.bytes_read.clone();
        let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(run.stream).await.unwrap();
        (read.get(), size, batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn a_window_on_a_parquet_table_reads_only_its_row_groups() {
        let hour = 3_600_000;
        // 50 row groups of 1000 minutes; one hour of them is in one.
        let (read, size, rows) = parquet_bytes_read(50_000, 400 * hour, 401 * hour).await;
        assert_eq!(rows, 60);
        println!("one hour: {read} of {size} bytes read");
        assert!(read > 0 && read * 20 < size, "{read} of {size} bytes read");
        let (read, size, rows) = parquet_bytes_read(50_000, 0, 1000 * hour).await;
        assert_eq!(rows, 50_000);
        assert!(read * 10 >= size * 9, "{read} of {size} bytes read");
    }
}
