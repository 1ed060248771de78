"""The SQL of one reconciliation run, set-wise: staging tables in, breaks and figures out.

Every source's records are first staged as text (`_rs_<n>`, one table per source, written
by the source's `load`). Then three passes, each one statement over all keys at once:

1. `_per`: per key and source, how many records, whether one is in scope and one is old
   enough to be expected elsewhere (grace), and each field's value, typed (numbers for
   fields compared within a tolerance) after the source's status map. A value that does
   not cast fails the statement; the run then names the source, field and record.
2. `_keys`: per key in scope (a record of it changed within the scope on some source),
   which sources have it, which twice, and whether each compared field disagrees among
   the sources that give it (and each pair of sources, for accuracy per pair). A key is
   pending when it has no break and is absent somewhere only because it is young.
3. `_breaks`, `_records`: one row per key and break type, with the records of every
   source side by side (as they were given) and a hash of them without their places, by
   which a difference accepted once stays accepted while the records are unchanged.

The statements are composed per reconciliation (its sources and fields), with
identifiers and literals quoted by psycopg; field names are also held to [a-z_][a-z0-9_]*
by the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from psycopg import sql

from q2c.vocabulary import ONE_OPEN_INDEX_PREDICATE

# The transaction's column that holds an object's key, to link a break to its telemetry.
TRANSACTION_KEYS = {
    "invoice": "invoice_id",
    "payment": "payment_id",
    "customer": "customer_id",
    "order": "order_id",
}
WORK_MEM = "128MB"  # of the run's transaction: a million keys aggregate without spilling

_Q = sql.SQL
_I = sql.Identifier
_L = sql.Literal


class Plan(NamedTuple):
    """What the statements of a run are composed from."""

    name: str  # the reconciliation
    key: str
    columns: tuple[str, ...]  # staged, in order: the key, the other fields, updated_at
    numeric: frozenset[str]  # fields read as numbers
    sources: tuple[str, ...]  # in config order; a source's number is its place
    provided: tuple[frozenset[str], ...]  # per source, the fields it gave
    maps: dict[str, tuple[dict[str, str], ...]]  # field → per source, its value map
    compared: dict[str, Decimal | None]  # field → its tolerance (None: exact)

    @property
    def values(self) -> tuple[str, ...]:
        """The staged fields other than the key and updated_at."""
        return tuple(c for c in self.columns if c not in (self.key, "updated_at"))

    def givers(self, field: str) -> list[int]:
        return [n for n, given in enumerate(self.provided) if field in given]

    def pairs(self) -> list[tuple[int, int]]:
        """Pairs of sources (by number), ordered by their names."""
        order = sorted(range(len(self.sources)), key=lambda n: self.sources[n])
        return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]


def staging(n: int) -> str:
    return f"_rs_{n}"


def create_staging(columns: Sequence[str], n: int) -> sql.Composed:
    typed = _Q(", ").join(_Q("{} text").format(_I(c)) for c in (*columns, "_at"))
    return _Q("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(_I(staging(n)), typed)


def _typed(plan: Plan, n: int, field: str) -> sql.Composable:
    """Source n's value of `field` as compared: NULL when it does not give it; empty text
    as NULL; mapped; a number when the field is numeric."""
    if field not in plan.provided[n]:
        return _Q("NULL::numeric" if field in plan.numeric else "NULL::text")
    value: sql.Composable = _Q("nullif({}, '')").format(_I(field))
    mapping = plan.maps.get(field, ())[n] if field in plan.maps else {}
    if mapping:
        cases = _Q(" ").join(_Q("WHEN {} THEN {}").format(_L(k), _L(v)) for k, v in mapping.items())
        value = _Q("CASE {} {} ELSE {} END").format(value, cases, value)
    return _Q("({})::numeric").format(value) if field in plan.numeric else value


def per_key_and_source(plan: Plan) -> sql.Composed:
    """Statement 1 (parameters scope_from, settled_before: timestamps or NULL)."""
    parts = []
    for n in range(len(plan.sources)):
        updated = (
            _Q("nullif(updated_at, '')::timestamptz")
            if "updated_at" in plan.provided[n]
            else _Q("NULL::timestamptz")
        )
        parts.append(
            _Q(
                "SELECT {n}::smallint AS src, nullif({key}, '') AS key, {values}, "
                "{updated} AS u FROM {t}"
            ).format(
                n=_L(n),
                key=_I(plan.key),
                values=_Q(", ").join(
                    _Q("{} AS {}").format(_typed(plan, n, f), _I(f)) for f in plan.values
                ),
                updated=updated,
                t=_I(staging(n)),
            )
        )
    return _Q(
        """
