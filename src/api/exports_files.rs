//! The files of async exports on disk: one directory per export, `<export.temp_dir>/<job id>/`,
//! holding the one file its job wrote. Here: the disk quota (how much they take now), the
//! removal of one export's directory, and the sweep that removes what is no longer wanted —
//! files past `export.ttl`, and directories whose export failed, was deleted or is unknown.
//!
//! [`sweep`] is one pass, called by tests directly (as `Worker::try_run_next_job` is), so that
//! they never race a background loop; [`sweep_forever`] is that pass on a timer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::job::{Command, DestinationType, JobStatus, now_ms};
use crate::store::{JobStore, StoreError};
pub use crate::upload::used_bytes;

/// Removes the directory of export `id` (gone already counts as removed).
pub async fn remove_export_dir(dir: &Path, id: Uuid) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(dir.join(id.to_string())).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Completed exports whose file outlived `ttl`: removed, and the export with it.
    pub expired: usize,
    /// Directories of exports that failed, were deleted or are not in the store.
    pub leftovers: usize,
}

/// One pass over `dir` at time `now_ms`: every export directory whose file is past `ttl`
/// since its export completed, or whose export will never be downloaded, is removed. An
/// expired export becomes `REMOVED`, so that its progress and download answer 404 as a
/// deleted one does. Exports still queued or running are left alone.
pub async fn sweep(
    store: &dyn JobStore,
    dir: &Path,
    ttl: Duration,
    now_ms: i64,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the export directory");
            return Ok(swept);
        }
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        // Only what exports made: directories named by a job id.
        let Some(id) = entry.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) else { continue };
        let job = store.get(None, id).await?;
        let expired = job.as_ref().is_some_and(|j| {
            j.status == JobStatus::Completed
                && j.finished_at_ms.is_some_and(|at| at.saturating_add(ttl.as_millis() as i64) <= now_ms)
        });
        let unwanted = match &job {
            None => true,
            Some(j) => {
                j.spec.destination.kind != DestinationType::Download
                    || matches!(j.status, JobStatus::Failed | JobStatus::Removed)
            }
        };
        if !(expired || unwanted) {
            continue;
        }
        if expired {
            // First the export, then its file: a download never finds a COMPLETED export
            // whose file is gone.
            store.command(None, id, Command::Remove).await?;
        }
        match remove_export_dir(dir, id).await {
            Ok(()) if expired => swept.expired += 1,
            Ok(()) => swept.leftovers += 1,
            Err(e) => tracing::warn!(export = %id, error = %e, "could not remove an export's directory"),
        }
    }
    if swept != Swept::default() {
        tracing::info!(expired = swept.expired, leftovers = swept.leftovers, "export files removed");
    }
    Ok(swept)
}

/// How often the server sweeps the export directory.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// [`sweep`] every minute until the task is dropped.
pub async fn sweep_forever(store: Arc<dyn JobStore>, dir: std::path::PathBuf, ttl: Duration) {
    loop {
        if let Err(e) = sweep(store.as_ref(), &dir, ttl, now_ms()).await {
            tracing::warn!(error = %e, "the sweep of export files failed; trying again later");
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn used_bytes_counts_every_file_below() {
        let dir = std::env::temp_dir().join(format!("exports-{}", Uuid::new_v4()));
        assert_eq!(used_bytes(&dir).await.unwrap(), 0, "a missing directory holds nothing");
        let id = Uuid::new_v4();
        std::fs::create_dir_all(dir.join(id.to_string())).unwrap();
        std::fs::write(dir.join(id.to_string()).join("a.csv"), [0u8; 1000]).unwrap();
        std::fs::write(dir.join("stray"), [0u8; 24]).unwrap();
        assert_eq!(used_bytes(&dir).await.unwrap(), 1024);
        remove_export_dir(&dir, id).await.unwrap();
        remove_export_dir(&dir, id).await.unwrap();
        assert_eq!(used_bytes(&dir).await.unwrap(), 24);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
