"""Reading reconcile.yaml: every mistake is reported by the path of its key
(`reconciliations.invoices.sources.erp.next: …`), all of them at once. Relative file paths
of `file` sources are read from the directory of the reconcile.yaml that names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from q2c.config_errors import InvalidConfig, TaggedUnion, problems_of, read_yaml
from reconcile.config import (
    CONTEXT_FIELDS,
    SOURCE_TYPES,
    UPDATED_AT,
    ReconcileConfig,
    Reconciliation,
)

DEFAULT_CONFIG_FILE = Path(__file__).with_name("reconcile.yaml")
_UNIONS = {"sources": TaggedUnion("source type", SOURCE_TYPES)}


class InvalidReconcileConfig(InvalidConfig):
    """reconcile.yaml is not valid; `problems` has one line a mistake, each naming its key."""

    def __init__(self, source: object, problems: list[str]) -> None:
        super().__init__("reconcile config", source, problems)


def load_reconcile_config(path: Path | None = None) -> ReconcileConfig:
    """Read and validate reconcile.yaml (the shipped example when `path` is None)."""
    source = path or DEFAULT_CONFIG_FILE
    return parse_reconcile_config(
        read_yaml(source, "reconcile config"), source, base=source.resolve().parent
    )


def parse_reconcile_config(
    data: Any, source: object = "reconcile.yaml", base: Path = Path(".")
) -> ReconcileConfig:
    """The config `data` (parsed YAML) describes, its relative paths read from `base`;
    InvalidReconcileConfig listing every mistake at once when it is not valid."""
    if data is None:
        data = {}  # an empty file configures nothing, which is valid
    if not isinstance(data, dict):
        raise InvalidReconcileConfig(source, ["(top level): expected a mapping (reconciliations)"])
    try:
        config = ReconcileConfig.model_validate(data, context={"base": base})
    except ValidationError as exc:
        # With the mistakes of the reconciliations that are well formed on their own.
        problems = problems_of(exc, _UNIONS) + _problems_of_the_valid(data, base)
        raise InvalidReconcileConfig(source, problems) from None
    problems = [
        problem
        for name, recon in config.reconciliations.items()
        for problem in _reference_problems(name, recon)
    ]
    if problems:
        raise InvalidReconcileConfig(source, problems)
    return config


def _problems_of_the_valid(data: dict[str, Any], base: Path) -> list[str]:
    """The reference mistakes (`_reference_problems`) of each reconciliation of `data` that
    is well formed, when others are not."""
    reconciliations = data.get("reconciliations")
    if not isinstance(reconciliations, dict):
        return []
    problems = []
    for name, document in reconciliations.items():
        try:
            recon = Reconciliation.model_validate(document, context={"base": base})
        except ValidationError:
            continue  # its mistakes are listed already
        problems += _reference_problems(str(name), recon)
    return problems


def _reference_problems(name: str, recon: Reconciliation) -> list[str]:
    """Fields named where no source gives them; maps naming unknown sources."""
    problems = []
    where = f"reconciliations.{name}"
    given = {source: s.provides() for source, s in recon.sources.items()}
    # A source whose fields are known only once it is read (sql) may give any field.
    known = {source: set(fields) for source, fields in given.items() if fields is not None}
    anywhere = set().union(*known.values())
    unknown_somewhere = len(known) < len(given)
    for source, fields in known.items():
        if recon.key not in fields:
            problems.append(f"{where}.sources.{source}.fields: does not give the key {recon.key!r}")
        usable = {recon.key, *recon.compare, *CONTEXT_FIELDS, UPDATED_AT}
        for field in sorted(fields - usable):
            problems.append(
                f"{where}.sources.{source}.fields.{field}: not the key, a compared field, "
                f"{', '.join(CONTEXT_FIELDS)} or {UPDATED_AT}"
            )
    for field, comparison in recon.compare.items():
        if field not in anywhere and not unknown_somewhere:
            problems.append(f"{where}.compare.{field}: no source gives this field")
        if field == recon.key:
            problems.append(f"{where}.compare.{field}: the key is matched, not compared")
        for source in comparison.map:
            if source not in recon.sources:
                problems.append(
                    f"{where}.compare.{field}.map.{source}: unknown source "
                    f"(sources: {', '.join(recon.sources)})"
                )
        if comparison.map and comparison.tolerance is not None:
            problems.append(f"{where}.compare.{field}: a tolerance and a map do not go together")
    return problems
