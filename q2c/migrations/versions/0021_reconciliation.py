"""Reconciliation against the systems of record: runs, their breaks, accuracy per source
pair, and the differences finance ops accepted.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02

A run is recorded as `running` before its sources are read (committed, so it is seen while
it works), then `succeeded` with its figures and breaks, or `failed` with the reason and
where (`error_at`: a file and line, a page, a row) and no break. A break keeps the records
of every source side by side (source → its records), for the console, and the exception it
opened or kept. An accepted difference (reconciliation, key, break type and a hash of the
records it was accepted for) is not raised again while the records are unchanged.
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE reconciliation_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reconciliation text NOT NULL,  -- its name in reconcile.yaml
    object         text NOT NULL,
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    source_rows    jsonb NOT NULL DEFAULT '{}',  -- source → records read
    checked        integer,
    matched        integer,
    pending        integer,
    breaks         jsonb NOT NULL DEFAULT '{}',  -- break type → count
    error          text,
    error_at       text,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX reconciliation_runs_latest_idx ON reconciliation_runs (reconciliation, started_at);

CREATE TABLE reconciliation_acceptances (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reconciliation text NOT NULL,
    key            text NOT NULL,
    break_type     text NOT NULL,
    records_hash   text NOT NULL,  -- of the records accepted, without where they came from
    reason         text NOT NULL CHECK (reason <> ''),
    accepted_by    text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    accepted_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (reconciliation, key, break_type, records_hash)
);

CREATE TABLE reconciliation_breaks (
    run_id         bigint NOT NULL REFERENCES reconciliation_runs (id),
    key            text NOT NULL,
    break_type     text NOT NULL
                   CHECK (break_type ~ '^(missing_in|duplicate_in|mismatch):.+$'),
    records        jsonb NOT NULL,  -- source → [record, …], each with `_at`
    records_hash   text NOT NULL,
    correlation_id text NOT NULL,   -- of the exception: the transaction's, or its own
    exception_id   bigint,          -- opened or kept; NULL when accepted
    accepted_id    bigint REFERENCES reconciliation_acceptances (id),
    PRIMARY KEY (run_id, key, break_type)
);
CREATE INDEX reconciliation_breaks_exception_idx ON reconciliation_breaks (exception_id)
    WHERE exception_id IS NOT NULL;

-- Per run and pair of sources (a < b by name): keys checked in either, matched in both.
CREATE TABLE reconciliation_accuracy (
    run_id   bigint NOT NULL REFERENCES reconciliation_runs (id),
    source_a text NOT NULL,
    source_b text NOT NULL,
    checked  integer NOT NULL,
    matched  integer NOT NULL,
    PRIMARY KEY (run_id, source_a, source_b),
    CHECK (source_a < source_b AND matched <= checked)
);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE reconciliation_accuracy, reconciliation_breaks, reconciliation_acceptances,
    reconciliation_runs;
"""
    )
