//! The raw calls against any `object_store` backend that has multipart uploads (Azure Blob
//! Storage, Google Cloud Storage), behind the same [`Uploader`] seam as S3.
//!
//! Parts go up through the store's own multipart writer (`put_multipart_opts`: Azure blocks
//! and a block list, GCS's XML multipart upload), which numbers parts in the order they are
//! handed to it; [`ObjectUpload`](super::ObjectUpload) sends them concurrently, so each part
//! waits for its turn to be handed over (not to be uploaded) and the parts stay in order.
//!
//! No overwrite: a single put is a conditional create (`PutMode::Create`: Azure
//! `If-None-Match: *`, GCS `x-goog-if-generation-match: 0`). object_store sends the commit of
//! a multipart upload (Azure's Put Block List, GCS's completion) without a condition, so the
//! key is looked up just before the commit instead, and an object found there stops it. That
//! leaves a window of one round trip in which another writer's object could be replaced.
//! Every object carries the job's id and a random id of the write as metadata, so that a
//! refused create whose first attempt in fact landed (its answer lost) is recognised as ours,
//! and a part an earlier run of the same job wrote and never recorded is replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, MultipartUpload, ObjectStore, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, UpdateVersion,
};
use tokio::sync::watch;

use super::scrub::Scrubber;
use super::{ObjectMeta, UploadError, UploadedPart, Uploader};

/// The metadata naming the job that wrote an object (as S3's `x-amz-meta-forwarder-job`;
/// Azure metadata names are C# identifiers, without hyphens).
const JOB_METADATA: &str = "forwarder_job";
/// The metadata naming the one write (a put or a multipart upload) that made an object.
const WRITE_METADATA: &str = "forwarder_write";

/// One multipart upload in flight.
struct OpenUpload {
    writer: tokio::sync::Mutex<Box<dyn MultipartUpload>>,
    /// The number of the next part to hand to `writer`.
    turn: watch::Sender<i32>,
    write_id: String,
}

pub struct ObjectStoreUploader {
    store: Arc<dyn ObjectStore>,
    /// `Azure` or `GCS`.
    name: &'static str,
    /// The URL of the container or bucket, without a trailing `/`.
    url_base: String,
    owner: Option<String>,
    scrub: Scrubber,
    uploads: Mutex<HashMap<String, Arc<OpenUpload>>>,
}

impl ObjectStoreUploader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        name: &'static str,
        url_base: String,
        secrets: impl IntoIterator<Item = String>,
    ) -> Self {
        let secrets: Vec<String> = secrets.into_iter().collect();
        Self {
            store,
            name,
            url_base,
            owner: None,
            scrub: Scrubber::new(secrets.iter().map(String::as_str)),
            uploads: Mutex::default(),
        }
    }

    /// Marks every object written from now on as a part of job `job_id`.
    pub fn owned_by(mut self, job_id: impl Into<String>) -> Self {
        self.owner = Some(job_id.into());
        self
    }

    fn failed(&self, operation: &'static str, key: &str, e: object_store::Error) -> UploadError {
        use object_store::Error as E;
        let code = match &e {
            E::NotFound { .. } => Some("NotFound"),
            E::AlreadyExists { .. } => Some("AlreadyExists"),
            E::Precondition { .. } => Some("PreconditionFailed"),
            E::PermissionDenied { .. } => Some("PermissionDenied"),
            E::Unauthenticated { .. } => Some("Unauthenticated"),
            _ => None,
        };
        // Azure and GCS answers and the client's own errors can quote the request's URL,
        // which holds a SAS token's signature.
        let message = sas_signatures(&self.scrub.error_text(&e.to_string()));
        UploadError {
            store: self.name,
            operation,
            key: key.to_string(),
            code: code.map(String::from),
            message,
        }
    }

    fn attributes(&self, object: &ObjectMeta, write_id: &str) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, object.content_type.into());
        attributes.insert(Attribute::Metadata(WRITE_METADATA.into()), write_id.to_string().into());
        if let Some(job) = &self.owner {
            attributes.insert(Attribute::Metadata(JOB_METADATA.into()), job.clone().into());
        }
        attributes
    }

    fn open(
        &self,
        upload_id: &str,
        key: &str,
        operation: &'static str,
    ) -> Result<Arc<OpenUpload>, UploadError> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads.get(upload_id).cloned().ok_or_else(|| UploadError {
            store: self.name,
            operation,
            key: key.to_string(),
            code: Some("NoSuchUpload".into()),
            message: "the multipart upload is not open (aborted or completed already)".into(),
        })
    }

    /// What is under `key` now: `None` when nothing, else whether write `write_id` made it,
    /// whether this job did, and its version (for a conditional replace).
    async fn found(&self, key: &str, write_id: &str) -> Result<Option<Found>, UploadError> {
        let head = GetOptions { head: true, ..GetOptions::default() };
        match self.store.get_opts(&Path::from(key), head).await {
            Ok(got) => {
                let meta = |name: &'static str| {
                    got.attributes.get(&Attribute::Metadata(name.into())).map(|v| v.as_ref().to_string())
                };
                Ok(Some(Found {
                    this_write: meta(WRITE_METADATA).as_deref() == Some(write_id),
                    this_job: self.owner.is_some() && meta(JOB_METADATA) == self.owner,
                    version: UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    },
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("HeadObject", key, e)),
        }
    }

    fn exists(&self, operation: &'static str, key: &str) -> UploadError {
        UploadError {
            store: self.name,
            operation,
            key: key.to_string(),
            code: Some("AlreadyExists".into()),
            message:
                "an object with this key already exists and was not written by this job; it was left as it is"
                    .into(),
        }
    }
}