CREATE TEMP TABLE _per ON COMMIT DROP AS
SELECT src, key, count(*) AS n,
       bool_or(u IS NULL OR %(scope_from)s::timestamptz IS NULL
               OR u >= %(scope_from)s::timestamptz) AS in_scope,
       bool_or(u IS NULL OR u <= %(settled_before)s::timestamptz) AS settled,
       {mins}
FROM ({records}) r
GROUP BY src, key
"""
    ).format(
        mins=_Q(", ").join(_Q("min({0}) AS {0}").format(_I(f)) for f in plan.values),
        records=_Q(" UNION ALL ").join(parts),
    )


def _differs(field: str, tolerance: Decimal | None, among: Sequence[int]) -> sql.Composable:
    """Whether `field` disagrees among the sources `among` that have the key exactly once:
    a value beside a missing one, numbers further apart than the tolerance, or two texts."""
    if len(among) < 2:
        return _Q("false")
    only = _Q("WHERE n = 1 AND src IN ({})").format(_Q(", ").join(map(_L, among)))
    f = _I(field)
    apart = (
        _Q("max({f}) FILTER ({w}) - min({f}) FILTER ({w}) > {t}").format(
            f=f, w=only, t=_L(tolerance)
        )
        if tolerance is not None
        else _Q("max({f}) FILTER ({w}) <> min({f}) FILTER ({w})").format(f=f, w=only)
    )
    return _Q(
        "coalesce(count(*) FILTER ({w}) >= 2 AND (count({f}) FILTER ({w}) "
        "BETWEEN 1 AND count(*) FILTER ({w}) - 1 OR {apart}), false)"
    ).format(w=only, f=f, apart=apart)


def mismatch_column(field: str) -> sql.Identifier:
    return _I(f"mismatch_{field}")


def pair_column(a: int, b: int) -> sql.Identifier:
    return _I(f"pair_{a}_{b}")


def keys(plan: Plan) -> sql.Composed:
    """Statement 2: `_keys`, one row per key in scope with its verdicts."""
    count = len(plan.sources)
    mismatches = [
        _Q("{} AS {}").format(_differs(f, tol, plan.givers(f)), mismatch_column(f))
        for f, tol in plan.compared.items()
    ]
    pairs = []
    for a, b in plan.pairs():
        shared = [f for f in plan.compared if f in plan.provided[a] and f in plan.provided[b]]
        agree = [_Q("NOT {}").format(_differs(f, plan.compared[f], (a, b))) for f in shared]
        both_once = _Q("count(*) FILTER (WHERE n = 1 AND src IN ({a}, {b})) = 2").format(
            a=_L(a), b=_L(b)
        )
        pairs.append(
            _Q("bool_or(src IN ({a}, {b})) AS {seen}, ({ok}) AS {ok_name}").format(
                a=_L(a),
                b=_L(b),
                seen=_I(f"seen_{a}_{b}"),
                ok=_Q(" AND ").join([both_once, *agree]),
                ok_name=pair_column(a, b),
            )
        )
    any_mismatch = (
        _Q(" OR ").join(mismatch_column(f) for f in plan.compared) if plan.compared else _Q("false")
    )
    return _Q(
        """
CREATE TEMP TABLE _keys ON COMMIT DROP AS
SELECT *, present = {count} AND once AND NOT ({any}) AS matched,
       present < {count} AND NOT settled AND once AND NOT ({any}) AS pending
FROM (
    SELECT key, count(*) AS present, bool_and(n = 1) AS once, bool_or(settled) AS settled,
           array_agg(src) AS srcs, array_agg(src) FILTER (WHERE n > 1) AS twice
           {verdicts}
    FROM _per
    GROUP BY key
    HAVING bool_or(in_scope)
) k
"""
    ).format(
        count=_L(count),
        any=any_mismatch,
        verdicts=_Q("").join(_Q(", {}").format(v) for v in (*mismatches, *pairs)),
    )


FIGURES = """
SELECT count(*) - count(*) FILTER (WHERE pending), count(*) FILTER (WHERE matched),
       count(*) FILTER (WHERE pending)
