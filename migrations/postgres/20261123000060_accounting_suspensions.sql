-- HIPAA 164.528(a)(2): a law-enforcement or health-oversight agency's written statement that an
-- accounting would impede its activities suspends, for the stated time, the individual's right
-- to an accounting of disclosures to that agency. Subject NULL: every subject.
CREATE TABLE accounting_suspensions (
    id                   TEXT    PRIMARY KEY,
    recipient            TEXT    NOT NULL,
    subject              BYTEA,
    statement            TEXT    NOT NULL,
    ends_at_us           BIGINT  NOT NULL,
    recorded_by_partner  TEXT    NOT NULL,
    recorded_by_user     TEXT    NOT NULL,
    recorded_at_us       BIGINT  NOT NULL
);
CREATE INDEX accounting_suspensions_end ON accounting_suspensions (ends_at_us);
