-- Each part's SHA-256 (hex), for the manifest a job may write after its last part; empty for
-- parts written before it was kept.
ALTER TABLE parts ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';

-- The URL of the manifest a job wrote after its last part (`manifest: true`).
ALTER TABLE jobs ADD COLUMN manifest_url TEXT;
