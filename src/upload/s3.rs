//! The raw calls against S3 (or any S3-compatible store) with aws-sdk-s3. The SDK retries
//! transient errors (5xx, throttling, timeouts) with exponential backoff and jitter; what
//! comes out of here is final.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use bytes::Bytes;

use super::attempts::Attempts;
use super::fingerprint::Fingerprint;
use super::scrub::Scrubber;
use super::settings::{S3Defaults, UploadConfig};
use super::{ObjectMeta, UploadError, UploadedPart, Uploader};
use crate::job::{Destination, JobSecrets};
use crate::secret::Secret;

/// The builder of the S3 clients below; its type (a typestate) is not public, hence the macro.
macro_rules! https_client_builder {
    () => {
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring))
    };
}

/// An HTTPS client for S3 calls to the worker's own endpoint (or AWS). On ring, the crypto
/// back end everything else uses: the SDK's default client would build a second one (aws-lc,
/// from C) for the same work. One per uploader, not one per process: a client's pooled
/// connections belong to the runtime that opened them.
pub fn https_client() -> SharedHttpClient {
    https_client_builder!().build_https()
}

#[derive(Debug, Clone)]
pub struct S3Uploader {
    pub(super) client: Client,
    pub(super) bucket: String,
    /// The job whose parts this uploader writes, stored as object metadata so that a later
    /// run of the same job recognises the parts an earlier run left unrecorded.
    pub(super) owner: Option<String>,
    /// Takes this job's credentials (and anything shaped like one) out of S3's error text.
    scrub: Scrubber,
    url_base: String,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
}

