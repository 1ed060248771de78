"""The SQL of one reconciliation run, set-wise: staging tables in, breaks and figures out.

Every source's records are first staged as text (`_rs_<n>`, one table per source, written
by the source's `load`). Then:

1. `quick`: one aggregation over all the sources' records at once, grouped by key, each
   record reduced to its source, whether it is in scope and a digest of its compared
   values as compared (after the status map; numbers by value): a key in scope with one
   record in every source and equal digests is matched, and only counted. That is most
   keys; the others (and the keyless records) go on to `verdicts`, with their records
   (`_rs_slow_<n>`). Where the time goes: this statement is the run's cost beside the
   COPYs, about a microsecond and a half a record (casting updated_at to timestamptz and
   the numbers to numeric, the hash table of a million keys); JIT compilation, which
   PostgreSQL would otherwise spend seconds on for its many expressions, is off.
2. `verdicts`: the same aggregation for the keys left, carrying every source's value of
   each field, typed, and whether a record is old enough to be expected elsewhere
   (grace); then, on that one row per key, whether each compared field disagrees
   (pairwise among the sources giving it, which is the same as among all of them) and
   whether each pair of sources agrees, and from these `matched` and `pending`. A value
   that does not cast fails the statement (here or in `quick`); the run then names the
   source, field and record. Over every key, this statement cost four times `quick`.
3. `_breaks`: one row per key and break type, read off the keys that are neither matched
   nor pending (one scan), with the key's business context.
4. `_records`: the records of every source for the keys with a break, as they were given,
   and a hash of them without their places, by which a difference accepted once stays
   accepted while the records are unchanged.
5. `_b` and the statements after it: the exceptions kept, opened and resolved.

The statements are composed per reconciliation (its sources and fields), with
identifiers and literals quoted by psycopg; field names are also held to [a-z_][a-z0-9_]*
by the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from psycopg import sql

from q2c.audit_sql import audit_auto_resolved
from q2c.vocabulary import AMOUNT_LIMIT, ONE_OPEN_INDEX_PREDICATE
from reconcile.config import CONTEXT_FIELDS

# The transaction's column that holds an object's key, to link a break to its telemetry.
TRANSACTION_KEYS = {
    "invoice": "invoice_id",
    "payment": "payment_id",
    "customer": "customer_id",
    "order": "order_id",
}
# Of the run's transaction: the aggregations per key hold every key in memory (`quick`
# about 240 bytes a key, `verdicts` about 600 a key it judges; PostgreSQL allows hash tables
# twice this), so that a million keys aggregate without spilling to disk.
WORK_MEM = "512MB"

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


def slow_staging(n: int) -> str:
    """Source n's records of the keys `quick` left to `verdicts` (and the keyless ones)."""
    return f"_rs_slow_{n}"


def create_slow_staging(plan: Plan, n: int) -> sql.Composed:
    """`slow_staging(n)`, filled: read by `verdicts` and `records`, which would otherwise
    each read every record again."""
    return _Q(
        "CREATE TEMP TABLE {slow} ON COMMIT DROP AS SELECT * FROM {t} "
        "WHERE nullif({key}, '') IS NULL OR nullif({key}, '') IN (SELECT key FROM _slow)"
    ).format(slow=_I(slow_staging(n)), t=_I(staging(n)), key=_I(plan.key))


