-- Signed submissions already accepted: the same one sent again, to any server sharing this
-- store, is refused. A row goes once its timestamp is past the clock-skew window, when the
-- request would be refused as stale anyway. (An HMAC output, not a secret.)
CREATE TABLE used_signatures (
    signature  TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_signatures_by_expiry ON used_signatures (expires_at);
