//! Catalog tables in every format the catalog reads (Parquet: one file, a directory, a
//! `file://` URL, an `s3://` prefix in LocalStack, an `az://` prefix in Azurite; CSV and NDJSON compressed with gzip or zstd), written here with the
//! `parquet` crate, flate2 and zstd, and exported through the real API and worker. A year of
//! Parquet queried for one hour reads about that hour: the bytes read say so.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::backends::{AZURITE_ACCOUNT, AZURITE_KEY, Backend, azurite_endpoint};
use crate::common::*;

const HOUR: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z
const START: i64 = 1_767_225_600_000;

/// Rows `id` in `ids`, one every `step_ms` from `start`, with a text column that compresses
/// about as well as log lines do.
fn batch(ids: std::ops::Range<i64>, start: i64, step_ms: i64) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("eventdate", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("text", DataType::Utf8, false),
    ]);
    let times: Vec<i64> = ids.clone().map(|i| start + i * step_ms).collect();
    let texts: Vec<String> = ids.clone().map(text).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(texts)),
        ],
    )
    .unwrap()
}

fn text(id: i64) -> String {
    // splitmix64: varied, reproducible.
    let mut z = (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("GET /item/{id} {:016x}{:016x}", z, z.rotate_left(17) ^ 0x5555)
}

fn parquet(batch: &RecordBatch, row_group_rows: usize) -> Vec<u8> {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group_rows)).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn csv(ids: std::ops::Range<i64>, step_ms: i64) -> Vec<u8> {
    let mut out = String::from("id,eventdate,text\n");
    for i in ids {
        out.push_str(&format!("{i},{},{}\n", iso(START + i * step_ms), text(i)));
    }
    out.into_bytes()
}

