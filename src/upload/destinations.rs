//! The destination seam: one [`Uploader`] per job, whatever `destination.type` says. S3 goes
//! through aws-sdk-s3 ([`S3Uploader`]), Azure and GCS through `object_store`
//! ([`ObjectStoreUploader`](super::objects::ObjectStoreUploader)), `file` through the file
//! system ([`LocalUploader`]); every one is metered by destination type.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::local::LocalUploader;
use super::settings::UploadConfig;
use super::{Metered, S3Defaults, S3Uploader, Uploader};
use crate::job::{Destination, DestinationType, JobSecrets};
use crate::metrics::Metrics;

/// `[destinations]`: the operator's settings of the destinations beyond S3 (S3's are `[s3]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationsConfig {
    pub file: FileDestinationConfig,
}

/// `[destinations.file]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileDestinationConfig {
    /// The directory `file` destinations write under; without it they are refused.
    pub root: Option<PathBuf>,
}

/// Everything a worker needs to reach any job's destination.
pub struct DestinationSettings {
    pub s3: S3Defaults,
    pub upload: UploadConfig,
    pub destinations: DestinationsConfig,
    /// Where async exports (type `download`) write their files: `export.temp_dir`.
    pub download_dir: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
}

impl DestinationSettings {
    /// The uploader of one job's destination, marking what it writes as the job's; an error
    /// is a message for the job's `error` (it holds no secret).
    pub async fn uploader(
        &self,
        job_id: &str,
        dest: &Destination,
        secrets: &JobSecrets,
    ) -> Result<Arc<dyn Uploader>, String> {
        let allowed = self.s3.allowed();
        let inner: Arc<dyn Uploader> = match dest.kind {
            DestinationType::S3 => Arc::new(
                S3Uploader::for_destination(dest, secrets, &self.s3, &self.upload).await?.owned_by(job_id),
            ),
            DestinationType::File => {
                let root = self.destinations.file.root.as_deref().ok_or(
                    "this server has no file destination root ([destinations.file] root in the configuration)",
                )?;
                Arc::new(LocalUploader::new(root)?)
            }
            DestinationType::Download => {
                let dir = self.download_dir.as_deref().ok_or("this worker has no export.temp_dir")?;
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("the export directory {} cannot be made: {e}", dir.display()))?;
                Arc::new(LocalUploader::new(dir)?)
            }
            DestinationType::Azure => {
                Arc::new(super::cloud::azure(dest, secrets, &self.upload, &allowed).await?.owned_by(job_id))
            }
            DestinationType::Gcs => {
                Arc::new(super::cloud::gcs(dest, secrets, &self.upload, &allowed).await?.owned_by(job_id))
            }
        };
        Ok(Arc::new(Metered::new(inner, self.metrics.clone())))
    }
}