def create_staging(columns: Sequence[str], n: int) -> sql.Composed:
    typed = _Q(", ").join(_Q("{} text").format(_I(c)) for c in (*columns, "_at"))
    return _Q("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(_I(staging(n)), typed)


def _typed(plan: Plan, n: int, field: str) -> sql.Composable:
    """Source n's value of `field` as compared: empty text as NULL, mapped, a number when
    the field is numeric (else text compared byte by byte: no collation's notion of equal)."""
    value: sql.Composable = _Q("nullif({}, '')").format(_I(field))
    mapping = plan.maps[field][n] if field in plan.maps else {}
    if mapping:
        cases = _Q(" ").join(_Q("WHEN {} THEN {}").format(_L(k), _L(v)) for k, v in mapping.items())
        value = _Q("CASE {} {} ELSE {} END").format(value, cases, value)
    if field in plan.numeric:
        return _Q("({})::numeric").format(value)
    return _Q('({}) COLLATE "C"').format(value)


def value_column(field: str, n: int) -> sql.Identifier:
    """_keys' column of source n's value of `field` (when it has the key once)."""
    return _I(f"{field}_{n}")


def count_column(n: int) -> sql.Identifier:
    """_keys' column of how many records source n has of the key."""
    return _I(f"n_{n}")


def _differs(plan: Plan, field: str, a: int, b: int) -> sql.Composable:
    """Whether sources a and b, each with the key once, disagree on `field`: a value beside
    a missing one, numbers further apart than the tolerance, or two texts. A field differs
    among several sources exactly when it differs between two of them (for numbers: the
    largest and smallest value are two of them)."""
    x, y = value_column(field, a), value_column(field, b)
    once = _Q("{} = 1 AND {} = 1").format(count_column(a), count_column(b))
    tolerance = plan.compared[field]
    if tolerance is None:
        return _Q("({} AND {} IS DISTINCT FROM {})").format(once, x, y)
    # Equal numbers, the common case, are told by a comparison, without arithmetic.
    return _Q(
        "({o} AND (({x} IS NULL) <> ({y} IS NULL) OR ({x} <> {y} AND abs({x} - {y}) > {t})))"
    ).format(o=once, x=x, y=y, t=_L(tolerance))


def _pairs_of(among: Sequence[int]) -> list[tuple[int, int]]:
    return [(a, b) for i, a in enumerate(among) for b in among[i + 1 :]]


def mismatch_column(field: str) -> sql.Identifier:
    return _I(f"mismatch_{field}")


def pair_columns(a: int, b: int) -> tuple[sql.Identifier, sql.Identifier]:
    """_keys' columns of a pair of sources: whether either has the key, and whether both
    have it once with every field both give agreeing."""
    return _I(f"seen_{a}_{b}"), _I(f"agree_{a}_{b}")


def verdicts(plan: Plan) -> sql.Composed:
    """One row per key in scope that `quick` left to judge (`_slow`; and the keyless
    records' row, key NULL, which fails the run) with its verdicts. Parameters scope_from,
    settled_before: timestamps (scope_from '-infinity' for no scope)."""
    count = len(plan.sources)
    records, aggregates = [], []
    for n in range(count):
        given = [f for f in plan.values if f in plan.provided[n]]
        updated = (
            _Q("nullif(updated_at, '')::timestamptz")
            if "updated_at" in plan.provided[n]
            else _Q("NULL::timestamptz")
        )
        records.append(
            _Q(
                "SELECT {n}::smallint AS src, nullif({key}, '') AS key, {values} "
                "(u IS NULL OR u >= %(scope_from)s::timestamptz) AS in_scope, "
                "(u IS NULL OR u <= %(settled_before)s::timestamptz) AS settled "
                "FROM (SELECT *, {updated} AS u FROM {t}) r"
            ).format(
                n=_L(n),
                key=_I(plan.key),
                values=_Q("").join(
                    _Q("{} AS {}, ").format(_typed(plan, n, f), value_column(f, n)) for f in given
                ),
                updated=updated,
                t=_I(slow_staging(n)),
            )
        )
        aggregates.append(
            _Q("count(*) FILTER (WHERE src = {0}) AS {1}").format(_L(n), count_column(n))
        )
        # A source's values are NULL in the other sources' rows, and min() passes NULLs
        # by: no FILTER needed, whose test every row would pay for every column.
        aggregates.extend(_Q("min({0}) AS {0}").format(value_column(f, n)) for f in given)
    # Each source's part of the union has its own columns: the others' are NULL there.
    columns = [(f, n) for n in range(count) for f in plan.values if f in plan.provided[n]]
    union = _Q(" UNION ALL ").join(
        _Q("SELECT src, key, {}, in_scope, settled FROM ({}) p{}").format(
            _Q(", ").join(
                value_column(f, m)
                if m == n
                else _Q("NULL::{} AS {}").format(
                    _Q("numeric" if f in plan.numeric else "text"), value_column(f, m)
                )
                for f, m in columns
            ),
            part,
            _L(n),
        )
        if columns
        else _Q("SELECT src, key, in_scope, settled FROM ({}) p").format(part)
        for n, part in enumerate(records)
    )
    present = _Q(" + ").join(_Q("({} > 0)::int").format(count_column(n)) for n in range(count))
    once = _Q(" AND ").join(_Q("{} <= 1").format(count_column(n)) for n in range(count))
    # Each field's difference between each pair of sources giving it, named once.
    differences = {
        (f, a, b): _I(f"differs_{f}_{a}_{b}")
        for f in plan.compared
        for a, b in _pairs_of(plan.givers(f))
    }
    verdicts = []
    for f in plan.compared:
        # A field one source gives alone is never found differing.
        among = [d for (g, _, _), d in differences.items() if g == f]
        verdicts.append(
            _Q("{} AS {}").format(
                _Q(" OR ").join(among) if among else _Q("false"), mismatch_column(f)
            )
        )
    for a, b in plan.pairs():
        seen, agree = pair_columns(a, b)
        both = [_Q("{} = 1 AND {} = 1").format(count_column(a), count_column(b))]
        # A pair is ordered by the sources' names, a difference by their places.
        both += [_Q("NOT {}").format(d) for (_, x, y), d in differences.items() if {x, y} == {a, b}]
        verdicts.append(_Q("{} > 0 OR {} > 0 AS {}").format(count_column(a), count_column(b), seen))
        verdicts.append(_Q("{} AS {}").format(_Q(" AND ").join(both), agree))
    any_mismatch = _Q(" OR ").join(differences.values()) if differences else _Q("false")
    return _Q(
        """
SELECT v.*,
       v.present = {count} AND v.once AND NOT v.mismatch AS matched,
       v.present < {count} AND NOT v.settled AND v.once AND NOT v.mismatch AS pending
FROM (
    SELECT d.* {verdicts}, {any} AS mismatch
    FROM (
        SELECT a.*, {present} AS present, {once} AS once {differences}
        FROM (
            SELECT key, bool_or(in_scope) AS in_scope, bool_or(settled) AS settled, {aggregates}
            FROM ({union}) r
            GROUP BY key
        ) a
        WHERE a.in_scope OR a.key IS NULL
    ) d
) v
"""
    ).format(
        count=_L(count),
        any=any_mismatch,
        present=present,
        once=once,
        differences=_Q("").join(
            _Q(", {} AS {}").format(_differs(plan, f, a, b), d)
            for (f, a, b), d in differences.items()
        ),
        verdicts=_Q("").join(_Q(", {}").format(v) for v in verdicts),
        aggregates=_Q(", ").join(aggregates),
        union=union,
    )


OPEN_KEYS = """
CREATE TEMP TABLE _open_keys ON COMMIT DROP AS
SELECT DISTINCT last.key
FROM exceptions e
CROSS JOIN LATERAL (
    SELECT rb.key FROM reconciliation_breaks rb
    WHERE rb.exception_id = e.id ORDER BY rb.run_id DESC LIMIT 1
) last
WHERE e.kind = 'reconciliation' AND e.stage = %(stage)s AND q2c_is_open(e.status)
"""


def create_broken(plan: Plan) -> sql.Composed:
    """`_broken`, empty: the verdicts of the keys neither matched nor pending, for the
    breaks (parameters as `verdicts`)."""
    return _Q(
        "CREATE TEMP TABLE _broken ON COMMIT DROP AS SELECT * FROM ({}) v WITH NO DATA"
    ).format(verdicts(plan))


# The verdicts of the keys whose exceptions are open (_open_keys), for their resolution;
# the keys `quick` leaves to `verdicts` (NULL for keyless records).
CREATE_KEYS = """
CREATE TEMP TABLE _keys (key text PRIMARY KEY, matched boolean, pending boolean) ON COMMIT DROP;
CREATE TEMP TABLE _slow (key text) ON COMMIT DROP
"""


def _digest_groups(plan: Plan) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """The fields each record is digested by, grouped by the sources giving them: the
    compared fields by all their givers (usually one group: every source gives every
    compared field), and a source's numbers that are not compared in a group of that source
    alone. A group of one source is always alike; it is digested so that each of its
    numbers is cast, as `verdicts` casts them, and a bad one fails the run."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for f in plan.compared:
        if givers := tuple(plan.givers(f)):
            groups.setdefault(givers, []).append(f)
    for f in plan.values:
        if f in plan.numeric and f not in plan.compared:
            for n in plan.givers(f):
                groups.setdefault((n,), []).append(f)
    return [(tuple(fields), givers) for givers, fields in groups.items()]


def _digest(plan: Plan, n: int, fields: Sequence[str]) -> sql.Composable:
    """Source n's record's digest of `fields`: equal digests mean equal values as compared,
    but for a 64-bit hash collision (about one in 10^19 pairs of records that differ). Each
    value is hashed as text, a number as its shortest spelling (10.0 and 10.00 alike, NaN
    and Infinity as themselves), a missing one as 1; each field's hash is mixed into the
    hash of those before it (hashint8extended), so that no field's value can stand in for
    another's or cancel it out. A number that does not cast fails the statement, as in
    `verdicts`."""
    digest: sql.Composable | None = None
    for f in fields:
        value = _typed(plan, n, f)
        text = _Q("trim_scale({})::text").format(value) if f in plan.numeric else value
        term = _Q("coalesce(hashtextextended({}, 0), 1)").format(text)
        digest = (
            term if digest is None else _Q("(hashint8extended({}, 0) # {})").format(digest, term)
        )
    assert digest is not None, "a group has fields"
    return digest


def quick(plan: Plan) -> sql.Composed:
    """Step 1: settle most keys at a few operations a record. A key in scope with one
    record in every source and equal digests (`_digest`) is matched: answered, how many.
    The others in scope, and the keyless records' key (NULL), go to `_slow` for
    `verdicts`; the matched ones among the keys with open exceptions to `_keys`.
    Parameters as `verdicts`."""
    count = len(plan.sources)
    groups = _digest_groups(plan)
    parts = []
    for n in range(count):
        digests = [
            _digest(plan, n, fields) if n in givers else _Q("NULL::bigint")
            for fields, givers in groups
        ]
        # As in `verdicts`: a record without updated_at is in scope.
        in_scope = (
            _Q(
                "nullif(updated_at, '') IS NULL "
                "OR nullif(updated_at, '')::timestamptz >= %(scope_from)s::timestamptz"
            )
            if "updated_at" in plan.provided[n]
            else _Q("true")
        )
        parts.append(
            _Q(
                "SELECT {n}::smallint AS src, nullif({key}, '') AS key, {in_scope} AS in_scope{d} "
                "FROM {t}"
            ).format(
                n=_L(n),
                key=_I(plan.key),
                in_scope=in_scope,
                d=_Q("").join(
                    _Q(", {} AS {}").format(d, _I(f"d_{g}")) for g, d in enumerate(digests)
                ),
                t=_I(staging(n)),
            )
        )
    counts = [_Q("count(*) FILTER (WHERE src = {}) = 1").format(_L(n)) for n in range(count)]
    agree = [_Q("min({0}) = max({0})").format(_I(f"d_{g}")) for g in range(len(groups))]
    return _Q(
        """
WITH a AS (
    SELECT count(*) FILTER (WHERE fast) AS fast,
           array_agg(key) FILTER (WHERE NOT fast AND (in_scope OR key IS NULL)) AS slow,
           array_agg(key) FILTER (WHERE fast AND key IN (SELECT key FROM _open_keys)) AS kept
    FROM (
        SELECT key, in_scope, key IS NOT NULL AND in_scope AND once_alike AS fast
        FROM (
            SELECT key, {counts} AND {agree} AS once_alike, bool_or(in_scope) AS in_scope
            FROM ({union}) r
            GROUP BY key
        ) g
    ) k
),
slow AS (INSERT INTO _slow SELECT unnest(slow) FROM a),
kept AS (INSERT INTO _keys SELECT unnest(kept), true, false FROM a)
SELECT fast FROM a
"""
    ).format(
        counts=_Q(" AND ").join(counts),
        agree=_Q(" AND ").join(agree) if agree else _Q("true"),
        union=_Q(" UNION ALL ").join(parts),
    )


def judge(plan: Plan) -> sql.Composed:
    """Step 2: the verdicts of the keys `quick` left, kept only where they are needed next
    (writing a million rows of verdicts would cost as much as reaching them); answers the
    figures, the first source with a keyless record, and per pair of sources (plan.pairs
    order) the keys checked in either and matched in both."""
    pairs = [
        _Q(
            ", count(*) FILTER (WHERE {seen} AND NOT pending), "
            "count(*) FILTER (WHERE {agree} AND NOT pending)"
        ).format(seen=seen, agree=agree)
        for seen, agree in map(lambda pair: pair_columns(*pair), plan.pairs())
    ]
    first = _Q(" ").join(
        _Q("WHEN {} > 0 THEN {}").format(count_column(n), _L(n)) for n in range(len(plan.sources))
    )
    return _Q(
        """
WITH v AS MATERIALIZED ({verdicts}),
broken AS (INSERT INTO _broken SELECT * FROM v WHERE NOT (matched OR pending)),
kept AS (
    INSERT INTO _keys SELECT key, matched, pending FROM v
    WHERE key IN (SELECT key FROM _open_keys)
)
SELECT count(*) - count(*) FILTER (WHERE pending), count(*) FILTER (WHERE matched),
       count(*) FILTER (WHERE pending), min(CASE {first} END) FILTER (WHERE key IS NULL)
       {pairs}
FROM v
"""
    ).format(verdicts=verdicts(plan), first=first, pairs=_Q("").join(pairs))


def breaks(plan: Plan) -> sql.Composed:
    """Step 3: `_breaks`, one row per key and break type (with the source or field
    at fault) and the key's business context: the value of the first source, in config
    order, that gives it. Only keys neither matched nor pending (`_broken`) have one."""
    kinds = []
    for n, source in enumerate(plan.sources):
        kinds.append(
            _Q("({}, {}, k.{} = 0 AND k.settled)").format(
                _L(f"missing_in:{source}"), _L(source), count_column(n)
            )
        )
        kinds.append(
            _Q("({}, {}, k.{} > 1)").format(
                _L(f"duplicate_in:{source}"), _L(source), count_column(n)
            )
        )
    kinds += [
        _Q("({}, {}, k.{})").format(_L(f"mismatch:{f}"), _L(f), mismatch_column(f))
        for f in plan.compared
    ]
    context = []
    for f in CONTEXT_FIELDS:
        given = [_Q("k.{}").format(value_column(f, n)) for n in plan.givers(f)]
        null = "NULL::numeric" if f in plan.numeric else "NULL::text"
        value = _Q("coalesce({})").format(_Q(", ").join(given)) if given else _Q(null)
        if f == plan.key:  # a customers reconciliation: the key is the context itself
            value = _Q("k.key")
        context.append(
            _Q("{}::{} AS {}").format(value, _Q("numeric" if f in plan.numeric else "text"), _I(f))
        )
    return _Q(
        """
CREATE TEMP TABLE _breaks ON COMMIT DROP AS
SELECT k.key, b.break_type, b.at_fault, {context}
FROM _broken k
CROSS JOIN LATERAL (VALUES {kinds}) b(break_type, at_fault, broken)
WHERE b.broken
"""
    ).format(context=_Q(", ").join(context), kinds=_Q(", ").join(kinds))


def records(plan: Plan) -> sql.Composed:
    """Step 4: `_records`, per key with a break: every source's records as given,
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
            ).format(key=_I(plan.key), source=_L(source), record=record, t=_I(slow_staging(n)))
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


