//! The job store contract, run against both stores: the SQLite file and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use forwarder::job::{
    Command, Destination, DestinationType, Format, Job, JobSpec, JobStatus, PartRecord, Progress,
    ResumePoint, now_ms,
};
use forwarder::store::{
    CredentialKind, CredentialStore, JobFilter, JobStore, Lease, Outcome, PostgresStore, SqliteStore,
    StoreError,
};
use uuid::Uuid;

pub(crate) fn job(domain: &str) -> Job {
    let id = Uuid::new_v4();
    Job {
        id,
        domain: domain.into(),
        owner: "o".into(),
        friendly_name: format!("s3_{id}"),
        status: JobStatus::Created,
        spec: JobSpec {
            query: "SELECT 1".into(),
            from_ms: None,
            to_ms: Some(1),
            limit: None,
            destination: Destination {
                kind: Default::default(),
                bucket: None,
                account: None,
                region: None,
                endpoint: None,
                path_style: false,
                prefix: String::new(),
                sse: None,
                kms_key_id: None,
                storage_class: None,
                format: Format::Gzip,
                file_format: forwarder::job::Encoding::Jsonl,
                parquet_compression: Default::default(),
                manifest: false,
                encrypted: false,
                multiple_file: true,
                retention_bytes: Some(1),
                retention_time: None,
                notification_emails: vec![],
                download: None,
            },
        },
        sealed_secrets: Some(vec![1, 2, 3]),
        created_at_ms: now_ms(),
        updated_at_ms: now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
        progress: Progress::default(),
        parts: vec![],
        errors: vec![],
        manifest_url: None,
    }
}

fn part(index: u32, rows_before: u64) -> PartRecord {
    let resume =
        ResumePoint { from_ms: Some(1_000 + index as i64), skip: rows_before + 5, slice_ms: Some(3_600_000) };
    PartRecord {
        index,
        key: format!("k{index}"),
        url: format!("u{index}"),
        bytes: 10,
        rows: 5,
        rows_before,
        completed_at_ms: now_ms(),
        resume,
        sha256: format!("{index:064x}"),
    }
}