struct Found {
    this_write: bool,
    this_job: bool,
    version: UpdateVersion,
}

/// Replaces the value of every `sig=` query parameter (a SAS token's signature).
fn sas_signatures(text: &str) -> String {
    static SIG: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)([?&]sig=)[^&\s\x22']+").expect("a valid pattern")
    });
    SIG.replace_all(text, "${1}[redacted]").into_owned()
}

#[async_trait]
impl Uploader for ObjectStoreUploader {
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError> {
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let opts =
            PutMultipartOptions { attributes: self.attributes(object, &write_id), ..Default::default() };
        let writer = self
            .store
            .put_multipart_opts(&Path::from(object.key.as_str()), opts)
            .await
            .map_err(|e| self.failed("CreateMultipartUpload", &object.key, e))?;
        let upload = OpenUpload {
            writer: tokio::sync::Mutex::new(writer),
            turn: watch::Sender::new(1),
            write_id: write_id.clone(),
        };
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).insert(write_id.clone(), Arc::new(upload));
        Ok(write_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<UploadedPart, UploadError> {
        let upload = self.open(upload_id, key, "UploadPart")?;
        // Parts are numbered by the order they reach the writer: wait for this one's turn.
        let mut turn = upload.turn.subscribe();
        let _ = turn.wait_for(|next| *next >= number).await;
        let sent = {
            let mut writer = upload.writer.lock().await;
            let sent = writer.put_part(PutPayload::from(data));
            upload.turn.send_replace(number + 1);
            sent
        };
        sent.await.map_err(|e| self.failed("UploadPart", key, e))?;
        Ok(UploadedPart { number, etag: String::new(), checksum_crc32: None })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), UploadError> {
        let upload = self.open(upload_id, key, "CompleteMultipartUpload")?;
        let handed = *upload.turn.borrow() - 1;
        if handed != parts.len() as i32 {
            return Err(UploadError {
                store: self.name,
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                code: None,
                message: format!("{} parts were uploaded but {} are listed", handed, parts.len()),
            });
        }
        match self.found(key, &upload.write_id).await? {
            Some(found) if found.this_write => {}
            Some(found) if !found.this_job => return Err(self.exists("CompleteMultipartUpload", key)),
            found => {
                if found.is_some() {
                    tracing::warn!(
                        key,
                        "replacing a part an earlier run of this job wrote but never recorded"
                    );
                }
                let mut writer = upload.writer.lock().await;
                writer.complete().await.map_err(|e| self.failed("CompleteMultipartUpload", key, e))?;
            }
        }
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let upload = self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
        let Some(upload) = upload else { return Ok(()) };
        let mut writer = upload.writer.lock().await;
        writer.abort().await.map_err(|e| self.failed("AbortMultipartUpload", key, e))
    }

    /// object_store cannot list open uploads: Azure drops uncommitted blocks by itself after
    /// seven days, and GCS keeps an open XML multipart upload until it is aborted or a bucket
    /// lifecycle rule (`AbortIncompleteMultipartUpload`) removes it. Nothing is found here.
    async fn abort_all_under(&self, _: &str, _: std::time::SystemTime) -> Result<usize, UploadError> {
        Ok(0)
    }

    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
        let key = object.key.as_str();
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let payload = PutPayload::from(data);
        let put = |mode: PutMode| PutOptions {
            mode,
            attributes: self.attributes(object, &write_id),
            ..PutOptions::default()
        };
        let path = Path::from(key);
        match self.store.put_opts(&path, payload.clone(), put(PutMode::Create)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                match self.found(key, &write_id).await? {
                    // A retry whose first attempt had written the object.
                    Some(found) if found.this_write => Ok(()),
                    Some(found) if found.this_job => {
                        tracing::warn!(
                            key,
                            "replacing a part an earlier run of this job wrote but never recorded"
                        );
                        self.store
                            .put_opts(&path, payload, put(PutMode::Update(found.version)))
                            .await
                            .map(|_| ())
                            .map_err(|e| self.failed("PutObject", key, e))
                    }
                    // Gone again since: try once more, still only if absent.
                    None => self
                        .store
                        .put_opts(&path, payload, put(PutMode::Create))
                        .await
                        .map(|_| ())
                        .map_err(|e| self.failed("PutObject", key, e)),
                    Some(_) => Err(self.exists("PutObject", key)),
                }
            }
            Err(e) => Err(self.failed("PutObject", key, e)),
        }
    }

    async fn delete_object(&self, key: &str) -> Result<(), UploadError> {
        match object_store::ObjectStoreExt::delete(&*self.store, &Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("DeleteObject", key, e)),
        }
    }

    fn url(&self, key: &str) -> String {
        super::s3::object_url(&self.url_base, key)
    }

    fn store(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sas_signatures_are_redacted() {
        let text =
            "error sending request for url (https://a.blob.core.windows.net/c/k?sv=2022&sig=abc%2Bdef&se=1)";
        let out = super::sas_signatures(text);
        assert!(!out.contains("abc%2Bdef") && out.contains("sig=[redacted]&se=1"), "{out}");
    }
}
