"""An exception is announced as opened when it is classified, which happens once; the
trigger no longer looks for an earlier announcement, and joins a statement's rows by hash.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03

Classifying a storm's 10,000 exceptions spent 9-10 µs a row in `exceptions_alert_changed`.
Two parts of that went to no use:

- Before recording `exception.opened` (and `exception.regressed`) the trigger probed
  `alert_events_once_idx` for an earlier one (1.5 µs a row). An exception is classified
  when its due time goes from none to some, and the only statement that took a due time
  away again (re-dating the stalls of earlier versions, once per database) now works the
  impact and due time out in place (sla/evaluate.py). So the transition happens once per
  exception, and the unique index stays as the guard it always was.
- The rows before and after the statement were joined by sorting both on the
  correlation ID (text, compared by collation) for a merge join (1-1.5 µs a row); the
  planner, which knows nothing of a transition table's size, chose it. The function now
  plans its statement with merge joins off, so the join hashes.
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_FUNCTION = "q2c_exceptions_changed()"
_PROBES = (
    (
        "    WHERE c.classified_open\n"
        "      AND NOT EXISTS (SELECT 1 FROM alert_events a\n"
        "                      WHERE a.exception_id = c.id AND a.type = 'exception.opened')\n",
        "    WHERE c.classified_open\n",
    ),
    (
        "    WHERE c.classified_open AND c.regressed\n"
        "      AND NOT EXISTS (SELECT 1 FROM alert_events a\n"
        "                      WHERE a.exception_id = c.id AND a.type = 'exception.regressed')\n",
        "    WHERE c.classified_open AND c.regressed\n",
    ),
)


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
        RAISE EXCEPTION 'the source of % is not as migration 0026 expects', '{_FUNCTION}';
    END IF;
    EXECUTE replace(source, $old${old}$old$, $new${new}$new$);
END
$do$
"""
    )


def upgrade() -> None:
    for probed, unprobed in _PROBES:
        _rewrite(probed, unprobed)
    op.execute(f"ALTER FUNCTION {_FUNCTION} SET enable_mergejoin = off")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {_FUNCTION} RESET enable_mergejoin")
    for probed, unprobed in _PROBES:
        _rewrite(unprobed, probed)
