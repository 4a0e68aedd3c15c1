-- Emergency access (HIPAA 164.512(j)): one review per emergency window (per partner, user and
-- subject pseudonym). The window bounds how long one stated basis lasts; every disclosure in it
-- is a flagged disclosure-log entry, the first one named here.
CREATE TABLE emergency_reviews (
    id                   TEXT    PRIMARY KEY,
    opened_at_us         BIGINT  NOT NULL,
    window_until_us      BIGINT  NOT NULL,
    partner              TEXT    NOT NULL,
    user_id              TEXT    NOT NULL,
    subject              TEXT    NOT NULL,
    first_disclosure_seq BIGINT  NOT NULL,
    accesses             BIGINT  NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    outcome              TEXT    CHECK (outcome IN ('justified', 'not-justified')),
    note                 TEXT,
    reviewed_by_partner  TEXT,
    reviewed_by_user     TEXT,
    reviewed_at_us       BIGINT
);
CREATE INDEX emergency_reviews_window ON emergency_reviews (partner, user_id, subject, window_until_us);
CREATE INDEX emergency_reviews_state ON emergency_reviews (state, opened_at_us);