fn ndjson(ids: std::ops::Range<i64>, step_ms: i64) -> Vec<u8> {
    let lines: Vec<String> = ids
        .map(|i| json!({"id": i, "eventdate": iso(START + i * step_ms), "text": text(i)}).to_string())
        .collect();
    (lines.join("\n") + "\n").into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(bytes).unwrap();
    out.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn entry(name: &str, location: &str, format: &str, extra: &str) -> String {
    format!(
        "[[tables]]\nname = \"{name}\"\nlocation = \"{location}\"\nformat = \"{format}\"\ntime_column = \"eventdate\"\n{extra}\n"
    )
}

/// A server whose catalog is `catalog`, reading `s3://` tables from LocalStack and `az://`
/// tables from Azurite.
async fn app_with_catalog(catalog: std::path::PathBuf) -> TestApp {
    app_with_catalog_and(catalog, |_| {}).await
}

async fn app_with_catalog_and(
    catalog: std::path::PathBuf,
    tweak: impl FnOnce(&mut forwarder::config::Config),
) -> TestApp {
    spawn_app_with(10, |c| {
        tweak(c);
        c.catalog = Some(catalog);
        c.tables.azure = forwarder::query::AzureTables {
            account: Some(AZURITE_ACCOUNT.into()),
            access_key: Some(forwarder::secret::Secret::new(AZURITE_KEY)),
            endpoint: Some(azurite_endpoint()),
        };
        c.s3.endpoint = Some(env("FORWARDER_TEST_S3_ENDPOINT"));
        c.s3.region = Some("us-east-1".into());
        c.s3.access_key = Some("test".into());
        c.s3.secret_key = Some(forwarder::secret::Secret::new("test"));
    })
    .await
}

/// Exports `query` over `[from, to)` as plain CSV through the API and the worker; the `id`s
/// (first column) of every part, sorted.
async fn exported_ids(app: &TestApp, query: &str, from: i64, to: i64) -> Vec<i64> {
    let destination = json!({"type": "s3", "params": app.params(json!({"format": "plain"}))});
    let (status, body) =
        app.submit(json!({"query": query, "from": from, "to": to, "destination": destination})).await;
    assert_eq!(status, 200, "{query}: {body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    app.worker.try_run_next_job().await.unwrap().unwrap();
    part_ids(app, &id).await
}

/// The `id`s (first column) of every part of the completed job `id`, sorted; every part is a
/// plain CSV file that starts with the header.
async fn part_ids(app: &TestApp, id: &str) -> Vec<i64> {
    let job = app.job(id).await;
    assert_eq!(job["status"], "COMPLETED", "{job:#}");
    let mut ids = Vec::new();
    for part in job["extra"]["parts"].as_array().unwrap() {
        let (bytes, _) = app.object(part["key"].as_str().unwrap()).await;
        let mut records = parse_csv(&bytes);
        assert_eq!(records.remove(0)[0], "id", "every part starts with the header");
        ids.extend(records.iter().map(|r| r[0].parse::<i64>().unwrap()));
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_and_compressed_tables_export_exactly_their_rows() {
    // 3000 rows, one a minute; every table holds them all, split over files as it may.
    let (rows, step) = (3000_i64, 60_000_i64);
    let dir = std::env::temp_dir().join(format!("forwarder-it-tables-{}", uuid::Uuid::new_v4()));
    let at = |p: &str| dir.join(p).display().to_string();
    let all = batch(0..rows, START, step);
    write(&dir.join("one.parquet"), &parquet(&all, 500));
    for (i, ids) in [0..1000, 1000..2200, 2200..rows].into_iter().enumerate() {
        write(&dir.join(format!("pq/part-{i}.parquet")), &parquet(&batch(ids, START, step), 300));
    }
    write(&dir.join("rows.csv.gz"), &gzip(&csv(0..rows, step)));
    write(&dir.join("rows.csv.zst"), &zstd(&csv(0..rows, step)));
    write(&dir.join("rows.ndjson.gz"), &gzip(&ndjson(0..rows, step)));
    write(&dir.join("rows.jsonl.zst"), &zstd(&ndjson(0..rows, step)));
    write(&dir.join("csvgz/a.csv.gz"), &gzip(&csv(0..1500, step)));
    write(&dir.join("csvgz/b.csv.gz"), &gzip(&csv(1500..rows, step)));
    // Not a `.csv.gz` file: a directory of gzip CSV does not read it.
    write(&dir.join("csvgz/stray.csv"), &csv(rows..rows + 10, step));

    // The same Parquet files and zstd NDJSON files under prefixes of a LocalStack bucket.
    let s3 = s3_client();
    let source = format!("it-src-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&source).send().await.unwrap();
    for i in 0..3 {
        let body = std::fs::read(dir.join(format!("pq/part-{i}.parquet"))).unwrap();
        s3.put_object()
            .bucket(&source)
            .key(format!("pq/part-{i}.parquet"))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    for (name, ids) in [("a", 0..1000), ("b", 1000..rows)] {
        let body = zstd(&ndjson(ids, step));
        s3.put_object()
            .bucket(&source)
            .key(format!("ndjson/{name}.json.zst"))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    // And in an Azurite container.
    let Backend::Azure { container, store: azure } = Backend::azure().await else { unreachable!() };
    for i in 0..3 {
        let body = std::fs::read(dir.join(format!("pq/part-{i}.parquet"))).unwrap();
        object_store::ObjectStoreExt::put(&azure, &format!("pq/part-{i}.parquet").into(), body.into())
            .await
            .unwrap();
    }

    let catalog = dir.join("catalog.toml");
    let tables = [
        entry("t.parquet_file", &at("one.parquet"), "parquet", ""),
        entry("t.parquet_dir", &at("pq"), "parquet", ""),
        entry("t.parquet_file_url", &format!("file://{}", at("pq")), "parquet", ""),
        entry("t.parquet_s3", &format!("s3://{source}/pq/"), "parquet", ""),
        entry("t.parquet_az", &format!("az://{container}/pq/"), "parquet", ""),
        entry("t.csv_gz", &at("rows.csv.gz"), "csv", ""),
        entry("t.csv_zst", &at("rows.csv.zst"), "csv", ""),
        entry("t.ndjson_gz", &at("rows.ndjson.gz"), "ndjson", ""),
        entry("t.ndjson_zst", &at("rows.jsonl.zst"), "jsonl", ""),
        entry("t.csv_gz_dir", &at("csvgz"), "csv", "compression = \"gzip\""),
        entry("t.ndjson_zst_s3", &format!("s3://{source}/ndjson/"), "json", "compression = \"zstd\""),
        entry("t.broken", &at("broken.parquet"), "parquet", ""),
    ];
    // CSV under a Parquet name: the jobs that read it are refused, saying why.
    write(&dir.join("broken.parquet"), &csv(0..10, step));
    std::fs::write(&catalog, tables.concat()).unwrap();
    let app = app_with_catalog(catalog).await;

    // Hours 5 to 30: rows 300 to 1799, across file boundaries.
    let (from, to) = (START + 5 * HOUR, START + 30 * HOUR);
    let want: Vec<i64> = (300..1800).collect();
    for table in [
        "t.parquet_file",
        "t.parquet_dir",
        "t.parquet_file_url",
        "t.parquet_s3",
        "t.parquet_az",
        "t.csv_gz",
        "t.csv_zst",
        "t.ndjson_gz",
        "t.ndjson_zst",
        "t.csv_gz_dir",
        "t.ndjson_zst_s3",
    ] {
        let got = exported_ids(&app, &format!("SELECT id, eventdate, text FROM {table}"), from, to).await;
        assert!(got == want, "{table}: {} rows from {:?} to {:?}", got.len(), got.first(), got.last());
    }
    let destination = json!({"type": "s3", "params": app.params(json!({}))});
    let (status, body) = app
        .submit(
            json!({"query": "SELECT * FROM t.broken", "from": from, "to": to, "destination": destination}),
        )
        .await;
    let msg = body["msg"].as_str().unwrap_or_default();
    assert!(status == 400 && msg.contains("catalog: table t.broken (parquet at "), "{status} {body}");
    assert!(msg.contains("cannot be read") && msg.contains("broken.parquet"), "{body}");
    // Whole: the stray plain file of the gzip directory is not read.
    let got = exported_ids(&app, "SELECT id FROM t.csv_gz_dir", START, START + 100 * HOUR).await;
    assert_eq!(got, (0..rows).collect::<Vec<_>>());
}

fn source_bytes_read(scrape: &prometheus_parse::Scrape) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "forwarder_source_bytes_read_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hour_of_a_year_of_parquet_reads_about_that_hour() {
    // 2025 (from 2025-01-01), a row every two minutes, in twelve files of 30 days (the
    // last one 35), each in row groups of 2000 rows (under three days), sorted by time.
    let year_start = START - 365 * 24 * HOUR;
    let step = 120_000_i64;
    let per_month = 30 * 24 * 30_i64;
    let rows = 365 * 24 * 30_i64;
    let dir = std::env::temp_dir().join(format!("forwarder-it-year-{}", uuid::Uuid::new_v4()));
    let mut total = 0u64;
    for month in 0..12 {
        let end = if month == 11 { rows } else { (month + 1) * per_month };
        let bytes = parquet(&batch(month * per_month..end, year_start, step), 2000);
        total += bytes.len() as u64;
        write(&dir.join(format!("year/2025-{:02}.parquet", month + 1)), &bytes);
    }
    // The same files under a prefix of a LocalStack bucket.
    let s3 = s3_client();
    let source = format!("it-year-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    s3.create_bucket().bucket(&source).send().await.unwrap();
    for month in 1..=12 {
        let name = format!("2025-{month:02}.parquet");
        let body = std::fs::read(dir.join("year").join(&name)).unwrap();
        s3.put_object().bucket(&source).key(format!("year/{name}")).body(body.into()).send().await.unwrap();
    }
    let catalog = dir.join("catalog.toml");
    let tables = [
        entry("logs.year", &dir.join("year").display().to_string(), "parquet", ""),
        entry("logs.year_s3", &format!("s3://{source}/year/"), "parquet", ""),
    ];
    std::fs::write(&catalog, tables.concat()).unwrap();
    let app = app_with_catalog(catalog).await;
    assert_eq!(source_bytes_read(&app.metrics().await), 0.0);

    // 2025-06-15, 10:00 to 11:00: the 30 rows of that hour, nothing else.
    let from = year_start + (165 * 24 + 10) * HOUR;
    let got = exported_ids(&app, "SELECT id, eventdate, text FROM logs.year", from, from + HOUR).await;
    let first = (from - year_start) / step;
    assert_eq!(got, (first..first + 30).collect::<Vec<_>>());
    let read = source_bytes_read(&app.metrics().await);
    let share = read / total as f64;
    println!("one hour of a year: {read} of {total} bytes read ({:.2}%)", share * 100.0);
    assert!(read > 0.0 && share < 0.05, "read {read} of {total} bytes");

    // The same hour from S3, where each read is a ranged GET.
    let got = exported_ids(&app, "SELECT id, eventdate, text FROM logs.year_s3", from, from + HOUR).await;
    assert_eq!(got, (first..first + 30).collect::<Vec<_>>());
    let s3_read = source_bytes_read(&app.metrics().await) - read;
    println!("one hour of a year in S3: {s3_read} of {total} bytes read");
    assert!(s3_read > 0.0 && s3_read / (total as f64) < 0.05, "read {s3_read} of {total} bytes");
    let read = read + s3_read;

    // The whole year, for contrast: the counter counts what is read.
    let got = exported_ids(&app, "SELECT id, eventdate, text FROM logs.year", year_start, START).await;
    assert_eq!(got.len() as i64, rows);
    let year_read = source_bytes_read(&app.metrics().await) - read;
    println!("the whole year: {year_read} of {total} bytes read");
    assert!(year_read >= 0.9 * total as f64, "read {year_read} of {total} bytes");
}

/// The checkpoint of the last part of the app's newest job.
async fn last_resume(app: &TestApp) -> forwarder::job::ResumePoint {
    let (_, jobs) = app.get("/search/jobs").await;
    let id: uuid::Uuid = jobs["object"][0]["id"].as_str().unwrap().parse().unwrap();
    app.store.get(None, id).await.unwrap().unwrap().parts.last().unwrap().resume
}

/// A bounded row-wise job over a Parquet table runs in time slices: every row exactly once,
/// and the checkpoint of its part names the slice its last row came from (not the job's
/// start), with only that slice's rows to skip, so a resumed run would re-read one slice.
/// The checkpoint keeps the slice length, for a resumed run to continue on the same grid; and
/// a table smaller than `worker.min_slice_mb` (the default, 1 GB) is one query, not sliced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_parquet_is_exported_in_slices_and_checkpointed_by_slice() {
    let year_start = START - 365 * 24 * HOUR;
    let step = 120_000_i64;
    let per_month = 30 * 24 * 30_i64;
    let rows = 365 * 24 * 30_i64;
    let dir = std::env::temp_dir().join(format!("forwarder-it-slices-{}", uuid::Uuid::new_v4()));
    for month in 0..12 {
        let end = if month == 11 { rows } else { (month + 1) * per_month };
        let bytes = parquet(&batch(month * per_month..end, year_start, step), 2000);
        write(&dir.join(format!("year/2025-{:02}.parquet", month + 1)), &bytes);
    }
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, entry("logs.year", &dir.join("year").display().to_string(), "parquet", ""))
        .unwrap();
    let query = "SELECT id, eventdate, text FROM logs.year";

    let small = app_with_catalog(catalog.clone()).await;
    let got = exported_ids(&small, query, year_start, START).await;
    assert_eq!(got, (0..rows).collect::<Vec<_>>(), "every row exactly once in one query");
    let resume = last_resume(&small).await;
    assert_eq!(
        (resume.from_ms, resume.slice_ms),
        (Some(year_start), Some(0)),
        "a table of a few MB is not sliced (worker.min_slice_mb): {resume:?}"
    );

    let app = app_with_catalog_and(catalog, |c| c.worker.min_slice_mb = 0).await;
    let got = exported_ids(&app, query, year_start, START).await;
    assert_eq!(got, (0..rows).collect::<Vec<_>>(), "every row exactly once over the slices");
    let resume = last_resume(&app).await;
    let slice = forwarder::query::slices::slice_length(year_start, START, 64).unwrap();
    assert_eq!(resume.slice_ms, Some(slice), "the checkpoint keeps the slice length");
    let resume_from = resume.from_ms.unwrap();
    assert!(resume_from > year_start, "the checkpoint names a slice, not the job's start: {:?}", resume);
    assert_eq!((resume_from - year_start) % slice, 0, "a slice start: {:?}", resume);
    let rows_per_slice = slice / step + 1;
    assert!(
        resume.skip > 0 && resume.skip as i64 <= rows_per_slice,
        "a resumed run would skip at most one slice's rows ({rows_per_slice}): {:?}",
        resume
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A job over a Parquet table cut into time slices, taken over mid-job by a machine whose own
/// settings would not slice it (`worker.min_slice_mb` at its default, the table far smaller):
/// the new machine continues on the grid its checkpoint names (kept with every part). The
/// table's files are read latest month first, so a run that resumed on another grid (one query
/// from the slice's start, skipping the rows sent of it) would skip and send the wrong rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_job_taken_over_continues_on_the_grid_of_its_checkpoint() {
    let year_start = START - 365 * 24 * HOUR;
    let step = 10 * 60_000_i64;
    let rows = 365 * 24 * 6_i64;
    let per_month = rows / 12;
    let dir = std::env::temp_dir().join(format!("forwarder-it-grid-{}", uuid::Uuid::new_v4()));
    for month in 0..12 {
        let end = if month == 11 { rows } else { (month + 1) * per_month };
        let bytes = parquet(&batch(month * per_month..end, year_start, step), 2000);
        // File names sort in reverse month order: the latest rows are read first.
        write(&dir.join(format!("year/{:02}.parquet", 11 - month)), &bytes);
    }
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, entry("logs.year", &dir.join("year").display().to_string(), "parquet", ""))
        .unwrap();
    let key_file = dir.join("server.key");
    let url = fresh_postgres_database().await;
    let shared = move |c: &mut forwarder::config::Config| {
        c.store.url = Some(forwarder::secret::Secret::new(url.clone()));
        c.store.key_file = Some(key_file.clone());
        c.worker.lease = std::time::Duration::from_secs(1);
        c.catalog = Some(catalog.clone());
    };
    let a = spawn_app_with(10, {
        let shared = shared.clone();
        move |c| {
            shared(c);
            c.worker.min_slice_mb = 0;
        }
    })
    .await;
    let destination =
        json!({"type": "s3", "params": a.params(json!({"format": "plain", "retention.size": 0.05}))});
    let query = "SELECT id, eventdate, text FROM logs.year";
    let (status, body) =
        a.submit(json!({"query": query, "from": year_start, "to": START, "destination": destination})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["object"]["id"].as_str().unwrap().to_string();
    let worker = a.worker.clone();
    let run = tokio::spawn(async move { worker.try_run_next_job().await });
    a.wait_for_parts(&id, 3).await;
    // Machine A dies mid-job.
    run.abort();
    let _ = run.await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    let left = a.store.get(None, uuid).await.unwrap().unwrap();
    let kept = left.parts.last().unwrap().resume;
    let slice = forwarder::query::slices::slice_length(year_start, START, 64).unwrap();
    assert_eq!(kept.slice_ms, Some(slice), "A ran in slices and said so: {kept:?}");

    let b = a.peer(shared).await;
    let mut taken = None;
    for _ in 0..100 {
        taken = b.worker.try_run_next_job().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(taken.map(|j| j.to_string()), Some(id.clone()), "B takes the job over");
    let mut ids = part_ids(&b, &id).await;
    let repeated = ids.windows(2).filter(|w| w[0] == w[1]).count();
    ids.dedup();
    assert_eq!((ids.len() as i64, repeated), (rows, 0), "every row exactly once, over both machines");
    std::fs::remove_dir_all(&dir).unwrap();
}
