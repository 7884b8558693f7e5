"""Devices, precision and memory savers, tested on the CPU through the same code a GPU runs.

This machine has no GPU: the CPU path is the GPU path with another ``torch.device``, so the
trials here exercise placement, autocast, checkpointing and the memory figures; asking for
CUDA or MPS must fail loudly (before any trial, or as a failed trial), never fall back.
"""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.methods import BuildContext, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
from conftest import REPO
from test_cli import autopeft, one_line_error
from autopeft.trials.device import DeviceUnavailable, assign_gpus, check, resolve
from autopeft.trials.executor import describe_failure, run_isolated
from autopeft.trials.spec import TrialSpec


def lora_spec(dataset: str, max_length: int, batch_size: int, steps: int, **proxy) -> TrialSpec:
    model = resolve_model(ModelSpec("minilm-l6"))
    split = ProxySpec(train_examples=max(64, batch_size * 4), eval_examples=48, max_length=max_length)
    data = prepare_data(model, resolve_dataset(dataset), TaskSpec(dataset, ("text",), "label"), split)
    arch = inspect_model(model, data.num_labels)
    cand = Candidate("lora", 8, 16.0, 0.0, Targets(("query", "value")), tuple(range(6)), 1e-3, False, False)
    m = get_method("lora")
    return TrialSpec(study="devices", trial=0, method="lora", model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=m.config_json(m.build(cand, BuildContext(arch, steps))),
                     learning_rate=1e-3,
                     proxy=ProxySpec(steps=steps, batch_size=batch_size, log_every=1, threads=2, timeout=600,
                                     prefix_cache=False, **proxy))


@pytest.fixture(scope="module")
def short():
    return lora_spec("tweet-sentiment", 32, 8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_trials_run_on_the_cpu_and_say_so(short, device):
    result = run_isolated(dataclasses.replace(short, proxy=dataclasses.replace(short.proxy, device=device)))
    assert result.status == "complete", result.error
    assert result.device == "cpu" and result.memory_kind == "cpu_peak_rss"
    assert result.peak_memory_mb == pytest.approx(result.peak_rss_mb, rel=0.05)


@pytest.mark.slow
def test_bf16_autocast_trains_close_to_fp32_on_the_same_seed(short):
    fp32 = run_isolated(short)
    bf16 = run_isolated(dataclasses.replace(short, proxy=dataclasses.replace(short.proxy, precision="bf16")))
    assert fp32.status == bf16.status == "complete", (fp32.error, bf16.error)
    # bf16 keeps 8 bits of mantissa: the same trajectory, not the same bits.
    for (s1, l1), (s2, l2) in zip(fp32.curve, bf16.curve):
        assert s1 == s2 and l2 == pytest.approx(l1, rel=0.03)
    assert bf16.metrics["eval_loss"] == pytest.approx(fp32.metrics["eval_loss"], rel=0.03)
    assert abs(bf16.metrics["accuracy"] - fp32.metrics["accuracy"]) <= 0.1
    assert bf16.metrics != fp32.metrics  # autocast really ran in bf16


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_curve_with_less_memory():
    # Long BBC articles (256 tokens, batch 16): activations, not weights, dominate memory.
    plain = lora_spec("bbc-news", 256, 16, 2)
    plain = dataclasses.replace(plain, proxy=dataclasses.replace(plain.proxy, eval_examples=16))
    ckpt = dataclasses.replace(plain, proxy=dataclasses.replace(plain.proxy, gradient_checkpointing=True))
    a, b = run_isolated(plain), run_isolated(ckpt)
    assert a.status == b.status == "complete", (a.error, b.error)
    for (s1, l1), (s2, l2) in zip(a.curve, b.curve):
        assert s1 == s2 and l2 == pytest.approx(l1, rel=1e-4)  # recomputation, same numbers
    assert b.peak_memory_mb < 0.9 * a.peak_memory_mb, (a.peak_memory_mb, b.peak_memory_mb)


def test_a_missing_device_fails_the_trial_it_was_sent_to_never_the_cpu(short):
    if check("auto", "fp32") != "cpu":
        pytest.fail("this test assumes a machine without a GPU")
    result = run_isolated(dataclasses.replace(short, proxy=dataclasses.replace(short.proxy, device="cuda")))
    assert result.status == "failed" and "device 'cuda' is not available here" in result.error


@pytest.mark.parametrize("setting, key", [("proxy.device=cuda", "proxy.device"), ("proxy.device=cuda:1", "proxy.device"),
                                          ("proxy.device=mps", "proxy.device"), ("proxy.precision=fp16", "proxy.precision")])
def test_validate_refuses_what_this_machine_lacks_in_one_line(setting, key, tmp_path):
    line = one_line_error(autopeft("validate", REPO / "search_spaces" / "quickstart.yaml", "--set", setting, cwd=tmp_path))
    assert f"quickstart.yaml: {key}:" in line and ("use device: cpu or auto" in line or "use precision" in line)


def test_resolve_places_cpu_trials_on_the_cpu():
    assert resolve("auto", "bf16").device == "cpu" and resolve("cpu", "fp32").kind == "cpu"
    assert resolve("cpu", "fp32").grad_scaler() is None and resolve("cpu", "bf16").grad_scaler() is None
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        resolve("tpu", "fp32")


@pytest.mark.parametrize("workers, gpus, per_gpu, expected", [
    (4, ("0", "1"), 2, ["0", "1", "0", "1"]),
    (3, ("0", "2", "5"), 1, ["0", "2", "5"]),
    (2, ("3",), 2, ["3", "3"]),
    (2, (), 1, [None, None]),  # no GPU: leave CUDA_VISIBLE_DEVICES alone
])
def test_worker_i_gets_gpu_i_mod_g(workers, gpus, per_gpu, expected):
    assert assign_gpus(workers, gpus, per_gpu) == expected


def test_never_two_trials_on_one_gpu_unless_asked():
    with pytest.raises(DeviceUnavailable, match="--per-gpu 2"):
        assign_gpus(3, ("0", "1"), 1)


def test_a_device_oom_is_named_as_such():
    import torch

    assert describe_failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) \
        .startswith("out of memory (cuda): ")
    assert describe_failure(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)")).startswith("out of memory (mps)")
    assert describe_failure(MemoryError()).startswith("out of memory: ")


