-- A job's destination type as a column of its own, so that listing by type
-- (`/search/jobs?type=`) filters in the query rather than among the newest jobs read.
ALTER TABLE jobs ADD COLUMN destination_type TEXT NOT NULL DEFAULT 's3';
UPDATE jobs SET destination_type = COALESCE(spec::jsonb -> 'destination' ->> 'type', 's3');
CREATE INDEX jobs_domain_type ON jobs (domain, destination_type, created_at);
