//! Prometheus metrics (`GET /metrics`). One [`Metrics`] per process, handed to the parts that
//! move its counters; nothing global, so that tests running several servers in one process
//! see each server's own figures.

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::JobStatus;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `pull` or `push`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    /// `s3`, `file`, `azure` or `gcs`.
    pub destination: &'static str,
    pub operation: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Jobs in the store by status, read from the store at every scrape.
    jobs: Family<StatusLabel, Gauge>,
    pub jobs_ended: Family<StatusLabel, Counter>,
    pub rows_exported: Counter,
    /// Bytes queries fetched from their tables' storage (after Parquet pruning).
    pub source_bytes_read: Counter,
    pub bytes_uploaded: Counter,
    pub parts_uploaded: Counter,
    pub s3_request_seconds: Family<OperationLabel, Histogram>,
    pub s3_errors: Family<OperationLabel, Counter>,
    /// Every destination's calls (S3's too), by destination type and operation.
    pub destination_request_seconds: Family<DestinationLabel, Histogram>,
    pub destination_errors: Family<DestinationLabel, Counter>,
    pub emails_sent: Counter,
    pub smtp_errors: Counter,
    /// ksqlDB `/query` queries streaming now, by kind (`pull`, `push`).
    pub ksql_queries: Family<KindLabel, Gauge>,
    /// Bytes of the record batches those queries hold while writing them out (one each at most).
    pub ksql_batch_bytes: Gauge,
    /// Requests holding a running query on this server (`/v1/stream`, `/query`, export-temp),
    /// set at each scrape from the streams' registry.
    streams_running: Gauge,
    /// Encoding holds the registry; scrapes take turns.
    scrape: Mutex<()>,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("forwarder");
        let jobs = Family::<StatusLabel, Gauge>::default();
        let jobs_ended = Family::<StatusLabel, Counter>::default();
        let rows_exported = Counter::default();
        let source_bytes_read = Counter::default();
        let bytes_uploaded = Counter::default();
        let parts_uploaded = Counter::default();
        let s3_request_seconds =
            Family::<OperationLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let s3_errors = Family::<OperationLabel, Counter>::default();
        let destination_request_seconds = Family::<DestinationLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let destination_errors = Family::<DestinationLabel, Counter>::default();
        let emails_sent = Counter::default();
        let smtp_errors = Counter::default();
        let ksql_queries = Family::<KindLabel, Gauge>::default();
        let ksql_batch_bytes = Gauge::default();
        let streams_running = Gauge::default();
        registry.register("jobs", "Jobs in the job store, by status", jobs.clone());
        registry.register("jobs_ended", "Job runs this process ended, by final status", jobs_ended.clone());
        registry.register("rows_exported", "Rows inside uploaded part files", rows_exported.clone());
        registry.register(
            "source_bytes_read",
            "Bytes export queries fetched from their tables' files (as stored; what Parquet pruning skipped is not read)",
            source_bytes_read.clone(),
        );
        registry.register(
            "bytes_uploaded",
            "Bytes of uploaded part files, as stored",
            bytes_uploaded.clone(),
        );
        registry.register("parts_uploaded", "Part files uploaded", parts_uploaded.clone());
        registry.register(
            "s3_request_seconds",
            "Latency of S3 calls (retries included), by operation",
            s3_request_seconds.clone(),
        );
        registry.register("s3_errors", "S3 calls that failed after retries, by operation", s3_errors.clone());
        registry.register(
            "destination_request_seconds",
            "Latency of calls to every destination (retries included), by destination type and operation",
            destination_request_seconds.clone(),
        );
        registry.register(
            "destination_errors",
            "Destination calls that failed after retries, by destination type and operation",
            destination_errors.clone(),
        );
        registry.register(
            "emails_sent",
            "Notification emails sent or written to the outbox",
            emails_sent.clone(),
        );
        registry.register(
            "smtp_errors",
            "Notification emails that failed after retries",
            smtp_errors.clone(),
        );
        registry.register(
            "ksql_queries_running",
            "ksqlDB /query queries streaming now, by kind (pull, push)",
            ksql_queries.clone(),
        );
        registry.register(
            "ksql_batch_bytes_held",
            "Bytes of record batches the running /query queries hold (at most one batch each)",
            ksql_batch_bytes.clone(),
        );
        registry.register(
            "streams_running",
            "Requests running a query on this server now (/v1/stream, /query, export-temp); a client that leaves ends its own",
            streams_running.clone(),
        );
        Self {
            registry,
            jobs,
            jobs_ended,
            rows_exported,
            source_bytes_read,
            bytes_uploaded,
            parts_uploaded,
            s3_request_seconds,
            s3_errors,
            destination_request_seconds,
            destination_errors,
            emails_sent,
            smtp_errors,
            ksql_queries,
            ksql_batch_bytes,
            streams_running,
            scrape: Mutex::new(()),
        }
    }
}

impl Metrics {
    /// The text exposition, with the job counts and the running streams given.
    pub fn render(&self, job_counts: &[(JobStatus, u64)], streams_running: usize) -> String {
        let _turn = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.streams_running.set(i64::try_from(streams_running).unwrap_or(i64::MAX));
        for kind in ["pull", "push"] {
            // Shown at 0 before the first query, so that a dashboard has a series to draw.
            let _ = self.ksql_queries.get_or_create(&KindLabel { kind });
        }
        for status in JobStatus::ALL {
            let n = job_counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.jobs.get_or_create(&StatusLabel { status: status.as_str() }).set(n as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn job_ended(&self, status: JobStatus) {
        self.jobs_ended.get_or_create(&StatusLabel { status: status.as_str() }).inc();
    }

    /// Times one call to a destination of type `destination` (`s3`, `file`, `azure`, `gcs`)
    /// and counts it as an error when it fails.
    pub fn destination_call<T, E>(
        &self,
        destination: &'static str,
        operation: &'static str,
        started: Instant,
        result: &Result<T, E>,
    ) {
        let label = DestinationLabel { destination, operation };
        self.destination_request_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.destination_errors.get_or_create(&label).inc();
        }
    }

    /// Times one S3 call and counts it as an error when it fails.
    pub fn s3_call<T, E>(&self, operation: &'static str, started: Instant, result: &Result<T, E>) {
        let label = OperationLabel { operation };
        self.s3_request_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.s3_errors.get_or_create(&label).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_the_prefix() {
        let m = Metrics::default();
        m.rows_exported.inc_by(42);
        m.source_bytes_read.inc_by(7);
        m.job_ended(JobStatus::Completed);
        m.s3_call::<(), ()>("UploadPart", Instant::now(), &Err(()));
        let text = m.render(&[(JobStatus::Running, 2)], 3);
        assert!(text.contains("forwarder_rows_exported_total 42"), "{text}");
        assert!(text.contains("forwarder_streams_running 3"), "{text}");
        assert!(text.contains("forwarder_source_bytes_read_total 7"), "{text}");
        assert!(text.contains(r#"forwarder_jobs{status="RUNNING"} 2"#), "{text}");
        assert!(text.contains(r#"forwarder_jobs{status="FAILED"} 0"#), "{text}");
        assert!(text.contains(r#"forwarder_s3_errors_total{operation="UploadPart"} 1"#), "{text}");
        assert!(text.contains(r#"forwarder_s3_request_seconds_count{operation="UploadPart"} 1"#), "{text}");
    }
}
