-- The privacy budget ledger of public reports released under differential privacy: one row per
-- run, charged to the definition's series in the same transaction as the run's
-- `report_generated` log entry. A run is refused when the series' charges would pass its
-- budget. Epsilon is kept in millionths (rounded up when charged), so sums are exact.
CREATE TABLE report_privacy_ledger (
    run_id           TEXT    PRIMARY KEY,
    series           TEXT    NOT NULL,
    report           TEXT    NOT NULL,
    definition_hash  TEXT    NOT NULL,
    epsilon_micros   BIGINT  NOT NULL CHECK (epsilon_micros > 0),
    period_from_us   BIGINT  NOT NULL,
    period_to_us     BIGINT  NOT NULL,
    charged_at_us    BIGINT  NOT NULL,
    charged_by_partner TEXT  NOT NULL,
    charged_by_user  TEXT    NOT NULL
);
CREATE INDEX report_privacy_ledger_series ON report_privacy_ledger (series);
