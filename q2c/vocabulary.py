"""The product's words, each spelled once: statuses, kinds, impacts, roles, and which status
an action on an exception leads to from which.

SQL spells "open" once too, as the function q2c_is_open(status) (migration 0009); a test
holds it to OPEN_STATUSES. The migrations' CHECK constraints and the partial unique index
of open exceptions spell the statuses as the migrations that made them did (released
migrations are never edited); the test holds those to this module as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

# Exceptions: open ones wait for someone or something; closed ones are done with.
ExceptionStatus = Literal[
    "open", "assigned", "in_progress", "replayed", "resolved", "auto_resolved", "ignored"
]
EXCEPTION_STATUSES: tuple[ExceptionStatus, ...] = get_args(ExceptionStatus)
OPEN_STATUSES: tuple[ExceptionStatus, ...] = ("open", "assigned", "in_progress", "replayed")
CLOSED_STATUSES: tuple[ExceptionStatus, ...] = ("resolved", "auto_resolved", "ignored")
# Open statuses a delivered replay moves on: an exception already `replayed` stays so (a
# second delivery of the same message changes nothing).
REPLAYABLE_STATUSES: tuple[ExceptionStatus, ...] = ("open", "assigned", "in_progress")

ExceptionKind = Literal["error", "stalled", "reconciliation", "dead_letter"]
EXCEPTION_KINDS: tuple[ExceptionKind, ...] = get_args(ExceptionKind)
# Exceptions of kind `reconciliation` come from two checks: the telemetry's (sla/: what the
# systems reported disagrees), on the process's own stages, and the records' (reconcile/:
# a break between the systems of record), on the stage `reconcile:<its name>`. Each
# resolves only its own.
RECORDS_STAGE_PREFIX = "reconcile:"


def records_stage(reconciliation: str) -> str:
    """The stage of the exceptions a reconciliation of the records opens."""
    return RECORDS_STAGE_PREFIX + reconciliation


# A break of the records is `<kind>:<source or field>` (missing_in:erp, mismatch:amount).
BREAK_KINDS = ("missing_in", "duplicate_in", "mismatch")


Impact = Literal["critical", "high", "medium", "low"]
IMPACTS: tuple[Impact, ...] = get_args(Impact)  # most urgent first

# The amounts the books keep (transactions' and exceptions' numeric(20, 4): 16 digits
# before the point) are below this in magnitude; a larger one, or no number (NaN,
# Infinity), is kept where it was given, not as the amount.
AMOUNT_LIMIT = 10**15

Role = Literal["viewer", "finance_ops", "oncall", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)  # each holds everything the one before it holds

DeadLetterStatus = Literal["dead", "replay_pending", "replayed", "discarded"]
DEAD_LETTER_STATUSES: tuple[DeadLetterStatus, ...] = get_args(DeadLetterStatus)

ReplayStatus = Literal["pending", "delivering", "succeeded", "failed", "cancelled"]
REPLAY_STATUSES: tuple[ReplayStatus, ...] = get_args(ReplayStatus)
ACTIVE_REPLAY_STATUSES: tuple[ReplayStatus, ...] = ("pending", "delivering")

# What a person's action on an exception does: the statuses it may start from (None: any
# open one) and the status it leaves (None: unchanged).
Action = Literal["assign", "unassign", "start_work", "comment", "resolve", "ignore", "reopen"]
TRANSITIONS: dict[Action, tuple[tuple[ExceptionStatus, ...], ExceptionStatus | None]] = {
    "assign": (OPEN_STATUSES, "assigned"),
    "unassign": (("assigned", "in_progress"), "open"),
    "start_work": (("open", "assigned", "replayed"), "in_progress"),
    "comment": (EXCEPTION_STATUSES, None),
    "resolve": (OPEN_STATUSES, "resolved"),
    "ignore": (OPEN_STATUSES, "ignored"),
    # Only what a person closed: an auto-resolved exception ended with its stage's success.
    # Open again, one somebody owns is `assigned` (reopened_status).
    "reopen": (("resolved", "ignored"), "open"),
}


def reopened_status(owner: str | None) -> ExceptionStatus:
    """The status of an exception opened again (by a person, an ignore's end or its
    failure's recurrence): still its owner's, or back in the queue if nobody's."""
    return "open" if owner is None else "assigned"


def sql_reopened_status(owner: str) -> str:
    """reopened_status in SQL, of the owner column `owner`."""
    return f"(CASE WHEN {owner} IS NULL THEN 'open' ELSE 'assigned' END)"


def sql_list(words: Iterable[str]) -> str:
    """Words of this module as an SQL list, for IN: ('open', 'assigned')."""
    return "(" + ", ".join(f"'{word}'" for word in words) + ")"


# The predicate of exceptions_one_open_idx (migration 0001), which an ON CONFLICT clause
# must repeat to name that index as its arbiter.
ONE_OPEN_INDEX_PREDICATE = f"status NOT IN {sql_list(CLOSED_STATUSES)}"
