"""What ``search`` and ``show`` print reads at a terminal's width: at 100 columns no row of
the trials table takes more than 2 lines, and ``--wide`` still shows every field in full."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import yaml

from autopeft.store import StudyRecord, TrialRecord, utcnow
from conftest import REPO

QUICKSTART = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))


def _study(target: bool) -> StudyRecord:
    doc = dict(QUICKSTART)
    if not target:  # the proxy is the target: one short run, rungs by hand
        doc.pop("target")
        doc["proxy"] = {**doc["proxy"], "rungs": [30], "steps": 90}
    return StudyRecord(name="quickstart", created_at=utcnow(), space_yaml=yaml.safe_dump(doc), space_hash="0" * 16,
                       objectives=OBJECTIVES, trials_target=12, model="minilm-l6", model_fingerprint="x",
                       dataset="tweet-sentiment", data_fingerprint="y",
                       splits={"train": 1440, "eval": 300, "test": 500, "seed": 0, "test_source": "carved",
                               "fingerprint": "f" * 20})


def _trial(number, *, status="complete", method="lora", rank=8, targets=("query", "value"), layers=range(6),
           accuracy=0.8, params=75_000, extras=None, error=None, metrics=None):
    start = utcnow() + timedelta(seconds=number)
    done = status == "complete"
    return TrialRecord(
        study="quickstart", number=number, status=status,
        candidate={"method": method, "rank": rank, "alpha": 2.0 * rank, "dropout": 0.0, "targets": list(targets)
                   if not isinstance(targets, str) else targets, "layers": list(layers), "learning_rate": 1.234e-3,
                   "dora": False, "rslora": False},
        params={}, started_at=start, peft_config={}, trainable_params=params,
        metrics=metrics if metrics is not None else ({"accuracy": accuracy, "macro_f1": accuracy - 0.05} if done else {}),
        values=[accuracy, float(params)] if done else None, curve=[], extras=dict(extras or {}),
        error=error, finished_at=start + timedelta(seconds=1),
    )


def _target(seeds=2, sd=0.0042):
    if not TARGET:
        return {}
    return {"target": {"seeds": list(range(seeds)), "of": 2, "val": [0.78, sd], "test": [0.783, sd], "diverged": None}}


TARGET = True  # whether the records carry their seeds at the target (set by ``render``)


def _records():
    long_error = ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
                  "13.10 GiB already allocated)")
    return [
        _trial(0, extras={"baseline": "default LoRA", **_target()}, accuracy=0.78),
        _trial(1, method="ia3", rank=16, targets=("key", "value", "intermediate.dense"), params=1_536, accuracy=0.70,
               extras={"baseline": "cheapest", **_target()}),
        _trial(2, method="adalora", rank=16, targets=("query", "key", "value"), layers=[3, 5], params=221_184,
               accuracy=0.81, extras=_target()),
        _trial(3, status="pruned", targets="all-linear", extras={"fidelity": 30, "rungs": [[30, 0.50999999046325684]]},
               metrics={"accuracy": 0.50999999046325684, "macro_f1": 0.33774834437086093, "loss": 0.69}),
        _trial(4, status="failed", error=long_error),
        _trial(5, status="infeasible", rank=16, targets="all-linear", params=2_500_000,
               error="over budget: 2,500,000 trainable parameters > 227,000"),
        _trial(6, accuracy=0.79, params=9_216, extras=_target()),
    ]


def _verified():
    from autopeft.search.analysis.trust import Verified

    return {r.number: Verified(f"trial:{r.number}", r.number, (0, 1), (0.78, 0.004), (0.7830, 0.0042),
                               r.trainable_params, None, r.candidate)
            for r in _records() if r.status == "complete"}


def render(width: int, *, target: bool, wide: bool = False, only_front: bool = False) -> str:
    from rich.console import Console

    from autopeft.cli.trial_table import print_trials

    global TARGET
    TARGET = target
    console = Console(file=io.StringIO(), width=width)
    print_trials(console, _study(target), _records(), only_front=only_front, verified=_verified(), wide=wide)
    return console.file.getvalue()


def row_heights(text: str) -> dict[int, int]:
    """Lines per trial row: a row starts at a line whose '#' cell (after the ★ column) is a number."""
    heights: dict[int, int] = {}
    body = text.splitlines()
    start = next(i for i, line in enumerate(body) if line.lstrip().startswith("─") or set(line.strip()) <= {"─", " "}
                 and line.strip())
    current = None
    for line in body[start + 1:]:
        if not line.strip():
            continue
        head = line[:6].replace("★", " ").split()
        if head and head[0].isdigit():
            current = int(head[0])
            heights[current] = 0
        if current is not None:
            heights[current] += 1
    return heights


@pytest.mark.parametrize("target", [True, False])
@pytest.mark.parametrize("only_front", [True, False])
def test_every_row_fits_in_two_lines_at_100_columns(target, only_front):
    text = render(100, target=target, only_front=only_front)
    assert max(len(line) for line in text.splitlines()) <= 100
    heights = row_heights(text)
    assert heights, text
    if not only_front:
        assert set(heights) == {r.number for r in _records()}, text
    assert max(heights.values()) <= 2, text


def test_narrow_rows_abbreviate_and_do_not_repeat_the_seeds():
    text = render(100, target=True)
    row = next(line for line in text.splitlines() if line[:6].replace("★", " ").split()[:1] == ["2"])
    assert "q,k,v" in row and "adalora r16" in row and "0.783 ± 0.004" in row
    assert text.count("2/2 seeds") == 4 and "0.7830 ± 0.0042, 2" not in text  # the seeds said once per row
    assert "accuracy ↑" in text and "params ↓" in text


def test_wide_shows_every_field_in_full():
    text = render(240, target=True, wide=True)
    assert "0.7830 ± 0.0042, 2" in text and "query+key+value" in text and "accuracy (max)" in text
    assert "allocated)" in text  # the error whole, not cut at 60 characters
    assert "1.2e-03" in text


def test_a_stopped_trial_says_its_rung_signal_in_three_digits():
    text = render(160, target=False)
    assert "stopped at step 30: accuracy 0.510" in text
    assert "{" not in text and "0.50999" not in text


def test_a_trial_stopped_on_its_loss_says_the_loss_not_its_accuracy():
    from autopeft.cli.trial_table import note

    r = _trial(3, status="pruned", extras={"fidelity": 36, "rungs": [[36, 0.4233, 1.02634, 0.016]]}, accuracy=0.4233)
    assert note(r, "accuracy", signal="eval_loss") == "stopped at step 36: eval_loss 1.026"
    old = _trial(4, status="pruned", extras={"fidelity": 30, "rungs": [[30, 0.51]]}, accuracy=0.51)
    assert note(old, "accuracy", signal="eval_loss") == "stopped at step 30: accuracy 0.510"  # recorded before signals