FROM _keys
"""


def pair_figures(plan: Plan) -> sql.Composed:
    """Per pair of sources: keys checked in either, matched in both (one row per pair)."""
    rows = [
        _Q(
            "SELECT {x}, {y}, count(*) FILTER (WHERE {seen} AND NOT pending), "
            "count(*) FILTER (WHERE {ok} AND NOT pending) FROM _keys"
        ).format(
            x=_L(plan.sources[a]),
            y=_L(plan.sources[b]),
            seen=_I(f"seen_{a}_{b}"),
            ok=pair_column(a, b),
        )
        for a, b in plan.pairs()
    ]
    return _Q(
        "INSERT INTO reconciliation_accuracy (run_id, source_a, source_b, checked, matched) "
        "SELECT %(run_id)s, * FROM ({}) p"
    ).format(_Q(" UNION ALL ").join(rows))


def breaks(plan: Plan) -> sql.Composed:
    """Statement 3a: `_breaks` (key, break_type, source or field at fault)."""
    names = _Q(", ").join(_Q("({}, {})").format(_L(n), _L(s)) for n, s in enumerate(plan.sources))
    selects = [
        _Q(
            "SELECT k.key, 'missing_in:' || s.name, s.name FROM _keys k "
            "CROSS JOIN (VALUES {names}) s(src, name) "
            "WHERE k.present < {count} AND k.settled AND NOT s.src = ANY(k.srcs)"
        ).format(names=names, count=_L(len(plan.sources))),
        _Q(
            "SELECT k.key, 'duplicate_in:' || s.name, s.name FROM _keys k "
            "JOIN (VALUES {names}) s(src, name) ON s.src = ANY(k.twice) "
            "WHERE k.twice IS NOT NULL"
        ).format(names=names),
        *(
            _Q("SELECT key, {}, {} FROM _keys WHERE {}").format(
                _L(f"mismatch:{f}"), _L(f), mismatch_column(f)
            )
            for f in plan.compared
        ),
    ]
    return _Q(
        "CREATE TEMP TABLE _breaks ON COMMIT DROP AS "
        "SELECT * FROM ({}) b(key, break_type, at_fault)"
    ).format(_Q(" UNION ALL ").join(selects))


def records(plan: Plan) -> sql.Composed:
    """Statement 3b: `_records`, per key with a break: every source's records as given,
    and their hash without where they came from."""
    parts = []
    for n, source in enumerate(plan.sources):
        given = [c for c in plan.columns if c in plan.provided[n]]
        record = _Q("jsonb_build_object({})").format(
            _Q(", ").join(_Q("{}, r.{}").format(_L(c), _I(c)) for c in given)
        )
        parts.append(
            _Q(
                "SELECT r.{key} AS key, {source} AS source, "
                "jsonb_agg({record} || jsonb_build_object('_at', r._at) ORDER BY r._at) AS recs, "
                "jsonb_agg({record} ORDER BY {record}::text) AS bare "
                "FROM {t} r WHERE r.{key} IN (SELECT key FROM _breaks) GROUP BY r.{key}"
            ).format(key=_I(plan.key), source=_L(source), record=record, t=_I(staging(n)))
        )
    return _Q(
        """
CREATE TEMP TABLE _records ON COMMIT DROP AS
SELECT key, jsonb_object_agg(source, recs) AS records,
       md5(jsonb_object_agg(source, bare)::text) AS records_hash