def test_local_workers_are_spread_over_gpus_with_a_fake_device_count(monkeypatch):
    import autopeft.trials.device as device
    from autopeft.errors import AutoPeftError
    from autopeft.search.local_pool import gpu_assignment

    monkeypatch.setattr(device, "_cuda_count", lambda: 3)  # a host with three GPUs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_assignment("auto", 3, None, 1) == ["0", "1", "2"]
    assert gpu_assignment("cuda", 4, None, 2) == ["0", "1", "2", "0"]
    assert gpu_assignment("auto", 2, "0,2", 1) == ["0", "2"]
    assert gpu_assignment("cpu", 2, None, 1) == [None, None]  # the space keeps its trials on the CPU
    with pytest.raises(AutoPeftError, match="--per-gpu 2"):
        gpu_assignment("auto", 4, None, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # a scheduler's allocation is respected
    assert gpu_assignment("auto", 2, None, 1) == ["4", "7"]


def test_gpus_asked_for_on_a_host_without_cuda_is_an_error(monkeypatch):
    import autopeft.trials.device as device
    from autopeft.errors import AutoPeftError
    from autopeft.search.local_pool import gpu_assignment

    monkeypatch.setattr(device, "_cuda_count", lambda: 0)
    with pytest.raises(AutoPeftError, match="--gpus 0,1: .*leave out --gpus"):
        gpu_assignment("auto", 2, "0,1", 1)


def test_local_workers_are_started_with_the_heartbeat_and_grace_the_search_was_given():
    from autopeft.cli import app
    from autopeft.search.ledger.heartbeat import LedgerSettings
    from autopeft.search.local_pool import worker_command

    cmd = worker_command("s", LedgerSettings(heartbeat=3, grace=20, retries=1))
    assert cmd[-8:] == ["worker", "s", "--heartbeat", "3", "--grace", "20", "--retries", "1"]
    assert worker_command("s")[-2:] == ["worker", "s"]  # no settings: the worker's own defaults
    # The worker command accepts exactly these options (a renamed flag would fail every worker).
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["worker", "--help"])
    assert all(flag in result.output for flag in ("--heartbeat", "--grace", "--retries"))
