"""Exceptions: readers for triage (filtered lists, groups, detail) and the commands people
run on them (assign, comment, resolve, ignore for good or until a date or a recurrence),
each role-checked and audited in the same transaction as the change."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO

from sqlalchemy import BindParameter, Connection, Engine, TextClause, bindparam, text

from q2c.errors import Q2CError
from q2c.masking import configured
from q2c.vocabulary import (
    CLOSED_STATUSES,
    IMPACTS,
    OPEN_STATUSES,
    RECORDS_STAGE_PREFIX,
    TRANSITIONS,
    reopened_status,
)
from queries.audit import record_exception_event
from queries.search import contains_pattern
from queries.users import acting_user, allowed_user

_COLUMNS = (
    "id, correlation_id, process, stage, system, kind, fingerprint, error_type, message, "
    "status, impact, owner, first_seen, last_seen, occurrences, due_at, resolved_at, "
    "resolution, customer_id, order_id, invoice_id, amount::float8 AS amount, currency, "
    "legal_entity, ignored_until, ignored_until_recurs, regressed_from, "
    "regressed_from IS NOT NULL AS regressed, "
    "greatest(now() - first_seen, interval '0') AS age, "
    "(due_at < now() AND q2c_is_open(status)) "
    "AS overdue"
)
_EXPORT_CHUNK = 2_000  # rows fetched from the database at a time by an export


@dataclass(frozen=True)
class ExceptionFilter:
    """Triage filters; None (or empty) means any."""

    statuses: Sequence[str] = OPEN_STATUSES
    process: str | None = None
    stage: str | None = None
    system: str | None = None
    impact: Sequence[str] = ()
    kind: str | None = None
    owner: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    search: str | None = None
    fingerprint: str | None = None
    regressed: bool = False  # only those whose failure a person had resolved before
    currency: str | None = None
    stages: Sequence[str] = ()  # "process/stage" of the stages to keep
    since: datetime | None = None  # first seen at or after
    # Only reconciliation breaks found in the telemetry (values the systems reported for a
    # transaction) or in the records (a reconciliation of the systems' records).
    reconciled_in: Literal["telemetry", "records"] | None = None


# How a list may be ordered: name → ORDER BY (each ends in id, so pages never overlap).
# Over open rows, "most urgent" and "largest amount" are read from indexes in their
# order (migration 0020), whose keys repeat these word for word.
ORDERS = {
    "most urgent": f"array_position(ARRAY{list(IMPACTS)}, impact), first_seen, id",
    "oldest first": "first_seen, id",
    "newest first": "first_seen DESC, id DESC",
    "last seen": "last_seen DESC, id DESC",
    "largest amount": "amount DESC NULLS LAST, id",
    "most occurrences": "occurrences DESC, id",
}


@dataclass
class ActionResult:
    """What a bulk command changed, and why it left the others alone."""

    changed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def list_exceptions(
    engine: Engine,
    filters: ExceptionFilter,
    limit: int = 500,
    offset: int = 0,
    order: str = "most urgent",
) -> list[dict]:
    """Exceptions matching `filters` in `order` (one of ORDERS; by default most urgent
    first: impact, then oldest): `limit` of them from `offset` on (count_exceptions says
    how many match in all)."""
    order_by = _order_by(order)
    clauses, params = _where(filters)
    # The page's ids first (a sort of narrow rows, bounded by offset + limit), then their
    # rows: sorting every matching full row spills to disk once there are 100,000.
    query = text(
        f"SELECT {_COLUMNS} FROM exceptions WHERE id = ANY (ARRAY(SELECT id FROM exceptions "
        f"WHERE {' AND '.join(clauses)} ORDER BY {order_by} LIMIT :limit OFFSET :offset)) "
        f"ORDER BY {order_by}"
    ).bindparams(*_expanding(params))
    with engine.connect() as conn:
        rows = conn.execute(query, {**params, "limit": limit, "offset": offset})
        return _masked_messages((dict(row._mapping) for row in rows), "message")


def count_exceptions(engine: Engine, filters: ExceptionFilter) -> int:
    """How many exceptions match `filters`."""
    clauses, params = _where(filters)
    query = text(f"SELECT count(*) FROM exceptions WHERE {' AND '.join(clauses)}")
    with engine.connect() as conn:
        return int(conn.execute(query.bindparams(*_expanding(params)), params).scalar_one())


def amounts_at_stake(engine: Engine, filters: ExceptionFilter) -> list[tuple[str, float, int]]:
    """Per currency, the amount the exceptions matching `filters` hold up, each transaction
    counted once (at the largest amount of its exceptions: a dead letter and the stall it
    causes are one sum of money), and how many transactions: as the overview counts."""
    clauses, params = _where(filters)
    query = text(
        "SELECT coalesce(currency, ''), sum(amount), count(*) FROM ("
        "SELECT min(currency) AS currency, max(amount) AS amount FROM exceptions "
        f"WHERE {' AND '.join(clauses)} AND amount IS NOT NULL GROUP BY correlation_id) t "
        "GROUP BY 1 ORDER BY 1"
    ).bindparams(*_expanding(params))
    with engine.connect() as conn:
        return [(c, float(a), int(n)) for c, a, n in conn.execute(query, params)]


def matching_ids(engine: Engine, filters: ExceptionFilter) -> list[int]:
    """The ids of every exception matching `filters` (a group action acts on them all)."""
    clauses, params = _where(filters)
    query = text(f"SELECT id FROM exceptions WHERE {' AND '.join(clauses)} ORDER BY id")
    with engine.connect() as conn:
        return list(conn.execute(query.bindparams(*_expanding(params)), params).scalars())


def still_matching(engine: Engine, filters: ExceptionFilter, ids: Sequence[int]) -> set[int]:
    """Those of `ids` that match `filters` now (others were closed or changed meanwhile)."""
    if not ids:
        return set()
    clauses, params = _where(filters)
    query = text(
        f"SELECT id FROM exceptions WHERE {' AND '.join(clauses)} AND id = ANY (:ids)"
    ).bindparams(*_expanding(params))
    with engine.connect() as conn:
        return set(conn.execute(query, {**params, "ids": list(ids)}).scalars())


def record_breaks(engine: Engine, ids: Sequence[int]) -> int:
    """How many of `ids` are breaks a reconciliation of the records opened (its stage
    `reconcile:<name>`): resolved by hand, such a break opens again at the next run."""
    if not ids:
        return 0
    query = text(
        "SELECT count(*) FROM exceptions WHERE id = ANY (:ids) AND starts_with(stage, :prefix)"
    )
    with engine.connect() as conn:
        return int(
            conn.execute(query, {"ids": list(ids), "prefix": RECORDS_STAGE_PREFIX}).scalar_one()
        )


def export_exceptions(
    engine: Engine,
    actor: str,
    filters: ExceptionFilter,
    columns: Sequence[str],
    out: TextIO,
    order: str = "most urgent",
) -> int:
    """Write every exception matching `filters` to `out` as CSV (a header of `columns`,
    then one line each, in list order, messages masked), fetched from the database a chunk
    at a time so that no number of them is held at once; finance_ops and up, their role
    read now. Returns how many were written."""
    query, params = _listing(filters, order)
    masking = configured()
    writer = csv.writer(out)
    written = 0
    with engine.connect() as conn:
        allowed_user(conn, actor, "exceptions.view")
        writer.writerow(columns)
        result = conn.execution_options(stream_results=True, yield_per=_EXPORT_CHUNK).execute(
            query.bindparams(*_expanding(params)), params
        )
        for chunk in result.partitions():
            for row in chunk:
                values = {**row._mapping, "message": masking.text(row.message)}
                writer.writerow([values[column] for column in columns])
            written += len(chunk)
    return written


def _listing(filters: ExceptionFilter, order: str) -> tuple[TextClause, dict[str, Any]]:
    """The query of the exceptions matching `filters`, in `order`."""
    order_by = _order_by(order)
    clauses, params = _where(filters)
    query = text(
        f"SELECT {_COLUMNS} FROM exceptions WHERE {' AND '.join(clauses)} ORDER BY {order_by}"
    )
    return query, params


def _order_by(order: str) -> str:
    """The ORDER BY of one of ORDERS; any other name is refused."""
    if order not in ORDERS:
        raise Q2CError(f"exceptions are listed {', '.join(ORDERS)}; not '{order}'")
    return ORDERS[order]


def _expanding(params: dict[str, Any]) -> list[BindParameter]:
    """The list parameters of `_where` as IN-list binds."""
    return [
        bindparam(name, expanding=True)
        for name in ("statuses", "impacts", "stages")
        if name in params
    ]


def group_exceptions(engine: Engine, filters: ExceptionFilter, limit: int = 500) -> list[dict]:
    """Exceptions matching `filters` grouped by fingerprint: alike failures together, the
    `limit` largest groups, each row also saying how many exceptions and how many groups
    match in all (`matching`, `group_count`). Their money is summed per currency
    (`amounts`: currency → total; "" where none was given), never across currencies. A
    group's place and words (process, stage, system, kind, error type, `sample_message`)
    are those of its first failure."""
    clauses, params = _where(filters)
    where = " AND ".join(clauses)
    # One pass over the matching rows by (fingerprint, currency), rolled up per fingerprint;
    # it reads only what it sums, so that the open backlog's pass is an index-only scan of
    # exceptions_open_amount_idx. Each group shown then takes its first failure's row in
    # one probe of exceptions_open_fingerprint_idx.
    query = text(
        "WITH per_currency AS (SELECT fingerprint, coalesce(currency, '') AS currency, "
        "count(*) AS exceptions, sum(occurrences) AS occurrences, min(first_seen) AS "
        "first_seen, max(last_seen) AS last_seen, sum(amount)::float8 AS total "
        f"FROM exceptions WHERE {where} GROUP BY 1, 2), "
        "groups AS (SELECT fingerprint, sum(exceptions)::bigint AS exceptions, "
        "sum(occurrences)::bigint AS occurrences, min(first_seen) AS first_seen, "
        "max(last_seen) AS last_seen, sum(sum(exceptions)) OVER ()::bigint AS matching, "
        "count(*) OVER () AS group_count, "
        "coalesce(jsonb_object_agg(currency, total ORDER BY currency) "
        "FILTER (WHERE total IS NOT NULL), '{}') AS amounts "
        "FROM per_currency GROUP BY fingerprint "
        "ORDER BY exceptions DESC, last_seen DESC, fingerprint LIMIT :limit) "
        "SELECT g.fingerprint, sample.process, sample.stage, sample.system, sample.kind, "
        "sample.error_type, g.exceptions, g.occurrences, g.first_seen, g.last_seen, "
        "g.matching, g.group_count, g.amounts, sample.message AS sample_message "
        "FROM groups g "
        "CROSS JOIN LATERAL (SELECT process, stage, system, kind, error_type, message "
        f"FROM exceptions WHERE fingerprint = g.fingerprint AND {where} "
        "ORDER BY first_seen, id LIMIT 1) AS sample "
        "ORDER BY g.exceptions DESC, g.last_seen DESC, g.fingerprint"
    )
    with engine.connect() as conn:
        rows = conn.execute(query.bindparams(*_expanding(params)), {**params, "limit": limit})
        return _masked_messages((dict(row._mapping) for row in rows), "sample_message")


def _masked_messages(rows: Iterable[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """`rows` with secrets in `column` masked (systems echo card numbers and tokens in errors)."""
    masking = configured()
    return [masking.row(row, (column,)) for row in rows]


def _where(filters: ExceptionFilter) -> tuple[list[str], dict[str, Any]]:
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if filters.statuses:
        clauses.append("status IN :statuses")
        params["statuses"] = list(filters.statuses)
    if filters.impact:
        clauses.append("impact IN :impacts")
        params["impacts"] = list(filters.impact)
    for column in ("process", "stage", "system", "kind", "owner", "fingerprint", "currency"):
        value = getattr(filters, column)
        if value:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if filters.regressed:
        clauses.append("regressed_from IS NOT NULL")
    if filters.stages:
        clauses.append("process || '/' || stage IN :stages")
        params["stages"] = list(filters.stages)
    if filters.reconciled_in is not None:
        records = "starts_with(stage, :records_stage_prefix)"
        clauses.append("kind = 'reconciliation'")
        clauses.append(records if filters.reconciled_in == "records" else f"NOT {records}")
        params["records_stage_prefix"] = RECORDS_STAGE_PREFIX
    if filters.since is not None:
        clauses.append("first_seen >= :since")
        params["since"] = filters.since
    if filters.older_than is not None:
        clauses.append("first_seen <= now() - :older_than")
        params["older_than"] = filters.older_than
    if filters.newer_than is not None:
        clauses.append("first_seen > now() - :newer_than")
        params["newer_than"] = filters.newer_than
    if filters.search:  # message, error type, correlation, invoice, customer and order IDs
        clauses.append("search_text LIKE :search")
        params["search"] = contains_pattern(filters.search.lower())
    return clauses, params


def exception_detail(engine: Engine, exception_id: int) -> dict[str, Any]:
    """One exception with its failures, audit history, its transaction's timeline, dead
    letters and replays."""
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS} FROM exceptions WHERE id = :id"), {"id": exception_id}
        ).one_or_none()
        if row is None:
            raise Q2CError(f"no exception {exception_id}")
        masking = configured()
        detail = {**row._mapping, "message": masking.text(row.message)}
        key = {"c": detail["correlation_id"], "id": exception_id}
        detail["occurrences"] = _rows(
            conn,
            "SELECT occurred_at, system, error_type, message, "
            "encode(trace_id, 'hex') AS trace_id, occurrences AS failures "
            "FROM exception_occurrences WHERE correlation_id = :c "
            "AND exception_id = :id ORDER BY occurred_at, record_key",
            key,
        )
        for occurrence in detail["occurrences"]:
            occurrence["message"] = masking.text(occurrence["message"])
        detail["history"] = _rows(
            conn,
            "SELECT at, actor, action, before, after, comment "
            "FROM exception_events WHERE correlation_id = :c "
            "AND exception_id = :id ORDER BY at, id",
            key,
        )
        for event in detail["history"]:
            event.update(
                before=masking.value(event["before"]),
                after=masking.value(event["after"]),
                comment=masking.text(event["comment"]),
            )
        detail["timeline"] = _rows(
            conn,
            "SELECT reached_at, stage, system, status, business "
            "FROM stage_events WHERE correlation_id = :c "
            "ORDER BY reached_at, stage, system",
            key,
        )
        detail["dead_letters"] = [
            masking.row(letter, ("target_url",))  # its query string may hold a token
            for letter in _rows(
                conn,
                "SELECT id, occurred_at, target_url, method, status "
                "FROM dead_letters WHERE correlation_id = :c "
                "ORDER BY occurred_at",
                key,
            )
        ]
        detail["replays"] = _rows(
            conn,
            "SELECT id, dead_letter_id, requested_by, requested_at, "
            "status, attempts, response_code FROM replays "
            "WHERE correlation_id = :c ORDER BY requested_at",
            key,
        )
    return detail


def _rows(conn: Connection, sql: str, params: dict) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(text(sql), params)]


# --- commands ---------------------------------------------------------------------------

_LOCK = text(
    "SELECT id, correlation_id, status, owner, resolution, ignored_until, ignored_until_recurs "
    "FROM exceptions WHERE id IN :ids "
    "ORDER BY correlation_id, id FOR UPDATE"
).bindparams(bindparam("ids", expanding=True))


def assign(
    engine: Engine, actor: str, ids: Sequence[int], owner: str, comment: str | None = None
) -> ActionResult:
    """Give open exceptions an owner; an `open` one becomes `assigned`."""
    with engine.begin() as conn:
        acting_user(conn, owner)  # the new owner must exist
        return _act(
            conn,
            actor,
            ids,
            "assigned",
            comment,
            lambda row: {
                "owner": owner,
                "status": "assigned" if row.status == "open" else row.status,
            },
        )


def unassign(engine: Engine, actor: str, ids: Sequence[int]) -> ActionResult:
    """Take exceptions back to the queue: no owner, `open` again."""
    starts_from, status = TRANSITIONS["unassign"]
    with engine.begin() as conn:
        return _act(
            conn,
            actor,
            ids,
            "unassigned",
            None,
            lambda row: {"owner": None, "status": status},
            allowed=starts_from,
        )


def reopen(engine: Engine, actor: str, ids: Sequence[int], reason: str) -> ActionResult:
    """Open again exceptions a person resolved or ignored (the failure is not over after
    all), with the reason: still their owner's if they had one. One whose failure has a
    newer open exception stays closed."""
    if not reason.strip():
        raise Q2CError("reopening exceptions needs a reason")
    starts_from, _ = TRANSITIONS["reopen"]
    with engine.begin() as conn:
        newer = _open_successors(conn, ids)
        result = _act(
            conn,
            actor,
            [i for i in ids if i not in newer],
            "reopened",
            reason,
            lambda row: {
                "status": reopened_status(row.owner),
                "resolution": None,
                **_ignore_ended(row),
            },
            allowed=starts_from,
        )
    for closed, successor in newer.items():
        result.skipped[closed] = f"exception {successor} is open for the same failure"
    return result


def _ignore_ended(row: Any) -> dict[str, Any]:
    """The changes that end an ignore's condition (a date or a recurrence), if it had one."""
    ended: dict[str, Any] = {}
    if row.ignored_until is not None:
        ended["ignored_until"] = None
    if row.ignored_until_recurs:
        ended["ignored_until_recurs"] = False
    return ended


