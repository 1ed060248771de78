"""The business-process catalog and SLA policies, read from `sla.yaml` and validated.

Errors name the offending key by its path (`processes.invoice_posting.objective.to`), so a
bad edit is found without reading a traceback.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from q2c.catalog import Process
from q2c.durations import Duration
from q2c.errors import Q2CError
from q2c.vocabulary import IMPACTS, ExceptionKind, Impact
from sla.histogram import PERCENTILES

DEFAULT_POLICY_FILE = Path(__file__).with_name("sla.yaml")


def _fraction(value: Any) -> float:
    text = str(value).strip()
    number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < number < 1:
        raise ValueError(f"must be between 0% and 100% exclusive, not {value!r}")
    return number


Fraction = Annotated[float, BeforeValidator(_fraction)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Stage(_Strict):
    """One stage: its name, the system expected to report it, and its waiting limit."""

    name: str
    system: str = ""
    erp_bound: bool = False
    stalled_after: Duration | None = None


class Objective(_Strict):
    """Latency objective: `from_stage` → `to_stage` within `latency` for `target` of
    transactions over `period`."""

    from_stage: str = Field(alias="from")
    to_stage: str = Field(alias="to")
    latency: Duration
    percentile: float = Field(default=95, gt=0, lt=100)
    target: Fraction = 0.99
    period: Duration = timedelta(days=28)


class ProcessPolicy(_Strict):
    """A process's stages in order, its objective and what reconciliation compares."""

    stages: list[Stage] = Field(min_length=2)
    objective: Objective
    reconcile: list[
        Literal[
            "customer_id",
            "order_id",
            "invoice_id",
            "payment_id",
            "amount",
            "tax_amount",
            "currency",
            "legal_entity",
            "contract_version",
        ]
    ] = []

    def stage_names(self) -> tuple[str, ...]:
        """The stage names, in order."""
        return tuple(stage.name for stage in self.stages)

    @model_validator(mode="after")
    def _consistent(self) -> ProcessPolicy:
        names = list(self.stage_names())
        if len(set(names)) != len(names):
            raise ValueError("stages: a stage is listed twice")
        for key, stage in (("from", self.objective.from_stage), ("to", self.objective.to_stage)):
            if stage not in names:
                raise ValueError(f"objective.{key}: '{stage}' is not one of the stages")
        if names.index(self.objective.from_stage) >= names.index(self.objective.to_stage):
            raise ValueError("objective: 'from' must come before 'to'")
        return self


class RuleCondition(_Strict):
    """Conditions of an impact rule; all given ones must hold."""

    process: str | None = None
    stage: str | None = None
    kind: ExceptionKind | None = None
    min_amount: float | None = None


class ImpactRule(_Strict):
    """`impact` for exceptions matching `when`."""

    when: RuleCondition
    impact: Impact


class Headline(_Strict):
    """A latency the overview and `q2c kpis` lead with: a stage pair of one process."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    process: str
    from_stage: str = Field(alias="from")
    to_stage: str = Field(alias="to")
    percentiles: list[int] = Field(default=[95], min_length=1)


class Policy(_Strict):
    """Everything sla.yaml holds."""

    impact_due: dict[Impact, Duration]
    default_impact: Impact = "medium"
    impact_rules: list[ImpactRule] = []
    default_stalled_after: Duration = timedelta(hours=2)
    processes: dict[str, ProcessPolicy] = Field(min_length=1)
    amount_tolerance: float = Field(default=0.005, ge=0)
    headlines: list[Headline] = []

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        missing = [impact for impact in IMPACTS if impact not in self.impact_due]
        if missing:
            raise ValueError(f"impact_due: missing {', '.join(missing)}")
        for index, rule in enumerate(self.impact_rules):
            where = f"impact_rules.{index}.when"
            if rule.when.process and rule.when.process not in self.processes:
                raise ValueError(f"{where}.process: unknown process '{rule.when.process}'")
            if rule.when.stage and not any(
                rule.when.stage in p.stage_names() for p in self.processes.values()
            ):
                raise ValueError(f"{where}.stage: unknown stage '{rule.when.stage}'")
        for index, headline in enumerate(self.headlines):
            where = f"headlines.{index}"
            process = self.processes.get(headline.process)
            if process is None:
                raise ValueError(f"{where}.process: unknown process '{headline.process}'")
            names = list(process.stage_names())
            for key, stage in (("from", headline.from_stage), ("to", headline.to_stage)):
                if stage not in names:
                    raise ValueError(
                        f"{where}.{key}: '{stage}' is not a stage of {headline.process}"
                    )
            if names.index(headline.from_stage) >= names.index(headline.to_stage):
                raise ValueError(f"{where}: 'from' must come before 'to'")
            if not set(headline.percentiles) <= set(PERCENTILES):
                raise ValueError(f"{where}.percentiles: choose among {list(PERCENTILES)}")
        if len({h.name for h in self.headlines}) != len(self.headlines):
            raise ValueError("headlines: a name is used twice")
        return self

    def catalog(self) -> tuple[Process, ...]:
        """The processes and their stages, as the collectors use them."""
        return tuple(
            Process(
                name,
                p.stage_names(),
                tuple(self.stalled_after(name, stage) for stage in p.stage_names()),
            )
            for name, p in self.processes.items()
        )

    def stalled_after(self, process: str, stage: str) -> timedelta:
        """How long a transaction may wait for `stage` of `process`."""
        for candidate in self.processes[process].stages:
            if candidate.name == stage and candidate.stalled_after is not None:
                return candidate.stalled_after
        return self.default_stalled_after

    def impact_of(self, process: str | None, stage: str, kind: str, amount: float | None) -> Impact:
        """The first matching rule's impact, else the default."""
        for rule in self.impact_rules:
            when = rule.when
            if when.process is not None and when.process != process:
                continue
            if when.stage is not None and when.stage != stage:
                continue
            if when.kind is not None and when.kind != kind:
                continue
            if when.min_amount is not None and (amount is None or amount < when.min_amount):
                continue
            return rule.impact
        return self.default_impact


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate sla.yaml (the shipped seed when `path` is None)."""
    source = path or DEFAULT_POLICY_FILE
    try:
        data = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise Q2CError(f"cannot read SLA policy {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Q2CError(f"SLA policy {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise Q2CError(f"SLA policy {source}: expected a mapping at the top level")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise Q2CError(f"invalid SLA policy {source}:\n  " + "\n  ".join(problems)) from None