async fn conformance(store: Arc<dyn JobStore>) {
    let lease = Duration::from_millis(300);
    let a = job("a");
    store.insert(&a).await.unwrap();
    assert!(store.get(Some("b"), a.id).await.unwrap().is_none(), "another domain's job looks absent");
    assert_eq!(store.get(Some("a"), a.id).await.unwrap().unwrap().status, JobStatus::Created);

    // Claim, checkpoint, heartbeat.
    let claimed = store.claim_next("w1", lease, None).await.unwrap().unwrap().job;
    assert_eq!(claimed.id, a.id);
    assert_eq!(claimed.status, JobStatus::Running);
    assert!(
        store.claim_next("w2", lease, None).await.unwrap().is_none(),
        "a leased job is not claimed twice"
    );
    assert!(store.holds(a.id, "w1").await.unwrap() && !store.holds(a.id, "w2").await.unwrap());
    let progress =
        Progress { events_generated: 9, events_sent: 5, last_datetime_ms: Some(7), percent_complete: 50 };
    store.checkpoint(a.id, "w1", &part(1, 0), &progress).await.unwrap();
    assert_eq!(store.heartbeat(a.id, "w1", lease, &progress).await.unwrap(), Lease::Held);
    assert!(matches!(
        store.checkpoint(a.id, "w2", &part(2, 5), &progress).await,
        Err(StoreError::LeaseLost(_))
    ));

    // The lease expires: another worker takes the job over with its checkpoint.
    tokio::time::sleep(lease * 2).await;
    let taken = store.claim_next("w2", lease, None).await.unwrap().unwrap().job;
    assert!(!store.holds(a.id, "w1").await.unwrap(), "the first worker no longer holds it");
    assert_eq!(
        taken.parts,
        vec![part(1, 0)]
            .into_iter()
            .map(|mut p| {
                p.completed_at_ms = taken.parts[0].completed_at_ms;
                p
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(taken.progress, progress);
    assert!(matches!(store.heartbeat(a.id, "w1", lease, &progress).await, Err(StoreError::LeaseLost(_))));

    // Operator commands reach the worker; finishing releases the job.
    let applied = |s| Some(Outcome::Applied(s));
    assert_eq!(store.command(Some("a"), a.id, Command::Stop).await.unwrap(), applied(JobStatus::Running));
    assert!(
        matches!(store.command(Some("a"), a.id, Command::Start).await.unwrap(), Some(Outcome::Refused(_))),
        "a stopping job cannot start"
    );
    assert_eq!(store.heartbeat(a.id, "w2", lease, &progress).await.unwrap(), Lease::Requested(Command::Stop));
    store.finish(a.id, "w2", JobStatus::Stopped, &progress, None).await.unwrap();
    store.add_error(a.id, "email failed").await.unwrap();
    let done = store.get(None, a.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Stopped);
    assert_eq!(done.errors, vec!["email failed".to_string()]);

    // Start: back to CREATED, claimed again with its checkpoint; a second start is refused.
    assert_eq!(store.command(Some("a"), a.id, Command::Start).await.unwrap(), applied(JobStatus::Created));
    assert!(
        matches!(store.command(Some("a"), a.id, Command::Start).await.unwrap(), Some(Outcome::Refused(why)) if why.contains("CREATED"))
    );
    let again = store.claim_next("w3", lease, None).await.unwrap().unwrap().job;
    assert_eq!((again.id, again.parts.len()), (a.id, 1));
    assert_eq!(
        again.parts[0].resume,
        ResumePoint { from_ms: Some(1_001), skip: 5, slice_ms: Some(3_600_000) }
    );

    // Shutdown: the worker gives the job back; it is runnable again, its parts kept.
    store.release(a.id, "w3", &progress).await.unwrap();
    let released = store.get(None, a.id).await.unwrap().unwrap();
    assert_eq!((released.status, released.parts.len()), (JobStatus::Created, 1));
    assert_eq!(store.claim_next("w4", lease, None).await.unwrap().map(|c| c.job.id), Some(a.id));
    store.finish(a.id, "w4", JobStatus::Stopped, &progress, Some("S3 said \"no\", twice")).await.unwrap();
    // A removal asked for while a job runs wins over the end its worker reports.
    let b = job("a");
    store.insert(&b).await.unwrap();
    assert_eq!(store.claim_next("w5", lease, None).await.unwrap().map(|c| c.job.id), Some(b.id));
    assert_eq!(store.command(Some("a"), b.id, Command::Remove).await.unwrap(), applied(JobStatus::Running));
    store.finish(b.id, "w5", JobStatus::Completed, &Progress::default(), None).await.unwrap();
    let removed = store.get(None, b.id).await.unwrap().unwrap();
    assert_eq!(removed.status, JobStatus::Removed, "not brought back to COMPLETED");
    assert!(removed.sealed_secrets.is_none() && removed.finished_at_ms.is_some());
    let errors = store.get(None, a.id).await.unwrap().unwrap().errors;
    assert_eq!(
        errors,
        vec!["email failed".to_string(), "S3 said \"no\", twice".to_string()],
        "appended, quotes kept"
    );

    assert_eq!(store.command(Some("a"), a.id, Command::Remove).await.unwrap(), applied(JobStatus::Removed));
    assert!(
        store.get(None, a.id).await.unwrap().unwrap().sealed_secrets.is_none(),
        "removal forgets the credentials"
    );
    for c in [Command::Start, Command::Stop, Command::Remove] {
        assert!(
            matches!(store.command(None, a.id, c).await.unwrap(), Some(Outcome::Refused(_))),
            "{c:?} on a removed job"
        );
    }
    assert_eq!(
        store.get(None, a.id).await.unwrap().unwrap().status,
        JobStatus::Removed,
        "refusals change nothing"
    );

    // An idle job stops at once; listing filters.
    let b = job("a");
    store.insert(&b).await.unwrap();
    assert_eq!(store.command(None, b.id, Command::Stop).await.unwrap(), applied(JobStatus::Stopped));
    assert_eq!(store.command(Some("zz"), b.id, Command::Stop).await.unwrap(), None);
    let stopped = store
        .list(&JobFilter { domain: Some("a".into()), status: Some(JobStatus::Stopped), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(stopped.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b.id]);
    assert_eq!(
        store.list(&JobFilter { domain: Some("b".into()), ..Default::default() }).await.unwrap().len(),
        0
    );
    store.ping().await.unwrap();

    // At most N running jobs per domain: a busy domain waits, another domain's job goes first.
    let (c1, c2, other) = (job("capped"), job("capped"), job("other"));
    for j in [&c1, &c2, &other] {
        store.insert(j).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(store.claim_next("w5", lease, Some(1)).await.unwrap().map(|c| c.job.id), Some(c1.id));
    assert_eq!(
        store.claim_next("w5", lease, Some(1)).await.unwrap().map(|c| c.job.id),
        Some(other.id),
        "capped waits"
    );
    assert!(store.claim_next("w5", lease, Some(1)).await.unwrap().is_none());
    assert_eq!(store.claim_next("w5", lease, Some(2)).await.unwrap().map(|c| c.job.id), Some(c2.id));

    // By destination type, filtered by the store itself: the one file job is found under the
    // newer s3 jobs however few are asked for.
    // Stopped, so that no worker would claim them.
    let typed_job = |kind| {
        let mut j = job("typed");
        j.status = JobStatus::Stopped;
        j.spec.destination.kind = kind;
        j
    };
    let to_files = typed_job(DestinationType::File);
    store.insert(&to_files).await.unwrap();
    for _ in 0..3 {
        store.insert(&typed_job(DestinationType::S3)).await.unwrap();
    }
    let typed = |destination, limit| JobFilter {
        domain: Some("typed".into()),
        destination: Some(destination),
        limit: Some(limit),
        ..Default::default()
    };
    let files = store.list(&typed(DestinationType::File, 1)).await.unwrap();
    assert_eq!(files.iter().map(|j| j.id).collect::<Vec<_>>(), vec![to_files.id]);
    assert_eq!(store.list(&typed(DestinationType::S3, 10)).await.unwrap().len(), 3);
    assert!(store.list(&typed(DestinationType::Azure, 10)).await.unwrap().is_empty());
}

/// Domains take turns: the domain whose last job start is the oldest goes first (one that
/// never started a job before any), whatever another domain has queued.
async fn fair_turns(store: Arc<dyn JobStore>) {
    let long = Duration::from_secs(60);
    let claim = async |worker: &str, cap: Option<u32>| {
        store.claim_next(worker, long, cap).await.unwrap().map(|c| c.job)
    };
    // Domain A: 2 jobs running and 500 queued before B submits one.
    let mut queued_a = Vec::new();
    for _ in 0..502 {
        let j = job("a");
        store.insert(&j).await.unwrap();
        queued_a.push(j.id);
    }
    assert_eq!(claim("w1", Some(2)).await.map(|j| j.id), Some(queued_a[0]));
    assert_eq!(claim("w2", Some(2)).await.map(|j| j.id), Some(queued_a[1]));
    assert_eq!(store.queued_count("a").await.unwrap(), 500);
    assert!(claim("w3", Some(2)).await.is_none(), "A is at its cap");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = job("b");
    store.insert(&b).await.unwrap();
    assert_eq!((store.queued_count("b").await.unwrap(), store.queued_count("zz").await.unwrap()), (1, 0));
    // A slot frees (one of A's jobs ends): B's job is next, though A's queued jobs are older.
    store.finish(queued_a[0], "w1", JobStatus::Completed, &Progress::default(), None).await.unwrap();
    assert_eq!(claim("w1", Some(2)).await.map(|j| j.id), Some(b.id), "B waited longest");
    assert_eq!(claim("w4", None).await.map(|j| j.id), Some(queued_a[2]), "then A again, oldest first");
    // Three domains with jobs queued take one turn each, round and round.
    for domain in ["c", "b", "b", "c"] {
        store.insert(&job(domain)).await.unwrap();
    }
    let mut domains = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        domains.push(claim("w5", None).await.unwrap().domain);
    }
    // c never started a job; b started one before A's latest start.
    assert_eq!(domains, ["c", "b", "a", "c", "b", "a"]);
}

/// Runs that end without a clean end are counted (a checkpoint, a finish or a hand-back
/// starts the count again); a dead worker's leases can be ended at once; a RUNNING job whose
/// worker is gone is stopped or removed at once, its secrets deleted.
async fn unclean_runs_and_dead_leases(store: Arc<dyn JobStore>) {
    let lease = Duration::from_millis(200);
    let j = job("a");
    store.insert(&j).await.unwrap();
    let mut runs = Vec::new();
    for worker in ["host-1-aaaaaaaa", "host-2-bbbbbbbb", "host-3-cccccccc"] {
        tokio::time::sleep(lease * 2).await;
        runs.push(store.claim_next(worker, lease, None).await.unwrap().unwrap().unclean_runs);
    }
    assert_eq!(runs, [0, 1, 2], "each run that died is counted");
    store.checkpoint(j.id, "host-3-cccccccc", &part(1, 0), &Progress::default()).await.unwrap();
    tokio::time::sleep(lease * 2).await;
    assert_eq!(
        store.claim_next("w", lease, None).await.unwrap().unwrap().unclean_runs,
        0,
        "progress resets it"
    );
    store.release(j.id, "w", &Progress::default()).await.unwrap();
    let long = Duration::from_secs(60);
    assert_eq!(
        store.claim_next("host-4-dddddddd", long, None).await.unwrap().unwrap().unclean_runs,
        0,
        "so does a hand-back"
    );

    // A dead worker's lease ends now rather than in a minute.
    assert_eq!(store.lease_owners("host-").await.unwrap(), vec!["host-4-dddddddd".to_string()]);
    assert!(store.lease_owners("other-").await.unwrap().is_empty());
    assert!(store.claim_next("w", long, None).await.unwrap().is_none());
    assert_eq!(store.expire_leases(&["host-4-dddddddd".into(), "nobody".into()]).await.unwrap(), 1);
    let back = store.claim_next("w", long, None).await.unwrap().unwrap();
    assert_eq!((back.job.id, back.unclean_runs), (j.id, 1));

    // Its worker dies again: a remove applies at once (no worker is left to tell).
    store.expire_leases(&["w".into()]).await.unwrap();
    assert_eq!(
        store.command(Some("a"), j.id, Command::Remove).await.unwrap(),
        Some(Outcome::Applied(JobStatus::Removed))
    );
    let removed = store.get(None, j.id).await.unwrap().unwrap();
    assert_eq!((removed.status, removed.sealed_secrets), (JobStatus::Removed, None));
    assert!(store.claim_next("w", long, None).await.unwrap().is_none(), "nothing left to run");
    // And a FAILED job is removed with its secrets.
    let f = job("a");
    store.insert(&f).await.unwrap();
    store.claim_next("w", long, None).await.unwrap().unwrap();
    store.finish(f.id, "w", JobStatus::Failed, &Progress::default(), Some("crashed")).await.unwrap();
    assert_eq!(
        store.command(None, f.id, Command::Remove).await.unwrap(),
        Some(Outcome::Applied(JobStatus::Removed))
    );
    assert_eq!(store.get(None, f.id).await.unwrap().unwrap().sealed_secrets, None);
}

/// Workers claiming at the same time never get the same job, and every job is claimed.
async fn concurrent_claims(store: Arc<dyn JobStore>) {
    let jobs: Vec<Job> = (0..24).map(|i| job(["a", "b", "c"][i % 3])).collect();
    for j in &jobs {
        store.insert(j).await.unwrap();
    }
    let workers = (0..6).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) =
                store.claim_next(&format!("w{w}"), Duration::from_secs(60), None).await.unwrap()
            {
                got.push(j.job.id);
            }
            got
        })
    });
    let mut claimed: Vec<Uuid> = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    let mut expected: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    claimed.sort();
    expected.sort();
    assert_eq!(claimed, expected, "each job claimed exactly once");
}

