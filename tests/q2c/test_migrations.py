"""Migrations take an empty database to head and back, and a second run changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
from alembic.script import ScriptDirectory

from q2c import migrate
from q2c.revisions import head_revision

CANONICAL_TABLES = {
    "rollup_progress",
    "reconciliations",
    "watermarks",
    "kpi_counts",
    "users",
    "resources",
    "spans",
    "log_records",
    "transactions",
    "stage_events",
    "exceptions",
    "exception_events",
    "exception_occurrences",
    "dead_letters",
    "replays",
    "rollups",
    "job_runs",
    "api_tokens",
    "console_sessions",
    "redrives",
    "saved_views",
    "alert_outbox",
    "alert_events",
    "slo_alert_states",
    "alert_groups",
    "alert_group_members",
    "alert_notifications",
    "alert_silences",
    "alert_escalations",
    "alert_digest_runs",
    "reconciliation_runs",
    "reconciliation_breaks",
    "reconciliation_accuracy",
    "reconciliation_acceptances",
    "audit_log",
    "q2c_settings",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ).fetchall()
    return {name for (name,) in rows}


def test_upgrade_from_empty_creates_the_canonical_model(empty_db: str) -> None:
    before, after = migrate.upgrade(empty_db)

    assert (before, after) == (None, head_revision())
    assert _tables(empty_db) == CANONICAL_TABLES | {"alembic_version"}


def test_second_upgrade_is_a_no_op(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    head = head_revision()

    assert migrate.upgrade(empty_db) == (head, head)


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(empty_db: str) -> None:
    migrate.upgrade(empty_db)

    assert migrate.downgrade(empty_db, "base") == (head_revision(), None)
    assert _tables(empty_db) == {"alembic_version"}
    with psycopg.connect(empty_db) as conn:
        functions = conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'q2c_%'")
        assert functions.fetchone() == (0,)

    migrate.upgrade(empty_db)
    assert _tables(empty_db) == CANONICAL_TABLES | {"alembic_version"}


def test_downgrading_the_packed_outbox_unpacks_what_it_holds(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses, "
            "owners, resolutions, facts) VALUES (ARRAY['exception.assigned'], ARRAY['INV-1'], "
            "ARRAY[7], ARRAY['high'], ARRAY['assigned'], ARRAY['ops'], ARRAY[NULL], "
            "ARRAY[NULL::jsonb])"
        )

    migrate.downgrade(empty_db, "0026")

    with psycopg.connect(empty_db) as conn:
        events = conn.execute(
            "SELECT type, correlation_id, exception_id, owner, facts FROM alert_events"
        ).fetchall()
    assert events == [("exception.assigned", "INV-1", 7, "ops", {})]
    assert "alert_outbox" not in _tables(empty_db)


def test_concurrent_migrations_apply_once(empty_db: str) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: migrate.upgrade(empty_db), range(3)))

    head = head_revision()
    assert sorted(results, key=str) == sorted([(None, head), (head, head), (head, head)], key=str)


def test_the_shipped_head_is_the_one_alembic_finds() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert head_revision() == script.get_current_head()


def test_failure_occurrences_are_backfilled_from_existing_exceptions(empty_db: str) -> None:
    migrate.upgrade(empty_db, "0003")
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO stage_events (correlation_id, stage, system, process, reached_at, "
            "status, last_ok_at) VALUES "
            "('C-1', 'invoice_recorded', 'erp', 'invoice_posting', '2026-01-01T10:00Z', 'ok',"
            " '2026-01-01T12:00Z'),"
            "('C-2', 'invoice_recorded', 'erp', 'invoice_posting', '2026-01-01T10:00Z',"
            " 'error', NULL)"
        )
        conn.execute(
            "INSERT INTO exceptions (correlation_id, stage, system, kind, fingerprint, "
            "error_type, message, first_seen, last_seen, occurrences, status) VALUES "
            "('C-2', 'invoice_recorded', 'erp', 'error', 'fp', 'E', 'first', "
            " '2026-01-01T10:00Z', '2026-01-01T11:00Z', 5, 'open'),"
            "('C-2', 'invoice_recorded', '', 'stalled', 'st', 'Stalled', 'late', "
            " '2026-01-01T10:00Z', '2026-01-01T10:00Z', 1, 'open')"
        )

    migrate.upgrade(empty_db)

    with psycopg.connect(empty_db) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        ok_times = conn.execute(
            "SELECT correlation_id, ok_times::text FROM stage_events ORDER BY 1"
        ).fetchall()
        occurrences = conn.execute(
            "SELECT kind, occurred_at::text, occurrences, message FROM exception_occurrences "
            "ORDER BY occurred_at"
        ).fetchall()
    assert ok_times == [
        ("C-1", '{"2026-01-01 10:00:00+00","2026-01-01 12:00:00+00"}'),
        ("C-2", "{}"),
    ]
    assert occurrences == [  # a stall is not a failure: it has none
        ("error", "2026-01-01 10:00:00+00", 1, "first"),
        ("error", "2026-01-01 11:00:00+00", 4, "first"),
    ]
