-- API credentials operators create with `forwarder auth`: bearer tokens (only a SHA-256 of
-- the token is kept) and Devo API keys (the key is public; its secret is sealed with the
-- server key, since HMAC verification needs it back).
CREATE TABLE credentials (
    id         TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    domain     TEXT NOT NULL,
    lookup     TEXT NOT NULL UNIQUE,
    sealed     BYTEA,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
