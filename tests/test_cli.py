"""The ``autopeft`` command line, run as a user runs it: in a subprocess.

Every user error ends as exactly one line on stderr and exit code 2; ``--help`` and YAML
validation never import torch.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"
#: The console script is ``autopeft.cli:run``; call exactly that (no reliance on PATH).
ENTRY = "import sys; sys.argv[0] = 'autopeft'; from autopeft.cli import run; run()"


def autopeft(*args, cwd, timeout=120):
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"  # nothing here may need the network
    env.pop("AUTOPEFT_STORAGE", None)
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("autopeft: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def broken_yaml(tmp_path):
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["space"]["rnak"] = doc["space"].pop("rank")
    path = tmp_path / "broken-space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("command", ["validate", "search"])
def test_broken_yaml_is_one_line_and_exit_2(command, broken_yaml, tmp_path):
    line = one_line_error(autopeft(command, broken_yaml, cwd=tmp_path))
    assert "broken-space.yaml" in line and "space.rnak" in line and "expected" in line
    assert not (tmp_path / "autopeft.db").exists(), "a broken space must fail before touching storage"


def test_missing_yaml_file(tmp_path):
    line = one_line_error(autopeft("validate", tmp_path / "nope.yaml", cwd=tmp_path))
    assert "nope.yaml" in line and "no such file" in line


def test_bad_set_override_names_the_key(tmp_path):
    line = one_line_error(autopeft("validate", QUICKSTART, "--set", "proxy.stepz=3", cwd=tmp_path))
    assert "proxy.stepz" in line and "unknown key" in line


@pytest.mark.parametrize("command", ["validate", "search"])
def test_missing_model_path_is_one_line_and_exit_2(command, tmp_path):
    storage = ["--storage", f"sqlite:///{tmp_path}/s.db"] if command == "search" else []
    result = autopeft(command, QUICKSTART, "--set", "model=/nonexistent/dir", *storage, cwd=tmp_path)
    line = one_line_error(result)
    assert "/nonexistent/dir" in line


@pytest.mark.parametrize(
    "url, words",
    [("foo://bar", ["foo://bar", "sqlite:///"]), ("sqlite:////nonexistent/dir/x.db", ["/nonexistent/dir", "does not exist"])],
)
def test_bad_storage_url_is_one_line_and_exit_2(url, words, tmp_path):
    line = one_line_error(autopeft("studies", "--storage", url, cwd=tmp_path))
    for word in words:
        assert word in line


def test_studies_on_an_empty_database(tmp_path):
    result = autopeft("studies", "--storage", f"sqlite:///{tmp_path}/empty.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no studies" in result.stdout


@pytest.mark.parametrize("args", [("show", "nosuch"), ("export", "nosuch", "--pick", "knee", "--out", "outdir")])
def test_show_and_export_of_a_missing_study(args, tmp_path):
    line = one_line_error(autopeft(*args, "--storage", f"sqlite:///{tmp_path}/empty.db", cwd=tmp_path))
    assert "'nosuch'" in line
    assert not (tmp_path / "outdir").exists()


def test_default_storage_is_a_sqlite_file_in_the_working_directory(tmp_path):
    result = autopeft("show", "nosuch", cwd=tmp_path)
    line = one_line_error(result)
    assert "sqlite:///autopeft.db" in line


@pytest.mark.parametrize("args", [("bogus",), ("search", "x.yaml", "--trials", "0"), ("show",)])
def test_usage_errors_are_one_line_and_exit_2(args, tmp_path):
    one_line_error(autopeft(*args, cwd=tmp_path))


def test_help_does_not_import_torch(tmp_path):
    code = (
        "import sys, contextlib, io\n"
        "from autopeft.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['--help'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'botorch', 'datasets') if m in sys.modules]\n"
        "assert rc == 0, rc\n"
        "assert 'validate' in out.getvalue() and 'search' in out.getvalue(), out.getvalue()\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_loading_a_space_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from autopeft.space import load_space\n"
        f"space = load_space({str(QUICKSTART)!r}, ['proxy.steps=3', 'target=null'])\n"
        "assert space.proxy.steps == 3\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'botorch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_validate_quickstart_prints_dimensions_and_parameter_range(tmp_path, model_info):
    from autopeft.space import load_space
    from autopeft.space.check import check_against_model
    from autopeft.space.encoding import SpaceEncoding

    result = autopeft("validate", QUICKSTART, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    space = load_space(QUICKSTART)
    enc = SpaceEncoding(space.space, model_info.num_layers)
    assert f"{enc.dimensions} search dimensions" in out
    for name in enc.distributions:
        assert name in out
    r = check_against_model(space, model_info, enc)
    assert f"{r.low:,} .. {r.high:,}" in out
    assert f"budget {r.limit:,}" in out
    assert f"{model_info.num_layers} layers" in out
    assert not (tmp_path / "autopeft.db").exists(), "validate must not create a database"


def test_assets_lists_the_bundled_model_and_data(tmp_path):
    result = autopeft("assets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for alias in ("minilm-l6", "tweet-sentiment", "bbc-news"):
        assert alias in result.stdout
    assert "not installed" not in result.stdout  # the bundled extras are installed here


def test_debug_shows_the_traceback_and_its_cause_above_the_one_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    assert "Traceback" not in autopeft("validate", missing, cwd=tmp_path).stderr
    for result in (autopeft("validate", missing, "--debug", cwd=tmp_path),
                   autopeft("--debug", "validate", missing, cwd=tmp_path)):
        assert result.returncode == 2
        assert "Traceback (most recent call last)" in result.stderr and "SpaceError" in result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"autopeft: error: {missing}: no such file"
