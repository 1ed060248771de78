"""Which telemetry attribute keys feed which canonical Q2C field.

Defaults follow DESIGN.md (OpenTelemetry semantic conventions where one exists). Users map
their own keys in a YAML file named by Q2C_ATTRIBUTE_MAP, for example:

    correlation_id: [x-correlation-id, q2c.correlation_id]
    invoice_id: [billing.invoice.number]

Each field lists keys in priority order; the first key present wins. Keys not named in the
file keep their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import yaml

from q2c.errors import Q2CError

BUSINESS_FIELDS = (
    "customer_id",
    "order_id",
    "invoice_id",
    "payment_id",
    "amount",
    "currency",
    "tax_amount",
    "legal_entity",
    "contract_version",
)

DEFAULT_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "correlation_id": (
            "q2c.correlation_id",
            "messaging.message.conversation_id",
            "correlation.id",
        ),
        "process": ("q2c.process",),
        "stage": ("q2c.stage",),
        "system": ("q2c.system",),
        "status": ("q2c.status",),
        "error_type": ("error.type", "exception.type"),
        "error_message": ("exception.message", "q2c.error.message"),
        "dead_letter": ("q2c.dead_letter",),
        "replay_target": ("q2c.replay.target",),
        "replay_method": ("q2c.replay.method",),
        "payload": ("q2c.payload",),
        **{field: (f"q2c.{field}",) for field in BUSINESS_FIELDS},
    }
)


def first_value(keys: tuple[str, ...], attributes: Mapping[str, object]) -> object | None:
    """The value of the first of `keys` present in `attributes`, else None."""
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class AttributeMap:
    """Canonical field → attribute keys, first match wins."""

    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_KEYS)

    def referenced_keys(self) -> tuple[str, ...]:
        """Every attribute key some field reads, each once."""
        return tuple(dict.fromkeys(key for keys in self.keys.values() for key in keys))

    def lookup(self, name: str, attributes: Mapping[str, object]) -> object | None:
        """The value of the first key for field `name` present in `attributes`, else None."""
        return first_value(self.keys[name], attributes)

    def canonical(self, attributes: Mapping[str, object]) -> dict[str, object]:
        """Every field `attributes` give a value for, each from the first of its keys
        present (as `lookup` finds it), in one pass over the attributes."""
        first = self._first_keys
        found = {
            name: value
            for key, value in attributes.items()
            if (name := first.get(key)) is not None and value is not None
        }
        later = self._later_keys
        if not later.keys().isdisjoint(attributes.keys()):
            # A field's second or later key: it counts where no earlier key has a value.
            for name, keys in self.keys.items():
                if name not in found and not later.keys().isdisjoint(keys):
                    value = first_value(keys, attributes)
                    if value is not None:
                        found[name] = value
        return found

    @cached_property
    def _first_keys(self) -> dict[str, str]:
        """Key → the field it is the first key of, for keys no other field reads."""
        readers: dict[str, list[str]] = {}
        for name, keys in self.keys.items():
            for key in keys:
                readers.setdefault(key, []).append(name)
        return {keys[0]: name for name, keys in self.keys.items() if len(readers[keys[0]]) == 1}

    @cached_property
    def _later_keys(self) -> dict[str, None]:
        """The keys `_first_keys` leaves out: the second and later keys of a field, and
        keys more than one field reads."""
        first = self._first_keys
        return dict.fromkeys(key for keys in self.keys.values() for key in keys if key not in first)

    @classmethod
    def load(cls, path: Path | None) -> AttributeMap:
        """The defaults, overridden field by field by the YAML file at `path` (if any)."""
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise Q2CError(f"cannot read attribute map {path}: {exc}") from None
        if not isinstance(data, dict):
            raise Q2CError(f"attribute map {path}: expected a mapping of field: [keys]")
        keys = dict(DEFAULT_KEYS)
        for name, value in data.items():
            if name not in DEFAULT_KEYS:
                known = ", ".join(sorted(DEFAULT_KEYS))
                raise Q2CError(f"attribute map {path}: unknown field '{name}' (known: {known})")
            listed = [value] if isinstance(value, str) else value
            if not isinstance(listed, list) or not all(isinstance(k, str) and k for k in listed):
                raise Q2CError(f"attribute map {path}: '{name}' needs a key or a list of keys")
            if not listed:
                raise Q2CError(f"attribute map {path}: '{name}' needs a key or a list of keys")
            keys[name] = tuple(listed)
        return cls(MappingProxyType(keys))
