"""Old alerting rows are pruned, with the owner's rights, and only what is done.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02

The outbox, the groups and their members, the notification log and the silences grow with
every event; nothing read them after a while. `q2c_prune_alerts(retention, batch)` deletes
up to `batch` rows of each kind that are older than `retention` and done:

- a group that nobody will hear of again: nothing of it was filed or told within the
  retention, none of its notifications is pending or being delivered, and none of its
  members is open (an exception still open, an SLO not ok; an escalation's group of an
  exception still open keeps its step, so the step is never taken twice). With it go its
  notifications, members, escalation steps and digest runs (a digest's occurrence that
  old is past being sent anyway);
- a notification delivered, failed or suppressed before the retention;
- an event routed before the retention, unless its exception is still open (its
  `exception.opened` is what a later resolution is told against, and what keeps it from
  being announced twice) or a group still names it as its last event;
- a silence that ended (or was expired) before the retention. An active one never is.

The runtime role owns no table and may not delete from the outbox; it runs this function,
which runs as its owner and refuses a retention under a day for anyone but the owner, so
it cannot empty the log. The caller holds the router's lock (alerts/prune.py): nothing is
filed into a group while it is deleted.

No index is added: groups are read by their primary key, notifications by their log index
(`created_at`), events by their primary key in id order (their routing time grows with
it), silences by `alert_silences_ends_idx`.
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_UPGRADE = r"""
CREATE FUNCTION q2c_prune_alerts(retention interval, batch integer)
RETURNS TABLE (groups bigint, notifications bigint, events bigint, silences bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cutoff timestamptz := now() - retention;
    doomed bigint[];
BEGIN
    IF retention < interval '1 day'
       AND NOT pg_has_role(session_user,
                           (SELECT relowner FROM pg_class WHERE oid = 'alert_events'::regclass),
                           'MEMBER') THEN
        RAISE EXCEPTION 'alerting rows are kept at least a day (asked: %)', retention
            USING ERRCODE = 'check_violation';
    END IF;

    SELECT coalesce(array_agg(id), '{}') INTO doomed FROM (
        SELECT g.id FROM alert_groups g
        WHERE greatest(g.last_event_at, coalesce(g.last_flushed_at, g.created_at)) < cutoff
          AND NOT EXISTS (
              SELECT 1 FROM alert_notifications n
              WHERE n.group_id = g.id AND n.status IN ('pending', 'delivering'))
          AND NOT EXISTS (
              SELECT 1 FROM alert_group_members m
              LEFT JOIN exceptions e
                  ON e.correlation_id = m.correlation_id AND e.id = m.exception_id
              LEFT JOIN slo_alert_states s ON s.process = m.process
              WHERE m.group_id = g.id
                AND CASE WHEN m.exception_id IS NOT NULL
                         THEN coalesce(q2c_is_open(e.status), false)
                         ELSE coalesce(s.state, 'ok') <> 'ok' END)
        ORDER BY g.id LIMIT batch
        FOR UPDATE OF g SKIP LOCKED) AS d;
    DELETE FROM alert_notifications WHERE group_id = ANY(doomed);
    DELETE FROM alert_group_members WHERE group_id = ANY(doomed);
    DELETE FROM alert_escalations WHERE group_id = ANY(doomed);
    DELETE FROM alert_digest_runs WHERE group_id = ANY(doomed);
    DELETE FROM alert_groups WHERE id = ANY(doomed);
    groups := cardinality(doomed);

    DELETE FROM alert_notifications WHERE id IN (
        SELECT n.id FROM alert_notifications n
        WHERE n.created_at < cutoff AND n.finished_at < cutoff
          AND n.status IN ('delivered', 'failed', 'suppressed')
        ORDER BY n.created_at LIMIT batch);
    GET DIAGNOSTICS notifications = ROW_COUNT;

    DELETE FROM alert_events WHERE id IN (
        SELECT a.id FROM alert_events a
        WHERE a.routed_at < cutoff
          AND NOT EXISTS (
              SELECT 1 FROM exceptions e
              WHERE e.correlation_id = a.correlation_id AND e.id = a.exception_id
                AND q2c_is_open(e.status))
          AND NOT EXISTS (SELECT 1 FROM alert_groups g WHERE g.last_event_id = a.id)
        ORDER BY a.id LIMIT batch);
    GET DIAGNOSTICS events = ROW_COUNT;

    DELETE FROM alert_silences WHERE id IN (
        SELECT s.id FROM alert_silences s
        WHERE least(s.ends_at, s.expired_at) < cutoff
        ORDER BY s.ends_at LIMIT batch);
    GET DIAGNOSTICS silences = ROW_COUNT;
    RETURN NEXT;
END $$;

DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION q2c_prune_alerts(interval, integer) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION q2c_prune_alerts(interval, integer) FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(_UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION q2c_prune_alerts(interval, integer)")
