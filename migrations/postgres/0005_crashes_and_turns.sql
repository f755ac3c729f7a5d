-- Runs of a job that ended without a clean end (the process died, the run panicked) since the
-- job last made progress: counted by each claim, reset by a checkpoint, a finish or a
-- hand-back. A job that reaches worker.max_crashed_runs fails instead of running again.
ALTER TABLE jobs ADD COLUMN unclean_runs BIGINT NOT NULL DEFAULT 0;

-- When each domain last began a job: claims go to the domain that waited longest, so
-- that one tenant's queue cannot keep another's job waiting.
CREATE TABLE domain_turns (
    domain          TEXT PRIMARY KEY NOT NULL,
    last_started_at BIGINT NOT NULL
);
-- The claim counts each domain's running jobs and the leases of this host's workers.
CREATE INDEX jobs_running_by_domain ON jobs (status, domain, lease_until);
CREATE INDEX jobs_by_lease_owner ON jobs (status, lease_owner);
