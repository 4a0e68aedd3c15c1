-- Gateway metadata (key fingerprints, schema facts) and security events.
CREATE TABLE gateway_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE security_events (
    id             BIGSERIAL PRIMARY KEY,
    occurred_at_us BIGINT NOT NULL,
    kind           TEXT   NOT NULL,
    code           TEXT   NOT NULL,
    peer           TEXT,
    partner        TEXT,
    cert_sha256    TEXT,
    detail         TEXT   NOT NULL
);
CREATE INDEX security_events_time ON security_events (occurred_at_us);