FROM ({parts}) s
GROUP BY key
"""
    ).format(parts=_Q(" UNION ALL ").join(parts))


def context(plan: Plan) -> sql.Composed:
    """Per key with a break, its business context: the first source (in config order)
    that gives each value."""
    first = _Q(", ").join(
        _Q("(array_agg({0} ORDER BY src) FILTER (WHERE {0} IS NOT NULL))[1] AS {0}").format(_I(f))
        if f in plan.values
        else _Q("NULL AS {}").format(_I(f))
        for f in ("customer_id", "amount", "currency", "legal_entity")
    )
    return _Q(
        "CREATE TEMP TABLE _context ON COMMIT DROP AS SELECT key, {} FROM _per "
        "WHERE key IN (SELECT key FROM _breaks) GROUP BY key"
    ).format(first)


def linked_breaks(plan: Plan, object_: str) -> sql.Composed:
    """Statement 4: `_b`, each break with its exception's correlation ID (the latest
    transaction that telemetry saw with this key, else one of its own), its fingerprint
    (alike breaks share it), the acceptance that covers it, and the exception it keeps
    (the latest of its correlation ID, stage and fingerprint, when open or ignored)."""
    column = TRANSACTION_KEYS.get(object_)
    transaction = (
        _Q(
            "LEFT JOIN LATERAL (SELECT t.correlation_id, t.process, t.customer_id, t.order_id, "
            "t.invoice_id, t.amount, t.currency, t.legal_entity FROM transactions t "
            "WHERE t.{} = b.key ORDER BY t.last_event_at DESC NULLS LAST, t.correlation_id "
            "LIMIT 1) t ON true"
        ).format(_I(column))
        if column
        else _Q(
            "LEFT JOIN (SELECT NULL::text AS correlation_id, NULL::text AS process, "
            "NULL::text AS customer_id, NULL::text AS order_id, NULL::text AS invoice_id, "
            "NULL::numeric AS amount, NULL::text AS currency, NULL::text AS legal_entity) t "
            "ON false"
        )
    )
    return _Q(
        """
CREATE TEMP TABLE _b ON COMMIT DROP AS
WITH linked AS (
    SELECT b.key, b.break_type, b.at_fault, r.records, r.records_hash,
           coalesce(t.correlation_id, 'reconcile:' || %(name)s::text || ':' || b.key)
               AS correlation_id,
           t.process, md5('reconcile/' || %(name)s::text || '/' || b.break_type) AS fingerprint,
           coalesce(c.customer_id, t.customer_id) AS customer_id,
           coalesce(CASE WHEN %(object)s::text = 'order' THEN b.key END, t.order_id)
               AS order_id,
           coalesce(CASE WHEN %(object)s::text = 'invoice' THEN b.key END, t.invoice_id)
               AS invoice_id,
           coalesce(c.amount, t.amount) AS amount,
           coalesce(c.currency, t.currency) AS currency,
           coalesce(c.legal_entity, t.legal_entity) AS legal_entity
    FROM _breaks b
    JOIN _records r USING (key)
    JOIN _context c USING (key)
    {transaction}
)
SELECT l.*, a.id AS accepted_id,
       CASE WHEN a.id IS NULL AND (q2c_is_open(kept.status) OR kept.status = 'ignored')
            THEN kept.id END AS exception_id
FROM linked l
LEFT JOIN reconciliation_acceptances a
       ON a.reconciliation = %(name)s AND a.key = l.key AND a.break_type = l.break_type
      AND a.records_hash = l.records_hash
LEFT JOIN LATERAL (
    SELECT e.id, e.status FROM exceptions e
    WHERE e.correlation_id = l.correlation_id AND e.stage = %(stage)s
      AND e.fingerprint = l.fingerprint
    ORDER BY e.id DESC LIMIT 1
) kept ON true
"""
    ).format(transaction=transaction)


# A message per break: what is wrong and where the records came from.
_MESSAGE = """
CASE split_part(b.break_type, ':', 1)
WHEN 'missing_in' THEN format('%%s %%s is missing in %%s (%%s)', %(object)s::text, b.key,
    b.at_fault,
    (SELECT string_agg(s.key || ': ' || (s.value -> 0 ->> '_at'), ', ' ORDER BY s.key)
     FROM jsonb_each(b.records) s))
WHEN 'duplicate_in' THEN format('%%s %%s appears %%s times in %%s (%%s)', %(object)s::text, b.key,
    jsonb_array_length(b.records -> b.at_fault), b.at_fault,
    (SELECT string_agg(r ->> '_at', ', ') FROM jsonb_array_elements(b.records -> b.at_fault) r))
ELSE format('%%s %%s: %%s differs: %%s', %(object)s::text, b.key, b.at_fault,
    (SELECT string_agg(s.key || '=' || coalesce(s.value -> 0 ->> b.at_fault, '(none)'), ', '
                       ORDER BY s.key)
     FROM jsonb_each(b.records) s
     WHERE jsonb_array_length(s.value) = 1 AND s.value -> 0 ? b.at_fault))
