use serde_json::json;

use super::*;
use crate::job::DestinationType;

fn parse_json(body: Value) -> Result<ExportTempRequest, RequestError> {
    parse(body.to_string().as_bytes(), &Limits::default())
}

fn s3(extra: Value) -> Value {
    let mut body = json!({
        "query": "SELECT 1", "bucket": "my-bucket", "storage_type": "S3",
        "credentials": {"access_key": "AKIAEXAMPLE", "secret_key": "very-secret-key-123"},
        "directory_path": "exports/daily",
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[test]
fn an_s3_request_becomes_a_job_destination_with_its_secrets() {
    let r = parse_json(s3(json!({}))).unwrap();
    assert_eq!(r.destination.kind, DestinationType::S3);
    assert_eq!(r.destination.bucket.as_deref(), Some("my-bucket"));
    assert_eq!(r.destination.prefix, "exports/daily/");
    assert!(r.destination.path_style, "path-style unless virtual_hosted_style");
    assert_eq!(r.secrets.secret_key.as_ref().unwrap().expose(), "very-secret-key-123");
    assert_eq!((r.encoding, r.single_key, r.row_group_size), (Encoding::Parquet, None, 40 << 20));
    assert!(!r.include_metrics);

    let r = parse_json(s3(json!({"mode": "single_file", "directory_path": "a/b.parquet"}))).unwrap();
    assert_eq!(r.single_key.as_deref(), Some("a/b.parquet"));
    let r =
        parse_json(s3(json!({"target_file_size_bytes": 1_000_000, "max_row_groups_per_file": 2}))).unwrap();
    assert_eq!((r.target_file_size_bytes, r.max_row_groups_per_file), (None, Some(2)), "the cap wins");
}

#[test]
fn azure_gcs_and_file_map_their_credentials() {
    let azure = json!({"query": "SELECT 1", "bucket": "c-1", "storage_type": "azure",
        "credentials": {"access_key": "acct1", "secret_key": "a2V5"}});
    let r = parse_json(azure).unwrap();
    assert_eq!(
        (r.destination.account.as_deref(), r.destination.bucket.as_deref()),
        (Some("acct1"), Some("c-1"))
    );
    assert_eq!(r.secrets.account_key.unwrap().expose(), "a2V5");
    let key = r#"{"client_email":"a@b.iam.gserviceaccount.com","private_key":"k"}"#;
    let gcs = json!({"query": "SELECT 1", "bucket": "b-1", "storage_type": "GCS",
        "credentials": {"secret_key": key}});
    assert_eq!(parse_json(gcs).unwrap().secrets.service_account.unwrap().expose(), key);
    let file = json!({"query": "SELECT 1", "bucket": "team", "storage_type": "File",
        "directory_path": "out/x.jsonl", "mode": "single_file", "format": "Jsonl"});
    let r = parse_json(file).unwrap();
    assert_eq!(r.single_key.as_deref(), Some("team/out/x.jsonl"));
    assert_eq!(r.encoding, Encoding::Jsonl);
}

#[test]
fn every_refusal_names_what_to_fix_and_never_the_secret() {
    let cases = [
        (s3(json!({"storage_type": "ftp"})), BAD_STORAGE_TYPE, "storage_type"),
        (s3(json!({"format": "csv"})), BAD_FORMAT, "format"),
        (s3(json!({"mode": "one"})), BAD_MODE, "mode"),
        (s3(json!({"bucket": null})), BAD_BUCKET, "bucket is missing"),
        (s3(json!({"bucket": "Bad Name"})), BAD_BUCKET, "bucket"),
        (s3(json!({"query": " "})), BAD_QUERY, "query"),
        (s3(json!({"row_group_size": 0})), BAD_SIZE, "row_group_size"),
        (s3(json!({"row_group_size": -5})), BAD_SIZE, "positive"),
        (s3(json!({"target_file_size_bytes": -1})), BAD_SIZE, "target_file_size_bytes"),
        (s3(json!({"max_row_groups_per_file": 0})), BAD_SIZE, "max_row_groups_per_file"),
        (s3(json!({"max_row_groups_per_file": 1.5})), BAD_SIZE, "whole number"),
        (s3(json!({"format": "Jsonl", "row_group_size": 4096})), BAD_SIZE, "Parquet only"),
        (s3(json!({"mode": "single_file", "directory_path": "d/"})), BAD_DIRECTORY_PATH, "file's own path"),
        (
            s3(json!({"mode": "single_file", "directory_path": "d.parquet", "max_row_groups_per_file": 1})),
            BAD_SIZE,
            "multi_file",
        ),
        (s3(json!({"options": {"endpoint": "http://127.0.0.1:4566"}})), BAD_OPTIONS, "allow_http"),
        (
            s3(json!({"options": {"endpoint": "ftp://x", "allow_http": true}})),
            BAD_OPTIONS,
            "options.endpoint",
        ),
        (s3(json!({"options": {"proxy": "x"}})), BAD_OPTIONS, "unknown field"),
        (
            s3(json!({"options": {"endpoint": "https://", "allow_http": true}})),
            BAD_OPTIONS,
            "options.endpoint must be the store's URL",
        ),
        (s3(json!({"options": {"endpoint": "localhost:4566"}})), BAD_OPTIONS, "options.endpoint"),
        (
            json!({"query": "SELECT 1", "bucket": "b", "storage_type": "File",
                   "credentials": {"access_key": "AKIAEXAMPLE", "secret_key": "very-secret-key-123"}}),
            BAD_OPTIONS,
            "leave credentials and options out",
        ),
        (
            json!({"query": "SELECT 1", "bucket": "b", "storage_type": "File",
                   "options": {"endpoint": "https://example.com"}}),
            BAD_OPTIONS,
            "leave credentials and options out",
        ),
        (
            s3(json!({"credentials": {"access_key": "AKIAEXAMPLE"}})),
            BAD_CREDENTIALS,
            "credentials.secret_key",
        ),
        (s3(json!({"credentials": "very-secret-key-123"})), BAD_CREDENTIALS, "credentials must be an object"),
        (
            s3(json!({"credentials": {"access_key": "a", "secret_key": 7}})),
            BAD_CREDENTIALS,
            "must be a string",
        ),
        (s3(json!({"directory_path": "/abs"})), BAD_DIRECTORY_PATH, "directory_path"),
        (s3(json!({"limit": 5})), BAD_BODY, "unknown field \"limit\""),
        (
            json!({"query": "SELECT 1", "bucket": "b", "storage_type": "File", "directory_path": "../x"}),
            BAD_DIRECTORY_PATH,
            "directory_path",
        ),
        (
            json!({"query": "SELECT 1", "bucket": "c-1", "storage_type": "Azure"}),
            BAD_CREDENTIALS,
            "credentials",
        ),
    ];
    for (body, code, needle) in cases {
        let e = parse_json(body.clone()).unwrap_err();
        assert_eq!(e.code, code, "{body}: {}", e.msg);
        assert!(e.msg.contains(needle), "{body}: {}", e.msg);
        assert!(!e.msg.contains("very-secret-key-123") && !e.msg.contains("aws."), "{body}: {}", e.msg);
    }
    assert_eq!(parse(b"[1]", &Limits::default()).unwrap_err().code, BAD_BODY);
}

/// A directory_path that would leave the bucket or that no store takes is refused for every
/// storage type (348), before anything is written.
#[test]
fn directory_paths_stay_inside_the_bucket() {
    let long = "d".repeat(300);
    for path in ["../x", "a/../b", "./x", "a//b", "/abs", long.as_str()] {
        let Err(err) = parse_json(s3(json!({"directory_path": path}))) else { panic!("{path} accepted") };
        assert_eq!(err.code, BAD_DIRECTORY_PATH, "{path}: {}", err.msg);
        assert!(err.msg.starts_with("directory_path "), "{path}: {}", err.msg);
    }
    for path in ["exports/daily", "exports/daily/", "a.b/c..d"] {
        assert!(parse_json(s3(json!({"directory_path": path}))).is_ok(), "{path}");
    }
    let Err(err) = parse_json(s3(json!({"bucket": "b".repeat(300)}))) else {
        panic!("a 300-byte bucket accepted")
    };
    assert_eq!(err.code, BAD_BUCKET);
}
