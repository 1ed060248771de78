"""The compiled helpers of collectors/_wire.c, or None when the install had no C compiler
(every caller then has a pure-Python path giving the same results, more slowly)."""

from __future__ import annotations

from types import ModuleType

wire: ModuleType | None
try:
    from collectors import _wire as wire
except ImportError:
    wire = None