END
"""

OPEN_EXCEPTIONS = f"""
WITH opened AS (
    INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint,
                            error_type, message, first_seen, last_seen, occurrences,
                            customer_id, order_id, invoice_id, amount, currency, legal_entity)
    SELECT b.correlation_id, b.process, %(stage)s,
           CASE WHEN b.break_type LIKE 'mismatch:%%' THEN '' ELSE b.at_fault END,
           'reconciliation', b.fingerprint, b.break_type, {_MESSAGE}, %(now)s, %(now)s, 1,
           b.customer_id, b.order_id, b.invoice_id, b.amount, b.currency, b.legal_entity
    FROM _b b
    WHERE b.exception_id IS NULL AND b.accepted_id IS NULL
    ORDER BY b.correlation_id, b.fingerprint
    ON CONFLICT (correlation_id, stage, fingerprint) WHERE {ONE_OPEN_INDEX_PREDICATE}
    DO NOTHING
    RETURNING id, correlation_id, fingerprint
)
UPDATE _b SET exception_id = o.id
FROM opened o
WHERE _b.correlation_id = o.correlation_id AND _b.fingerprint = o.fingerprint
"""

RECORD_BREAKS = """
INSERT INTO reconciliation_breaks (run_id, key, break_type, records, records_hash,
                                   correlation_id, exception_id, accepted_id)
SELECT %(run_id)s, key, break_type, records, records_hash, correlation_id, exception_id,
       accepted_id
FROM _b
ORDER BY key, break_type
"""

BREAK_COUNTS = "SELECT break_type, count(*) FROM _b GROUP BY break_type ORDER BY break_type"

# The open exceptions of this reconciliation that no break of this run keeps, whose key
# this run checked: the records no longer break that way, so the exception resolves
# itself. A key no source gives any more, or out of scope, is not checked: its exception
# stays for a person to close.
AUTO_RESOLVE = """
WITH candidates AS (
    SELECT e.correlation_id, e.id, e.status AS before_status,
           format('no longer found by reconciliation run %%s%%s', %(run_id)s,
                  CASE WHEN k.matched THEN ': the records agree' ELSE '' END) AS reason
    FROM exceptions e
    CROSS JOIN LATERAL (
        SELECT rb.key FROM reconciliation_breaks rb
        WHERE rb.exception_id = e.id ORDER BY rb.run_id DESC LIMIT 1
    ) last
    JOIN _keys k ON k.key = last.key AND NOT k.pending
    WHERE e.kind = 'reconciliation' AND e.stage = %(stage)s AND q2c_is_open(e.status)
      AND NOT EXISTS (SELECT 1 FROM _b WHERE _b.exception_id = e.id)
), resolved AS (
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = c.reason
    FROM candidates c
    WHERE e.correlation_id = c.correlation_id AND e.id = c.id
    RETURNING e.correlation_id, e.id, c.before_status, c.reason
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT correlation_id, id, 'system', 'auto_resolved', jsonb_build_object('status', before_status),
       jsonb_build_object('status', 'auto_resolved'), reason
FROM resolved ORDER BY correlation_id, id
"""

# Only on a failure: whether a text casts to a type, to name the record that does not.
CASTABLE = """
CREATE FUNCTION pg_temp.q2c_castable(value text, type regtype) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT %L::%s', value, type);
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END $$
"""


def uncastable(n: int, field: str, type_: str) -> sql.Composed:
    """Source n's first record whose `field` does not cast to `type_` (its _at and value)."""
    return _Q(
        "SELECT _at, {f} FROM {t} WHERE nullif({f}, '') IS NOT NULL "
        "AND NOT pg_temp.q2c_castable({f}, {type}) LIMIT 1"
    ).format(f=_I(field), t=_I(staging(n)), type=_L(type_))


def keyless(plan: Plan, n: int) -> sql.Composed:
    """Source n's first record without a key (its _at)."""
    return _Q("SELECT _at FROM {t} WHERE nullif({k}, '') IS NULL LIMIT 1").format(
        t=_I(staging(n)), k=_I(plan.key)
    )
