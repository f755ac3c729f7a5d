//! The real stores behind each destination type, as a test reads them back: LocalStack (S3),
//! Azurite (Azure Blob Storage) and a directory (file). Each gives the params of a fresh
//! bucket, container or directory, and lists, reads and plants objects there with a client of
//! its own (not Forwarder's).

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use serde_json::{Value, json};

use crate::common::{env, s3_client};

/// Azurite's well-known development account and key (public, in Azure's documentation).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone)]
pub enum Backend {
    S3 { bucket: String },
    Azure { container: String, store: Arc<dyn ObjectStore> },
    File { root: PathBuf, directory: String },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::S3 { .. } => "s3",
            Backend::Azure { .. } => "azure",
            Backend::File { .. } => "file",
        }
    }

    pub async fn s3() -> Backend {
        let bucket = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        s3_client().create_bucket().bucket(&bucket).send().await.unwrap();
        Backend::S3 { bucket }
    }

    pub async fn azure() -> Backend {
        let container = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        create_container(&container).await;
        let store = MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name(&container)
            .with_endpoint(azurite_endpoint())
            .with_allow_http(true)
            .build()
            .unwrap();
        Backend::Azure { container, store: Arc::new(store) }
    }

    /// A fresh root; parts go to `exports/daily/` under it.
    pub fn file() -> Backend {
        let root = std::env::temp_dir().join(format!("forwarder-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        Backend::File { root, directory: "exports/daily".into() }
    }

    /// `destination.type` and `destination.params` for this store.
    pub fn destination(&self, extra: Value) -> Value {
        let mut params = match self {
            Backend::S3 { bucket } => json!({
                "aws.bucket": bucket, "aws.region": "us-east-1",
                "aws.accesskey": "test", "aws.secretkey": "test-secret-key-123",
                "aws.endpoint": env("FORWARDER_TEST_S3_ENDPOINT"), "aws.pathstyle": true,
            }),
            Backend::Azure { container, .. } => json!({
                "azure.account": AZURITE_ACCOUNT, "azure.container": container,
                "azure.accesskey": AZURITE_KEY, "azure.endpoint": azurite_endpoint(),
            }),
            Backend::File { directory, .. } => json!({"file.directory": directory}),
        };
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"type": self.name(), "params": params})
    }

    /// The key prefix the destination's params give.
    pub fn prefix(&self) -> String {
        match self {
            Backend::File { directory, .. } => format!("{directory}/"),
            _ => String::new(),
        }
    }

    /// What a job's `extra.paths` entry for `key` is.
    pub fn url(&self, key: &str) -> String {
        match self {
            Backend::S3 { bucket } => format!("{}/{bucket}/{key}", env("FORWARDER_TEST_S3_ENDPOINT")),
            Backend::Azure { container, .. } => format!("{}/{container}/{key}", azurite_endpoint()),
            Backend::File { root, .. } => {
                format!("file://{}/{key}", std::fs::canonicalize(root).unwrap().display())
            }
        }
    }

    /// Every object's key, in part order.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match self {
            Backend::S3 { bucket } => {
                let out = s3_client().list_objects_v2().bucket(bucket).send().await.unwrap();
                out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
            }
            Backend::Azure { store, .. } => {
                let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
                listed.into_iter().map(|m| m.location.to_string()).collect()
            }
            Backend::File { root, .. } => walk(root, root),
        };
        keys.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        keys
    }

    pub async fn read(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Backend::S3 { bucket } => {
                let out = s3_client().get_object().bucket(bucket).key(key).send().await.ok()?;
                Some(out.body.collect().await.unwrap().into_bytes().to_vec())
            }
            Backend::Azure { store, .. } => Some(
                store
                    .get_opts(&Path::from(key), Default::default())
                    .await
                    .ok()?
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec(),
            ),
            Backend::File { root, .. } => std::fs::read(root.join(key)).ok(),
        }
    }

    /// An object another writer put there.
    pub async fn plant(&self, key: &str, data: &[u8]) {
        match self {
            Backend::S3 { bucket } => {
                s3_client()
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(data.to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
            Backend::Azure { store, .. } => {
                store.put_opts(&Path::from(key), data.to_vec().into(), Default::default()).await.unwrap();
            }
            Backend::File { root, .. } => {
                let path = root.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, data).unwrap();
            }
        }
    }

    /// Uploads the store keeps open (S3's multipart uploads, the file system's temporary
    /// files); Azure has none to count (uncommitted blocks are invisible and expire).
    pub async fn open_uploads(&self) -> usize {
        match self {
            Backend::S3 { bucket } => {
                s3_client().list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len()
            }
            Backend::Azure { .. } => 0,
            Backend::File { root, .. } => walk_all(root).iter().filter(|p| p.ends_with(".partial")).count(),
        }
    }
}

pub fn azurite_endpoint() -> String {
    env("FORWARDER_TEST_AZURITE_ENDPOINT")
}

fn walk_all(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_all(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

/// The keys of the finished files under `root` (temporary files are hidden, `.`-named).
fn walk(root: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    walk_all(dir)
        .into_iter()
        .filter(|p| !p.rsplit('/').next().unwrap().starts_with('.'))
        .map(|p| p.strip_prefix(&format!("{}/", root.display())).unwrap().to_string())
        .collect()
}

/// Azurite's Create Container, signed with the account key (Shared Key), as object_store has
/// no call for it.
async fn create_container(container: &str) {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = format!("{}/{container}?restype=container", azurite_endpoint());
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let path = url::Url::parse(&url).unwrap().path().to_string();
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&b64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    let res = reqwest::Client::new()
        .put(&url)
        .header("x-ms-date", &date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "creating container {container}: {} {}",
        res.status(),
        res.text().await.unwrap()
    );
}
