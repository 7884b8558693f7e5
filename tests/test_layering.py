"""The architecture holds: the layers of ``.importlinter`` (import-linter), and no import cycle
among autopeft's modules (grimp). Both read the package as installed, trials/ and dashboard/
included (tests/import_graph.py), and count lazy imports inside functions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _import_graph():
    spec = importlib.util.spec_from_file_location("_autopeft_import_graph", Path(__file__).with_name("import_graph.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_linter_contracts_are_kept():
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run([sys.executable, "-c", code, "--config", ".importlinter", "--no-cache", "--no-logo"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout, done.stdout  # autopeft's layers, search's layers, its two rooms


def _modules_on_disk() -> set[str]:
    """Every module of the package as installed: autopeft/, plus the folders installed under it."""
    found = set()
    for folder, name in (("autopeft", "autopeft"), ("trials", "autopeft.trials"), ("dashboard", "autopeft.dashboard"),
                         ("search_spaces", "autopeft.search_spaces")):
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if "migrations" in parts:  # alembic's scripts: run by alembic, never imported
                continue
            found.add(".".join((name, *parts[:-1], *(() if parts[-1] == "__init__" else parts[-1:]))))
    return found


def _cycle(graph) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None: an iterative depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph.modules):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph.find_modules_directly_imported_by(start)))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.find_modules_directly_imported_by(nxt))))
    return None


def test_no_module_imports_itself_back():
    graph = _import_graph().build_graph("autopeft", cache_dir=None)
    # The graph is the whole package (not autopeft/ alone, which an editable install would give).
    assert _modules_on_disk() <= set(graph.modules), sorted(_modules_on_disk() - set(graph.modules))
    cycle = _cycle(graph)
    if cycle:
        lines = []
        for importer, imported in zip(cycle, cycle[1:]):
            details = graph.get_import_details(importer=importer, imported=imported)
            lines += [f"{importer}:{d['line_number']}  {d['line_contents']}" for d in details]
        raise AssertionError("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(lines))
