//! The part rules of DESIGN §2, proven for every encoding × compression: real parts written by
//! the real part writer (encoder + compressor + rotation), read back by the real tools
//! (`gzip -d`, `zstd -d`, Python's `zipfile`, 7-Zip), across many small parts:
//! - a part's stored size never passes the limit by more than a row and the format's
//!   trailer (far inside the 1 MiB allowed), and every part but the last reaches it;
//! - a row is never split: every part decodes and parses alone (CSV: header first and every
//!   record whole; JSON Lines: every line an object);
//! - no part is empty;
//! - the rows over all parts are exactly the rows written, each once, with their JSON types.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use serde_json::Value;

use super::*;
use crate::encode::Encoding;
use crate::encode::parquet::ParquetCompression;
use crate::secret::Secret;

const ROWS: usize = 12_000;
const BATCH: usize = 1_000;
const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn ts_ms(i: usize) -> i64 {
    BASE_MS + i as i64 * 37_123
}

fn score(i: usize) -> f64 {
    if i.is_multiple_of(97) { f64::NAN } else { i as f64 / 8.0 - 300.0 }
}

fn note(i: usize) -> Option<String> {
    // Text that compresses like real logs, and every character CSV and JSON must escape.
    let mut x = (i as u64).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let words = [
        "GET",
        "/shop/item",
        "Mozilla/5.0",
        "\"quoted\"",
        "a,b",
        "line\nbreak",
        "tab\there",
        "ünïcödé",
        "\u{2028}",
        "\\",
    ];
    let mut s = String::new();
    for _ in 0..(4 + i % 6) {
        x ^= x >> 13;
        x = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        s.push_str(words[(x % words.len() as u64) as usize]);
        s.push_str(&format!(" {} ", x % 1000));
    }
    (!i.is_multiple_of(5)).then_some(s)
}

fn bin(i: usize) -> Vec<u8> {
    (i as u32).to_le_bytes()[..i % 5].to_vec()
}

fn data() -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("score", DataType::Float64, false),
        Field::new("flag", DataType::Boolean, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("bin", DataType::Binary, false),
    ]));
    let batches = (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let ids: Vec<usize> = (start..start + BATCH).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64))),
                Arc::new(TimestampMillisecondArray::from_iter_values(ids.iter().map(|&i| ts_ms(i)))),
                Arc::new(Float64Array::from_iter_values(ids.iter().map(|&i| score(i)))),
                Arc::new(BooleanArray::from_iter(ids.iter().map(|&i| Some(i % 3 == 0)))),
                Arc::new(StringArray::from_iter(ids.iter().map(|&i| note(i)))),
                Arc::new(BinaryArray::from_iter_values(ids.iter().map(|&i| bin(i)))),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    (schema, batches)
}

struct Written {
    key: String,
    content_type: &'static str,
    bytes: Vec<u8>,
    part: FinishedPart,
}

