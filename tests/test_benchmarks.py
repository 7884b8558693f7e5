"""Each benchmark's ``--quick`` mode runs to the end and prints its table and summary line.

Only that they ran: the figures themselves are the benchmarks' business (and are far
too noisy at quick sizes to assert on). The sampler benchmark reads the committed table
(``benchmarks/data/tabular_tweet.jsonl``), so it trains nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_quick(script: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_sampler_quality_quick_prints_its_table_and_summary():
    out = run_quick("sampler_quality.py")
    assert "HV@10" in out and "random" in out and "botorch" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY sampler_quality:")


@pytest.mark.slow
def test_overhead_quick_prints_its_table_and_summary():
    out = run_quick("overhead.py")
    assert "wall/bare" in out and "botorch ask" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY overhead:")


@pytest.mark.slow
def test_proxy_fidelity_quick_prints_its_table_and_summary():
    out = run_quick("proxy_fidelity.py")
    assert "Kendall tau" in out and "reference" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY proxy_fidelity:")
