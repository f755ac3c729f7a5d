//! The manifest a job writes after its last part (`manifest: true`):
//! `apiv2_<jobid>_manifest.json`, in the format Amazon Redshift's `COPY … MANIFEST` reads
//! (`entries` with `url`, `mandatory`, `meta.content_length`, `meta.record_count`), plus what
//! a consumer needs to trust the export: the job id, the schema, the total rows and each
//! part's SHA-256. It is written only once every part is, so a consumer that sees it knows
//! the export is complete and exactly which objects belong to it. Like a part, it never
//! replaces another writer's object (the uploader's conditional put).

use bytes::Bytes;
use datafusion::arrow::datatypes::Schema;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Worker;
use super::export::ExportError;
use crate::job::{Job, PartRecord};
use crate::store::StoreError;
use crate::upload::{ObjectMeta, UploadError, Uploader};

/// The manifest's key: beside the parts.
pub fn manifest_key(prefix: &str, job_id: &Uuid) -> String {
    format!("{prefix}apiv2_{job_id}_manifest.json")
}

/// The manifest's body, naming each part by `url_of` its key. `schema` is `None` when no run of
/// the job got as far as the query's schema (an empty result resumed after its last part): the
/// entries still say it all.
pub fn manifest(
    job_id: &Uuid,
    schema: Option<&Schema>,
    parts: &[PartRecord],
    url_of: impl Fn(&str) -> String,
) -> Value {
    let entries: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "url": url_of(&p.key),
                "mandatory": true,
                "meta": {"content_length": p.bytes, "record_count": p.rows},
            })
        })
        .collect();
    let checksums: Vec<Value> =
        parts.iter().map(|p| json!({"url": url_of(&p.key), "sha256": p.sha256})).collect();
    let schema = schema.map(|s| {
        s.fields()
            .iter()
            .map(
                |f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}),
            )
            .collect::<Vec<_>>()
    });
    json!({
        "entries": entries,
        "job_id": job_id,
        "schema": schema,
        "total_rows": parts.iter().map(|p| p.rows).sum::<u64>(),
        "checksums": checksums,
    })
}

/// Writes the manifest and returns its URL.
pub async fn write_manifest(
    uploader: &dyn Uploader,
    prefix: &str,
    job_id: &Uuid,
    schema: Option<&Schema>,
    parts: &[PartRecord],
) -> Result<String, UploadError> {
    let key = manifest_key(prefix, job_id);
    let body = serde_json::to_vec_pretty(&manifest(job_id, schema, parts, |k| uploader.manifest_url(k)))
        .expect("JSON values serialize");
    let meta = ObjectMeta { key: key.clone(), content_type: "application/json" };
    uploader.put_object(&meta, Bytes::from(body)).await?;
    Ok(uploader.url(&key))
}

impl Worker {
    /// Writes the job's manifest over every part of every run, and records where it is.
    pub(super) async fn write_job_manifest(
        &self,
        job: &Job,
        uploader: &dyn Uploader,
        schema: Option<&Schema>,
    ) -> Result<(), ExportError> {
        let parts = match self.store.get(None, job.id).await? {
            Some(stored) => stored.parts,
            None => return Err(ExportError::Store(StoreError::LeaseLost(job.id))),
        };
        let url = write_manifest(uploader, &job.spec.destination.prefix, &job.id, schema, &parts).await?;
        tracing::info!(url, parts = parts.len(), "manifest written");
        self.store.record_manifest(job.id, &self.id, &url).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    use super::*;
    use crate::job::ResumePoint;

    #[test]
    fn redshift_entries_and_our_additions() {
        let id = Uuid::nil();
        let part = |index: u32, rows: u64| PartRecord {
            index,
            key: format!("p/apiv2_{id}_{index:03}.parquet"),
            url: format!("s3://b/p/apiv2_{id}_{index:03}.parquet"),
            bytes: 1000 + u64::from(index),
            rows,
            rows_before: 0,
            completed_at_ms: 0,
            resume: ResumePoint::default(),
            sha256: format!("{index:064}"),
        };
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Field::new("v", DataType::Utf8, true),
        ]);
        let m = manifest(&id, Some(&schema), &[part(1, 10), part(2, 5)], |k| format!("s3://b/{k}"));
        assert_eq!(
            m["entries"][1],
            json!({"url": format!("s3://b/p/apiv2_{id}_002.parquet"), "mandatory": true,
                   "meta": {"content_length": 1002, "record_count": 5}})
        );
        assert_eq!(m["total_rows"], 15);
        assert_eq!(m["job_id"], id.to_string());
        assert_eq!(m["schema"][0], json!({"name": "ts", "type": "Timestamp(ms)", "nullable": false}));
        assert_eq!(m["checksums"][0]["sha256"], format!("{:064}", 1));
        assert_eq!(manifest_key("p/", &id), format!("p/apiv2_{id}_manifest.json"));
        let empty = manifest(&id, None, &[], |k| k.to_string());
        assert_eq!((empty["entries"].as_array().unwrap().len(), &empty["total_rows"]), (0, &json!(0)));
    }
}