/// Writes every batch through the part writer, as the worker does, and gathers each part.
fn write_parts(
    encoding: Encoding,
    compression: Format,
    password: Option<&str>,
    max_bytes: u64,
    codec: ParquetCompression,
) -> Vec<Written> {
    let (schema, batches) = data();
    let options = PartOptions {
        encoding,
        chunk_size: 16 * 1024,
        password: password.map(Secret::new),
        parquet_compression: codec,
        ..PartOptions::new(compression)
    };
    let policy = RotationPolicy { max_bytes: Some(max_bytes), ..RotationPolicy::default() };
    let start = Start { next_index: 1, rows_total: 0, resume: ResumePoint::default() };
    let mut w = PartWriter::new(Uuid::nil(), String::new(), options, policy, &schema, None, start);
    let mut events = Vec::new();
    for batch in &batches {
        w.write_batch(batch, &mut events).unwrap();
    }
    w.close(&mut events).unwrap();
    let mut open: BTreeMap<u32, (String, &'static str, Vec<u8>)> = BTreeMap::new();
    let mut done = Vec::new();
    for event in events {
        match event {
            PartEvent::Opened { index, key, content_type } => {
                open.insert(index, (key, content_type, Vec::new()));
            }
            PartEvent::Chunk { index, data } => open.get_mut(&index).unwrap().2.extend_from_slice(&data),
            PartEvent::Closed { index, mut part, .. } => {
                let (key, content_type, mut bytes) = open.remove(&index).unwrap();
                for chunk in std::mem::take(&mut part.chunks) {
                    bytes.extend_from_slice(&chunk);
                }
                assert_eq!(bytes.len() as u64, part.bytes, "{key}: the sizes reported are the stored sizes");
                done.push(Written { key, content_type, bytes, part });
            }
        }
    }
    assert!(open.is_empty());
    done
}

/// The part decompressed by the tool a user would use.
fn decompress(compression: Format, w: &Written, password: Option<&str>) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("forwarder-formats-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&w.key);
    std::fs::write(&path, &w.bytes).unwrap();
    let run = |cmd: &mut Command| {
        let out =
            cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the tools)"));
        assert!(out.status.success(), "{cmd:?} on {}: {}", w.key, String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let entry = w.key.rsplit_once('.').unwrap().0.to_string();
    let plain = match compression {
        Format::Plain => w.bytes.clone(),
        Format::Gzip => run(Command::new("gzip").arg("-dc").arg(&path)),
        Format::Zstd => {
            let out = run(Command::new("zstd").args(["-dc", "--no-progress"]).arg(&path));
            // One frame, the whole part: the CLI and Rust's decoder read across frames, so
            // the frame's own size says it.
            let frame = ::zstd::zstd_safe::find_frame_compressed_size(&w.bytes).expect("a zstd frame");
            assert_eq!(frame, w.bytes.len(), "{}: one zstd frame is the whole part", w.key);
            // Python's `zstandard` (whose decompressobj stops at the end of the first frame),
            // from the readers' venv that scripts/test.sh makes, or the system's if it has it.
            let python = std::env::var("FORWARDER_TEST_READERS_PYTHON").unwrap_or_else(|_| "python3".into());
            let py = "import sys\ntry:\n import zstandard\nexcept ImportError:\n sys.exit(0)\nsys.stdout.buffer.write(zstandard.ZstdDecompressor().decompressobj().decompress(open(sys.argv[1],'rb').read()))";
            let by_python = run(Command::new(python).args(["-c", py]).arg(&path));
            assert!(by_python.is_empty() || by_python == out, "Python's zstandard reads what the CLI reads");
            out
        }
        Format::Zip => match password {
            None => {
                let py = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.namelist() == [sys.argv[2]], z.namelist()\nassert z.testzip() is None\nsys.stdout.buffer.write(z.read(sys.argv[2]))";
                run(Command::new("python3").args(["-c", py]).arg(&path).arg(&entry))
            }
            Some(p) => run(Command::new("7z").args(["x", "-so", &format!("-p{p}")]).arg(&path).arg(&entry)),
        },
    };
    std::fs::remove_dir_all(&dir).unwrap();
    plain
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Checks one JSON line against the row it came from, type by type; returns the row's id.
fn check_json_row(line: &str) -> usize {
    assert!(line.starts_with("{\"id\":"), "keys in column order: {line}");
    assert!(!line.contains('\u{2028}'), "U+2028 is escaped: {line}");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let i = v["id"].as_u64().expect("id is a JSON number") as usize;
    assert_eq!(v["ts"], Value::String(iso(ts_ms(i))), "timestamps are ISO-8601 UTC strings");
    match score(i) {
        s if s.is_nan() => assert!(v["score"].is_null(), "NaN is null"),
        s => assert_eq!(v["score"].as_f64(), Some(s), "floats are numbers: {line}"),
    }
    assert_eq!(v["flag"], Value::Bool(i.is_multiple_of(3)));
    assert_eq!(v["note"], note(i).map_or(Value::Null, Value::String));
    use base64::Engine as _;
    assert_eq!(v["bin"], Value::String(base64::engine::general_purpose::STANDARD.encode(bin(i))));
    assert_eq!(v.as_object().unwrap().len(), 6);
    i
}

fn check_rules(encoding: Encoding, compression: Format, password: Option<&str>, max_bytes: u64) {
    check_rules_with(encoding, compression, password, max_bytes, ParquetCompression::default())
}

fn check_rules_with(
    encoding: Encoding,
    compression: Format,
    password: Option<&str>,
    max_bytes: u64,
    codec: ParquetCompression,
) {
    let what = format!("{encoding:?} × {compression:?}{}", if password.is_some() { " (AES)" } else { "" });
    let what = if encoding == Encoding::Parquet { format!("Parquet ({codec:?})") } else { what };
    let parts = write_parts(encoding, compression, password, max_bytes, codec);
    assert!(parts.len() >= 3, "{what}: rotated into several parts ({})", parts.len());
    let (schema, _) = data();
    let header = encode::encoder(Encoding::Csv, &schema).expect("a row encoding").header().to_vec();
    let longest_row = 400;
    let mut ids = Vec::new();
    for (n, w) in parts.iter().enumerate() {
        let ext = part_extension_of(encoding, compression);
        assert_eq!(w.key, format!("apiv2_{}_{:03}.{ext}", Uuid::nil(), n + 1), "{what}");
        assert_eq!(w.content_type, part_content_type(encoding, compression));
        let size = w.bytes.len() as u64;
        // Parquet ends a part on whole slices and row groups, with a footer estimated ahead:
        // it may stop short of the limit by the footer's allowance or pass it by a slice.
        let (over, short) =
            if encoding == Encoding::Parquet { (8 * 1024, 16 * 1024) } else { (longest_row + 1024, 100) };
        assert!(size <= max_bytes + over, "{what}: {} is {size} bytes, limit {max_bytes}", w.key);
        if n + 1 < parts.len() {
            assert!(
                size + short >= max_bytes,
                "{what}: {} ended early at {size} bytes, limit {max_bytes}",
                w.key
            );
        }
        assert!(w.part.rows > 0, "{what}: no empty part");
        let before = ids.len();
        if encoding == Encoding::Parquet {
            ids.extend(check_parquet_part(&what, w, &schema));
            assert_eq!(
                (ids.len() - before) as u64,
                w.part.rows,
                "{what}: {} holds the rows it reports",
                w.key
            );
            continue;
        }
        let plain = decompress(compression, w, password);
        assert_eq!(plain.len() as u64, w.part.encoded_bytes, "{what}: {}", w.key);
        let text = String::from_utf8(plain).unwrap();
        match encoding {
            Encoding::Csv => {
                assert!(text.as_bytes().starts_with(&header), "{what}: {} starts with the header", w.key);
                let mut reader = ::csv::ReaderBuilder::new().from_reader(text.as_bytes());
                for record in reader.records() {
                    let record = record.unwrap_or_else(|e| panic!("{what}: {}: {e}", w.key));
                    assert_eq!(record.len(), 6, "{what}: a whole row");
                    let i: usize = record[0].parse().unwrap();
                    assert_eq!(record[4], note(i).unwrap_or_default(), "{what}: the text survives quoting");
                    ids.push(i);
                }
            }
            Encoding::Jsonl => {
                assert!(text.ends_with('\n'));
                ids.extend(text.lines().map(check_json_row));
            }
            Encoding::Parquet => unreachable!("checked above"),
        }
        assert_eq!((ids.len() - before) as u64, w.part.rows, "{what}: {} holds the rows it reports", w.key);
    }
    ids.sort_unstable();
    assert!(ids == (0..ROWS).collect::<Vec<_>>(), "{what}: every row exactly once ({} rows)", ids.len());
}

/// A Parquet part read back with the parquet crate's reader: a complete file, the query's
/// schema kept, statistics in every row group, every value as written. Returns the row ids.
fn check_parquet_part(what: &str, w: &Written, schema: &Schema) -> Vec<usize> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(w.bytes.clone()))
        .unwrap_or_else(|e| panic!("{what}: {} is not a Parquet file: {e}", w.key));
    assert_eq!(reader.schema().as_ref(), schema, "{what}: the query's schema is kept");
    let meta = reader.metadata().clone();
    for group in meta.row_groups() {
        for column in group.columns() {
            assert!(column.statistics().is_some(), "{what}: statistics in every row group");
        }
    }
    let mut ids = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let id = batch.column(0).as_primitive::<Int64Type>();
        let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let sc = batch.column(2).as_primitive::<Float64Type>();
        let flag = batch.column(3).as_boolean();
        let nt = batch.column(4).as_string::<i32>();
        let bn = batch.column(5).as_binary::<i32>();
        for r in 0..batch.num_rows() {
            let i = id.value(r) as usize;
            assert_eq!(ts.value(r), ts_ms(i), "{what}");
            let s = score(i);
            assert!(sc.value(r) == s || s.is_nan() && sc.value(r).is_nan(), "{what}: score of {i}");
            assert_eq!(flag.value(r), i.is_multiple_of(3), "{what}");
            assert_eq!((!nt.is_null(r)).then(|| nt.value(r).to_string()), note(i), "{what}");
            assert_eq!(bn.value(r), bin(i).as_slice(), "{what}");
            ids.push(i);
        }
    }
    ids
}

