"""The test extra allows only the import-linter releases the layering contract is checked on:
the locked one, and not 2.17, under which tests/test_layering.py fails on an editable install
(the data-only layer ``autopeft.search_spaces`` is reported missing)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement

from conftest import REPO


def _import_linter() -> Requirement:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    return next(Requirement(r) for r in extra if Requirement(r).name == "import-linter")


def test_the_test_extra_bounds_import_linter_to_what_is_tested():
    spec = _import_linter().specifier
    locked = re.search(r"^import-linter==(\S+)", (REPO / "requirements" / "ci.lock").read_text(), re.M).group(1)
    assert spec.contains(locked), (str(spec), locked)
    assert not spec.contains("2.17"), str(spec)
    assert spec.contains(version("import-linter")), "the installed import-linter is outside the tested range"