def _open_successors(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Of closed `ids`, those whose transaction, stage and fingerprint have an open
    exception now (only one may be open): closed id → the open one's."""
    rows = conn.execute(
        text(
            "SELECT c.id, o.id AS open_id FROM exceptions c JOIN exceptions o "
            "ON o.correlation_id = c.correlation_id AND o.stage = c.stage "
            "AND o.fingerprint = c.fingerprint AND q2c_is_open(o.status) "
            "WHERE c.id = ANY (:ids) AND NOT q2c_is_open(c.status)"
        ),
        {"ids": list(ids)},
    )
    return {row.id: row.open_id for row in rows}


def start_work(engine: Engine, actor: str, ids: Sequence[int]) -> ActionResult:
    """Say that work on exceptions has begun: they become `in_progress`, owned by the actor
    unless someone owns them already."""
    starts_from, status = TRANSITIONS["start_work"]
    with engine.begin() as conn:
        return _act(
            conn,
            actor,
            ids,
            "started_work",
            None,
            lambda row: {"status": status, "owner": row.owner or actor},
            allowed=starts_from,
        )


def comment(engine: Engine, actor: str, exception_id: int, note: str) -> ActionResult:
    """Add a comment to an exception's history (open or closed)."""
    if not note.strip():
        raise Q2CError("a comment needs text")
    with engine.begin() as conn:
        return _act(
            conn,
            actor,
            [exception_id],
            "commented",
            note,
            lambda row: {},
            allowed=TRANSITIONS["comment"][0],
        )


def close_exceptions(
    engine: Engine,
    actor: str,
    ids: Sequence[int],
    status: str,
    reason: str,
    *,
    until: datetime | None = None,
    until_recurs: bool = False,
) -> ActionResult:
    """Close exceptions as `resolved` or `ignored` (not worth acting on), with the reason.
    An ignore may last `until` a moment (the evaluator reopens them once it has passed)
    or `until_recurs` (the collector reopens one when its failure happens again); without
    either it is for good."""
    if status not in ("resolved", "ignored"):
        raise Q2CError(f"exceptions are closed as resolved or ignored, not {status}")
    if not reason.strip():
        raise Q2CError(f"marking exceptions {status} needs a reason")
    condition: dict[str, Any] = {}
    if until is not None or until_recurs:
        if status != "ignored":
            raise Q2CError("only an ignore lasts until a date or until the failure recurs")
        if until is not None and until_recurs:
            raise Q2CError("an ignore lasts until a date or until the failure recurs, not both")
        if until is not None and (until.tzinfo is None or until <= datetime.now(UTC)):
            raise Q2CError(f"ignoring until {until} needs a moment to come, with its time zone")
        condition = {"ignored_until": until} if until else {"ignored_until_recurs": True}
    with engine.begin() as conn:
        return _act(
            conn,
            actor,
            ids,
            status,
            reason,
            lambda row: {"status": status, "resolution": reason, **condition},
        )


def resolve_in(conn: Connection, actor: str, ids: Sequence[int], reason: str) -> ActionResult:
    """Resolve open exceptions with the reason, in the caller's transaction (a command of
    another part that settles what the exceptions stand for)."""
    return _act(
        conn,
        actor,
        ids,
        "resolved",
        reason,
        lambda row: {"status": "resolved", "resolution": reason},
    )


def _act(
    conn: Connection,
    actor: str,
    ids: Sequence[int],
    action: str,
    note: str | None,
    changes,
    allowed: Sequence[str] = OPEN_STATUSES,
) -> ActionResult:
    """Apply `changes(row)` to each exception (locked) whose status is in `allowed`,
    writing one audit row per change."""
    user = allowed_user(conn, actor, "exceptions.act")
    result = ActionResult()
    rows = {row.id: row for row in conn.execute(_LOCK, {"ids": list(ids)})}
    for exception_id in ids:
        row = rows.get(exception_id)
        if row is None:
            result.skipped[exception_id] = "no such exception"
            continue
        if row.status not in allowed:
            result.skipped[exception_id] = f"already {row.status}"
            continue
        after = changes(row)
        before = {key: getattr(row, key) for key in after}
        if after and after == before:  # assigned to whom it is assigned to: no change
            owned = f" to {row.owner}" if row.owner else ""
            result.skipped[exception_id] = f"already {row.status}{owned}"
            continue
        if after:
            assignments = ", ".join(f"{key} = :{key}" for key in after)
            closing = ""  # when it was closed: set as it closes, cleared as it reopens
            if after.get("status") in CLOSED_STATUSES:
                closing = ", resolved_at = clock_timestamp()"
            elif row.status in CLOSED_STATUSES and after.get("status") in OPEN_STATUSES:
                closing = ", resolved_at = NULL"
            conn.execute(
                text(
                    f"UPDATE exceptions SET {assignments}{closing}, updated_at = now() "
                    "WHERE correlation_id = :c AND id = :id"
                ),
                {**after, "c": row.correlation_id, "id": row.id},
            )
        record_exception_event(
            conn,
            row.correlation_id,
            row.id,
            user.username,
            action,
            before=_as_json(before),
            after=_as_json(after),
            comment=note,
        )
        result.changed.append(exception_id)
    return result


def _as_json(values: dict[str, Any]) -> dict[str, Any]:
    """`values` as the audit trail keeps them: moments in ISO 8601."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