async fn credentials(store: Arc<dyn CredentialStore>) {
    assert!(!store.has_credentials().await.unwrap());
    let token = store.add_credential(CredentialKind::Token, "acme", "digest-1", None).await.unwrap();
    let key = store.add_credential(CredentialKind::ApiKey, "globex", "key-1", Some(&[9, 9])).await.unwrap();
    let found = store.find_credential(CredentialKind::ApiKey, "key-1").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.domain.as_str(), found.sealed.as_deref()),
        (key.as_str(), "globex", Some(&[9u8, 9][..]))
    );
    assert!(
        store.find_credential(CredentialKind::Token, "key-1").await.unwrap().is_none(),
        "kinds are apart"
    );
    let listed = store.list_credentials().await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec![token.as_str(), key.as_str()]);
    assert!(listed.iter().all(|c| c.sealed.is_none()), "a listing carries no sealed secret");
    assert!(store.revoke_credential(&token).await.unwrap());
    assert!(!store.revoke_credential(&token).await.unwrap(), "revoked once");
    assert!(store.find_credential(CredentialKind::Token, "digest-1").await.unwrap().is_none());
    assert!(store.has_credentials().await.unwrap());
    // A signature is accepted once, whatever its case, until it expires.
    let later = forwarder::job::now_ms() + 60_000;
    assert!(store.first_use_of_signature("abc", later).await.unwrap());
    assert!(!store.first_use_of_signature("ABC", later).await.unwrap());
    assert!(store.first_use_of_signature("abd", later).await.unwrap());
    assert!(store.first_use_of_signature("old", 0).await.unwrap());
    assert!(store.first_use_of_signature("old", later).await.unwrap(), "an expired one is forgotten");
}

pub(crate) async fn sqlite() -> Arc<SqliteStore> {
    let path = std::env::temp_dir().join(format!("forwarder-store-{}.sqlite", Uuid::new_v4()));
    Arc::new(SqliteStore::open(&path).await.unwrap())
}

pub(crate) async fn postgres() -> Arc<PostgresStore> {
    Arc::new(PostgresStore::connect(&crate::common::fresh_postgres_database().await).await.unwrap())
}

#[tokio::test]
async fn sqlite_store_conforms() {
    conformance(sqlite().await).await;
    concurrent_claims(sqlite().await).await;
    fair_turns(sqlite().await).await;
    unclean_runs_and_dead_leases(sqlite().await).await;
    credentials(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    conformance(postgres().await).await;
    concurrent_claims(postgres().await).await;
    fair_turns(postgres().await).await;
    unclean_runs_and_dead_leases(postgres().await).await;
    credentials(postgres().await).await;
}
