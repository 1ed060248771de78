"""Fixtures for the compiled helpers: `compiled_wire` (collectors._wire, for the tests of
the compiled reader) and `decoder` (a test run with each decoder).

Such a test is skipped only where the extension cannot be built (no C compiler or no
Python headers: the install then goes without it, by design). Where it can, a missing
extension is a broken build, and the test fails rather than passing as "skipped"."""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from collectors import _compiled
from collectors._compiled import built


def _can_build() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(compiler) is not None and headers.exists()


@pytest.fixture
def compiled_wire() -> ModuleType:
    """The compiled helpers, as the install built them."""
    if built is not None:
        return built
    if _can_build():
        pytest.fail("collectors._wire is missing though this machine can build it: reinstall")
    pytest.skip("collectors._wire cannot be built here (no C compiler or Python headers)")


@pytest.fixture
def decoder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test with the decoder named by its parameter (`compiled` or `python`),
    as Q2C_DECODER would choose it, and restores the one in use afterwards."""
    choice = request.param
    if choice == "compiled":
        request.getfixturevalue("compiled_wire")
    in_use = _compiled.wire
    _compiled.use(choice)
    yield choice
    _compiled.wire = in_use
