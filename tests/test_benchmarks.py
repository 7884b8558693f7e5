"""Each benchmark's ``--quick`` mode runs to the end and prints its table and summary line.

Only that they ran: the figures themselves are the benchmarks' business (and are far
too noisy at quick sizes to assert on). These smoke runs are marked ``bench``: they take
minutes and guard scripts, not the library, so the suite runs them only when asked
(``AUTOPEFT_BENCH=1``, see ``conftest.py``). The sampler benchmark reads the committed table
(``benchmarks/data/tabular_tweet.jsonl``), so it trains nothing; so does the learning-curve
replay (``benchmarks/curves/replay.py`` on ``benchmarks/data/curves_tweet.jsonl``; skipped
while that table is absent). The quick runs
are started together (they are mostly waiting on process start-up and model loads), so
the module takes as long as the slowest of them. The ledger soak needs PostgreSQL and
starts only with its own test; its checks (nothing lost or left running) are asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("sampler_quality.py", "overhead.py", "proxy_fidelity.py", "multi_fidelity.py", "found_vs_default.py",
           "devices.py", "one_search.py", "curves/replay.py")
TIMEOUT = 900  # five quick runs share the cores: 521 s measured under a load average of ~5


@pytest.fixture(scope="module")
def quick_runs():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / script), "--quick"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for script in SCRIPTS
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def soak_run():
    """The ledger soak's quick run: PostgreSQL only, so started by its own (postgres) test alone."""
    from test_store_contract import postgres_admin_url

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "ledger_soak.py"), "--quick", "--storage", postgres_admin_url()],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield {"ledger_soak.py": proc}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def output(procs, script: str) -> str:
    proc = procs[script]
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{script} --quick took more than {TIMEOUT} s")
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    return out


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.slow
@pytest.mark.bench
def test_sampler_quality_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "sampler_quality.py")
    assert "HV@10" in out and "random" in out and "botorch" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY sampler_quality:")


@pytest.mark.slow
@pytest.mark.bench
def test_curves_replay_quick_prints_its_tables_and_summary(quick_runs):
    if not (REPO / "benchmarks" / "data" / "curves_tweet.jsonl").exists():
        pytest.skip("no learning-curve table: benchmarks/curves/build.py makes it")
    out = output(quick_runs, "curves/replay.py")
    assert "HV@" in out and "random+halving" in out and "steps to reach random search" in out
    assert "wins-ties-losses" in out and "wall time" in out
    assert last_line(out).startswith("SUMMARY curves/replay:")


@pytest.mark.slow
@pytest.mark.bench
def test_overhead_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "overhead.py")
    assert "ratio CPU" in out and "botorch ask" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY overhead:")


@pytest.mark.slow
@pytest.mark.bench
def test_proxy_fidelity_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "proxy_fidelity.py")
    assert "Kendall tau" in out and "reference" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY proxy_fidelity:")


@pytest.mark.slow
@pytest.mark.bench
def test_multi_fidelity_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "multi_fidelity.py")
    assert "trials/h" in out and "plain" in out and "rungs" in out and "final HV" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY multi_fidelity:")


@pytest.mark.slow
@pytest.mark.bench
def test_one_search_quick_runs_the_three_flows_and_sums_them_up(quick_runs):
    out = output(quick_runs, "one_search.py")
    for flow in ("old", "new", "random"):
        assert f"== {flow} seed 0: " in out
    assert last_line(out).startswith("SUMMARY one_search: old ") and "(quick run)" in last_line(out)


@pytest.mark.slow
@pytest.mark.bench
def test_found_vs_default_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "found_vs_default.py")
    assert "found:" in out and "default:" in out and "mean ± sd" in out and "parameters found / default" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY found_vs_default:")


@pytest.mark.slow
@pytest.mark.bench
def test_devices_quick_prints_its_table_and_summary(quick_runs):
    out = output(quick_runs, "devices.py")
    for setting in ("fp32", "bf16", "fp32+ckpt", "bf16+ckpt"):
        assert f"encoder  {setting}" in out
    assert last_line(out).startswith("SUMMARY: encoder: bf16 time x")


def test_the_gpu_check_fails_loudly_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: benchmarks/gpu_check.sh measures it instead of failing")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert last_line(proc.stdout) == "SUMMARY: gpu_check FAILED: no CUDA GPU on this host"
    assert "no CUDA GPU visible to torch" in proc.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_ledger_soak_quick_loses_nothing(soak_run):
    # Unlike the figures above, what the soak checks is not noise: nothing lost, nothing
    # duplicated, nothing left running, the overshoot within workers - 1.
    out = output(soak_run, "ledger_soak.py")
    assert "lost" in out and "budget overshoot" in out and "ledger overhead per trial" in out
    assert "wall time" in out
    assert last_line(out).startswith("SUMMARY ledger_soak:") and last_line(out).endswith("PASS"), out[-3000:]
