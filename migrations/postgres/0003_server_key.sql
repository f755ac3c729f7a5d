-- The fingerprint (not the key) of the server key that seals the jobs' secrets: every process
-- sharing this store must seal with the same key, and is refused at start if it does not.
CREATE TABLE server_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL
);
