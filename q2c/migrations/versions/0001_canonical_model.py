"""Canonical model: telemetry, transactions, exceptions, dead letters, replays, rollups, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Every table that a distributed deployment (Citus) would shard carries `correlation_id` in
its primary key, so keys and joins stay co-located. Spans and log records are partitioned by
day; `q2c_ensure_partition` and `q2c_maintain_partitions` create and drop the partitions.
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = """
CREATE TABLE users (
    username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    display_name  text NOT NULL DEFAULT '',
    email         text,
    role          text NOT NULL CHECK (role IN ('viewer', 'finance_ops', 'oncall', 'admin')),
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Resource attributes repeat on every span of a service; they are stored once, by hash.
CREATE TABLE resources (
    resource_hash bytea PRIMARY KEY,
    service_name  text NOT NULL DEFAULT '',
    attributes    jsonb NOT NULL DEFAULT '{}',
    first_seen    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE spans (
    correlation_id text NOT NULL,
    trace_id       bytea NOT NULL CHECK (length(trace_id) = 16),
    span_id        bytea NOT NULL CHECK (length(span_id) = 8),
    start_time     timestamptz NOT NULL,
    end_time       timestamptz NOT NULL,
    parent_span_id bytea,
    name           text NOT NULL,
    kind           smallint NOT NULL DEFAULT 0,
    status_code    smallint NOT NULL DEFAULT 0,
    status_message text,
    service_name   text NOT NULL DEFAULT '',
    resource_hash  bytea,
    process        text,
    stage          text,
    system         text,
    attributes     jsonb NOT NULL DEFAULT '{}',
    events         jsonb,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (correlation_id, trace_id, span_id, start_time)
) PARTITION BY RANGE (start_time);
CREATE INDEX spans_trace_idx ON spans (trace_id);

CREATE TABLE log_records (
    correlation_id  text NOT NULL,
    record_hash     bytea NOT NULL,
    time            timestamptz NOT NULL,
    observed_time   timestamptz,
    trace_id        bytea,
    span_id         bytea,
    severity_number smallint NOT NULL DEFAULT 0,
    severity_text   text,
    body            jsonb,
    attributes      jsonb NOT NULL DEFAULT '{}',
    service_name    text NOT NULL DEFAULT '',
    resource_hash   bytea,
    source          text NOT NULL DEFAULT 'otlp' CHECK (source IN ('otlp', 'integration_log')),
    process         text,
    stage           text,
    system          text,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (correlation_id, record_hash, time)
) PARTITION BY RANGE (time);
CREATE INDEX log_records_trace_idx ON log_records (trace_id) WHERE trace_id IS NOT NULL;

CREATE TABLE transactions (
    correlation_id   text PRIMARY KEY,
    process          text,
    current_stage    text,
    stage_index      smallint,
    status           text NOT NULL DEFAULT 'in_progress'
                     CHECK (status IN ('in_progress', 'completed', 'failed', 'stalled')),
    started_at       timestamptz,
    completed_at     timestamptz,
    last_event_at    timestamptz,
    customer_id      text,
    order_id         text,
    invoice_id       text,
    payment_id       text,
    amount           numeric(20, 4),
    currency         text,
    legal_entity     text,
    contract_version text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_customer_idx ON transactions (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX transactions_order_idx ON transactions (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX transactions_invoice_idx ON transactions (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX transactions_payment_idx ON transactions (payment_id) WHERE payment_id IS NOT NULL;

-- One row per (transaction, stage, reporting system): when each system saw the stage, and
-- the business attributes it reported (the input of latencies, event lag and reconciliation).
-- reached_at is the first success (or, failing any, the first failure); last_ok_at the
-- latest success, which auto-resolves failures seen before it.
CREATE TABLE stage_events (
    correlation_id text NOT NULL,
    stage          text NOT NULL,
    system         text NOT NULL DEFAULT '',
    process        text NOT NULL,
    reached_at     timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    last_ok_at     timestamptz,
    business       jsonb NOT NULL DEFAULT '{}',
    trace_id       bytea,
    span_id        bytea,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (correlation_id, stage, system)
);
-- Evaluators read recent changes by ingest time; BRIN costs next to nothing to maintain.
CREATE INDEX stage_events_ingested_idx ON stage_events USING brin (ingested_at);

CREATE TABLE exceptions (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    correlation_id   text NOT NULL,
    process          text,
    stage            text NOT NULL,
    system           text NOT NULL DEFAULT '',
    kind             text NOT NULL DEFAULT 'error'
                     CHECK (kind IN ('error', 'stalled', 'reconciliation', 'dead_letter')),
    fingerprint      text NOT NULL,
    error_type       text,
    message          text,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'assigned', 'in_progress', 'replayed',
                                       'resolved', 'auto_resolved', 'ignored')),
    impact           text NOT NULL DEFAULT 'medium'
                     CHECK (impact IN ('critical', 'high', 'medium', 'low')),
    owner            text REFERENCES users (username) ON UPDATE CASCADE,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    occurrences      integer NOT NULL DEFAULT 1 CHECK (occurrences > 0),
    due_at           timestamptz,
    resolved_at      timestamptz,
    resolution       text,
    customer_id      text,
    order_id         text,
    invoice_id       text,
    amount           numeric(20, 4),
    currency         text,
    legal_entity     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (correlation_id, id),
    CHECK (last_seen >= first_seen)
);
-- At most one unresolved exception per transaction, stage and kind of failure.
CREATE UNIQUE INDEX exceptions_one_open_idx ON exceptions (correlation_id, stage, fingerprint)
    WHERE status NOT IN ('resolved', 'auto_resolved', 'ignored');
CREATE INDEX exceptions_id_idx ON exceptions (id);
CREATE INDEX exceptions_triage_idx ON exceptions (status, impact, last_seen);
CREATE INDEX exceptions_owner_idx ON exceptions (owner) WHERE owner IS NOT NULL;

-- The audit trail: append-only, enforced below by triggers.
CREATE TABLE exception_events (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    correlation_id text NOT NULL,
    exception_id   bigint NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,
    action         text NOT NULL,
    before         jsonb,
    after          jsonb,
    comment        text,
    PRIMARY KEY (correlation_id, id),
    FOREIGN KEY (correlation_id, exception_id) REFERENCES exceptions (correlation_id, id)
);
CREATE INDEX exception_events_exception_idx ON exception_events (exception_id, at);

CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    correlation_id  text NOT NULL,
    dedup_key       bytea NOT NULL,
    idempotency_key text NOT NULL,
    process         text,
    stage           text,
    system          text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    target_url      text,
    method          text NOT NULL DEFAULT 'POST',
    headers         jsonb NOT NULL DEFAULT '{}',
    content_type    text,
    payload         text,
    error_type      text,
    error_message   text,
    exception_id    bigint,
    status          text NOT NULL DEFAULT 'dead'
                    CHECK (status IN ('dead', 'replay_pending', 'replayed', 'discarded')),
    PRIMARY KEY (correlation_id, id),
    UNIQUE (correlation_id, dedup_key)
);
CREATE INDEX dead_letters_id_idx ON dead_letters (id);
CREATE INDEX dead_letters_status_idx ON dead_letters (status, occurred_at);

CREATE TABLE replays (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    correlation_id   text NOT NULL,
    dead_letter_id   bigint NOT NULL,
    requested_by     text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed')),
    idempotency_key  text NOT NULL,
    payload_override text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    finished_at      timestamptz,
    response_code    integer,
    response_excerpt text,
    error            text,
    PRIMARY KEY (correlation_id, id),
    FOREIGN KEY (correlation_id, dead_letter_id) REFERENCES dead_letters (correlation_id, id)
);
-- A double click, or two engineers at once, yield one active replay per dead letter.
CREATE UNIQUE INDEX replays_one_active_idx ON replays (correlation_id, dead_letter_id)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX replays_due_idx ON replays (next_attempt_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX replays_id_idx ON replays (id);

-- Stage-to-stage latency per process and time bucket; dashboards read these, not spans.
-- `histogram` holds counts per fixed log-scale latency bucket, so rollups merge by addition.
CREATE TABLE rollups (
    process        text NOT NULL,
    from_stage     text NOT NULL,
    to_stage       text NOT NULL,
    bucket_start   timestamptz NOT NULL,
    bucket_seconds integer NOT NULL CHECK (bucket_seconds > 0),
    count          bigint NOT NULL DEFAULT 0,
    error_count    bigint NOT NULL DEFAULT 0,
    latency_sum_ms double precision NOT NULL DEFAULT 0,
    latency_max_ms double precision NOT NULL DEFAULT 0,
    histogram      bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (process, from_stage, to_stage, bucket_seconds, bucket_start)
);

-- What each scheduled job did, so that two schedulers never do the same window twice.
CREATE TABLE job_runs (
    job          text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    detail       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (job, window_start),
    CHECK (window_end > window_start)
);
"""

_FUNCTIONS = r"""
CREATE FUNCTION q2c_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER exception_events_append_only
    BEFORE UPDATE OR DELETE ON exception_events
    FOR EACH ROW EXECUTE FUNCTION q2c_refuse_change();
CREATE TRIGGER exception_events_no_truncate
    BEFORE TRUNCATE ON exception_events
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_refuse_change();

-- Create the daily partition of `parent` holding `day` (UTC) unless it exists.
CREATE FUNCTION q2c_ensure_partition(parent regclass, day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('%s_p%s', parent::text, to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
        name, parent,
        (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    RETURN name;
EXCEPTION WHEN duplicate_table THEN
    RETURN NULL;  -- another session created it first
END $$;

-- Create partitions for today .. today + days_ahead and drop those wholly older than
-- retention_days. Returns one row per partition created or dropped.
CREATE FUNCTION q2c_maintain_partitions(
    retention_days integer, days_ahead integer,
    today date DEFAULT (now() AT TIME ZONE 'UTC')::date)
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    part record;
    created text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['spans', 'log_records'] LOOP
        FOR offset_days IN 0 .. days_ahead LOOP
            created := q2c_ensure_partition(parent::regclass, today + offset_days);
            IF created IS NOT NULL THEN
                action := 'created'; partition_name := created; RETURN NEXT;
            END IF;
        END LOOP;
        FOR part IN
            SELECT c.relname
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = parent::regclass
              AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
              AND to_date(right(c.relname, 8), 'YYYYMMDD') < today - retention_days
            ORDER BY c.relname
        LOOP
            EXECUTE format('DROP TABLE %I', part.relname);
            action := 'dropped'; partition_name := part.relname; RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;
"""

_DROP = """
DROP FUNCTION IF EXISTS q2c_maintain_partitions(integer, integer, date);
DROP FUNCTION IF EXISTS q2c_ensure_partition(regclass, date);
DROP TABLE IF EXISTS job_runs, rollups, replays, dead_letters, exception_events, exceptions,
    stage_events, transactions, log_records, spans, resources, users CASCADE;
DROP FUNCTION IF EXISTS q2c_refuse_change();
"""


def upgrade() -> None:
    op.execute(_TABLES)
    op.execute(_FUNCTIONS)


def downgrade() -> None:
    op.execute(_DROP)
