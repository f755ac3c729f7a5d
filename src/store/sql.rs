//! The job store's operations, written once for both SQL stores. SQLite and PostgreSQL run
//! the same statements (`$n` parameters work in both), except for what a store gives: the
//! clock lease times are read from, the lock a claim takes, and how to append to the
//! `errors` JSON array. A macro, because generic code over sqlx's databases would need bounds
//! for every type bound here.
//!
//! `sql_job_store!(Store, Database, Row, clock, claim_lock, append_error)` implements
//! [`JobStore`](super::JobStore) for `Store` (which has a `pool` field); `append_error` is the
//! SQL expression of `errors` with the text parameter `$1` appended.

macro_rules! sql_job_store {
    ($store:ty, $db:ty, $row:ty, clock: $clock:expr, claim_lock: $claim_lock:expr, append_error: $append:literal) => {
impl $store {
    /// Now, in epoch ms, for lease (and email hold) times: the database's clock where several
    /// machines share it (one worker's clock running ahead must not expire another's lease),
    /// else ours. `on`: a transaction's connection or the pool.
    async fn lease_clock<'e, E>(on: E) -> Result<i64, StoreError>
    where
        E: sqlx::Executor<'e, Database = $db>,
    {
        let clock: Option<&'static str> = $clock;
        Ok(match clock {
            Some(query) => sqlx::query_scalar(query).fetch_one(on).await?,
            None => now_ms(),
        })
    }

    async fn with_parts(&self, row: &$row) -> Result<Job, StoreError> {
        let mut job = job_from_row(row)?;
        let parts = sqlx::query("SELECT * FROM parts WHERE job_id = $1 ORDER BY idx")
            .bind(job.id.to_string())
            .fetch_all(&self.pool)
            .await?;
        job.parts = parts.iter().map(part_from_row).collect::<Result<_, _>>()?;
        Ok(job)
    }

    async fn with_parts_all(&self, rows: &[$row]) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            jobs.push(self.with_parts(row).await?);
        }
        Ok(jobs)
    }
}

/// Appends `$1` to the job `$3`'s errors, at time `$2`.
const APPEND_ERROR: &str = concat!("UPDATE jobs SET errors = ", $append, ", updated_at = $2 WHERE id = $3");

/// Saves a running job's progress if `worker` still holds it; how many rows changed (0: the
/// lease is lost).
async fn save_progress(
    tx: &mut Transaction<'_, $db>,
    id: &str,
    worker: &str,
    progress: &Progress,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE jobs SET events_generated = $1, events_sent = $2, last_datetime = $3, percent_complete = $4, updated_at = $5
         WHERE id = $6 AND lease_owner = $7 AND status = 'RUNNING'",
    )
    .bind(progress.events_generated as i64)
    .bind(progress.events_sent as i64)
    .bind(progress.last_datetime_ms)
    .bind(i64::from(progress.percent_complete))
    .bind(now_ms())
    .bind(id)
    .bind(worker)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

