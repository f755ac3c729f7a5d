//! Catalog tables at `s3://bucket/path` locations, read through `object_store` with the
//! worker's own S3 settings (`[s3]`: region, endpoint, keys). Without keys there, credentials
//! come from the AWS environment variables, web identity or the instance role.

use std::collections::BTreeSet;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

use super::catalog::{Catalog, s3_bucket};
use crate::upload::S3Defaults;

/// One store per bucket the catalog reads from, keyed by `s3://bucket`.
pub type TableStores = Vec<(Url, Arc<dyn ObjectStore>)>;

pub fn for_catalog(catalog: &Catalog, s3: &S3Defaults) -> Result<TableStores, String> {
    let buckets: BTreeSet<&str> =
        catalog.tables.iter().filter_map(|t| t.location.to_str().and_then(s3_bucket)).collect();
    buckets
        .into_iter()
        .map(|bucket| {
            // Keys from the configuration go alone (an AWS_SESSION_TOKEN of the environment
            // belongs to other keys); without them, the environment says everything.
            let mut builder = match (&s3.access_key, &s3.secret_key) {
                (Some(key), Some(secret)) => {
                    AmazonS3Builder::new().with_access_key_id(key).with_secret_access_key(secret.expose())
                }
                _ => AmazonS3Builder::from_env(),
            }
            .with_bucket_name(bucket);
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder.build().map_err(|e| format!("catalog: the S3 bucket {bucket}: {e}"))?;
            let url = Url::parse(&format!("s3://{bucket}"))
                .map_err(|e| format!("catalog: the S3 bucket {bucket}: {e}"))?;
            Ok((url, Arc::new(store) as Arc<dyn ObjectStore>))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_locations() {
        assert_eq!(s3_bucket("s3://logs/2026/"), Some("logs"));
        assert_eq!(s3_bucket("s3://logs"), Some("logs"));
        assert_eq!(s3_bucket("/data/logs"), None);
        assert_eq!(s3_bucket("data"), None);
    }
}
