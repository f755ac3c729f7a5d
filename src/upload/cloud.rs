//! Builds the `object_store` client of one job's Azure or GCS destination, with the worker's
//! upload settings (attempts, backoff, time per attempt), and the URL form of its objects.

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::endpoint::{Allowed, GuardedResolve, check_endpoint};
use super::objects::ObjectStoreUploader;
use super::settings::UploadConfig;
use crate::job::{Destination, JobSecrets};
use crate::secret::Secret;

fn retry(upload: &UploadConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            base: 2.0,
        },
        max_retries: upload.max_attempts.saturating_sub(1) as usize,
        retry_timeout: Duration::from_secs(180),
    }
}

fn client_options(upload: &UploadConfig, endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(upload.attempt_timeout)
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

/// The endpoint of a request, checked against the internal-address guard again at run time
/// (what a name resolves to may have changed since submission); `param` names it in errors.
async fn checked(endpoint: Option<&str>, param: &str, allowed: &[Allowed]) -> Result<(), String> {
    match endpoint {
        Some(e) => check_endpoint(e, allowed).await.map_err(|m| m.replace("aws.endpoint", param)),
        None => Ok(()),
    }
}

/// The HTTP client of a request's own endpoint: its names resolve through the internal-address
/// guard on every connection (a name that answered a public address when it was checked may
/// answer an internal one later), and redirects are not followed.
#[derive(Debug)]
struct GuardedConnector {
    allowed: Vec<Allowed>,
    attempt_timeout: Duration,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolve::new(self.allowed.clone())))
            .connect_timeout(Duration::from_secs(10))
            .timeout(self.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| object_store::Error::Generic { store: "HTTP client", source: Box::new(e) })?;
        Ok(HttpClient::new(client))
    }
}

fn guarded(allowed: &[Allowed], upload: &UploadConfig) -> GuardedConnector {
    GuardedConnector { allowed: allowed.to_vec(), attempt_timeout: upload.attempt_timeout }
}

/// The URL of an Azure container: Azure's own form, or the endpoint's (Azurite serves
/// `http://host:10000/<account>`, the account in the path).
pub fn azure_url_base(account: &str, container: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(e) => format!("{}/{container}", e.trim_end_matches('/')),
        None => format!("https://{account}.blob.core.windows.net/{container}"),
    }
}

/// The URL of a GCS bucket: `gs://<bucket>`, as gsutil, gcloud and BigQuery name objects.
pub fn gcs_url_base(bucket: &str) -> String {
    format!("gs://{bucket}")
}

pub async fn azure(
    dest: &Destination,
    secrets: &JobSecrets,
    upload: &UploadConfig,
    allowed: &[Allowed],
) -> Result<ObjectStoreUploader, String> {
    let (Some(account), Some(container)) = (&dest.account, &dest.bucket) else {
        return Err("the azure destination names no azure.account or azure.container".into());
    };
    let endpoint = dest.endpoint.as_deref();
    checked(endpoint, "azure.endpoint", allowed).await?;
    let mut builder = MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(container)
        .with_retry(retry(upload))
        .with_client_options(client_options(upload, endpoint));
    if let Some(e) = endpoint {
        builder = builder
            .with_endpoint(e.trim_end_matches('/').to_string())
            .with_http_connector(guarded(allowed, upload));
    }
    if let Some(key) = &secrets.account_key {
        builder = builder.with_access_key(key.expose());
    } else if let Some(sas) = &secrets.sas_token {
        builder = builder.with_config(AzureConfigKey::SasKey, sas.expose());
    } else {
        return Err("the azure destination has neither azure.accesskey nor azure.sastoken".into());
    }
    // A malformed key is reported without its value.
    let store = builder.build().map_err(|e| {
        let text = e.to_string();
        // A key that does not decode is named, not described: the decoder's message gives a
        // character of the key and its position.
        if secrets.account_key.is_some() && (text.contains("decod") || text.contains("symbol")) {
            return "the azure destination cannot be used: azure.accesskey is not an account key \
                    (the base64 text the Azure portal shows under Access keys)"
                .to_string();
        }
        let text = secrets
            .all()
            .fold(text, |t, s| if s.is_empty() { t } else { t.replace(s.expose(), "[redacted]") });
        format!("the azure destination cannot be used: {text}")
    })?;
    Ok(ObjectStoreUploader::new(
        Arc::new(store),
        "Azure",
        azure_url_base(account, container, endpoint),
        secrets.all().map(Secret::expose).map(str::to_string),
    ))
}

