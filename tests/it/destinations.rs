//! One conformance suite over the destination seam, run against every store: LocalStack (S3),
//! Azurite (Azure) and the file system. The uploader is built from request params the way
//! the worker builds it; what it wrote is read back with each store's own client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use forwarder::config::Limits;
use forwarder::metrics::Metrics;
use forwarder::upload::{
    DestinationSettings, DestinationsConfig, FileDestinationConfig, ObjectMeta, ObjectUpload, S3Defaults,
    Uploader,
};
use serde_json::json;

use crate::backends::Backend;

const MIB: usize = 1 << 20;

/// The uploader a job `job_id` writing to `backend` gets.
pub async fn uploader(backend: &Backend, job_id: &str) -> Arc<dyn Uploader> {
    let body = json!({"query": "SELECT 1", "destination": backend.destination(json!({"format": "gzip"}))});
    let (spec, secrets) =
        forwarder::job::parse_submit(body.to_string().as_bytes(), &Limits::default()).unwrap();
    let root = match backend {
        Backend::File { root, .. } => Some(root.clone()),
        _ => None,
    };
    let settings = DestinationSettings {
        s3: S3Defaults { allowed_endpoints: vec!["127.0.0.0/8".into()], ..S3Defaults::default() },
        upload: Default::default(),
        destinations: DestinationsConfig { file: FileDestinationConfig { root } },
        download_dir: None,
        metrics: Arc::new(Metrics::default()),
    };
    settings.uploader(job_id, &spec.destination, &secrets).await.unwrap()
}

fn object(backend: &Backend, name: &str) -> ObjectMeta {
    ObjectMeta { key: format!("{}{name}", backend.prefix()), content_type: "text/csv" }
}

/// Distinct bytes, so that parts out of order or missing would show.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

/// A small object is one put; its URL is in the store's own form.
pub async fn single_put(backend: Backend) {
    let up = uploader(&backend, "job-a").await;
    let meta = object(&backend, "single.csv");
    let key = meta.key.clone();
    let mut upload = ObjectUpload::new(up.clone(), meta, 4);
    let size = upload.finish(Bytes::from_static(b"a,b\n1,2\n")).await.unwrap();
    assert_eq!(size, 8);
    assert_eq!(backend.read(&key).await.as_deref(), Some(&b"a,b\n1,2\n"[..]));
    assert_eq!(up.url(&key), backend.url(&key));
    assert_eq!(backend.keys().await, vec![key]);
}

/// Chunks sent concurrently arrive whole and in order, as one object.
pub async fn multipart(backend: Backend) {
    let up = uploader(&backend, "job-a").await;
    let meta = object(&backend, "multi.csv");
    let key = meta.key.clone();
    let mut upload = ObjectUpload::new(up, meta, 4);
    let chunks: Vec<Bytes> = (0..4).map(|i| pattern(5 * MIB + i * 7, i as u8)).collect();
    for c in &chunks {
        upload.put_chunk(c.clone()).await.unwrap();
    }
    let tail = pattern(1000, 99);
    let size = upload.finish(tail.clone()).await.unwrap();
    let mut want: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    want.extend_from_slice(&tail);
    assert_eq!(size, want.len() as u64);
    let got = backend.read(&key).await.expect("the object exists");
    assert!(got == want, "the object is exactly the chunks in order ({} vs {} bytes)", got.len(), want.len());
    assert_eq!(backend.open_uploads().await, 0);
}

/// Another writer's object under the key is never replaced, by a put or by a multipart upload,
/// and the refused upload leaves nothing open.
pub async fn refuses_to_overwrite(backend: Backend) {
    let up = uploader(&backend, "job-a").await;
    let meta = object(&backend, "taken.csv");
    let key = meta.key.clone();
    backend.plant(&key, b"theirs").await;
    let err =
        ObjectUpload::new(up.clone(), meta.clone(), 4).finish(Bytes::from_static(b"ours")).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let mut upload = ObjectUpload::new(up, meta, 4);
    upload.put_chunk(pattern(5 * MIB, 1)).await.unwrap();
    let err = upload.finish(pattern(10, 2)).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(backend.read(&key).await.as_deref(), Some(&b"theirs"[..]));
    assert_eq!(backend.open_uploads().await, 0);
}

/// A part an earlier run of the same job wrote (and never recorded) is replaced by the next
/// run's; the file system cannot tell the job's files from others', so it refuses instead.
pub async fn an_earlier_run_of_the_same_job_is_replaced(backend: Backend) {
    let meta = object(&backend, "rerun.csv");
    let key = meta.key.clone();
    let first = uploader(&backend, "job-b").await;
    ObjectUpload::new(first, meta.clone(), 4).finish(Bytes::from_static(b"first run")).await.unwrap();
    let again = uploader(&backend, "job-b").await;
    let answer = ObjectUpload::new(again, meta, 4).finish(Bytes::from_static(b"second run")).await;
    match backend {
        Backend::File { .. } => {
            assert!(answer.is_err());
            assert_eq!(backend.read(&key).await.as_deref(), Some(&b"first run"[..]));
        }
        _ => {
            answer.unwrap();
            assert_eq!(backend.read(&key).await.as_deref(), Some(&b"second run"[..]));
        }
    }
}

/// An aborted upload leaves no object and nothing open.
pub async fn abort(backend: Backend) {
    let up = uploader(&backend, "job-a").await;
    let meta = object(&backend, "aborted.csv");
    let key = meta.key.clone();
    let mut upload = ObjectUpload::new(up, meta, 4);
    upload.put_chunk(pattern(5 * MIB, 3)).await.unwrap();
    upload.put_chunk(pattern(5 * MIB, 4)).await.unwrap();
    upload.abort().await;
    assert_eq!(backend.read(&key).await, None);
    assert_eq!(backend.open_uploads().await, 0);
    assert!(backend.keys().await.is_empty());
}

/// An upload a dead worker left open is found and removed by the next run, by key; one
/// started after the look is left alone.
pub async fn cleans_uploads_left_open(backend: Backend) {
    let meta = object(&backend, "left.csv");
    let key = meta.key.clone();
    let dead = uploader(&backend, "job-c").await;
    let mut upload = ObjectUpload::new(dead, meta, 1);
    upload.put_chunk(pattern(5 * MIB, 5)).await.unwrap();
    upload.put_chunk(pattern(5 * MIB, 6)).await.unwrap(); // waits for the first part
    std::mem::forget(upload); // the worker died: nobody aborts it
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = backend.open_uploads().await;
    let next = uploader(&backend, "job-c").await;
    let removed = next.abort_all_under(&key, SystemTime::now()).await.unwrap();
    match backend {
        // Uncommitted blocks are invisible and expire after seven days.
        Backend::Azure { .. } => assert_eq!(removed, 0),
        _ => assert!(before >= 1 && removed == before, "{removed} of {before} removed"),
    }
    assert_eq!(backend.open_uploads().await, 0);
    assert_eq!(backend.read(&key).await, None);
}

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_put() {
                super::single_put($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multipart() {
                super::multipart($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn refuses_to_overwrite() {
                super::refuses_to_overwrite($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_earlier_run_of_the_same_job_is_replaced() {
                super::an_earlier_run_of_the_same_job_is_replaced($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn abort() {
                super::abort($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cleans_uploads_left_open() {
                super::cleans_uploads_left_open($make).await
            }
        }
    };
}

conformance!(s3, Backend::s3().await);
conformance!(azure, Backend::azure().await);
conformance!(file, Backend::file());
