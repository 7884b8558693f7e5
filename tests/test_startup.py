"""A new study's random start covers every method before any model is fitted
(``autopeft.search.sampling.startup``): enqueued after the references with only the method fixed,
the rest of each point drawn at random, counted against the budget, enqueued once."""

from __future__ import annotations

from collections import Counter

import pytest

from autopeft.search.loop import run_search
from autopeft.search.sampling.samplers import make_sampler
from autopeft.search.sampling.startup import STARTUP, startup_methods
from autopeft.store import Store
from autopeft.trials.spec import TrialResult
from test_baseline import prep as baseline_space


def prep(methods="[lora, ia3, adalora]", trials=8, startup=3, sampler="botorch", *overrides):
    """test_baseline's space (tweet-sentiment, tiny proxy) with this module's search settings."""
    return baseline_space(methods, trials, f"search.sampler={sampler}", f"search.startup_trials={startup}",
                          "search.seed=3", *overrides)


def fake(calls):
    def run(spec):
        calls.append(spec)
        return TrialResult(status="complete", metrics={"accuracy": 0.5 + 0.01 * len(calls)}, curve=[[2, 1.0]],
                           trainable_params=None, train_time=0.1, wall_time=0.2, peak_rss_mb=100.0)
    return run


def _of(p):
    return p.encoding, p.space.search


def by_number(records):
    return sorted(records, key=lambda r: r.number)


def test_the_start_takes_every_method_in_turn_after_the_references(tmp_path):
    p = prep(trials=6, startup=4)
    out = run_search(p, Store(f"sqlite:///{tmp_path}/a.db"), runner=fake([]))
    records = by_number(out.records)
    assert [r.extras.get("baseline") for r in records[:2]] == ["default LoRA", "cheapest"]
    start = [r.candidate.method for r in records[2:6]]
    # 4 start-up trials over 3 methods: each method once, then the first again
    assert sorted(start[:3]) == ["adalora", "ia3", "lora"] and start[3] == start[0]
    assert start == startup_methods(*_of(p), room=4)
    # only the method is fixed: the rest is drawn at random, so two start-up trials differ elsewhere
    rest = {(r.candidate.rank, r.candidate.layers, r.candidate.learning_rate) for r in records[2:6]}
    assert len(rest) == 4


def test_the_start_counts_against_the_budget_and_fits_in_what_the_references_leave(tmp_path):
    calls = []
    out = run_search(prep(trials=3, startup=8), Store(f"sqlite:///{tmp_path}/b.db"), runner=fake(calls))
    assert len(calls) == 3 and len(out.records) == 3
    third = by_number(out.records)[2]
    assert third.candidate.method == startup_methods(*_of(prep(trials=3, startup=8)), room=1)[0]


def test_it_is_enqueued_once_not_again_on_a_resume(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/c.db"
    run_search(prep(trials=3, startup=3), Store(url), runner=fake([]))  # 2 references + 1 of 3 start-up trials
    run_search(prep(trials=5, startup=3), Store(url), trials=5, runner=fake([]))
    ostudy = optuna.load_study(study_name="refs", storage=url)
    marked = [t.user_attrs[STARTUP] for t in ostudy.get_trials(deepcopy=False) if STARTUP in t.user_attrs]
    assert len(marked) == 1  # the study was created with room for one; the resume adds none


@pytest.mark.parametrize("methods", ["lora", "[lora]"])
def test_a_space_with_one_method_still_gets_its_random_start_after_the_references(tmp_path, methods):
    assert startup_methods(*_of(prep(methods=methods)), room=8) == [None, None, None]
    sampler = make_sampler(prep(methods=methods).space.search, prep(methods=methods).encoding)
    out = run_search(prep(methods, 6, 3), Store(f"sqlite:///{tmp_path}/d.db"), sampler=sampler, runner=fake([]))
    # 2 references, 3 random start-up trials, then the model: the sampler's own start-up count
    # (3) would have counted the references and fitted its model from trial 3 on
    assert [r.extras.get("baseline") for r in by_number(out.records)] == ["default LoRA", "cheapest"] + [None] * 4
    assert sampler.origins == {5: "model"}


def test_every_method_is_tried_before_the_model_starts_whatever_the_seed(tmp_path):
    """The quickstart's failure: its two random start-up trials were both IA3, and the model
    never tried another method. Now, for any seed, the first len(methods) start-up trials
    cover every method."""
    for seed in range(5):
        p = prep("[lora, ia3, adalora]", 8, 3, "random", f"search.seed={seed}")
        assert Counter(startup_methods(*_of(p), room=6)) == {"lora": 1, "ia3": 1, "adalora": 1}
