"""A refused ``autopeft export`` writes nothing: every flag combination is checked first."""

from __future__ import annotations

import pytest

from autopeft.store import Store, utcnow
from test_cli import autopeft, one_line_error
from test_store_contract import study_record, trial_record

QUERY = "encoder.layer.5.attention.self.query"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A study with one completed AdaLoRA trial that exports (also ``--as lora``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export')}/e.db"
    store = Store(url)
    store.add_study(study_record("ex"))
    store.save_trial(trial_record(
        "ex", 0, status="complete", candidate={"method": "adalora", "rank": 2},
        peft_config={"peft_type": "ADALORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 4.0,
                     "target_modules": ["query"], "base_model_name_or_path": "/somewhere/minilm"},
        extras={"rank_allocation": {f"{QUERY}.lora_E": 2}}, metrics={"accuracy": 0.6}, values=[0.6, 1000],
        trainable_params=1000, finished_at=utcnow()))
    store.close()
    return url


def test_the_trial_exports(url, tmp_path):
    """The refusals below are the flags', not the trial's: the same trial exports."""
    from autopeft.export import export_trial

    store = Store(url)
    out = export_trial(store.get_study("ex"), store.trial("ex", 0), tmp_path / "ok", picked_by="trial:0", as_="lora")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "autopeft.json"]


@pytest.mark.parametrize("flags, words", [
    (["--train", "--as", "lora"], ["--train with --as"]),
    (["--train", "--steps", "2", "--epochs", "1"], ["--steps or --epochs"]),
    (["--baseline"], ["--baseline", "only apply with --train"]),
    (["--as", "lora", "--seeds", "2", "--train-examples", "10"], ["--seeds, --train-examples", "--train"]),
])
def test_a_refused_export_writes_nothing(url, tmp_path, flags, words):
    out = tmp_path / "out"
    line = one_line_error(autopeft("export", "ex", "--storage", url, "--trial", "0", "--out", out, *flags,
                                   cwd=tmp_path))
    for word in words:
        assert word in line
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "autopeft.db").exists()
