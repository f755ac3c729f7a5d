//! The `file` destination: parts written as files under the operator's root directory,
//! behind the same [`Uploader`] seam as the object stores.
//!
//! - Never outside the root: a key is made of plain names (checked at submission, and here
//!   again), and no directory on the way may be a symlink (each one is looked at with
//!   `lstat` as it is entered or created).
//! - A multipart upload is a hidden temporary file beside its target,
//!   `.<name>.<start ms>.<random>.partial`, written part after part in order (a part that
//!   arrives early waits in memory; at most `upload.concurrency` do). Completion syncs it and
//!   hard-links it to its name, which fails if anything, even a dangling symlink, is there:
//!   an existing file is never replaced. The temporary name is removed after.
//! - An abort deletes the temporary file; a run that takes a job over deletes the temporary
//!   files an earlier run left, by the start time in their names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{ObjectMeta, UploadError, UploadedPart, Uploader};

struct OpenFile {
    file: tokio::fs::File,
    temp: PathBuf,
    target: PathBuf,
    /// The number of the next part to write.
    next: i32,
    early: BTreeMap<i32, Bytes>,
}

pub struct LocalUploader {
    /// The operator's root, canonical (symlinks in the root's own path are the operator's).
    root: PathBuf,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<OpenFile>>>>,
}

fn failed(operation: &'static str, key: &str, code: Option<&str>, message: impl Into<String>) -> UploadError {
    UploadError {
        store: "File",
        operation,
        key: key.to_string(),
        code: code.map(String::from),
        message: message.into(),
    }
}

fn io_failed(operation: &'static str, key: &str, e: std::io::Error) -> UploadError {
    failed(operation, key, Some(&format!("{:?}", e.kind())), e.to_string())
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

impl LocalUploader {
    /// Fails when the root does not exist or is not a directory.
    pub fn new(root: &Path) -> Result<Self, String> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| format!("the file destination's root {} cannot be used: {e}", root.display()))?;
        if !root.is_dir() {
            return Err(format!("the file destination's root {} is not a directory", root.display()));
        }
        Ok(Self { root, uploads: Mutex::default() })
    }

    /// The directory a key's file goes in (created as needed, never through a symlink) and
    /// the file's name.
    async fn place(&self, key: &str, create: bool) -> Result<(PathBuf, String), UploadError> {
        let names: Vec<&str> = key.split('/').collect();
        let (file, dirs) = names.split_last().expect("split yields at least one item");
        let plain = |n: &&str| !n.is_empty() && *n != "." && *n != ".." && !n.contains('\\');
        if !names.iter().all(plain) || file.starts_with('.') {
            return Err(failed(
                "Open",
                key,
                Some("InvalidKey"),
                "the key is not a relative path of plain names",
            ));
        }
        let mut dir = self.root.clone();
        for name in dirs {
            dir.push(name);
            match tokio::fs::symlink_metadata(&dir).await {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(failed(
                        "Open",
                        key,
                        Some("NotADirectory"),
                        format!(
                            "{name} under the file root is a symlink or a file, not a directory; it is not followed"
                        ),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    match tokio::fs::create_dir(&dir).await {
                        Ok(()) => {}
                        // Another part made it meanwhile: looked at again on the next round.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            let m = tokio::fs::symlink_metadata(&dir)
                                .await
                                .map_err(|e| io_failed("Open", key, e))?;
                            if !m.file_type().is_dir() {
                                return Err(failed(
                                    "Open",
                                    key,
                                    Some("NotADirectory"),
                                    format!("{name} is not a directory"),
                                ));
                            }
                        }
                        Err(e) => return Err(io_failed("CreateDirectory", key, e)),
                    }
                }
                Err(e) => return Err(io_failed("Open", key, e)),
            }
        }
        Ok((dir, file.to_string()))
    }

    fn open(&self, upload_id: &str, key: &str) -> Result<Arc<tokio::sync::Mutex<OpenFile>>, UploadError> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads
            .get(upload_id)
            .cloned()
            .ok_or_else(|| failed("UploadPart", key, Some("NoSuchUpload"), "the upload is not open"))
    }

    /// Writes `data` to a new file at `target` through a temporary name; never replaces.
    async fn write_new(&self, key: &str, temp: &Path, target: &Path, data: &[u8]) -> Result<(), UploadError> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .await
            .map_err(|e| io_failed("PutObject", key, e))?;
        let written = async {
            file.write_all(data).await?;
            file.sync_all().await
        }
        .await;
        drop(file);
        let result = match written {
            Ok(()) => link_new(key, temp, target).await,
            Err(e) => Err(io_failed("PutObject", key, e)),
        };
        let _ = tokio::fs::remove_file(temp).await;
        result
    }
}

