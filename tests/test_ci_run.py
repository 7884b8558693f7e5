"""``.ci/run`` stops the private PostgreSQL cluster it started when it exits, whether the
suite passed or failed, and leaves running one that was already running.

The installs and pytest are stubbed (a ``python`` on PATH that only records its arguments);
``.ci/postgres.sh`` runs for real, in a throw-away directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

STUB = """#!/bin/sh
echo "$@" >> "$STUB_LOG"
case "$*" in *pytest*) exit "${STUB_PYTEST_RC:-0}" ;; esac
exit 0
"""


@pytest.fixture
def ci_copy():
    if shutil.which("pg_ctlcluster") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("needs Debian's postgresql (.ci/run installs it)") if not os.environ.get("CI") else pytest.fail(
            "PostgreSQL is not installed")
    root = Path(tempfile.mkdtemp(prefix="autopeft-ci-"))  # under /tmp: the postgres user must reach it
    os.chmod(root, 0o755)
    (root / ".ci").mkdir()
    for name in ("run", "postgres.sh"):
        shutil.copy(REPO / ".ci" / name, root / ".ci" / name)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("python", "chromium", "chromedriver"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(root / "calls.log"),
           "AUTOPEFT_PG_DIR": str(root / "pg")}
    yield root, env
    subprocess.run(["bash", str(root / ".ci" / "postgres.sh"), "stop"], env=env, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def running(root, env) -> bool:
    return subprocess.run(["bash", str(root / ".ci" / "postgres.sh"), "running"], env=env,
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("rc", [0, 1])
def test_the_cluster_it_started_is_stopped_on_exit(ci_copy, rc):
    root, env = ci_copy
    result = subprocess.run(["bash", str(root / ".ci" / "run")], env={**env, "STUB_PYTEST_RC": str(rc)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == rc, result.stderr[-2000:]
    assert "pytest" in (root / "calls.log").read_text()  # the suite ran, against the cluster
    assert (root / "pg" / "data" / "PG_VERSION").exists()
    assert not running(root, env), result.stderr[-2000:]


def test_a_cluster_already_running_is_left_running(ci_copy):
    root, env = ci_copy
    start = subprocess.run(["bash", str(root / ".ci" / "postgres.sh")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert start.returncode == 0, start.stderr
    result = subprocess.run(["bash", str(root / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert running(root, env)
