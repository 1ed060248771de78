"""Least privilege: what the runtime role may do, granted by `q2c migrate`, and a warning
for a process that connects with more.

Migrations run as the schema's owner. Every other process (collector, scheduler, console,
CLI) connects as the runtime role, which may read and write what the product writes and
nothing else: on the audit trail only SELECT and INSERT, and no table of its own, so it can
neither alter nor disable the triggers that keep the trail append-only (only an owner may).
It creates and drops day partitions through two SECURITY DEFINER functions of the owner,
within the retention and days ahead that `q2c migrate` records (q2c_settings).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

_APPEND = "SELECT, INSERT"
_WRITE = "SELECT, INSERT, UPDATE"
_OWN = "SELECT, INSERT, UPDATE, DELETE"  # what people keep for themselves and throw away
# Table → what the runtime role may do with it. Every table of the schema is named here
# (a test checks it), so a new table gets no privilege by accident.
RUNTIME_GRANTS: dict[str, str] = {
    "alembic_version": "SELECT",
    "q2c_settings": "SELECT",  # retention and days ahead, which only the owner sets
    "resources": _APPEND,
    "spans": _APPEND,
    "log_records": _APPEND,
    "exception_events": _APPEND,  # the audit trail: never changed once written
    "audit_log": _APPEND,
    "users": _WRITE,
    "api_tokens": _WRITE,
    "console_sessions": _WRITE,
    "transactions": _WRITE,
    "stage_events": _WRITE,
    "exceptions": _WRITE,
    "exception_occurrences": _WRITE,
    "dead_letters": _WRITE,
    "replays": _WRITE,
    "redrives": _WRITE,
    "saved_views": _OWN,
    "rollups": _WRITE,
    "rollup_progress": _WRITE,
    "job_runs": _WRITE,
    "reconciliations": _WRITE,
    "kpi_counts": _WRITE,
    "watermarks": _WRITE,
    # An exception's events, a statement's in a row, written by triggers as the runtime role
    # and unpacked into alert_events with the owner's rights: never deleted by the runtime.
    "alert_outbox": _APPEND,
    "alert_events": _WRITE,  # written by triggers as the runtime role, routed by the scheduler
    "slo_alert_states": _WRITE,
    "alert_groups": _WRITE,  # alert routing: the router files events into groups
    "alert_group_members": _APPEND,
    "alert_notifications": _WRITE,  # the notification log, claimed by the deliverers
    "alert_silences": _WRITE,  # expired early, never deleted
    "alert_escalations": _APPEND,  # a step taken is never undone
    "alert_digest_runs": _APPEND,
    "reconciliation_runs": _WRITE,  # running, then succeeded or failed
    "reconciliation_breaks": _APPEND,
    "reconciliation_accuracy": _APPEND,
    "reconciliation_acceptances": _APPEND,  # an acceptance is never changed once given
}
# Functions the runtime role runs with the owner's rights, within their limits: the writer
# creates the day partitions rows land in, the scheduler maintains them, unpacks the alerting
# outbox and prunes alerting and reconciliation.
DEFINER_FUNCTIONS = (
    "q2c_ensure_partition(regclass, date)",
    "q2c_maintain_partitions()",
    "q2c_unpack_alert_outbox(integer, bigint)",  # the outbox's rows into alert_events
    "q2c_prune_alerts(interval, integer)",  # alerting rows past Q2C_ALERTS_RETENTION_DAYS
    # reconciliation runs and their breaks past Q2C_RECONCILE_RETENTION_DAYS
    "q2c_prune_reconciliation_runs(interval, integer)",
)


def ensure_login_role(conn: psycopg.Connection, role: str) -> bool:
    """Create the login role `role` unless it exists; whether it exists afterwards (False
    when this connection may not create roles)."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return True
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    except psycopg.errors.DuplicateObject:  # created meanwhile by another migrate
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def grant_runtime_role(url: str, role: str) -> list[str]:
    """Give `role` exactly RUNTIME_GRANTS on the tables that exist (revoking anything
    else), and the partition functions, as the owner at `url`. Returns what could not be
    done, in words, for the operator; an empty list when everything was granted."""
    problems: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        if not ensure_login_role(conn, role):
            return [
                f"the runtime role {role} does not exist and this user may not create it: "
                f"create it (CREATE ROLE {role} LOGIN PASSWORD '…') and run q2c migrate again"
            ]
        owner = conn.execute("SELECT current_user").fetchone()
        if owner and owner[0] == role:
            return [f"the runtime role {role} is the schema's owner: give it a role of its own"]
        identifier = sql.Identifier(role)
        with conn.transaction():
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(_current_schema(conn)), identifier
                )
            )
            for table in _tables(conn):
                name = sql.Identifier(table)
                conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(name, identifier))
                privileges = RUNTIME_GRANTS.get(table)
                if privileges is None:
                    problems.append(f"table {table} has no runtime privileges declared")
                    continue
                conn.execute(
                    sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privileges), name, identifier)
                )
                for sequence in _identity_sequences(conn, table):  # for INSERT's next ID
                    conn.execute(
                        sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sequence, identifier)
                    )
                    if "INSERT" in privileges:
                        conn.execute(
                            sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sequence, identifier)
                        )
            for function in DEFINER_FUNCTIONS:
                conn.execute(
                    sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                        sql.SQL(function), identifier
                    )
                )
    return problems


