"""The audit-trail rows the system writes set-wise (the collector, the SLA evaluation and
reconciliation auto-resolving exceptions), spelled once. What people do is audited by
queries.audit, one row at a time."""

from __future__ import annotations


def audit_auto_resolved(source: str, before: str) -> str:
    """The INSERT of the audit-trail rows for the exceptions in `source` (a relation with
    correlation_id, id and resolution) that the system auto-resolved from the status in
    its column `before`."""
    return f"""INSERT INTO exception_events (correlation_id, exception_id, actor, action, before,
                              after, comment)
SELECT correlation_id, id, 'system', 'auto_resolved', jsonb_build_object('status', {before}),
       jsonb_build_object('status', 'auto_resolved'), resolution
FROM {source}
ORDER BY correlation_id, id"""
