//! What a validated request asks for. Built only by [`super::parse_submit`], so every value
//! here is already within its limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The query text with Devo's `pragma comment.*` clauses removed.
    pub query: String,
    /// Inclusive lower bound of the time column, epoch ms.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, epoch ms. `None`: a continuous job.
    pub to_ms: Option<i64>,
    pub limit: Option<u64>,
    pub destination: Destination,
}

/// Devo's `format` parameter: how a part is packed.
pub use crate::compress::Compression as Format;
/// `file.format`: the shape of the rows inside a part.
pub use crate::encode::Encoding;
/// `parquet.compression`: the codec of the pages inside a Parquet part.
pub use crate::encode::parquet::ParquetCompression;

/// The end of a part's key: the encoding's extension, then the compression's
/// (`csv.gz`, `jsonl.zst`, `csv`, …).
pub fn part_extension(encoding: Encoding, format: Format) -> &'static str {
    match (encoding, format) {
        (Encoding::Csv, Format::Gzip) => "csv.gz",
        (Encoding::Csv, Format::Zstd) => "csv.zst",
        (Encoding::Csv, Format::Zip) => "csv.zip",
        (Encoding::Csv, Format::Plain) => "csv",
        (Encoding::Jsonl, Format::Gzip) => "jsonl.gz",
        (Encoding::Jsonl, Format::Zstd) => "jsonl.zst",
        (Encoding::Jsonl, Format::Zip) => "jsonl.zip",
        (Encoding::Jsonl, Format::Plain) => "jsonl",
        // Parquet compresses inside the file; validation allows no other format with it.
        (Encoding::Parquet, _) => "parquet",
    }
}

/// The content type a part is stored with.
pub fn part_content_type(encoding: Encoding, format: Format) -> &'static str {
    match encoding {
        Encoding::Parquet => encoding.content_type(),
        _ => format.content_type().unwrap_or(encoding.content_type()),
    }
}

/// `destination.type`: which kind of store the parts go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    /// Devo's: S3 or an S3-compatible store, through aws-sdk-s3.
    #[default]
    S3,
    /// A directory under the operator's `[destinations.file] root`.
    File,
    /// Azure Blob Storage, through object_store.
    Azure,
    /// Google Cloud Storage, through object_store.
    Gcs,
    /// One file under the operator's `export.temp_dir`, for the caller to download
    /// (`POST /v1/queries/{id}/export/async`). Not a type a Devo request may name.
    Download,
}

impl DestinationType {
    /// The types a request to `POST /search/query` may name (not `download`).
    pub const ALL: [DestinationType; 4] = [Self::S3, Self::File, Self::Azure, Self::Gcs];

    pub fn name(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::File => "file",
            Self::Azure => "azure",
            Self::Gcs => "gcs",
            Self::Download => "download",
        }
    }

    /// Any type a job may have, `download` included (listing filters by it).
    pub fn of_job(text: &str) -> Option<Self> {
        Self::parse(text)
            .or_else(|| Self::Download.name().eq_ignore_ascii_case(text.trim()).then_some(Self::Download))
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// Where and how the parts go. Credentials are not here: they are in [`JobSecrets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    /// Jobs stored before other types existed are S3 jobs.
    #[serde(default, rename = "type")]
    pub kind: DestinationType,
    /// The S3 or GCS bucket, or the Azure container. `None` (S3 only): the worker's
    /// configured default bucket and credential chain.
    pub bucket: Option<String>,
    /// The Azure storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub prefix: String,
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    pub format: Format,
    /// `file.format`; jobs stored before it existed are CSV.
    #[serde(default)]
    pub file_format: Encoding,
    /// `parquet.compression`: the codec inside Parquet parts.
    #[serde(default)]
    pub parquet_compression: ParquetCompression,
    /// `manifest`: write `apiv2_<jobid>_manifest.json` after the last part.
    #[serde(default)]
    pub manifest: bool,
    /// Zip entries are AES-256 encrypted (the password itself is in [`JobSecrets`]).
    pub encrypted: bool,
    pub multiple_file: bool,
    /// Rotate when the stored part reaches this many bytes (`None` with `multiplefile=false`).
    pub retention_bytes: Option<u64>,
    /// Rotate when the part has been open this long.
    #[serde(with = "humantime_serde")]
    pub retention_time: Option<Duration>,
    pub notification_emails: Vec<String>,
    /// Type `download` only: what the async export asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadOptions>,
}

/// An async export's own settings (`POST /v1/queries/{id}/export/async`), fixed when it is
/// asked for so that a run after a restart writes the same file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadOptions {
    /// The registered query exported (the `executionId`).
    pub execution_id: uuid::Uuid,
    /// CSV only: the first line names the columns.
    pub include_header: bool,
    /// More rows than this fail the export (`export.max_rows`).
    pub max_rows: u64,
    /// The progress (`rowsProcessed`) is saved every this many rows (`export.chunk_size`).
    pub chunk_rows: u64,
}

/// The secret half of a request: sealed with the server key before it is stored, deleted
/// when the job is removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSecrets {
    pub access_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub file_password: Option<Secret>,
    /// Azure: the storage account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<Secret>,
    /// Azure: a shared access signature (the query string, without its leading `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token: Option<Secret>,
    /// GCS: the service account's JSON key file, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Secret>,
}

impl JobSecrets {
    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }

    /// Every secret the request gave, so that error texts and logs can be scrubbed of them.
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        [
            &self.access_key,
            &self.secret_key,
            &self.session_token,
            &self.file_password,
            &self.account_key,
            &self.sas_token,
            &self.service_account,
        ]
        .into_iter()
        .flatten()
    }
}