def _own(plan: Plan, object_: str, field: str) -> sql.Composable:
    """The break's key when it is `field` (the object's own, or the key's), else NULL."""
    return _Q("b.key") if field in (plan.key, TRANSACTION_KEYS.get(object_)) else _Q("NULL")


def linked_breaks(plan: Plan, object_: str) -> sql.Composed:
    """Step 5: `_b`, each break with its exception's correlation ID (the latest
    transaction that telemetry saw with this key, else one of its own), its fingerprint
    (alike breaks share it), the acceptance that covers it, and the exception it keeps
    (the latest of its correlation ID, stage and fingerprint, when open or ignored)."""
    # By the key's own field when telemetry keeps it (a subscription keyed by its order's
    # order_id is seen on that order's transaction), else by the object's.
    keys = set(TRANSACTION_KEYS.values())
    column = plan.key if plan.key in keys else TRANSACTION_KEYS.get(object_)
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
WITH kept_before AS (  -- the open (or ignored) exception of each key and break type
    SELECT DISTINCT ON (last.key, last.break_type) last.key, last.break_type, e.correlation_id
    FROM exceptions e
    CROSS JOIN LATERAL (
        SELECT rb.key, rb.break_type FROM reconciliation_breaks rb
        WHERE rb.exception_id = e.id ORDER BY rb.run_id DESC LIMIT 1
    ) last
    WHERE e.kind = 'reconciliation' AND e.stage = %(stage)s
      AND (q2c_is_open(e.status) OR e.status = 'ignored')
    ORDER BY last.key, last.break_type, e.id DESC
), linked AS (
    -- A break that goes on stays with its exception, under the correlation ID it was
    -- opened with, though telemetry may since have seen the key on a newer transaction.
    SELECT b.key, b.break_type, b.at_fault, r.records, r.records_hash,
           coalesce(k.correlation_id, t.correlation_id,
                    'reconcile:' || %(name)s::text || ':' || b.key) AS correlation_id,
           t.process, md5('reconcile/' || %(name)s::text || '/' || b.break_type) AS fingerprint,
           coalesce(b.customer_id, t.customer_id) AS customer_id,
           coalesce({own_order_id}, t.order_id) AS order_id,
           coalesce({own_invoice_id}, t.invoice_id) AS invoice_id,
           coalesce(CASE WHEN abs(b.amount) < {limit} THEN b.amount END, t.amount) AS amount,
           coalesce(b.currency, t.currency) AS currency,
           coalesce(b.legal_entity, t.legal_entity) AS legal_entity
    FROM _breaks b
    JOIN _records r USING (key)
    LEFT JOIN kept_before k ON k.key = b.key AND k.break_type = b.break_type
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
    ).format(
        transaction=transaction,
        limit=_L(AMOUNT_LIMIT),
        **{f"own_{f}": _own(plan, object_, f) for f in ("order_id", "invoice_id")},
    )


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
AUTO_RESOLVE = f"""
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
      AND e.id NOT IN (SELECT exception_id FROM _b WHERE exception_id IS NOT NULL)
), resolved AS (
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = c.reason
    FROM candidates c
    WHERE e.correlation_id = c.correlation_id AND e.id = c.id
    RETURNING e.correlation_id, e.id, c.before_status, e.resolution
)
{audit_auto_resolved("resolved", "before_status")}
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
