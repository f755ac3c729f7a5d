use serde_json::json;

use super::*;
use crate::job::{Encoding, ParquetCompression};

fn limits() -> Limits {
    Limits::default()
}

fn parse(v: serde_json::Value) -> Result<(JobSpec, JobSecrets), RequestError> {
    parse_submit(v.to_string().as_bytes(), &limits())
}

fn with_params(params: serde_json::Value) -> serde_json::Value {
    json!({"query": "SELECT 1", "from": 1767225600, "to": 1767312000,
           "destination": {"type": "s3", "params": params}})
}

fn full() -> serde_json::Value {
    json!({"aws.bucket": "my-bucket", "aws.region": "eu-west-1",
           "aws.accesskey": "AKIAX", "aws.secretkey": "s3cr3t"})
}

#[test]
fn accepts_devo_body_with_defaults() {
    let (spec, secrets) = parse(with_params(full())).unwrap();
    assert_eq!(spec.from_ms, Some(1_767_225_600_000));
    assert_eq!(spec.to_ms, Some(1_767_312_000_000));
    let d = &spec.destination;
    assert_eq!(d.format, Format::Zip);
    assert!(d.multiple_file);
    assert_eq!(d.retention_bytes, Some(500_000_000));
    assert_eq!(d.retention_time, None);
    assert_eq!(secrets.secret_key.unwrap().expose(), "s3cr3t");
    assert!(!format!("{spec:?}").contains("s3cr3t"));
}

#[test]
fn accepts_unknown_top_level_fields_and_strips_pragmas() {
    let mut body = with_params(full());
    body["mode"] = json!({"type": "csv"});
    body["keepAlive"] = json!(true);
    body["query"] =
        json!("from demo.ecommerce.data select * pragma comment.id:\"x\\\"y\" pragma comment.user:\"me\"");
    let (spec, _) = parse(body).unwrap();
    assert_eq!(spec.query, "from demo.ecommerce.data select *");
}

#[test]
fn times_accept_seconds_millis_iso_and_null() {
    let mut body = with_params(full());
    body["from"] = json!(1_767_225_600_123_i64);
    body["to"] = json!("2026-01-02T00:00:00Z");
    let (spec, _) = parse(body.clone()).unwrap();
    assert_eq!(spec.from_ms, Some(1_767_225_600_123));
    assert_eq!(spec.to_ms, Some(1_767_312_000_000));
    for same in ["2026-01-02T01:00:00+01:00", "2026-01-02T01:00:00+0100", "2026-01-02 01:00:00.000+0100"] {
        body["to"] = json!(same);
        assert_eq!(parse(body.clone()).unwrap().0.to_ms, Some(1_767_312_000_000), "{same}");
    }
    body["to"] = json!(null);
    assert_eq!(parse(body).unwrap().0.to_ms, None);
}

#[test]
fn refuses_from_after_to() {
    let mut body = with_params(full());
    body["from"] = json!(1767312000);
    body["to"] = json!(1767225600);
    assert_eq!(parse(body).unwrap_err().code, codes::BAD_TIME);
}

#[test]
fn bucket_needs_region_and_keys() {
    let e = parse(with_params(json!({"aws.bucket": "my-bucket"}))).unwrap_err();
    assert_eq!(e.code, 205);
}

#[test]
fn the_workers_own_credentials_never_go_to_a_callers_endpoint() {
    // No bucket: the export would use the server's default destination and credentials.
    for params in [
        json!({"aws.endpoint": "https://collector.example.com"}),
        json!({"aws.sessiontoken": "FwoGZXIvYXdzE"}),
        json!({"aws.endpoint": "https://collector.example.com", "aws.pathstyle": true, "format": "gzip"}),
    ] {
        let e = parse(with_params(params.clone())).unwrap_err();
        assert_eq!(e.code, 205, "{params}");
        assert!(e.msg.contains("aws.bucket") && !e.msg.contains("FwoGZXIvYXdzE"), "{}", e.msg);
    }
}

#[test]
fn no_aws_params_means_worker_defaults() {
    let (spec, secrets) = parse(with_params(json!({"format": "gzip"}))).unwrap();
    assert_eq!(spec.destination.bucket, None);
    assert!(secrets.is_empty());
}

#[test]
fn format_rules() {
    let mut p = full();
    for other in ["rar", "gz", "csv", "none", ""] {
        p["format"] = json!(other);
        assert_eq!(parse(with_params(p.clone())).unwrap_err().code, 210, "{other:?}");
    }
    p["format"] = json!("gzip");
    p["file.password"] = json!("pw");
    assert_eq!(parse(with_params(p.clone())).unwrap_err().code, 211);
    p["format"] = json!("zip");
    let (spec, secrets) = parse(with_params(p.clone())).unwrap();
    assert!(spec.destination.encrypted);
    assert_eq!(secrets.file_password.unwrap().expose(), "pw");
    p["multiplefile"] = json!(false);
    assert_eq!(parse(with_params(p)).unwrap_err().code, codes::SINGLE_FILE_FORMAT);
}