def _owner_powers(url: str) -> tuple[str, bool, bool] | None:
    """(current user, superuser?, may act as the schema's owner?) of a connection to `url`."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_user, r.rolsuper, "
            "coalesce(pg_has_role(current_user, t.tableowner, 'MEMBER'), false) "
            "FROM pg_roles r LEFT JOIN pg_tables t ON t.tablename = 'exception_events' "
            "AND t.schemaname = current_schema() WHERE r.rolname = current_user"
        ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]), bool(row[2]))


def may_act_as_owner(url: str) -> bool:
    """Whether the connection at `url` is a superuser or may act as the schema's owner."""
    powers = _owner_powers(url)
    return powers is not None and (powers[1] or powers[2])


def privilege_warning(url: str) -> str | None:
    """A warning when the connection at `url` is a superuser or may act as the schema's
    owner (and so could switch off the audit trail's protection); None when it may not."""
    powers = _owner_powers(url)
    if powers is None or not (powers[1] or powers[2]):
        return None
    user, superuser, _ = powers
    what = "a superuser" if superuser else "the owner of the schema"
    return (
        f"connected to the database as {user}, {what}: this process could alter or switch "
        "off the audit trail. Connect with DATABASE_URL as the runtime role (Q2C_APP_ROLE, "
        "which q2c migrate grants) and keep the owner's URL in Q2C_MIGRATION_DATABASE_URL."
    )


_warned: set[str] = set()


def warn_if_privileged(url: str) -> None:
    """Log `privilege_warning` once per process, if there is one."""
    if url in _warned:
        return
    _warned.add(url)
    try:
        warning = privilege_warning(url)
    except psycopg.Error:
        return  # unreachable now: the process reports that by itself
    if warning:
        log.warning("%s", warning)


def _current_schema(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None and row[0], "the search_path names no schema"
    return str(row[0])


def _identity_sequences(conn: psycopg.Connection, table: str) -> list[sql.Identifier]:
    """The sequences behind `table`'s identity (and serial) columns."""
    rows = conn.execute(
        "SELECT s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
        "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE s.relkind = 'S' AND t.relname = %s AND n.nspname = current_schema()",
        (table,),
    ).fetchall()
    return [sql.Identifier(name) for (name,) in rows]


def _tables(conn: psycopg.Connection) -> list[str]:
    """The schema's tables, without day partitions (they are reached through their parent)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "ORDER BY c.relname"
    ).fetchall()
    return [name for (name,) in rows]
