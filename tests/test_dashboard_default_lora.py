"""The dashboard finds default LoRA the way autopeft defines it, on any model's module names:
the study's own default-LoRA reference trial when it enqueued one (``extras["baseline"]``),
else a trial that is ``autopeft.space.default_lora``'s default LoRA (r=8, the query and value
projections by ``baseline_targets``' rule, every layer) — ``q_proj``/``v_proj`` on a Llama,
not only BERT's ``query``/``value``."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from autopeft.dashboard import data
from autopeft.store import StudyRecord, TrialRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))
LAYERS = list(range(4))


def _study():
    return StudyRecord(name="llama", created_at=T0, space_yaml="", space_hash="0" * 32, objectives=OBJECTIVES,
                       trials_target=4, model="tiny-llama", model_fingerprint="x", dataset="d", data_fingerprint="y")


def _trial(number, *, rank=8, targets=("q_proj", "v_proj"), layers=LAYERS, method="lora", role=None, accuracy=0.7):
    return TrialRecord(
        study="llama", number=number, status="complete",
        candidate={"method": method, "rank": rank, "alpha": 16.0, "dropout": 0.0, "targets": list(targets),
                   "layers": list(layers), "learning_rate": 1e-3, "dora": False, "rslora": False},
        params={}, started_at=T0, trainable_params=1000 * (number + 1), metrics={"accuracy": accuracy},
        values=[accuracy, 1000.0 * (number + 1)], extras={"baseline": role} if role else {},
    )


def _baselines(records):
    frame = data.trials_frame(_study(), records)
    return frame[frame["baseline"]]["number"].tolist()


def test_decoder_default_lora_is_found_by_its_own_module_names():
    records = [
        _trial(0),                                         # default LoRA on a Llama: q_proj/v_proj, r=8, every layer
        _trial(1, targets=("q_proj", "k_proj", "v_proj")),  # also the key projection: not default LoRA
        _trial(2, rank=4),                                  # another rank
        _trial(3, layers=[2, 3]),                           # not every layer
        _trial(4, method="adalora"),                        # another method
    ]
    assert _baselines(records) == [0]


@pytest.mark.parametrize("targets", [("v_proj", "q_proj"), ("q_lin", "v_lin"),
                                     ("query_key_value",), ("c_attn",)])
def test_default_lora_on_other_architectures(targets):
    assert _baselines([_trial(0, targets=targets), _trial(1, targets=("dense",))]) == [0]


def test_the_studys_own_reference_trial_is_default_lora():
    # The study enqueued its default-LoRA reference (snapped to rank 2 by its space): that trial is
    # default LoRA, and a sampled trial that happens to look like it is not a second one.
    qv = ("query", "value")
    records = [_trial(0, rank=2, targets=qv, role="default LoRA"), _trial(1, role="cheapest", rank=2, layers=[3]),
               _trial(2, targets=qv)]
    assert _baselines(records) == [0]
    frame = data.trials_frame(_study(), records)
    assert frame["role"].tolist() == ["default LoRA", "cheapest", ""]


def test_default_lora_at_several_rates_is_one_reference_its_best_at_the_target():
    # Towards a target the study tries default LoRA at three rates; two reached the target. The
    # chart draws one reference star: the best of them (the one the answer compares with).
    records = [_trial(0, role="default LoRA", accuracy=0.62), _trial(1, role="default LoRA", accuracy=0.66),
               _trial(2, role="default LoRA", accuracy=0.42), _trial(3, rank=16, accuracy=0.69)]
    assert _baselines(records) == [1]