#[test]
fn file_format_and_zstd_rules() {
    let mut p = full();
    let (spec, _) = parse(with_params(p.clone())).unwrap();
    assert_eq!(spec.destination.file_format, Encoding::Csv, "csv unless asked");
    for (file_format, format, want) in [
        ("jsonl", "zstd", Encoding::Jsonl),
        ("JSONL", "gzip", Encoding::Jsonl),
        ("csv", "zstd", Encoding::Csv),
    ] {
        p["file.format"] = json!(file_format);
        p["format"] = json!(format);
        let (spec, _) = parse(with_params(p.clone())).unwrap();
        assert_eq!(
            (spec.destination.file_format, spec.destination.format),
            (want, Format::parse(format).unwrap())
        );
    }
    for bad in [json!("parquetz"), json!("ndjson"), json!(""), json!(true)] {
        p["file.format"] = bad.clone();
        let e = parse(with_params(p.clone())).unwrap_err();
        assert_eq!(e.code, codes::BAD_FILE_FORMAT, "{bad}");
        assert!(e.msg.contains("csv, jsonl, parquet"), "says what to use: {}", e.msg);
    }
    p["file.format"] = json!("jsonl");
    p["format"] = json!("zstd");
    p["file.password"] = json!("pw");
    let e = parse(with_params(p.clone())).unwrap_err();
    assert_eq!(e.code, codes::PASSWORD_NEEDS_ZIP);
    assert!(e.msg.contains("only with format zip"), "{}", e.msg);
    p["format"] = json!("rar");
    let e = parse(with_params(p)).unwrap_err();
    assert!(e.code == codes::BAD_FORMAT && e.msg.contains("plain, gzip, zstd, zip"), "{}", e.msg);
}

#[test]
fn retention_ranges() {
    let mut p = full();
    p["format"] = json!("gzip");
    p["retention.size"] = json!(49);
    assert_eq!(parse(with_params(p.clone())).unwrap_err().code, codes::BAD_RETENTION_SIZE);
    p["retention.size"] = json!("50");
    p["retention.time"] = json!(299);
    assert_eq!(parse(with_params(p.clone())).unwrap_err().code, codes::BAD_RETENTION_TIME);
    p["retention.time"] = json!(300);
    let (spec, _) = parse(with_params(p.clone())).unwrap();
    assert_eq!(spec.destination.retention_bytes, Some(50_000_000));
    assert_eq!(spec.destination.retention_time, Some(Duration::from_secs(300)));
    p["multiplefile"] = json!(false);
    assert_eq!(parse(with_params(p)).unwrap_err().code, codes::RETENTION_NEEDS_MULTIPLE);
}

#[test]
fn emails_are_validated() {
    let mut p = full();
    p["notification.email"] = json!("a@example.com, b@example.com");
    assert_eq!(parse(with_params(p.clone())).unwrap().0.destination.notification_emails.len(), 2);
    p["notification.email"] = json!("a@example.com\r\nBcc: evil@example.com");
    assert_eq!(parse(with_params(p)).unwrap_err().code, codes::BAD_EMAIL);
}

#[test]
fn unknown_params_and_types_are_refused() {
    let mut p = full();
    p["aws.bukket"] = json!("x");
    assert_eq!(parse(with_params(p)).unwrap_err().code, codes::UNKNOWN_PARAM);
    let mut body = with_params(full());
    body["destination"]["type"] = json!("gcs");
    assert!(parse(body).unwrap_err().msg.contains("gcs"));
    assert_eq!(parse_submit(b"[1,2]", &limits()).unwrap_err().code, codes::BAD_BODY);
    assert_eq!(parse_submit(b"\xff\xfe", &limits()).unwrap_err().code, codes::BAD_BODY);
}

#[test]
fn encryption_storage_class_and_region_are_checked_before_queueing() {
    let with = |extra: serde_json::Value| {
        let mut params = full();
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse(with_params(params))
    };
    let ok = with(json!({"aws.sse": "aws:kms", "aws.kmskeyid": "arn:aws:kms:eu-west-1:1:key/k", "aws.storageclass": "STANDARD_IA"})).unwrap();
    assert_eq!(ok.0.destination.storage_class.as_deref(), Some("STANDARD_IA"));
    with(json!({"aws.sse": "AES256", "aws.region": "auto"})).unwrap();
    for (extra, says) in [
        (json!({"aws.sse": "foo"}), "use AES256, aws:kms, aws:kms:dsse"),
        (json!({"aws.sse": "aws:fsx"}), "aws.sse \"aws:fsx\" is not supported"),
        (json!({"aws.kmskeyid": "k"}), "needs aws.sse set to aws:kms"),
        (json!({"aws.sse": "AES256", "aws.kmskeyid": "k"}), "needs aws.sse set to aws:kms"),
        (json!({"aws.storageclass": "cold"}), "not a storage class; use one of"),
        (json!({"aws.region": "EU West 1"}), "not a region name"),
    ] {
        let e = with(extra.clone()).unwrap_err();
        assert_eq!(e.code, BAD_AWS_PARAM, "{extra}");
        assert!(e.msg.contains(says), "{extra}: {}", e.msg);
    }
}

