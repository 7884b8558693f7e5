"""autopeft's import graph as installed: for ``lint-imports`` (``.importlinter``) and
tests/test_layering.py.

pyproject.toml's ``[tool.setuptools.package-dir]`` installs trials/ and dashboard/ as
``autopeft.trials`` and ``autopeft.dashboard``. An editable install (``pip install -e .``,
what CI does) leaves them in their own folders, outside autopeft/, and grimp (the graph
builder of import-linter) only walks autopeft/: it would see neither those modules nor any
import of them, and every contract about them would pass unchecked. This module builds the
graph from autopeft/ plus each folder mapped under ``autopeft``, named as installed. From a
wheel (the folders then sit inside autopeft/) it is grimp's own graph.

``.importlinter`` names the contract type below, so importing this module (which
``lint-imports`` does before it builds the graph) switches import-linter to this graph. Run
``lint-imports`` from the repository root (the current directory is where it finds ``tests``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tomllib
from pathlib import Path

import grimp
from grimp.adaptors.packagefinder import ImportLibPackageFinder
from grimp.application.config import settings as grimp_settings
from importlinter.adapters.building import GraphBuilder
from importlinter.application.app_config import settings as importlinter_settings
from importlinter.contracts import layers

REPO = Path(__file__).resolve().parents[1]


def mapped_subpackages(root: str) -> list[str]:
    """The subpackages of ``root`` installed from a folder outside ``root``'s own (with Python
    modules in it), as pyproject.toml maps them."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-dir", {})
    root_dirs = [os.path.realpath(d) for d in importlib.util.find_spec(root).submodule_search_locations]
    found = []
    for name in sorted(mapping):
        if not name.startswith(root + "."):
            continue
        spec = importlib.util.find_spec(name)
        dirs = [os.path.realpath(d) for d in (spec.submodule_search_locations or ())] if spec else []
        if not dirs or not all(os.path.exists(os.path.join(d, "__init__.py")) for d in dirs):
            continue  # data only (search_spaces/)
        if any(os.path.commonpath([d, r]) == r for d in dirs for r in root_dirs):
            continue  # inside root's folder already (a wheel): grimp finds it there
        found.append(name)
    return found


class _SubpackageRootFinder(ImportLibPackageFinder):
    """grimp's package finder, also taking the given subpackages as roots (grimp's own refuses
    a root that is not top-level)."""

    def __init__(self, subpackages: list[str]):
        self.subpackages = set(subpackages)

    def determine_package_directories(self, package_name, file_system):
        if package_name in self.subpackages:
            return set(importlib.util.find_spec(package_name).submodule_search_locations)
        return super().determine_package_directories(package_name, file_system)


@contextlib.contextmanager
def _finding(subpackages: list[str]):
    previous = grimp_settings.PACKAGE_FINDER
    grimp_settings.configure(PACKAGE_FINDER=_SubpackageRootFinder(subpackages))
    try:
        yield
    finally:
        grimp_settings.configure(PACKAGE_FINDER=previous)


def build_graph(*roots: str, **kwargs) -> grimp.ImportGraph:
    """``grimp.build_graph(*roots, **kwargs)``, each root's folders mapped elsewhere included."""
    roots = roots or ("autopeft",)
    extra = [name for root in roots for name in mapped_subpackages(root) if name not in roots]
    with _finding(extra):
        return grimp.build_graph(*roots, *extra, **kwargs)


class InstalledGraphBuilder(GraphBuilder):
    """import-linter's graph builder, on :func:`build_graph`."""

    def build(self, root_package_names, cache_dir, include_external_packages=False,
              exclude_type_checking_imports=False):
        return build_graph(*root_package_names, include_external_packages=include_external_packages,
                           exclude_type_checking_imports=exclude_type_checking_imports, cache_dir=cache_dir)


class LayersContract(layers.LayersContract):
    """import-linter's layers contract; naming it in ``contract_types`` loads this module."""


importlinter_settings.configure(GRAPH_BUILDER=InstalledGraphBuilder())
