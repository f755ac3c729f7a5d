//! `GET /openapi.json` describes exactly what the server serves: every documented operation
//! answers (no "no such path", no 405), with the authentication the document says, every
//! method the document leaves out of a path is refused with 405, and the document names every
//! path of the API the README lists.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::spawn_app;

/// Every path and method of the API (README "API"): Devo's, `/v1/…`, ksqlDB's, operations.
const API: &[(&str, &str)] = &[
    ("post", "/search/query"),
    ("get", "/search/job/{id}"),
    ("get", "/search/jobs"),
    ("get", "/search/jobs/{type}"),
    ("get", "/search/jobs/{type}/{name}"),
    ("get", "/search/job/stop/{id}"),
    ("get", "/search/job/start/{id}"),
    ("get", "/search/job/remove/{id}"),
    ("post", "/v1/stream"),
    ("delete", "/v1/stream/{query_id}"),
    ("post", "/query"),
    ("post", "/close-query"),
    ("post", "/v1/queries"),
    ("post", "/v1/queries/{id}/export/async"),
    ("get", "/v1/queries/exports/{id}/progress"),
    ("get", "/v1/queries/exports/{id}/download"),
    ("delete", "/v1/queries/exports/{id}"),
    ("post", "/v1/data/export-temp"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The path with each `{param}` filled with a value of the right shape.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed parameter") + open;
        out.push_str(&rest[..open]);
        out.push_str(match &rest[open + 1..close] {
            "type" => "s3",
            "name" => "nightly",
            "query_id" => "q-1",
            _ => "0b9d5c1e-8f3a-4a57-9a8e-3f2b1c4d5e6f",
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_operations() {
    let app = spawn_app(10).await;
    let anonymous = reqwest::Client::new();
    let res = anonymous.get(format!("{}/openapi.json", app.api)).send().await.unwrap();
    assert_eq!(res.status(), 200, "the document needs no credential");
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for scheme in ["bearer", "basic", "devo_apikey", "devo_timestamp", "devo_sign"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "scheme {scheme} missing");
    }

    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|m| (m.clone(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> =
        API.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected, "documented operations differ from the API's");

    for (path, item) in paths {
        let url = format!("{}{}", app.api, concrete(path));
        for method in METHODS {
            let res = anonymous
                .request(method.to_uppercase().parse().unwrap(), &url)
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            let Some(operation) = item.get(method) else {
                assert_eq!(status, 405, "{method} {path} is not documented but answered {status}: {body}");
                continue;
            };
            assert!(!body.contains("no such path"), "{method} {path} is documented but not served: {body}");
            assert_ne!(status, 405, "{method} {path} is documented but refused: {body}");
            // An operation with an empty security requirement needs no credential; every
            // other one refuses a caller without one.
            let public = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r == &serde_json::json!({})));
            if public {
                assert_eq!(status, 200, "{method} {path} is public but answered {status}: {body}");
            } else {
                assert_eq!(status, 401, "{method} {path} must need a credential, answered {status}: {body}");
            }
            assert!(
                !operation["responses"].as_object().unwrap().is_empty(),
                "{method} {path} has no responses"
            );
        }
    }

    // The handlers' own words reach the document: a caller learns what a path does there.
    let submit = &paths["/search/query"]["post"];
    assert!(submit["requestBody"]["content"]["application/json"]["example"]["destination"].is_object());
    assert_eq!(
        submit["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(
        paths["/v1/stream"]["post"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "query_id")
    );
}
