-- Jobs: the request (without secrets) as JSON, the sealed secrets, and where the job stands.
-- The same shape as the SQLite store's (times in epoch milliseconds), so that both run one
-- conformance suite.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    domain           TEXT NOT NULL,
    owner            TEXT NOT NULL,
    friendly_name    TEXT NOT NULL,
    status           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    sealed_secrets   BYTEA,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    events_generated BIGINT NOT NULL DEFAULT 0,
    events_sent      BIGINT NOT NULL DEFAULT 0,
    last_datetime    BIGINT,
    percent_complete BIGINT NOT NULL DEFAULT 0,
    errors           TEXT NOT NULL DEFAULT '[]',
    lease_owner      TEXT,
    lease_until      BIGINT,
    requested        TEXT
);
CREATE INDEX jobs_runnable ON jobs (status, lease_until, created_at);
CREATE INDEX jobs_domain ON jobs (domain, created_at);

-- One row per uploaded part: the checkpoint a resumed job continues from.
CREATE TABLE parts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx          BIGINT NOT NULL,
    key          TEXT NOT NULL,
    url          TEXT NOT NULL,
    bytes        BIGINT NOT NULL,
    rows         BIGINT NOT NULL,
    rows_before  BIGINT NOT NULL,
    completed_at BIGINT NOT NULL,
    -- Where a resumed run continues: the query window starting at resume_from (NULL: the
    -- job's own from), after resume_skip of its rows.
    resume_from  BIGINT,
    resume_skip  BIGINT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
