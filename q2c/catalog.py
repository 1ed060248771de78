"""The business-process catalog: quote-to-cash processes and their stages, in order.

This is the seed catalog of DESIGN.md; `sla.yaml` may extend it. Collectors use it to know
how far a transaction got and when it completed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    """One business process and its stages in the order a transaction passes them."""

    name: str
    stages: tuple[str, ...]

    def index(self, stage: str) -> int | None:
        """Position of `stage` in this process (0-based), None if it is not one of ours."""
        try:
            return self.stages.index(stage)
        except ValueError:
            return None


SEED_CATALOG: tuple[Process, ...] = (
    Process(
        "order_to_activation",
        ("opportunity_closed_won", "customer_created", "subscription_activated", "customer_synced"),
    ),
    Process("invoice_posting", ("invoice_posted", "invoice_recorded", "collections_notified")),
    Process("payment_application", ("payment_applied", "billing_settled", "crm_updated")),
    Process(
        "subscription_amendment",
        ("subscription_amended", "revenue_schedule_updated", "support_notified"),
    ),
    Process("customer_merge", ("customer_merged", "billing_merged", "erp_merged")),
)


def stage_rows(catalog: tuple[Process, ...] = SEED_CATALOG) -> list[tuple[str, str, int, bool]]:
    """(process, stage, index, is_last) for every stage: the catalog as a relation."""
    return [
        (process.name, stage, i, i == len(process.stages) - 1)
        for process in catalog
        for i, stage in enumerate(process.stages)
    ]
