-- Queries registered with `POST /v1/queries`, to be exported later
-- (`POST /v1/queries/{id}/export/async`); each export is a job of destination type "download".
CREATE TABLE registered_queries (
    id         TEXT PRIMARY KEY NOT NULL,
    domain     TEXT NOT NULL,
    query      TEXT NOT NULL,
    from_ms    BIGINT,
    to_ms      BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX registered_queries_domain ON registered_queries (domain, created_at);
