"""SLA evaluation: exactly-once rollup progress, reconciliation results, watermarks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Ingest times become clock_timestamp() so that an evaluator can tell which rows are safely
committed: every row stamped before the oldest running writer's start is visible.
Latency histograms become sparse jsonb maps {bucket index: count} over fixed log-scale
buckets (ratio 1.02), merged by adding counts.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UP = """
ALTER TABLE stage_events ALTER COLUMN ingested_at SET DEFAULT clock_timestamp();
ALTER TABLE exceptions ALTER COLUMN created_at SET DEFAULT clock_timestamp();
-- Closed exceptions are counted by resolved_at, with the same committed-before guarantee.
CREATE INDEX exceptions_resolved_brin_idx ON exceptions USING brin (resolved_at);

ALTER TABLE rollups ALTER COLUMN histogram DROP DEFAULT;
ALTER TABLE rollups ALTER COLUMN histogram TYPE jsonb USING '{}'::jsonb;
ALTER TABLE rollups ALTER COLUMN histogram SET DEFAULT '{}';

-- Which (from stage > to stage) pairs of a transaction are already in the rollups, so a
-- pair is counted once however often its transaction is re-evaluated.
CREATE TABLE rollup_progress (
    correlation_id text PRIMARY KEY,
    counted        text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE reconciliations (
    correlation_id text PRIMARY KEY,
    process        text NOT NULL,
    observed_at    timestamptz NOT NULL,
    checked_at     timestamptz NOT NULL DEFAULT now(),
    matched        boolean NOT NULL,
    compared       jsonb NOT NULL DEFAULT '{}',
    mismatches     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX reconciliations_window_idx ON reconciliations (process, observed_at);

-- Counters per process and time bucket that KPIs read instead of scanning their sources:
-- reconciliation_checked / _mismatched, exceptions_<status> when closed.
CREATE TABLE kpi_counts (
    name           text NOT NULL,
    process        text NOT NULL,
    bucket_seconds integer NOT NULL,
    bucket_start   timestamptz NOT NULL,
    value          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, process, bucket_seconds, bucket_start)
);

-- Dashboards read time ranges of one resolution across all processes and stages.
CREATE INDEX rollups_window_idx ON rollups (bucket_seconds, bucket_start);
CREATE INDEX kpi_counts_window_idx ON kpi_counts (bucket_seconds, bucket_start);

CREATE TABLE watermarks (
    name       text PRIMARY KEY,
    value      timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX exceptions_kind_window_idx ON exceptions (kind, first_seen);
CREATE INDEX exceptions_resolved_idx ON exceptions (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX exceptions_created_idx ON exceptions USING brin (created_at);
CREATE INDEX exceptions_unclassified_idx ON exceptions (id) WHERE due_at IS NULL;
CREATE INDEX transactions_waiting_idx ON transactions (last_event_at)
    WHERE status = 'in_progress';
CREATE INDEX replays_requested_idx ON replays (requested_at);

-- Fixed log-scale latency buckets: 0 holds [0, 1 ms), i >= 1 holds [1.02^(i-1), 1.02^i) ms.
CREATE FUNCTION q2c_latency_bucket(latency_ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN latency_ms IS NULL THEN NULL
                WHEN latency_ms < 1 THEN 0
                ELSE floor(ln(latency_ms) / ln(1.02))::integer + 1 END
$$;

-- The sum of two sparse histograms.
CREATE FUNCTION q2c_histogram_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
    FROM (SELECT k, sum(v::bigint) AS n
          FROM (SELECT * FROM jsonb_each_text(coalesce(a, '{}'))
                UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'))) AS both_(k, v)
          GROUP BY k) AS summed
$$;
"""

_DOWN = """
DROP FUNCTION IF EXISTS q2c_histogram_add(jsonb, jsonb);
DROP FUNCTION IF EXISTS q2c_latency_bucket(double precision);
DROP INDEX IF EXISTS exceptions_resolved_brin_idx, replays_requested_idx, transactions_waiting_idx,
    exceptions_unclassified_idx, exceptions_created_idx, exceptions_resolved_idx,
    exceptions_kind_window_idx;
DROP INDEX IF EXISTS rollups_window_idx;
DROP TABLE IF EXISTS watermarks, kpi_counts, reconciliations, rollup_progress;
ALTER TABLE rollups ALTER COLUMN histogram DROP DEFAULT;
ALTER TABLE rollups ALTER COLUMN histogram TYPE bigint[] USING '{}'::bigint[];
ALTER TABLE rollups ALTER COLUMN histogram SET DEFAULT '{}';
ALTER TABLE exceptions ALTER COLUMN created_at SET DEFAULT now();
ALTER TABLE stage_events ALTER COLUMN ingested_at SET DEFAULT now();
"""


def upgrade() -> None:
    op.execute(_UP)


def downgrade() -> None:
    op.execute(_DOWN)
