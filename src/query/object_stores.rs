//! Catalog tables in object stores, read through `object_store` with the worker's own
//! settings: `s3://bucket/path` with `[s3]` (region, endpoint, keys), `gs://bucket/path` with
//! `[tables.gcs]`, and `az://container/path` or `abfs[s]://container@account.dfs.core.windows.net/path`
//! with `[tables.azure]`. What a section leaves unset comes from the cloud's own environment
//! (`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_*`),
//! as each cloud's CLI reads it, then web identity or the instance's role.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use serde::{Deserialize, Serialize};
use url::Url;

use super::catalog::{Catalog, StoreScheme, store_of};
use crate::secret::Secret;
use crate::upload::S3Defaults;

/// One store per bucket or container the catalog reads from, keyed by `scheme://bucket`.
pub type TableStores = Vec<(Url, Arc<dyn ObjectStore>)>;

/// `[tables]`: how the worker reads catalog tables in Azure and GCS (S3 tables use `[s3]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableStoresConfig {
    pub azure: AzureTables,
    pub gcs: GcsTables,
}

/// `[tables.azure]`: the storage account of `az://` tables (an `abfs://` URL names its own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureTables {
    pub account: Option<String>,
    /// The account's key; unset: `AZURE_STORAGE_ACCOUNT_KEY`, a SAS or a managed identity
    /// from the environment.
    pub access_key: Option<Secret>,
    /// Another endpoint than Azure's, e.g. Azurite: `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
}

/// `[tables.gcs]`: how `gs://` tables are read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcsTables {
    /// A service account's JSON key file; unset: `GOOGLE_APPLICATION_CREDENTIALS` or the
    /// instance's service account.
    pub service_account_key: Option<PathBuf>,
    /// Another endpoint than Google's (an emulator).
    pub endpoint: Option<String>,
}

pub fn for_catalog(
    catalog: &Catalog,
    s3: &S3Defaults,
    tables: &TableStoresConfig,
) -> Result<TableStores, String> {
    let stores: BTreeSet<(StoreScheme, Url)> =
        catalog.tables.iter().filter_map(|t| t.location.to_str().and_then(store_of)).collect();
    stores
        .into_iter()
        .map(|(scheme, url)| {
            let store = match scheme {
                StoreScheme::S3 => s3_store(&url, s3),
                StoreScheme::Gcs => gcs_store(&url, &tables.gcs),
                StoreScheme::Azure => azure_store(&url, &tables.azure),
            }
            .map_err(|e| {
                // A key that does not decode is named, not described: the decoder's message
                // gives a character of the key and its position, and this goes to the log.
                let e = match e.to_string() {
                    t if scheme == StoreScheme::Azure && (t.contains("decod") || t.contains("symbol")) => {
                        "access_key is not an account key (base64)".to_string()
                    }
                    t => t,
                };
                let settings = match scheme {
                    StoreScheme::S3 => "[s3]",
                    StoreScheme::Gcs => "[tables.gcs]",
                    StoreScheme::Azure => "[tables.azure]",
                };
                format!(
                    "catalog: the tables at {url} cannot be read: {e} (see {settings} in the configuration)"
                )
            })?;
            Ok((url, store))
        })
        .collect()
}

fn s3_store(url: &Url, s3: &S3Defaults) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    // Keys from the configuration go alone (an AWS_SESSION_TOKEN of the environment belongs
    // to other keys); without them, the environment says everything.
    let mut builder = match (&s3.access_key, &s3.secret_key) {
        (Some(key), Some(secret)) => {
            AmazonS3Builder::new().with_access_key_id(key).with_secret_access_key(secret.expose())
        }
        _ => AmazonS3Builder::from_env(),
    }
    .with_url(url.as_str());
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(builder.build()?))
}

fn gcs_store(url: &Url, gcs: &GcsTables) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
    if let Some(path) = &gcs.service_account_key {
        builder = builder.with_service_account_path(path.display().to_string());
    }
    if let Some(endpoint) = &gcs.endpoint {
        builder = builder.with_config(GoogleConfigKey::BaseUrl, endpoint.trim_end_matches('/'));
    }
    Ok(Arc::new(builder.build()?))
}

fn azure_store(url: &Url, azure: &AzureTables) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
    if let Some(account) = &azure.account {
        builder = builder.with_account(account);
    }
    if let Some(key) = &azure.access_key {
        builder = builder.with_access_key(key.expose());
    }
    if let Some(endpoint) = &azure.endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/').to_string())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(builder.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(locations: &[&str]) -> Catalog {
        let tables = locations
            .iter()
            .enumerate()
            .map(|(i, l)| crate::query::catalog::TableEntry {
                name: format!("t{i}"),
                location: l.into(),
                format: Default::default(),
                compression: None,
                time_column: None,
                time_unit: Default::default(),
            })
            .collect();
        Catalog { tables }
    }

    /// One store per bucket or container, whatever the cloud; building one reaches no network.
    #[test]
    fn one_store_per_bucket_of_every_cloud() {
        let tables = TableStoresConfig {
            azure: AzureTables {
                account: Some("devstoreaccount1".into()),
                access_key: Some(Secret::new("a2V5")),
                endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            },
            gcs: GcsTables::default(),
        };
        let s3 = S3Defaults {
            region: Some("eu-west-1".into()),
            access_key: Some("AKIA".into()),
            secret_key: Some(Secret::new("s")),
            ..S3Defaults::default()
        };
        let c = catalog(&[
            "s3://logs/2026/",
            "s3://logs/2025/",
            "az://lake/events/",
            "abfss://lake@acct2.dfs.core.windows.net/events/",
            "/data/local",
        ]);
        let stores = for_catalog(&c, &s3, &tables).unwrap();
        let keys: Vec<_> = stores.iter().map(|(u, _)| u.as_str().trim_end_matches('/').to_string()).collect();
        assert_eq!(keys, ["s3://logs", "abfss://lake@acct2.dfs.core.windows.net", "az://lake"]);
    }

    /// An Azure table with no account anywhere is refused when the catalog is loaded, naming
    /// the setting, rather than at the first query.
    #[test]
    fn an_azure_table_without_an_account_names_the_setting() {
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_some() {
            return;
        }
        let err = for_catalog(&catalog(&["az://lake/x/"]), &S3Defaults::default(), &Default::default())
            .expect_err("no account");
        assert!(err.contains("az://lake") && err.contains("[tables.azure]"), "{err}");
    }
}