/// Gives the finished temporary file its name, unless something is there already.
async fn link_new(key: &str, temp: &Path, target: &Path) -> Result<(), UploadError> {
    match tokio::fs::hard_link(temp, target).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(failed(
            "CompleteMultipartUpload",
            key,
            Some("AlreadyExists"),
            "a file with this name already exists; it was left as it is",
        )),
        Err(e) => Err(io_failed("CompleteMultipartUpload", key, e)),
    }
}

fn temp_name(dir: &Path, file: &str) -> (PathBuf, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    (dir.join(format!(".{file}.{}.{id}.partial", millis(SystemTime::now()))), id)
}

#[async_trait]
impl Uploader for LocalUploader {
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError> {
        let key = object.key.as_str();
        let (dir, file) = self.place(key, true).await?;
        let (temp, id) = temp_name(&dir, &file);
        let handle = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(|e| io_failed("CreateMultipartUpload", key, e))?;
        let open = OpenFile { file: handle, temp, target: dir.join(file), next: 1, early: BTreeMap::new() };
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(open)));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<UploadedPart, UploadError> {
        let open = self.open(upload_id, key)?;
        let mut open = open.lock().await;
        open.early.insert(number, data);
        loop {
            let next = open.next;
            let Some(chunk) = open.early.first_entry().filter(|e| *e.key() == next).map(|e| e.remove())
            else {
                break;
            };
            open.file.write_all(&chunk).await.map_err(|e| io_failed("UploadPart", key, e))?;
            open.next += 1;
        }
        Ok(UploadedPart { number, etag: String::new(), checksum_crc32: None })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), UploadError> {
        let open = self.open(upload_id, key)?;
        let mut open = open.lock().await;
        if !open.early.is_empty() || open.next != parts.len() as i32 + 1 {
            return Err(failed("CompleteMultipartUpload", key, None, "a part is missing"));
        }
        open.file.flush().await.map_err(|e| io_failed("CompleteMultipartUpload", key, e))?;
        open.file.sync_all().await.map_err(|e| io_failed("CompleteMultipartUpload", key, e))?;
        link_new(key, &open.temp, &open.target).await?;
        let _ = tokio::fs::remove_file(&open.temp).await;
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let open = self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
        let Some(open) = open else { return Ok(()) };
        let open = open.lock().await;
        match tokio::fs::remove_file(&open.temp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_failed("AbortMultipartUpload", key, e)),
        }
    }

    async fn abort_all_under(&self, prefix: &str, requested_at: SystemTime) -> Result<usize, UploadError> {
        // `prefix` is a whole key here (the worker asks by part name).
        let (dir, file) = match self.place(prefix, false).await {
            Ok(place) => place,
            Err(e) if e.code.as_deref() == Some("NotFound") => return Ok(0),
            Err(e) => return Err(e),
        };
        let latest = millis(requested_at) + super::leftovers::CLOCK_MARGIN_SECS as u128 * 1000;
        let start = format!(".{file}.");
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_failed("ListMultipartUploads", prefix, e)),
        };
        let mut removed = 0;
        while let Some(entry) =
            entries.next_entry().await.map_err(|e| io_failed("ListMultipartUploads", prefix, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&start).and_then(|r| r.strip_suffix(".partial")) else {
                continue;
            };
            let started: Option<u128> = rest.split('.').next().and_then(|ms| ms.parse().ok());
            if started.is_some_and(|ms| ms <= latest) {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_failed("AbortMultipartUpload", prefix, e)),
                }
            }
        }
        Ok(removed)
    }

    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
        let key = object.key.as_str();
        let (dir, file) = self.place(key, true).await?;
        let (temp, _) = temp_name(&dir, &file);
        self.write_new(key, &temp, &dir.join(file), &data).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), UploadError> {
        let (dir, file) = match self.place(key, false).await {
            Ok(place) => place,
            Err(e) if e.code.as_deref() == Some("NotFound") => return Ok(()),
            Err(e) => return Err(e),
        };
        match tokio::fs::remove_file(dir.join(file)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_failed("DeleteObject", key, e)),
        }
    }

    fn url(&self, key: &str) -> String {
        let path = self.root.join(key);
        url::Url::from_file_path(&path).map_or_else(|()| format!("file://{}", path.display()), String::from)
    }

    fn store(&self) -> &'static str {
        "File"
    }
}
