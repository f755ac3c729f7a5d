//! Property tests of the request parser: whatever arrives, it answers with a job or a
//! Devo-coded error, never a panic, and what it accepts keeps the contract's invariants.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::codes::*;
use super::*;

const KNOWN_CODES: [u16; 18] = [
    BAD_BODY,
    BAD_QUERY,
    BAD_TIME,
    BAD_LIMIT,
    BAD_DESTINATION,
    BUCKET_NEEDS_CREDENTIALS,
    BAD_AWS_PARAM,
    BAD_FORMAT,
    PASSWORD_NEEDS_ZIP,
    SINGLE_FILE_FORMAT,
    BAD_RETENTION_SIZE,
    BAD_RETENTION_TIME,
    RETENTION_NEEDS_MULTIPLE,
    BAD_EMAIL,
    UNKNOWN_PARAM,
    BAD_FILE_FORMAT,
    BAD_PARQUET_COMPRESSION,
    BAD_MANIFEST,
];

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        prop_oneof![
            Just("gzip"),
            Just("zip"),
            Just("plain"),
            Just("s3"),
            Just("true"),
            Just("2026-01-01T00:00:00Z"),
            Just("SELECT * FROM demo.ecommerce.data"),
            Just("a@example.com, b@example.com"),
            Just("http://127.0.0.1:4566"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{1,16}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid request with some fields replaced by anything at all.
fn mutated_request() -> impl Strategy<Value = Value> {
    let top = prop::sample::select(vec!["query", "from", "to", "limit", "destination", "mode", "offset"]);
    let param = prop::sample::select([AWS_PARAMS, COMMON_PARAMS].concat());
    (
        prop::collection::vec((top, any_value()), 0..3),
        prop::collection::vec((param, any_value()), 0..6),
        any::<bool>(),
    )
        .prop_map(|(tops, params, keep_credentials)| {
            let mut p = Map::new();
            if keep_credentials {
                for (k, v) in [
                    ("aws.bucket", "b"),
                    ("aws.region", "eu-west-1"),
                    ("aws.accesskey", "AK"),
                    ("aws.secretkey", "SK"),
                ] {
                    p.insert(k.into(), v.into());
                }
            }
            for (k, v) in params {
                p.insert(k.into(), v);
            }
            let mut body = json!({"query": "SELECT 1", "from": 1767225600, "to": 1767312000,
                                  "destination": {"type": "s3", "params": Value::Object(p)}});
            for (k, v) in tops {
                body[k] = v;
            }
            body
        })
}

fn check(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    match parse_submit(body, &limits) {
        Err(e) => {
            prop_assert!(KNOWN_CODES.contains(&e.code), "unknown code {}", e.code);
            prop_assert!(e.msg.len() >= 10, "a message says what to fix: {:?}", e.msg);
        }
        Ok((spec, _)) => {
            prop_assert!(!spec.query.trim().is_empty());
            if let (Some(from), Some(to)) = (spec.from_ms, spec.to_ms) {
                prop_assert!(from < to, "from {from} before to {to}");
            }
            let d = &spec.destination;
            if let Some(bytes) = d.retention_bytes {
                let mb = bytes as f64 / 1e6;
                prop_assert!(
                    mb >= limits.retention_size_mb_min - 1e-9 && mb <= limits.retention_size_mb_max + 1e-9
                );
            }
            prop_assert!(d.multiple_file || d.format != Format::Zip);
            prop_assert!(
                !d.file_format.is_columnar() || d.format == Format::Plain,
                "Parquet is stored as it is"
            );
        }
    }
    Ok(())
}

proptest! {
    // 3,000 cases each in every test run; `PROPTEST_CASES=200000` for a longer campaign.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_requests_get_a_job_or_a_coded_error(body in mutated_request()) {
        check(body.to_string().as_bytes())?;
    }

    #[test]
    fn any_json_gets_a_job_or_a_coded_error(body in any_value()) {
        check(body.to_string().as_bytes())?;
    }

    #[test]
    fn any_bytes_get_a_job_or_a_coded_error(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body)?;
    }
}
