"""Every shipped search space is valid against its model and data, as shipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space
from autopeft.store import Store

SPACES = sorted((Path(__file__).resolve().parent.parent / "search_spaces").glob("*.yaml"))


def test_there_is_a_quickstart_and_a_larger_space():
    names = {p.stem for p in SPACES}
    assert "quickstart" in names and len(names) >= 2


# The decoder's space converts its GGUF model first (~25 s): the slow lane validates it.
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem.startswith("llm") else p
                                  for p in SPACES], ids=[p.stem for p in SPACES])
def test_shipped_space_validates_against_its_model_and_data(path):
    space = load_space(path)
    prep = prepare_search(space, with_data=False)
    assert prep.encoding.dimensions >= 1
    assert prep.params.low <= prep.params.feasible_high


@pytest.mark.slow
def test_the_all_methods_space_runs_a_real_trial_with_spt_and_rungs(tmp_path):
    tiny = ["proxy.train_examples=48", "proxy.eval_examples=24", "proxy.steps=2", "proxy.rungs=[2, 4]",
            "target.steps=6", "target.seeds=1", "proxy.max_length=32", "proxy.batch_size=8", "search.trials=2",
            "search.sampler=random"]
    prep = prepare_search(load_space(SPACES[[p.stem for p in SPACES].index("bbc-news-all-methods")], tiny))
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    outcome = run_search(prep, store)
    assert store.get_study(outcome.study.name).importance["kind"] == "spt"
    trained = [r for r in outcome.records if r.status in ("complete", "pruned", "failed")]
    assert len(trained) == 2 and all(r.status != "failed" for r in trained), [r.error for r in trained]