#[test]
fn credentials_that_cannot_travel_in_a_header_are_refused_without_their_value() {
    for key in ["aws.accesskey", "aws.secretkey", "aws.sessiontoken"] {
        for bad in ["AKIA\r\nX", "AKIA\0X", "AKIA\tX", "AKIA\u{e9}X", "AKIA X"] {
            let mut params = full();
            params[key] = json!(bad);
            let e = parse(with_params(params)).unwrap_err();
            assert_eq!(e.code, codes::BAD_AWS_PARAM, "{key} {bad:?}");
            assert!(e.msg.contains(key) && !e.msg.contains("AKIA"), "{key} {bad:?}: {}", e.msg);
        }
    }
}

#[test]
fn a_huge_refused_value_is_quoted_only_in_part() {
    let huge = "x".repeat(1 << 20);
    for (key, base) in [
        ("aws.region", full()),
        ("format", json!({})),
        ("aws.storageclass", json!({})),
        ("notification.email", json!({})),
    ] {
        let mut params = base;
        params[key] = json!(huge);
        let e = parse(with_params(params)).unwrap_err();
        assert!(
            e.msg.len() < 400 && e.msg.contains("bytes)"),
            "{key}: {} bytes: {}",
            e.msg.len(),
            &e.msg[..e.msg.len().min(200)]
        );
    }
}

#[test]
fn parquet_rules() {
    let mut p = full();
    p.as_object_mut().unwrap().remove("format");
    p["file.format"] = json!("parquet");
    let (spec, _) = parse(with_params(p.clone())).unwrap();
    let d = &spec.destination;
    assert_eq!(
        (d.file_format, d.format, d.parquet_compression),
        (Encoding::Parquet, Format::Plain, ParquetCompression::Zstd)
    );
    assert!(!d.manifest, "no manifest unless asked");
    for codec in ["snappy", "GZIP", "lz4", "none", "zstd"] {
        p["parquet.compression"] = json!(codec);
        let (spec, _) = parse(with_params(p.clone())).unwrap();
        assert_eq!(spec.destination.parquet_compression.name(), codec.to_lowercase());
    }
    p["format"] = json!("plain");
    assert!(parse(with_params(p.clone())).is_ok(), "plain is what Parquet is stored as");
    for outer in ["gzip", "zip", "zstd"] {
        p["format"] = json!(outer);
        let e = parse(with_params(p.clone())).unwrap_err();
        assert_eq!(e.code, codes::BAD_FORMAT, "{outer}");
        assert!(e.msg.contains("parquet.compression") && e.msg.contains("leave format out"), "{}", e.msg);
    }
    p["format"] = json!("plain");
    p["parquet.compression"] = json!("brotli");
    let e = parse(with_params(p.clone())).unwrap_err();
    assert_eq!(e.code, codes::BAD_PARQUET_COMPRESSION);
    assert!(e.msg.contains("zstd, snappy, gzip, lz4, none"), "{}", e.msg);
    p["parquet.compression"] = json!("zstd");
    p["file.password"] = json!("pw");
    let e = parse(with_params(p.clone())).unwrap_err();
    assert_eq!(e.code, codes::PASSWORD_NEEDS_ZIP);
    assert!(e.msg.contains("not file.format parquet"), "{}", e.msg);
    p.as_object_mut().unwrap().remove("file.password");
    p["manifest"] = json!(true);
    assert!(parse(with_params(p.clone())).unwrap().0.destination.manifest);
    p["manifest"] = json!("maybe");
    assert_eq!(parse(with_params(p.clone())).unwrap_err().code, codes::BAD_MANIFEST);
    // parquet.compression means nothing to a row format.
    let mut p = full();
    p["file.format"] = json!("csv");
    p["parquet.compression"] = json!("zstd");
    let e = parse(with_params(p)).unwrap_err();
    assert_eq!(e.code, codes::BAD_PARQUET_COMPRESSION);
    assert!(e.msg.contains("only with file.format parquet"), "{}", e.msg);
}

/// A caller who swapped the Azure account and its key does not get the key back in the answer.
#[test]
fn an_account_key_given_as_the_account_is_not_quoted() {
    let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let body = json!({"query": "SELECT 1", "destination": {"type": "azure", "params": {
        "azure.account": key, "azure.container": "exports", "azure.accesskey": "devstoreaccount1"}}});
    let e = parse(body).unwrap_err();
    assert!(e.msg.contains("azure.account is not a storage account name"), "{}", e.msg);
    assert!(!e.msg.contains(&key[..8]), "{}", e.msg);
}
