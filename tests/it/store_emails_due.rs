//! The emails a job's ending owes, against both stores: due from the statement that records
//! the ending, held by whoever ended the job, claimable by one worker once that holder is
//! found dead, and gone once told.

use std::sync::Arc;
use std::time::Duration;

use forwarder::job::{Command, JobStatus, Progress};
use forwarder::store::{JobStore, Outcome};

use crate::store::{job, postgres, sqlite};

async fn emails_due(store: Arc<dyn JobStore>) {
    let long = Duration::from_secs(60);
    let sender = "mail-1-aaaaaaaa";
    let ended = job("e");
    store.insert(&ended).await.unwrap();
    store.claim_next(sender, long, None).await.unwrap().unwrap();
    store.finish(ended.id, sender, JobStatus::Completed, &Progress::default(), None).await.unwrap();

    // Its sender holds it: nobody else takes it.
    assert_eq!(store.claim_due_email("w-2").await.unwrap(), None, "held by the worker that ended the job");
    assert_eq!(store.lease_owners("mail-").await.unwrap(), vec![sender.to_string()], "its holder is listed");
    // The sender is found dead: one worker, and only one, takes the email.
    store.expire_leases(&[sender.to_string()]).await.unwrap();
    assert_eq!(store.claim_due_email("w-2").await.unwrap(), Some((ended.id, JobStatus::Completed)));
    assert_eq!(store.claim_due_email("w-3").await.unwrap(), None, "claimed once");
    // Told for another ending changes nothing; told for its own, it is no longer due.
    store.email_told(ended.id, JobStatus::Failed).await.unwrap();
    store.expire_leases(&["w-2".to_string()]).await.unwrap();
    assert_eq!(store.claim_due_email("w-3").await.unwrap(), Some((ended.id, JobStatus::Completed)));
    store.email_told(ended.id, JobStatus::Completed).await.unwrap();
    store.expire_leases(&["w-3".to_string()]).await.unwrap();
    assert_eq!(store.claim_due_email("w-4").await.unwrap(), None, "told: not sent again");
    assert!(store.lease_owners("w-").await.unwrap().is_empty(), "and nobody holds it");

    // A job stopped while it waited, by the API: due, held by nobody for the hold's length.
    let queued = job("e");
    store.insert(&queued).await.unwrap();
    assert_eq!(
        store.command(None, queued.id, Command::Stop).await.unwrap(),
        Some(Outcome::Applied(JobStatus::Stopped))
    );
    assert_eq!(store.claim_due_email("w-5").await.unwrap(), None, "the API is sending it");
    // A stop applied when a worker hands its job back: due, held by that worker.
    let handed_back = job("e");
    store.insert(&handed_back).await.unwrap();
    let runner = "mail-2-bbbbbbbb";
    store.claim_next(runner, long, None).await.unwrap().unwrap();
    store.command(None, handed_back.id, Command::Stop).await.unwrap();
    store.release(handed_back.id, runner, &Progress::default()).await.unwrap();
    store.expire_leases(&[runner.to_string()]).await.unwrap();
    assert_eq!(store.claim_due_email("w-5").await.unwrap(), Some((handed_back.id, JobStatus::Stopped)));

    // A job removed while it ran owes no email; nor does a run handed back with nothing asked.
    let removed = job("e");
    store.insert(&removed).await.unwrap();
    store.claim_next(runner, long, None).await.unwrap().unwrap();
    store.command(None, removed.id, Command::Remove).await.unwrap();
    store.finish(removed.id, runner, JobStatus::Completed, &Progress::default(), None).await.unwrap();
    let again = job("e");
    store.insert(&again).await.unwrap();
    store.claim_next(runner, long, None).await.unwrap().unwrap();
    store.release(again.id, runner, &Progress::default()).await.unwrap();
    store.expire_leases(&[runner.to_string()]).await.unwrap();
    assert_eq!(store.claim_due_email("w-6").await.unwrap(), None);
}

/// Workers claiming overdue emails at the same time each get different ones, and every one is
/// claimed once.
async fn concurrent_email_claims(store: Arc<dyn JobStore>) {
    let sender = "mail-9-99999999";
    let mut ids = Vec::new();
    for _ in 0..12 {
        let j = job("e");
        store.insert(&j).await.unwrap();
        store.claim_next(sender, Duration::from_secs(60), None).await.unwrap().unwrap();
        store.finish(j.id, sender, JobStatus::Failed, &Progress::default(), Some("x")).await.unwrap();
        ids.push(j.id);
    }
    store.expire_leases(&[sender.to_string()]).await.unwrap();
    let claimers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some((id, status)) = store.claim_due_email(&format!("w-{w}")).await.unwrap() {
                assert_eq!(status, JobStatus::Failed);
                got.push(id);
            }
            got
        })
    });
    let mut claimed: Vec<_> = Vec::new();
    for c in claimers.collect::<Vec<_>>() {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "each claimed once");
}

#[tokio::test]
async fn sqlite_store_keeps_the_emails_due() {
    emails_due(sqlite().await).await;
    concurrent_email_claims(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_emails_due() {
    emails_due(postgres().await).await;
    concurrent_email_claims(postgres().await).await;
}