pub async fn gcs(
    dest: &Destination,
    secrets: &JobSecrets,
    upload: &UploadConfig,
    allowed: &[Allowed],
) -> Result<ObjectStoreUploader, String> {
    let Some(bucket) = &dest.bucket else {
        return Err("the gcs destination names no gcs.bucket".into());
    };
    let Some(key) = &secrets.service_account else {
        return Err("the gcs destination has no gcs.credentials".into());
    };
    let endpoint = dest.endpoint.as_deref();
    checked(endpoint, "gcs.endpoint", allowed).await?;
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_service_account_key(key.expose())
        .with_retry(retry(upload))
        .with_client_options(client_options(upload, endpoint));
    if let Some(e) = endpoint {
        builder = builder
            .with_config(GoogleConfigKey::BaseUrl, e.trim_end_matches('/'))
            .with_http_connector(guarded(allowed, upload));
    }
    let store = builder.build().map_err(|_| {
        // The builder's error can quote the key file; it is only ever a bad key file here.
        "gcs.credentials is not a usable service account key (it needs private_key, private_key_id and \
         client_email)"
            .to_string()
    })?;
    Ok(ObjectStoreUploader::new(
        Arc::new(store),
        "GCS",
        gcs_url_base(bucket),
        secrets.all().map(Secret::expose).map(str::to_string),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_each_stores_own_form() {
        assert_eq!(azure_url_base("acct", "exports", None), "https://acct.blob.core.windows.net/exports");
        assert_eq!(
            azure_url_base("devstoreaccount1", "c1", Some("http://127.0.0.1:10000/devstoreaccount1/")),
            "http://127.0.0.1:10000/devstoreaccount1/c1"
        );
        assert_eq!(gcs_url_base("b"), "gs://b");
    }

    fn destination(body: serde_json::Value) -> (Destination, JobSecrets) {
        let body = serde_json::json!({"query": "SELECT 1", "destination": body});
        let (spec, secrets) =
            crate::job::parse_submit(body.to_string().as_bytes(), &Default::default()).unwrap();
        (spec.destination, secrets)
    }

    /// The uploaders build without reaching the store (object_store connects lazily), and
    /// name their objects in each store's own URL form.
    #[tokio::test]
    async fn uploaders_build_and_name_objects_in_the_stores_url_form() {
        use crate::upload::Uploader as _;
        let key = r#"{"disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}"#;
        let (dest, secrets) = destination(serde_json::json!({"type": "gcs",
            "params": {"gcs.bucket": "bkt", "gcs.credentials": key, "gcs.prefix": "exports/"}}));
        let store = gcs(&dest, &secrets, &UploadConfig::default(), &[]).await.unwrap();
        assert_eq!(store.url("exports/apiv2_x_001.csv.gz"), "gs://bkt/exports/apiv2_x_001.csv.gz");
        let (dest, secrets) = destination(serde_json::json!({"type": "azure",
            "params": {"azure.account": "acct1", "azure.container": "exports", "azure.accesskey": "a2V5"}}));
        let az = azure(&dest, &secrets, &UploadConfig::default(), &[]).await.unwrap();
        assert_eq!(az.url("a b.csv"), "https://acct1.blob.core.windows.net/exports/a%20b.csv");
        // A key file object_store cannot use is refused without quoting it.
        let bad = r#"{"client_email":"e","private_key":"not a pem","private_key_id":"SECRETID"}"#;
        let (dest, secrets) = destination(serde_json::json!({"type": "gcs",
            "params": {"gcs.bucket": "bkt", "gcs.credentials": bad}}));
        let e = gcs(&dest, &secrets, &UploadConfig::default(), &[]).await.err().unwrap();
        assert!(!e.contains("SECRETID") && e.contains("gcs.credentials"), "{e}");
    }
}