#[async_trait]
impl JobStore for $store {
    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&job.spec).map_err(|e| corrupt(&job.id.to_string(), e))?;
        sqlx::query(
            "INSERT INTO jobs (id, domain, owner, friendly_name, status, spec, sealed_secrets, created_at, updated_at,
                               destination_type)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(job.id.to_string())
        .bind(&job.domain)
        .bind(&job.owner)
        .bind(&job.friendly_name)
        .bind(job.status.as_str())
        .bind(spec)
        .bind(&job.sealed_secrets)
        .bind(job.created_at_ms)
        .bind(job.updated_at_ms)
        .bind(job.spec.destination.kind.name())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, domain: Option<&str>, id: Uuid) -> Result<Option<Job>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM jobs WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR domain = $2)")
                .bind(id.to_string())
                .bind(domain)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok(Some(self.with_parts(&row).await?)),
            None => Ok(None),
        }
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs
             WHERE (CAST($1 AS TEXT) IS NULL OR domain = $1) AND (CAST($2 AS TEXT) IS NULL OR status = $2)
               AND (CAST($3 AS TEXT) IS NULL OR substr(friendly_name, 1, length($3)) = $3)
               AND (CAST($5 AS TEXT) IS NULL OR destination_type = $5)
             ORDER BY created_at DESC LIMIT $4",
        )
        .bind(filter.domain.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.name_prefix.as_deref())
        .bind(filter.limit.unwrap_or(1000) as i64)
        .bind(filter.destination.map(crate::job::DestinationType::name))
        .fetch_all(&self.pool)
        .await?;
        self.with_parts_all(&rows).await
    }

    async fn claim_next(
        &self,
        worker: &str,
        lease: Duration,
        max_running_per_domain: Option<u32>,
    ) -> Result<Option<Claim>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = Self::lease_clock(&mut *tx).await?;
        let lock: Option<&'static str> = $claim_lock;
        if let Some(lock) = lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        // The outer condition repeats the runnable test: a command that changed the row after
        // the inner SELECT read it makes PostgreSQL re-check it, and leave the job alone.
        // Each domain's running jobs are counted once (not once per queued job): with
        // thousands queued, a count per row made every claim slower than the job it started.
        let row = sqlx::query(
            "UPDATE jobs SET status = 'RUNNING', lease_owner = $1, lease_until = $2, updated_at = $3,
                    started_at = COALESCE(started_at, $3), unclean_runs = unclean_runs + 1
             WHERE (status = 'CREATED' OR (status = 'RUNNING' AND lease_until < $3))
               AND id = (SELECT j.id FROM jobs j
                         LEFT JOIN domain_turns t ON t.domain = j.domain
                         LEFT JOIN (SELECT domain, COUNT(*) AS n FROM jobs
                                    WHERE status = 'RUNNING' AND lease_until >= $3 GROUP BY domain) busy
                                ON busy.domain = j.domain
                         WHERE (j.status = 'CREATED' OR (j.status = 'RUNNING' AND j.lease_until < $3))
                           AND (CAST($4 AS BIGINT) IS NULL OR COALESCE(busy.n, 0) < $4)
                         ORDER BY COALESCE(t.last_started_at, 0), j.created_at LIMIT 1)
             RETURNING *",
        )
        .bind(worker)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(max_running_per_domain.map(i64::from))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let domain: String = sqlx::Row::try_get(&row, "domain")?;
        sqlx::query(
            "INSERT INTO domain_turns (domain, last_started_at) VALUES ($1, $2)
             ON CONFLICT (domain) DO UPDATE SET last_started_at = excluded.last_started_at",
        )
        .bind(&domain)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // The count includes this claim: the runs before it are one fewer.
        let unclean_runs = unclean_runs_from_row(&row)?.saturating_sub(1);
        Ok(Some(Claim { job: self.with_parts(&row).await?, unclean_runs }))
    }

    async fn queued_count(&self, domain: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'CREATED' AND domain = $1")
            .bind(domain)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn lease_owners(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT lease_owner FROM jobs
             WHERE status = 'RUNNING' AND lease_owner IS NOT NULL AND substr(lease_owner, 1, length($1)) = $1
             UNION
             SELECT email_owner FROM jobs
             WHERE email_due IS NOT NULL AND email_owner IS NOT NULL AND substr(email_owner, 1, length($1)) = $1",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn expire_leases(&self, owners: &[String]) -> Result<u64, StoreError> {
        let mut freed = 0;
        for owner in owners {
            // 0: before any clock, so expired for every claim from now on.
            freed += sqlx::query("UPDATE jobs SET lease_until = 0 WHERE status = 'RUNNING' AND lease_owner = $1")
                .bind(owner)
                .execute(&self.pool)
                .await?
                .rows_affected();
            // The emails it was to send are due now too.
            sqlx::query("UPDATE jobs SET email_until = 0 WHERE email_due IS NOT NULL AND email_owner = $1")
                .bind(owner)
                .execute(&self.pool)
                .await?;
        }
        Ok(freed)
    }

    async fn heartbeat(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
        progress: &Progress,
    ) -> Result<Lease, StoreError> {
        let id_s = id.to_string();
        let mut tx = self.pool.begin().await?;
        if save_progress(&mut tx, &id_s, worker, progress).await? == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        let now = Self::lease_clock(&mut *tx).await?;
        let requested: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 RETURNING requested",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(&id_s)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match requested.as_deref().and_then(Command::parse) {
            Some(command) => Lease::Requested(command),
            None => Lease::Held,
        })
    }

    async fn checkpoint(
        &self,
        id: Uuid,
        worker: &str,
        part: &PartRecord,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let id_s = id.to_string();
        let mut tx = self.pool.begin().await?;
        if save_progress(&mut tx, &id_s, worker, progress).await? == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        sqlx::query(
            "INSERT INTO parts (job_id, idx, key, url, bytes, rows, rows_before, completed_at, resume_from, resume_skip, sha256, resume_slice_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id_s)
        .bind(i64::from(part.index))
        .bind(&part.key)
        .bind(&part.url)
        .bind(part.bytes as i64)
        .bind(part.rows as i64)
        .bind(part.rows_before as i64)
        .bind(part.completed_at_ms)
        .bind(part.resume.from_ms)
        .bind(part.resume.skip as i64)
        .bind(&part.sha256)
        .bind(part.resume.slice_ms)
        .execute(&mut *tx)
        .await?;
        // Progress: the crashes before it do not count against the job any more, so that a
        // long export on a machine that keeps dying still gets to its end.
        sqlx::query("UPDATE jobs SET unclean_runs = 0 WHERE id = $1").bind(&id_s).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_manifest(&self, id: Uuid, worker: &str, url: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE jobs SET manifest_url = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(url)
            .bind(id.to_string())
            .bind(worker)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        Ok(())
    }

    async fn finish(
        &self,
        id: Uuid,
        worker: &str,
        status: JobStatus,
        progress: &Progress,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let id_s = id.to_string();
        let mut tx = self.pool.begin().await?;
        if save_progress(&mut tx, &id_s, worker, progress).await? == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        let now = now_ms();
        let email_until = Self::lease_clock(&mut *tx).await? + EMAIL_HOLD.as_millis() as i64;
        // A removal asked for while the job ran wins over however its run ended: the caller
        // was told the job is gone (an async export's file must not come back to life). The
        // email about the ending is due in the same statement, held by this worker.
        sqlx::query(
            "UPDATE jobs SET status = CASE WHEN requested = 'REMOVE' THEN 'REMOVED' ELSE $1 END,
                    finished_at = CASE WHEN requested = 'REMOVE' THEN $3 ELSE $2 END,
                    updated_at = $3, lease_owner = NULL, lease_until = NULL,
                    requested = NULL, unclean_runs = 0,
                    sealed_secrets = CASE WHEN $1 = 'REMOVED' OR requested = 'REMOVE' THEN NULL ELSE sealed_secrets END,
                    email_due = CASE WHEN requested = 'REMOVE' THEN NULL ELSE CAST($5 AS TEXT) END,
                    email_owner = $6, email_until = $7
             WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(status.is_final().then_some(now))
        .bind(now)
        .bind(&id_s)
        .bind(ending_to_tell(status))
        .bind(worker)
        .bind(email_until)
        .execute(&mut *tx)
        .await?;
        if let Some(message) = error {
            sqlx::query(APPEND_ERROR).bind(message).bind(now).bind(&id_s).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_error(&self, id: Uuid, message: &str) -> Result<(), StoreError> {
        sqlx::query(APPEND_ERROR).bind(message).bind(now_ms()).bind(id.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn release(&self, id: Uuid, worker: &str, progress: &Progress) -> Result<(), StoreError> {
        let id_s = id.to_string();
        let mut tx = self.pool.begin().await?;
        if save_progress(&mut tx, &id_s, worker, progress).await? == 0 {
            return Err(StoreError::LeaseLost(id));
        }
        let email_until = Self::lease_clock(&mut *tx).await? + EMAIL_HOLD.as_millis() as i64;
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, requested = NULL, updated_at = $1, unclean_runs = 0,
                    status = CASE requested WHEN 'STOP' THEN 'STOPPED' WHEN 'REMOVE' THEN 'REMOVED' ELSE 'CREATED' END,
                    sealed_secrets = CASE requested WHEN 'REMOVE' THEN NULL ELSE sealed_secrets END,
                    email_due = CASE requested WHEN 'STOP' THEN 'STOPPED' ELSE email_due END,
                    email_owner = CASE requested WHEN 'STOP' THEN $3 ELSE email_owner END,
                    email_until = CASE requested WHEN 'STOP' THEN $4 ELSE email_until END
             WHERE id = $2",
        )
        .bind(now_ms())
        .bind(&id_s)
        .bind(worker)
        .bind(email_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn command(
        &self,
        domain: Option<&str>,
        id: Uuid,
        command: Command,
    ) -> Result<Option<Outcome>, StoreError> {
        let id_s = id.to_string();
        // Read, decide with the pure lifecycle, then write only if the job still stands where
        // it was read (compare-and-set); a race with a worker is retried from the read.
        for _ in 0..5 {
            let now = now_ms();
            let row: Option<(String, Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT status, requested, lease_owner, lease_until FROM jobs
                 WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR domain = $2)",
            )
            .bind(&id_s)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
            let Some((status_s, requested, owner, lease_until)) = row else {
                return Ok(None);
            };
            let status = JobStatus::parse(&status_s)
                .ok_or_else(|| corrupt(&id_s, format!("status {status_s}")))?;
            let pending = requested.as_deref().and_then(Command::parse);
            // A RUNNING job whose lease ran out has no worker to tell (it died, maybe at every
            // run of this job): the command applies at once, as for a job nobody runs.
            let nobody_runs = status == JobStatus::Running && lease_until.is_none_or(|until| until < now);
            let (new_status, note) = match plan(command, status, pending) {
                Err(why) => return Ok(Some(Outcome::Refused(why))),
                Ok(Effect::Become(new_status)) => (new_status, None),
                Ok(Effect::TellWorker) if nobody_runs => match command {
                    Command::Stop => (JobStatus::Stopped, None),
                    _ => (JobStatus::Removed, None),
                },
                Ok(Effect::TellWorker) => (status, Some(command.as_str())),
            };
            let done = sqlx::query(
                "UPDATE jobs SET status = $1, requested = $2, updated_at = $3,
                        sealed_secrets = CASE WHEN $1 = 'REMOVED' THEN NULL ELSE sealed_secrets END,
                        finished_at = CASE WHEN $1 = 'REMOVED' THEN COALESCE(finished_at, $3) ELSE finished_at END,
                        lease_owner = CASE WHEN $1 = 'RUNNING' THEN lease_owner END,
                        lease_until = CASE WHEN $1 = 'RUNNING' THEN lease_until END,
                        email_due = CASE WHEN $1 = 'STOPPED' THEN 'STOPPED' ELSE email_due END,
                        email_owner = CASE WHEN $1 = 'STOPPED' THEN NULL ELSE email_owner END,
                        email_until = CASE WHEN $1 = 'STOPPED' THEN $9 ELSE email_until END
                 WHERE id = $4 AND status = $5 AND requested IS NOT DISTINCT FROM $6
                   AND lease_owner IS NOT DISTINCT FROM $7 AND lease_until IS NOT DISTINCT FROM $8",
            )
            .bind(new_status.as_str())
            .bind(note)
            .bind(now)
            .bind(&id_s)
            .bind(&status_s)
            .bind(&requested)
            .bind(&owner)
            .bind(lease_until)
            // Against the clock the claims of overdue emails read.
            .bind(Self::lease_clock(&self.pool).await? + EMAIL_HOLD.as_millis() as i64)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(Some(Outcome::Applied(new_status)));
            }
        }
        Ok(Some(Outcome::Refused(
            "the job changed while the command was applied; try again".into(),
        )))
    }

    async fn count_by_status(&self) -> Result<Vec<(JobStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((JobStatus::parse(&s)?, n as u64)))
            .collect())
    }

    async fn holds(&self, id: Uuid, worker: &str) -> Result<bool, StoreError> {
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'RUNNING'")
            .bind(id.to_string())
            .bind(worker)
            .fetch_one(&self.pool)
            .await?;
        Ok(held > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
    };
}

pub(super) use sql_job_store;
