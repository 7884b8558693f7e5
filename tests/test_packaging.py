"""What ``pip install autopeft`` installs: one importable name, the shipped spaces as package
data, ``python -m autopeft``, and a CLI package whose modules never import it back.

The wheel is built from a copy of the sources (a ``build/`` folder left in the checkout by an
earlier build would leak stale files into an in-place build) and read from its unpacked
files with the editable install's finder removed, so nothing is found in the source tree.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

#: Source folder -> the installed package it becomes (pyproject.toml's package-dir).
INSTALLED_AS = {"autopeft": "autopeft", "trials": "autopeft/trials", "dashboard": "autopeft/dashboard",
                "search_spaces": "autopeft/search_spaces"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "screenshots")
    for folder in INSTALLED_AS:
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (path,) = (tmp / "dist").glob("autopeft-*.whl")
    return path


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root)
    return root


def run_isolated(code: str, site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -c code`` that imports autopeft from ``site`` only: the dev venv's editable
    finder (which maps autopeft.* onto this checkout) is taken off ``sys.meta_path`` first."""
    prelude = ("import sys\n"
               "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n")
    env = {**os.environ, **env, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


# ---------------------------------------------------------------------- the wheel
def test_wheel_installs_one_name_with_every_module_and_the_shipped_spaces(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names if not n.startswith("autopeft-")}
    assert tops == {"autopeft"}, f"top-level names besides autopeft: {sorted(tops - {'autopeft'})}"
    # The package list in pyproject.toml is explicit: every module and space must be in it.
    missing = []
    for folder, installed in INSTALLED_AS.items():
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".mako") and "__pycache__" not in path.parts:
                wanted = f"{installed}/{path.relative_to(REPO / folder).as_posix()}"
                missing += [wanted] if wanted not in names else []
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    assert "autopeft/search_spaces/quickstart.yaml" in names
    assert {"autopeft/trials/proxy.py", "autopeft/dashboard/app.py", "autopeft/cli/__init__.py",
            "autopeft/__main__.py", "autopeft/store/migrations/env.py"} <= names


def test_installed_wheel_imports_under_autopeft_only_and_lists_the_shipped_spaces(unpacked, tmp_path):
    code = (
        "import importlib, pathlib\n"
        f"site = pathlib.Path({str(unpacked)!r})\n"
        "for name in ('trials', 'dashboard', 'search_spaces'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'top-level {name} is importable')\n"
        "import autopeft, autopeft.trials.proxy, autopeft.trials.executor, autopeft.dashboard.launch\n"
        "from autopeft.space import shipped_spaces\n"
        "for m in (autopeft, autopeft.trials.proxy, autopeft.dashboard.launch):\n"
        "    assert site in pathlib.Path(m.__file__).parents, m.__file__\n"
        "assert site in autopeft.dashboard.launch.APP.parents and autopeft.dashboard.launch.APP.is_file()\n"
        "spaces = shipped_spaces()\n"
        "assert list(spaces)[0] == 'quickstart.yaml' and 'study: quickstart' in spaces['quickstart.yaml'], list(spaces)\n"
        "print(sorted(spaces))\n"
    )
    result = run_isolated(code, unpacked, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    shipped = sorted(p.name for p in (REPO / "search_spaces").glob("*.y*ml"))
    assert result.stdout.strip() == str(shipped)


def test_installed_wheel_dashboard_offers_the_shipped_spaces_on_new_search(unpacked, tmp_path):
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        "from autopeft.dashboard.launch import APP\n"
        "at = AppTest.from_file(str(APP), default_timeout=120)\n"
        "at.session_state['page'] = 'New search'\n"
        "at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "assert at.selectbox(key='space_template').options[0] == 'quickstart.yaml'\n"
        "assert 'study: quickstart' in at.text_area(key='space_yaml').value\n"
        "print(APP)\n"
    )
    result = run_isolated(code, unpacked, cwd=tmp_path, AUTOPEFT_DASHBOARD_STORAGE=f"sqlite:///{tmp_path}/new.db")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.strip() == str(unpacked / "autopeft" / "dashboard" / "app.py")


def test_installed_wheel_runs_python_m_autopeft(unpacked, tmp_path):
    code = "import runpy; sys.argv = ['autopeft', '--help']; runpy.run_module('autopeft', run_name='__main__')"
    result = run_isolated(code, unpacked, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "worker" in result.stdout and "dashboard" in result.stdout


# ---------------------------------------------------------------------- this checkout
def test_python_m_autopeft_help(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autopeft", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: autopeft" in result.stdout
    assert all(c in result.stdout for c in ("validate", "search", "export", "worker", "db", "dashboard"))


def test_shipped_spaces_are_the_search_spaces_folder():
    from autopeft.space import shipped_spaces

    spaces = shipped_spaces()
    assert sorted(spaces) == sorted(p.name for p in (REPO / "search_spaces").glob("*.y*ml"))
    assert next(iter(spaces)) == "quickstart.yaml"
    assert spaces["quickstart.yaml"] == (REPO / "search_spaces" / "quickstart.yaml").read_text(encoding="utf-8")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import statement in ``path`` (relative ones as '.'-prefixed)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
    return found


def test_cli_modules_never_import_the_cli_package_back():
    # One-way registration: autopeft/cli/__init__.py imports the command modules and registers
    # their functions; a command module reaches the package only through its helper modules,
    # autopeft.cli._common (options, console) and what is printed (autopeft.cli.render, the
    # trials table in autopeft.cli.trial_table, the answer in autopeft.cli.comparison), which
    # import no other module of the cli package themselves.
    package = REPO / "autopeft" / "cli"
    modules = sorted(p for p in package.glob("*.py") if p.name != "__init__.py")
    helpers = {"_common", "render", "trial_table", "comparison"}
    assert {p.stem for p in modules} >= {*helpers, "study", "workers"}
    for path in modules:
        for module, names in _imports(path):
            assert not module.startswith("."), f"{path.name}: relative import {module}"
            if module == "autopeft.cli" or module.startswith("autopeft.cli."):
                assert module.rpartition(".")[2] in helpers and module != "autopeft.cli" and path.stem not in helpers, \
                    f"{path.name} imports {module} {names}: only autopeft.cli/__init__.py may tie the modules together"


def test_no_sys_path_edits_in_the_package():
    for folder in ("autopeft", "trials", "dashboard"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                    pytest.fail(f"{path.relative_to(REPO)}:{node.lineno} touches sys.path")
