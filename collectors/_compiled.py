"""The compiled helpers of collectors/_wire.c, and which decoder the collector uses.

`built` is the extension as the install built it (None without a C compiler: every caller
then has a pure-Python path giving the same results, more slowly). `wire` is the one in
use: `built` unless Q2C_DECODER chose otherwise (`use`). Callers read `wire` when they
run, never bind it at import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from q2c.errors import Q2CError

built: ModuleType | None
try:
    built = importlib.import_module("collectors._wire")
except ImportError:
    built = None
wire: ModuleType | None = built


def use(decoder: str) -> str:
    """Decode with `decoder` (Q2C_DECODER: auto, compiled or python) in this process;
    returns a line saying which decoder that is. Raises Q2CError when the compiled reader
    is demanded but was not built."""
    global wire
    if decoder == "compiled" and built is None:
        raise Q2CError(
            "Q2C_DECODER=compiled, but the compiled reader (collectors/_wire.c) was not "
            "built: install a C compiler and Python headers, then `make clean demo`"
        )
    wire = None if decoder == "python" else built
    if wire is not None:
        return "decoding OTLP protobuf with the compiled reader (collectors/_wire.c)"
    why = "Q2C_DECODER=python" if decoder == "python" else "the compiled reader was not built"
    return f"decoding OTLP protobuf with the protobuf runtime ({why}; slower, same results)"
