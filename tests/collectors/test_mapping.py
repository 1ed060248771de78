"""The attribute map reads a field from the first of its keys with a value, whether one
field is asked for (`lookup`) or all of them in one pass (`canonical`)."""

from __future__ import annotations

import random
from types import MappingProxyType

from collectors.mapping import DEFAULT_KEYS, AttributeMap

# A map as a user might write it: fields with several keys, keys read by two fields, a
# field whose first key another field reads later.
_USER_KEYS = MappingProxyType(
    {
        **DEFAULT_KEYS,
        "correlation_id": ("x-correlation", "q2c.correlation_id", "id"),
        "invoice_id": ("id", "billing.invoice"),
        "order_id": ("billing.invoice", "q2c.order_id"),
    }
)


def test_all_fields_at_once_are_each_field_alone() -> None:
    rng = random.Random(5)
    for keys in (DEFAULT_KEYS, _USER_KEYS):
        mapping = AttributeMap(keys)
        names = [key for field_keys in keys.values() for key in field_keys] + ["other"]
        for _ in range(3000):
            attributes = {
                rng.choice(names): rng.choice((None, "v1", 2, "", False))
                for _ in range(rng.randrange(8))
            }
            expected = {
                name: value
                for name in keys
                if (value := mapping.lookup(name, attributes)) is not None
            }
            assert mapping.canonical(attributes) == expected, attributes