impl S3Uploader {
    /// Builds the client for one job's destination. Fails (with a message for the job's
    /// `error`) when no bucket is known.
    pub async fn for_destination(
        dest: &Destination,
        secrets: &JobSecrets,
        defaults: &S3Defaults,
        upload: &UploadConfig,
    ) -> Result<Self, String> {
        // Checked again here: what a name resolves to may have changed since submission.
        if let Some(endpoint) = &dest.endpoint {
            super::endpoint::check_endpoint(endpoint, &defaults.allowed()).await?;
        }
        let uses_defaults = dest.bucket.is_none();
        // Refused at submission too: the worker's own credentials only go to its own endpoint.
        if uses_defaults && dest.endpoint.is_some() {
            return Err("aws.endpoint needs aws.bucket and the request's own keys".into());
        }
        let bucket = dest.bucket.clone().or_else(|| defaults.bucket.clone()).ok_or(
            "the request names no aws.bucket and the worker has no default bucket (s3.bucket in the configuration)",
        )?;
        let region =
            dest.region.clone().or_else(|| defaults.region.clone()).unwrap_or_else(|| "us-east-1".into());
        let endpoint =
            dest.endpoint.clone().or_else(|| uses_defaults.then(|| defaults.endpoint.clone()).flatten());
        let path_style = dest.path_style || (uses_defaults && defaults.path_style);

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(upload.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(upload.attempt_timeout)
                    .build(),
            );
        loader = loader.http_client(if dest.endpoint.is_some() {
            // A request's own endpoint: every connection resolves through the endpoint rule.
            https_client_builder!()
                .build_with_resolver(super::endpoint::CheckedResolver::new(defaults.allowed()))
        } else {
            https_client()
        });
        if let (Some(ak), Some(sk)) = (&secrets.access_key, &secrets.secret_key) {
            let token = secrets.session_token.as_ref().map(|t| t.expose().to_string());
            loader = loader.credentials_provider(Credentials::new(
                ak.expose(),
                sk.expose(),
                token,
                None,
                "request",
            ));
        } else if let (true, Some(ak), Some(sk)) = (uses_defaults, &defaults.access_key, &defaults.secret_key)
        {
            loader =
                loader.credentials_provider(Credentials::new(ak, sk.expose(), None, None, "configuration"));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(path_style);
        if let Some(ep) = &endpoint {
            conf = conf.endpoint_url(ep);
        }
        let url_base = match &endpoint {
            Some(ep) if path_style => format!("{}/{bucket}", ep.trim_end_matches('/')),
            Some(ep) => match ep.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{}", host.trim_end_matches('/')),
                None => format!("{ep}/{bucket}"),
            },
            // A dotted bucket name as a host name would not match S3's certificate.
            None if bucket.contains('.') => format!("https://s3.{region}.amazonaws.com/{bucket}"),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let configured = defaults
            .access_key
            .as_deref()
            .into_iter()
            .chain(defaults.secret_key.as_ref().map(Secret::expose));
        let scrub = Scrubber::new(secrets.all().map(Secret::expose).chain(configured));
        Ok(Self {
            client: Client::from_conf(conf.build()),
            bucket,
            owner: None,
            scrub,
            url_base,
            sse: dest.sse.as_deref().map(ServerSideEncryption::from),
            kms_key_id: dest.kms_key_id.clone(),
            storage_class: dest.storage_class.as_deref().map(StorageClass::from),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Marks every object written from now on as a part of job `job_id`.
    pub fn owned_by(mut self, job_id: impl Into<String>) -> Self {
        self.owner = Some(job_id.into());
        self
    }

    /// A failed call as it may be stored and shown: the endpoint's message and code, and the
    /// SDK's own causes (which can quote a URL), scrubbed of credentials.
    pub(super) fn failed<E, R>(&self, operation: &'static str, key: &str, err: SdkError<E, R>) -> UploadError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let (code, message) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                (
                    Scrubber::error_code(e.code()),
                    e.message().map(str::to_string).unwrap_or_else(|| e.to_string()),
                )
            }
            other => {
                let what = match other {
                    SdkError::TimeoutError(_) => "timed out",
                    SdkError::DispatchFailure(_) => "could not reach the S3 endpoint",
                    SdkError::ResponseError(_) => "could not read the answer",
                    _ => "could not send the request",
                };
                (None, format!("{what}: {}", innermost_causes(other)))
            }
        };
        UploadError {
            store: "S3",
            operation,
            key: key.to_string(),
            code,
            message: self.scrub.error_text(&message),
        }
    }
}

/// The last two causes of an error ("dns error: failed to lookup address information"),
/// which say what went wrong; the outer layers only name the SDK's machinery.
fn innermost_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain: Vec<String> =
        std::iter::successors(Some(err), |e| e.source()).map(|e| e.to_string()).collect();
    chain.dedup();
    let from = chain.len().saturating_sub(2);
    chain[from..].join(": ")
}

/// The metadata key (`x-amz-meta-forwarder-job`) naming the job that wrote an object.
pub(super) const OWNER_METADATA: &str = "forwarder-job";

/// The condition a write is sent with.
pub(super) enum WriteIf {
    /// `If-None-Match: *`: nothing is under the key.
    Absent,
    /// `If-Match`: the object under the key still has this ETag.
    Is(String),
}

