"""An exception records when it was announced as opened; the outbox's once-only index no
longer holds the announcements of openings.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03

`exceptions.opened_at` is set by the classification that finds the exception open
(sla/_sql.py, CLASSIFY), once: it is never taken away. `exceptions_alert_changed` records
`exception.opened` when it appears, and tells an exception's closing only if it has one:
what it used to find by looking up the `exception.opened` event in `alert_events_once_idx`,
an index every announcement was written into (90 bytes of WAL and a microsecond each, a
quarter of what an announcement cost a storm's evaluation). That index now holds only the
events told once that the outbox alone keeps from repeating (`exception.regressed`,
`exception.overdue`). Exceptions announced before get the time of their announcement; one
whose announcement was pruned (it closed long ago) gets none, as the lookup found none.
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_FUNCTION = "q2c_exceptions_changed()"
# (as migration 0026 left it, as this one makes it)
_CHANGES = (
    (
        "               o.due_at IS NULL AND n.due_at IS NOT NULL AND q2c_is_open(n.status)\n"
        "                   AS classified_open,\n",
        "               o.opened_at IS NULL AND n.opened_at IS NOT NULL AS classified_open,\n"
        "               n.opened_at IS NOT NULL AS announced,\n",
    ),
    (
        "        WHERE (o.due_at IS NULL AND n.due_at IS NOT NULL)\n",
        "        WHERE (o.opened_at IS NULL AND n.opened_at IS NOT NULL)\n",
    ),
    (
        "    WHERE c.closed\n"
        "      AND EXISTS (SELECT 1 FROM alert_events a\n"
        "                  WHERE a.exception_id = c.id AND a.type = 'exception.opened')\n",
        "    WHERE c.closed AND c.announced\n",
    ),
)
_ONCE_0017 = "'exception.opened', 'exception.regressed', 'exception.overdue'"
_ONCE = "'exception.regressed', 'exception.overdue'"


def _rewrite(old: str, new: str) -> None:
    """Define the trigger function again with `old` in its source replaced by `new`; fail
    if its source does not hold `old` once (it was changed since: this would be wrong)."""
    op.execute(
        f"""
DO $do$
DECLARE
    source text := pg_get_functiondef('{_FUNCTION}'::regprocedure);
BEGIN
    IF array_length(string_to_array(source, $old${old}$old$), 1) <> 2 THEN
        RAISE EXCEPTION 'the source of % is not as migration 0027 expects', '{_FUNCTION}';
    END IF;
    EXECUTE replace(source, $old${old}$old$, $new${new}$new$);
END
$do$
"""
    )


def _once_index(types: str) -> None:
    op.execute(
        f"""
DROP INDEX alert_events_once_idx;
CREATE UNIQUE INDEX alert_events_once_idx ON alert_events (exception_id, type)
    WHERE type IN ({types});
"""
    )


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE exceptions ADD COLUMN opened_at timestamptz;
UPDATE exceptions e SET opened_at = a.occurred_at
FROM alert_events a
WHERE a.type = 'exception.opened' AND a.exception_id = e.id
  AND a.correlation_id = e.correlation_id;
"""
    )
    for before, after in _CHANGES:
        _rewrite(before, after)
    _once_index(_ONCE)


def downgrade() -> None:
    _once_index(_ONCE_0017)
    for before, after in _CHANGES:
        _rewrite(after, before)
    op.execute("ALTER TABLE exceptions DROP COLUMN opened_at")
