-- Jobs: the request (without secrets) as JSON, the sealed secrets, and where the job stands.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    domain           TEXT NOT NULL,
    owner            TEXT NOT NULL,
    friendly_name    TEXT NOT NULL,
    status           TEXT NOT NULL,
    spec             TEXT NOT NULL,
    sealed_secrets   BLOB,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    events_generated INTEGER NOT NULL DEFAULT 0,
    events_sent      INTEGER NOT NULL DEFAULT 0,
    last_datetime    INTEGER,
    percent_complete INTEGER NOT NULL DEFAULT 0,
    errors           TEXT NOT NULL DEFAULT '[]',
    lease_owner      TEXT,
    lease_until      INTEGER,
    requested        TEXT
);
CREATE INDEX jobs_runnable ON jobs (status, lease_until, created_at);
CREATE INDEX jobs_domain ON jobs (domain, created_at);

-- One row per uploaded part: the checkpoint a resumed job continues from.
CREATE TABLE parts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    key          TEXT NOT NULL,
    url          TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    rows         INTEGER NOT NULL,
    rows_before  INTEGER NOT NULL,
    completed_at INTEGER NOT NULL,
    -- Where a resumed run continues: the query window starting at resume_from (NULL: the
    -- job's own from), after resume_skip of its rows.
    resume_from  INTEGER,
    resume_skip  INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);
