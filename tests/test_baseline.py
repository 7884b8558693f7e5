"""Every new study starts with the reference points a user would otherwise have guessed:
default LoRA and the space's cheapest point (``search.baseline``), enqueued once, marked in
their records, counted against the budget like any trial."""

from __future__ import annotations

from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.trials.spec import TrialResult

SPACE = """
study: refs
model: minilm-l6
task: {dataset: tweet-sentiment}
space:
  method: %s
  rank: [4, 8, 16]
  targets: [[query, value], all-linear]
  layers: {top_k: [1, 6]}
  learning_rate: {log: [1.0e-4, 1.0e-2]}
proxy: {train_examples: 40, eval_examples: 20, steps: 2, max_length: 16}
search: {sampler: random, trials: %d, seed: 1}
"""


def prep(methods="[lora, ia3]", trials=3, *overrides):
    return prepare_search(load_space_text(SPACE % (methods, trials), "refs.yaml", list(overrides)))


def fake(calls):
    def run(spec):
        calls.append(spec)
        return TrialResult(status="complete", metrics={"accuracy": 0.5}, curve=[[2, 1.0]], trainable_params=None,
                           train_time=0.1, wall_time=0.2, peak_rss_mb=100.0)
    return run


def roles(records):
    return {r.number: r.extras["baseline"] for r in records if "baseline" in r.extras}


def test_a_new_study_trains_default_lora_and_the_cheapest_point_first(tmp_path):
    calls = []
    out = run_search(prep(), Store(f"sqlite:///{tmp_path}/a.db"), runner=fake(calls))
    assert roles(out.records) == {0: "default LoRA", 1: "cheapest"}
    default, cheapest = sorted(out.records, key=lambda r: r.number)[:2]
    assert default.candidate.to_json() == {"method": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.0,
                                 "targets": ["query", "value"], "layers": [0, 1, 2, 3, 4, 5],
                                 "learning_rate": 1e-3, "dora": False, "rslora": False, "layer_ranks": None}
    # IA3 on query/value of the one layer top_k allows at least: fewer parameters than any LoRA
    assert cheapest.candidate.method == "ia3"
    assert cheapest.candidate.targets.modules == ("query", "value") and cheapest.candidate.layers == (5,)
    assert cheapest.trainable_params == min(r.trainable_params for r in out.records)
    # counted against search.trials like any trial: 3 in all, the third one sampled
    assert len(calls) == 3 and [s.trial for s in calls] == [0, 1, 2]


def test_show_and_the_dashboard_table_mark_them(tmp_path, capsys):
    from autopeft.cli import main
    from autopeft.dashboard import data

    url = f"sqlite:///{tmp_path}/s.db"
    out = run_search(prep(trials=3), Store(url), runner=fake([]))
    assert main(["show", "refs", "--storage", url, "--wide"]) == 0
    text = capsys.readouterr().out
    assert "0 (default LoRA)" in text and "1 (cheapest)" in text
    assert main(["show", "refs", "--storage", url]) == 0  # narrow: the role leads the note
    rows = {line[2:4].strip(): line for line in capsys.readouterr().out.splitlines() if line[:1] in (" ", "★")
            and line[2:4].strip().isdigit()}
    assert "default LoRA" in rows["0"] and "cheapest" in rows["1"]
    frame = data.trials_frame(out.study, out.records).set_index("number")
    assert list(frame["role"]) == ["default LoRA", "cheapest", ""]
    assert frame.loc[0, "baseline"] and not frame.loc[1, "baseline"]


def test_a_resumed_study_does_not_enqueue_them_again(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    run_search(prep(trials=1), Store(url), runner=fake([]))  # stops after default LoRA; cheapest still queued
    out = run_search(prep(trials=4), Store(url), trials=4, runner=fake([]))
    assert roles(out.records) == {0: "default LoRA", 1: "cheapest"}
    assert len(out.records) == 4


def test_search_baseline_false_enqueues_nothing(tmp_path):
    out = run_search(prep("[lora, ia3]", 2, "search.baseline=false"), Store(f"sqlite:///{tmp_path}/c.db"),
                     runner=fake([]))
    assert roles(out.records) == {}


def test_a_space_without_lora_gets_only_its_cheapest_point(tmp_path):
    out = run_search(prep("[ia3, loha]", 2), Store(f"sqlite:///{tmp_path}/d.db"), runner=fake([]))
    assert roles(out.records) == {0: "cheapest"}
    first = next(r for r in out.records if r.number == 0)
    assert first.candidate.method == "ia3" and first.candidate.layers == (5,)


def test_default_lora_snaps_to_the_nearest_point_the_space_has(tmp_path):
    p = prep("lora", 1, "space.rank=[2, 64]", "space.learning_rate={range: [3.0e-3, 1.0e-2]}", "space.layers={top_k: [1, 3]}")
    out = run_search(p, Store(f"sqlite:///{tmp_path}/e.db"), runner=fake([]))
    c = next(r for r in out.records if r.number == 0).candidate
    assert (c.rank, c.alpha, c.learning_rate, c.layers) == (2, 4.0, 3e-3, (3, 4, 5))