/// What every new object is stored with, on either way of starting one (a multipart upload
/// or a single put): the SDK's two builders share no trait, so one list keeps them in step.
macro_rules! new_object {
    ($builder:expr, $uploader:expr, $object:expr) => {
        $builder
            .bucket(&$uploader.bucket)
            .key(&$object.key)
            .content_type($object.content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_server_side_encryption($uploader.sse.clone())
            .set_ssekms_key_id($uploader.kms_key_id.clone())
            .set_storage_class($uploader.storage_class.clone())
            .set_metadata(
                $uploader.owner.as_ref().map(|job| [(OWNER_METADATA.to_string(), job.clone())].into()),
            )
    };
}

/// The condition a completion or put is sent with: never replace an object another job
/// wrote (`If-None-Match: *`), or replace exactly the stale part found (`If-Match`).
macro_rules! when {
    ($builder:expr, $condition:expr) => {
        match $condition {
            WriteIf::Absent => $builder.if_none_match("*"),
            WriteIf::Is(etag) => $builder.if_match(etag),
        }
    };
}

#[async_trait]
impl Uploader for S3Uploader {
    async fn create_multipart(&self, object: &ObjectMeta) -> Result<String, UploadError> {
        let requested_at = std::time::SystemTime::now();
        let attempts = Attempts::default();
        let out = new_object!(self.client.create_multipart_upload(), self, object)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map_err(|e| self.failed("CreateMultipartUpload", &object.key, e))?;
        let id = out.upload_id.ok_or_else(|| UploadError {
            store: "S3",
            operation: "CreateMultipartUpload",
            key: object.key.clone(),
            code: None,
            message: "the answer holds no upload id".into(),
        })?;
        // A create is not idempotent: an attempt whose answer was lost created an upload of
        // its own before the retry created this one.
        if attempts.count() > 1 {
            self.abort_duplicates(&object.key, &id, requested_at).await;
        }
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<UploadedPart, UploadError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.failed("UploadPart", key, e))?;
        Ok(UploadedPart { number, etag: out.e_tag.unwrap_or_default(), checksum_crc32: out.checksum_crc32 })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), UploadError> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .set_checksum_crc32(p.checksum_crc32.clone())
                    .build()
            })
            .collect();
        let send = |condition: WriteIf| {
            let request = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder().set_parts(Some(completed.clone())).build(),
                );
            when!(request, condition).send()
        };
        // A retry after a lost answer finds the object (412) or no upload any more (404).
        let ambiguous = ["PreconditionFailed", "NoSuchUpload", "ConditionalRequestConflict"];
        self.write_once("CompleteMultipartUpload", key, &ambiguous, send, || Fingerprint::of_parts(&parts))
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let answer = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            // The retry of an abort whose answer was lost finds the upload gone: it is done.
            Err(e) if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("NoSuchUpload") => {
                Ok(())
            }
            Err(e) => Err(self.failed("AbortMultipartUpload", key, e)),
        }
    }

    async fn abort_all_under(
        &self,
        prefix: &str,
        requested_at: std::time::SystemTime,
    ) -> Result<usize, UploadError> {
        self.abort_created_until(prefix, requested_at).await
    }

    async fn put_object(&self, object: &ObjectMeta, data: Bytes) -> Result<(), UploadError> {
        let send = |condition: WriteIf| {
            let request =
                new_object!(self.client.put_object(), self, object).body(ByteStream::from(data.clone()));
            when!(request, condition).send()
        };
        let ambiguous = ["PreconditionFailed", "ConditionalRequestConflict"];
        self.write_once("PutObject", &object.key, &ambiguous, send, || Fingerprint::of_bytes(&data)).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), UploadError> {
        // S3 answers 204 for a key that is not there: a retry after a lost answer is fine.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.failed("DeleteObject", key, e))
    }

    fn url(&self, key: &str) -> String {
        object_url(&self.url_base, key)
    }

    fn manifest_url(&self, key: &str) -> String {
        // Raw, not percent-encoded: an `s3://` URL names the key itself.
        format!("s3://{}/{key}", self.bucket)
    }
}

/// Everything in a key but unreserved characters and `/` is percent-encoded in its URL, as S3
/// encodes keys: a prefix with spaces, `#`, `?` or accents still gives a working link.
const KEY_IN_URL: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

pub(super) fn object_url(base: &str, key: &str) -> String {
    format!("{base}/{}", percent_encoding::utf8_percent_encode(key, KEY_IN_URL))
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn keys_are_percent_encoded_in_urls() {
        let base = "https://b.s3.eu-west-1.amazonaws.com";
        assert_eq!(
            super::object_url(base, "exports/apiv2_x_001.csv.gz"),
            format!("{base}/exports/apiv2_x_001.csv.gz")
        );
        assert_eq!(
            super::object_url(base, "my exports/#1?/é/a+b.csv"),
            format!("{base}/my%20exports/%231%3F/%C3%A9/a%2Bb.csv")
        );
    }
}