fn part_extension_of(encoding: Encoding, compression: Format) -> &'static str {
    crate::job::part_extension(encoding, compression)
}

/// Limits small enough for several parts of each kind (compressed parts hold ~4x the rows).
fn limit(compression: Format) -> u64 {
    if compression == Format::Plain { 300_000 } else { 60_000 }
}

#[test]
fn csv_parts_keep_the_rules_with_every_compression() {
    for compression in Format::ALL {
        check_rules(Encoding::Csv, compression, None, limit(compression));
    }
}

#[test]
fn jsonl_parts_keep_the_rules_with_every_compression() {
    for compression in Format::ALL {
        check_rules(Encoding::Jsonl, compression, None, limit(compression));
    }
}

#[test]
fn aes_zip_parts_keep_the_rules() {
    if Command::new("7z").output().is_err() {
        eprintln!("7z is not installed (scripts/test.sh installs it): skipped");
        return;
    }
    check_rules(Encoding::Jsonl, Format::Zip, Some("pa55 word"), limit(Format::Zip));
    check_rules(Encoding::Csv, Format::Zip, Some("pa55 word"), limit(Format::Zip));
}

#[test]
fn parquet_parts_keep_the_rules_with_every_codec() {
    for codec in ParquetCompression::ALL {
        check_parquet_rules(codec);
    }
}

fn check_parquet_rules(codec: ParquetCompression) {
    check_rules_with(Encoding::Parquet, Format::Plain, None, 60_000, codec);
}
