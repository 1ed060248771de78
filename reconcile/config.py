"""What reconcile.yaml holds, as typed records: each reconciliation's object, key, schedule,
grace, scope, sources and how each field is compared. Reading the file and naming the key
of each mistake is `reconcile.load`'s job; these records only say what a valid file is."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from q2c.cron import cron_trigger
from q2c.durations import duration_text, parse_duration
from reconcile.sources.file import FileSource
from reconcile.sources.http import HttpSource
from reconcile.sources.sql import SqlSource

# The source types, each a record of its own module in reconcile/sources/ (one line each).
Source = Annotated[FileSource | HttpSource | SqlSource, Field(discriminator="type")]
SOURCE_TYPES = ("file", "http", "sql")

# Fields an exception takes its business context from, when a source gives them.
CONTEXT_FIELDS = ("customer_id", "amount", "currency", "legal_entity")
UPDATED_AT = "updated_at"  # when a record last changed: grace and scope read it
NUMERIC_FIELDS = ("amount",)  # cast to numeric even when compared exactly (the impact reads it)

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
FieldName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")]


def _schedule(value: Any) -> timedelta | str:
    """A duration ("15m") or a five-field cron expression ("*/15 * * * *")."""
    try:
        return parse_duration(value)
    except ValueError:
        pass
    text = str(value)
    if len(text.split()) < 2:  # one word: meant as a duration
        raise ValueError(f"invalid schedule {value!r} (a duration such as 15m, or a cron line)")
    try:
        cron_trigger(text, UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a cron schedule: {exc}") from None
    return text


def _grace(value: Any) -> timedelta:
    return timedelta(0) if value in (0, "0") else parse_duration(value)


def _comparison(value: Any) -> Any:
    if value == "exact":
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"use exact, {{tolerance: N}} or {{map: …}}, not {value!r}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Strict):
    """How one field is compared: exactly (`exact`), within an absolute `tolerance` in the
    field's unit (numbers), after mapping each source's own values onto shared ones (`map`:
    source → its value → the shared value; values not named are kept)."""

    tolerance: Annotated[Decimal, Field(ge=0)] | None = None
    map: dict[Name, dict[str, str]] = {}

    def mapped(self, source: str) -> dict[str, str]:
        return self.map.get(source, {})


class Scope(_Strict):
    """Which records a run checks: those changed within `updated_within` (all when None)."""

    updated_within: Annotated[timedelta, BeforeValidator(parse_duration)] | None = None


class Reconciliation(_Strict):
    """One reconciliation: the records of `object` (invoice, payment, customer, …) keyed by
    `key` in every source, compared field by field."""

    object: FieldName
    key: FieldName
    schedule: Annotated[timedelta | str, BeforeValidator(_schedule)]
    # A record younger than this is not yet expected elsewhere (see `pending`).
    grace: Annotated[timedelta, BeforeValidator(_grace)] = timedelta(0)
    scope: Scope = Scope()
    sources: Annotated[dict[Name, Source], Field(min_length=2)]
    compare: dict[FieldName, Annotated[Comparison, BeforeValidator(_comparison)]] = {}

    def fields(self) -> tuple[str, ...]:
        """The canonical fields a run stages: the key, the compared fields, the business
        context and updated_at, each once, in that order."""
        names = (self.key, *self.compare, *CONTEXT_FIELDS, UPDATED_AT)
        return tuple(dict.fromkeys(names))

    def numeric(self, name: str) -> bool:
        """Whether `name` is read as a number (compared within a tolerance, or an amount)."""
        comparison = self.compare.get(name)
        return name in NUMERIC_FIELDS or (
            comparison is not None and comparison.tolerance is not None
        )


class ReconcileConfig(_Strict):
    """Everything reconcile.yaml holds."""

    reconciliations: dict[Name, Reconciliation] = {}


def schedule_label(schedule: timedelta | str) -> str:
    """ "every 15m" or "cron */15 * * * *", for `q2c reconcile check`."""
    return f"cron {schedule}" if isinstance(schedule, str) else f"every {duration_text(schedule)}"
