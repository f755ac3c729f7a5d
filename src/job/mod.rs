//! The job model: what was asked ([`JobSpec`], its secrets apart in [`JobSecrets`]), where a
//! job stands ([`JobStatus`], [`Progress`], [`PartRecord`]), and the Devo-shaped view of it.
//! Pure code: no I/O here.

mod limits;
mod param_chars;
mod refusal;
mod request;
mod request_dest;
mod request_shape;
mod spec;
mod status;
mod view;

pub use limits::Limits;
pub use request::{
    RequestError, SubmitRequest, codes as request_codes, parse_submit, parse_time, strip_pragmas,
};
pub use spec::{
    Destination, DestinationType, DownloadOptions, Encoding, Format, JobSecrets, JobSpec, ParquetCompression,
    part_content_type, part_extension,
};
pub use status::{Command, Effect, JobStatus, plan};
pub use view::{JobView, job_view};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job as the store keeps it (secrets stay sealed, see [`crate::secret::SecretBox`]).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub domain: String,
    pub owner: String,
    pub friendly_name: String,
    pub status: JobStatus,
    pub spec: JobSpec,
    pub sealed_secrets: Option<Vec<u8>>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub progress: Progress,
    pub parts: Vec<PartRecord>,
    pub errors: Vec<String>,
    /// Where the manifest is, once the job wrote it (`manifest: true`).
    pub manifest_url: Option<String>,
}

/// Counters the worker moves while it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Rows the query produced so far.
    pub events_generated: u64,
    /// Rows inside completed (uploaded) parts.
    pub events_sent: u64,
    /// Time watermark (epoch ms) of the rows sent.
    pub last_datetime_ms: Option<i64>,
    pub percent_complete: u8,
}

/// One uploaded part file: the checkpoint a resumed job continues from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub index: u32,
    pub key: String,
    pub url: String,
    /// Size of the stored (compressed) object.
    pub bytes: u64,
    pub rows: u64,
    /// Rows of the job's result before this part.
    pub rows_before: u64,
    pub completed_at_ms: i64,
    /// Where a resumed run continues after this part.
    pub resume: ResumePoint,
    /// SHA-256 of the stored object, hex (empty for parts stored before it was kept).
    pub sha256: String,
}

/// A position in a job's result: the query window that starts at `from_ms` (the job's own
/// `from` for a bounded job, the current window of a continuous one), after `skip` of its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    pub from_ms: Option<i64>,
    pub skip: u64,
    /// The length of the time slices the run that wrote it ran in ([`crate::query::slices`]),
    /// so that a resumed run continues on the same grid: `Some(0)` for one query over the
    /// whole window, `None` for a checkpoint written before the length was kept.
    #[serde(default)]
    pub slice_ms: Option<i64>,
}

/// Part file name: `apiv2_<jobid>_<index>.<ext>`, the index zero-padded to three digits
/// (`001` … `999`, then `1000`, `1001`, …).
pub fn part_file_name(job_id: &Uuid, index: u32, encoding: Encoding, format: Format) -> String {
    format!("apiv2_{job_id}_{index:03}.{}", part_extension(encoding, format))
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_pad_to_three_digits_then_grow() {
        let id = Uuid::nil();
        assert_eq!(part_file_name(&id, 1, Encoding::Csv, Format::Gzip), format!("apiv2_{id}_001.csv.gz"));
        assert_eq!(part_file_name(&id, 999, Encoding::Csv, Format::Zip), format!("apiv2_{id}_999.csv.zip"));
        assert_eq!(part_file_name(&id, 1000, Encoding::Csv, Format::Plain), format!("apiv2_{id}_1000.csv"));
    }

    #[test]
    fn every_encoding_and_compression_has_its_key_and_content_type() {
        let id = Uuid::nil();
        let want = [
            (Encoding::Csv, Format::Gzip, "csv.gz", "application/gzip"),
            (Encoding::Csv, Format::Zstd, "csv.zst", "application/zstd"),
            (Encoding::Csv, Format::Zip, "csv.zip", "application/zip"),
            (Encoding::Csv, Format::Plain, "csv", "text/csv"),
            (Encoding::Jsonl, Format::Gzip, "jsonl.gz", "application/gzip"),
            (Encoding::Jsonl, Format::Zstd, "jsonl.zst", "application/zstd"),
            (Encoding::Jsonl, Format::Zip, "jsonl.zip", "application/zip"),
            (Encoding::Jsonl, Format::Plain, "jsonl", "application/x-ndjson"),
        ];
        for (encoding, format, ext, content_type) in want {
            assert_eq!(part_file_name(&id, 7, encoding, format), format!("apiv2_{id}_007.{ext}"));
            assert_eq!(part_content_type(encoding, format), content_type);
        }
    }
}
