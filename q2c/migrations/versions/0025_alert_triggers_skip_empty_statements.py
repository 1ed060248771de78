"""The alert triggers on updates return at once when their statement changed no row.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03

A statement-level trigger fires for every UPDATE of its table, and for every INSERT … ON
CONFLICT DO UPDATE, whether or not a row changed; the telemetry writer's statements that
keep exceptions up to date fire `exceptions_alert_changed` with every group of batches,
the SLA evaluation five times a pass, mostly with no row. Planning the trigger's statement
(EXECUTE, so that it is planned for the rows at hand) cost 0.6 ms each time; a test of the
transition table first, 0.1 ms. The trigger bodies stay as migrations 0017 and 0022 wrote
them: only the test is put in front of their EXECUTE.
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_FUNCTIONS = ("q2c_exceptions_changed()", "q2c_replays_changed()")
_BODY_STARTS = "BEGIN\n    EXECUTE $q$"
_GUARDED = (
    "BEGIN\n    IF NOT EXISTS (SELECT FROM after) THEN\n        RETURN NULL;\n    END IF;\n"
    "    EXECUTE $q$"
)


def _rewrite(function: str, old: str, new: str) -> None:
    """Define `function` again with `old` in its source replaced by `new`; fail if its
    source does not hold `old` once (it was changed since: this migration would be wrong)."""
    op.execute(
        f"""
DO $do$
DECLARE
    source text := pg_get_functiondef('{function}'::regprocedure);
BEGIN
    IF array_length(string_to_array(source, $old${old}$old$), 1) <> 2 THEN
        RAISE EXCEPTION 'the source of % is not as migration 0025 expects', '{function}';
    END IF;
    EXECUTE replace(source, $old${old}$old$, $new${new}$new$);
END
$do$
"""
    )


def upgrade() -> None:
    for function in _FUNCTIONS:
        _rewrite(function, _BODY_STARTS, _GUARDED)


def downgrade() -> None:
    for function in _FUNCTIONS:
        _rewrite(function, _GUARDED, _BODY_STARTS)
