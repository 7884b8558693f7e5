"""A run checkpointed at a rung and resumed (in another process) is the run that never
stopped: same curve, same weights, same metrics, to 1e-5, on the real model with dropout on;
an unreadable checkpoint retrains from step 0 and says so; what cannot resume exactly refuses."""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.assets.architecture import inspect_model
from autopeft.assets.datasets import prepare_data, resolve_dataset
from autopeft.assets.models import resolve_model
from autopeft.methods import BuildContext, config_to_json, get_method
from autopeft.space.encoding import Candidate
from autopeft.space.schema import ModelSpec, ProxySpec, TaskSpec, Targets
from autopeft.trials.spec import TrialFailure, TrialSpec

STEPS, RUNG = 8, 4


def spec_for(method: str, dropout: float = 0.1, **proxy) -> TrialSpec:
    model = resolve_model(ModelSpec("minilm-l6"))
    sizes = ProxySpec(train_examples=48, eval_examples=24, steps=STEPS, batch_size=8, max_length=16)
    data = prepare_data(model, resolve_dataset("bbc-news"), TaskSpec("bbc-news", ("text",), "label"), sizes)
    arch = inspect_model(model, data.num_labels)
    # Dropout on: the resumed run must also draw the dropout masks the uninterrupted one drew.
    cand = Candidate(method, 4, 8.0, dropout, Targets(("query", "value")), (4, 5), 3e-3, False, False)
    config = config_to_json(get_method(method).build(cand, BuildContext(arch, STEPS)))
    return TrialSpec(study="t", trial=0, method=method, model=model.location, num_labels=data.num_labels,
                     data_path=data.path, peft_config=config, learning_rate=3e-3,
                     proxy=ProxySpec(steps=STEPS, batch_size=8, log_every=1, threads=1, rungs=(RUNG,),
                                     prefix_cache=False, **proxy))


@pytest.fixture(scope="module")
def lora():
    return spec_for("lora")


def losses(curve) -> list[float]:
    return [loss for _, loss in curve]


def weights(folder) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(folder / "tensors.safetensors")).items() if k.startswith("param.")}


@pytest.mark.slow
def test_a_resumed_run_continues_the_uninterrupted_run_exactly(lora, tmp_path):
    from autopeft.trials.executor import run_isolated

    straight = run_isolated(dataclasses.replace(lora, save_dir=str(tmp_path / "straight")))
    saved = run_isolated(dataclasses.replace(lora, checkpoint_dir=str(tmp_path / "ckpt")))
    # Another process, from the rung's checkpoint: steps 5-8 only.
    resumed = run_isolated(dataclasses.replace(lora, resume_from=str(tmp_path / "ckpt" / f"step-{RUNG}"),
                                               save_dir=str(tmp_path / "resumed")))
    assert straight.status == saved.status == resumed.status == "complete", (saved.error, resumed.error)
    assert resumed.extras["resumed_from"] == RUNG and "resumed_from" not in saved.extras
    for run in (saved, resumed):
        assert [s for s, _ in run.curve] == list(range(1, STEPS + 1))
        assert losses(run.curve) == pytest.approx(losses(straight.curve), abs=1e-5)
        assert run.metrics == pytest.approx(straight.metrics, abs=1e-5)
    # The checkpoint holds the run at the rung, not at the end: resuming trained something.
    assert straight.curve[RUNG - 1][1] != straight.curve[-1][1]

    import torch
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # The rung's checkpoint holds every trainable tensor (adapter and head), and only those.
    assert len(weights(tmp_path / "ckpt" / f"step-{RUNG}")) == sum(1 for k in a if "lora_" in k or "classifier" in k)


@pytest.mark.slow
def test_an_unreadable_checkpoint_retrains_from_step_0_and_records_why(lora, tmp_path):
    from autopeft.trials.proxy import run_proxy

    run_proxy(dataclasses.replace(lora, checkpoint_dir=str(tmp_path / "ckpt")))
    folder = tmp_path / "ckpt" / f"step-{RUNG}"
    blob = folder / "tensors.safetensors"
    blob.write_bytes(blob.read_bytes()[:100])  # a writer killed mid-file, a full disk
    plain = run_proxy(lora)
    again = run_proxy(dataclasses.replace(lora, resume_from=str(folder)))
    assert again.status == "complete"
    assert "cannot be read" in again.extras["resume_failed"] and "trained from step 0" in again.extras["resume_failed"]
    assert losses(again.curve) == pytest.approx(losses(plain.curve), abs=1e-5)
    missing = run_proxy(dataclasses.replace(lora, resume_from=str(tmp_path / "nowhere")))
    assert "cannot be read" in missing.extras["resume_failed"]


@pytest.mark.slow
def test_a_run_that_cannot_resume_exactly_refuses_in_one_line(tmp_path):
    from autopeft.trials.proxy import run_proxy

    with pytest.raises(TrialFailure) as e:
        run_proxy(dataclasses.replace(spec_for("adalora", dropout=0.0), checkpoint_dir=str(tmp_path / "c")))
    assert "\n" not in str(e.value) and "adalora cannot be resumed exactly" in str(e.value)


def test_save_replaces_an_older_checkpoint_and_leaves_no_temporary(tmp_path):
    """A second save of the same step (a retried rung) replaces the first whole; a leftover
    temporary of a killed writer is not read as a checkpoint."""
    import torch

    from autopeft.trials import checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    (tmp_path / ".step-1.999.tmp").mkdir()  # what a killed writer leaves
    for _ in range(2):
        checkpoint.save(tmp_path / "step-1", step=1, model=model, optimizer=optimizer, scheduler=scheduler,
                        curve=[[1, 0.5]], window=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step-1.999.tmp", "step-1"]
    fresh = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0)
    step, curve, window = checkpoint.load(tmp_path / "step-1", model=fresh, optimizer=opt2, scheduler=sched2)
    assert (step, curve, window) == (1, [[1, 0.5]], [])
    assert torch.equal(fresh.weight, model.weight) and sched2.last_epoch == scheduler.last_epoch
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(checkpoint.CheckpointError, match="other trainable tensors"):
        checkpoint.load(tmp_path / "step-1", model=torch.nn.Linear(3, 3), optimizer=opt2, scheduler=sched2)
