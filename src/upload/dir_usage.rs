//! How much the files under a directory take: the disk quota of async exports
//! (`export.disk_quota_mb`), which the API checks before it queues an export and the worker
//! while it writes one.

use std::path::Path;

/// Bytes under `dir` (the files of every export, finished or being written). A missing
/// directory holds nothing.
pub async fn used_bytes(dir: &Path) -> std::io::Result<u64> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut total = 0;
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                // Not followed: a symlink's target is not the exports' to count.
                let meta = entry.path().symlink_metadata()?;
                if meta.is_dir() {
                    pending.push(entry.path());
                } else {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    })
    .await
    .map_err(std::io::Error::other)?
}
