"""One rule for every table: a field the trial's method ignores is not shown (``used_config``)."""

from __future__ import annotations

import pytest

from autopeft.candidate import Candidate
from autopeft.methods.fields import used_config
from autopeft.store import Store, StudyRecord, TrialRecord, utcnow

CANDIDATE = {"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.1, "targets": ["query", "value"], "layers": [4, 5],
             "learning_rate": 1e-3, "dora": False, "rslora": False, "layer_ranks": None}


def _candidate(**changes) -> Candidate:
    return Candidate.from_json({**CANDIDATE, **changes})


@pytest.mark.parametrize("method, shown", [
    ("lora", ["method", "rank", "alpha", "dropout", "targets", "layers", "dora", "rslora", "learning_rate"]),
    ("ia3", ["method", "targets", "layers", "learning_rate"]),
    ("prefix", ["method", "rank", "learning_rate"]),
    ("bottleneck", ["method", "rank", "targets", "layers", "learning_rate"]),
    ("from-a-newer-autopeft", list(CANDIDATE)[:-1]),  # unknown method: hide nothing
])
def test_used_config_keeps_the_fields_the_method_reads(method, shown):
    assert set(used_config(_candidate(method=method))) == set(shown)


def test_per_layer_ranks_show_with_rank():
    assert used_config(_candidate(layer_ranks=[2, 4]))["layer_ranks"] == [2, 4]
    assert "layer_ranks" not in used_config(_candidate(method="ia3", layer_ranks=[2, 4]))


def test_show_prints_dash_for_ignored_fields(tmp_path, capsys):
    from autopeft.cli import main

    url = f"sqlite:///{tmp_path}/f.db"
    store = Store(url)
    store.add_study(StudyRecord(name="f", created_at=utcnow(), space_yaml="", space_hash="0", trials_target=2,
                                objectives=(("accuracy", "max"), ("trainable_params", "min")), model="minilm-l6",
                                model_fingerprint="", dataset="d", data_fingerprint=""))
    for n, method in enumerate(["ia3", "prefix"]):
        store.save_trial(TrialRecord(study="f", number=n, status="complete", candidate={**CANDIDATE, "method": method},
                                     params={}, started_at=utcnow(), values=[0.5, 100.0 + n], trainable_params=100 + n))
    assert main(["show", "f", "--storage", url, "--wide"]) == 0  # --wide: one column per field
    lines = capsys.readouterr().out.splitlines()
    head = next(line.split() for line in lines if "status" in line.split())
    rows = {cells[head.index("method")]: cells for line in lines
            if (cells := line.lstrip("★ ").split()) and cells[0].isdigit()}
    col = {name: head.index(name) for name in ("rank", "targets", "layers")}
    assert rows["ia3"][col["rank"]] == "-" and rows["ia3"][col["targets"]] == "query+value"  # rank hidden, placement shown
    assert rows["prefix"][col["rank"]] == "4" and rows["prefix"][col["targets"]] == "-" and rows["prefix"][col["layers"]] == "-"
