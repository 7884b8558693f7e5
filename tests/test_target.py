"""``target:``: trials trained towards the user's training length, seeds at the top, the answer there."""

from __future__ import annotations

import dataclasses
import math
import statistics

import pytest

from autopeft.errors import SpaceError
from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.store.trial_extras import Rung
from autopeft.store.verifications import VerificationRecord, Verifications
from autopeft.trials.spec import TrialResult
from test_store_contract import CANDIDATE

SPACE = """
study: tg
model: minilm-l6
task: {dataset: tweet-sentiment}
space:
  method: [lora, ia3]
  rank: [2, 8]
  layers: {top_k: [1, 6], by: top}
  learning_rate: {lora: {log: [1.0e-4, 1.0e-2]}, ia3: {log: [1.0e-3, 1.0e-1]}}
proxy: {train_examples: 64, eval_examples: 32, steps: 4, batch_size: 8, max_length: 16, eta: 3}
target: {steps: 36, seeds: 3}
search: {sampler: tpe, trials: 9, startup_trials: 3, seed: 1}
"""


def test_the_target_compiles_to_rungs_from_the_proxy_up_by_eta():
    sp = load_space_text(SPACE, "tg.yaml")
    assert sp.target.steps == 36 and sp.target.seeds == 3
    assert sp.proxy.steps == 36 and sp.proxy.rungs == (4, 12)  # every trial is a prefix of the 36-step run
    epochs = load_space_text(SPACE.replace("target: {steps: 36, seeds: 3}", "target: {epochs: 2}"), "tg.yaml")
    assert epochs.target.steps == math.ceil(2 * 64 / 8) and epochs.target.seeds == 3  # the default seeds
    explicit = load_space_text(SPACE.replace("eta: 3}", "eta: 3, rungs: [10]}"), "tg.yaml")
    assert explicit.proxy.rungs == (10,)
    plain = load_space_text(SPACE.replace("target: {steps: 36, seeds: 3}\n", ""), "tg.yaml")
    assert plain.target is None and plain.proxy.steps == 4 and plain.proxy.rungs == ()


@pytest.mark.parametrize("target,path,words", [
    ("{steps: 3}", "target.steps", "at least proxy.steps=4"),
    ("{seeds: 0}", "target.seeds", ">= 1"),
    ("{steps: 40, epochs: 1}", "target.epochs", "not both"),
    ("{stepz: 40}", "target.stepz", "unknown key"),
    ("12", "target", "mapping"),
])
def test_a_bad_target_names_its_key(target, path, words):
    with pytest.raises(SpaceError) as e:
        load_space_text(SPACE.replace("{steps: 36, seeds: 3}", target), "tg.yaml")
    assert e.value.path == path and words in str(e.value)


def test_a_different_target_is_a_different_study():
    from autopeft.space import space_hash

    a = load_space_text(SPACE, "tg.yaml")
    b = load_space_text(SPACE.replace("seeds: 3", "seeds: 2"), "tg.yaml")
    assert space_hash(a) != space_hash(b)


def _quality(spec) -> float:
    """A deterministic stand-in for a fine-tune: better near lr 1e-3 (LoRA) / 1e-2 (IA3, a
    little better than LoRA and far smaller), a little noise by seed; the score at step s is a prefix of the curve to the target."""
    best, top, slope = (1e-3, 0.8, 0.1) if spec.method == "lora" else (1e-2, 0.95, 0.05)
    return top - slope * abs(math.log10(spec.learning_rate / best)) + 0.01 * (spec.proxy.seed % 3)


class FakeRunner:
    """Trains nothing: records the specs it was given and answers with ``_quality``."""

    def __init__(self):
        self.specs = []

    def __call__(self, spec, on_rung=None):
        self.specs.append(spec)
        q = _quality(spec)
        for step in spec.proxy.rungs:
            metrics = {"accuracy": q * (0.5 + 0.5 * step / spec.proxy.steps)}
            if on_rung is not None and not on_rung(step, metrics):
                return TrialResult(status="pruned", metrics=metrics, trainable_params=None, extras={"fidelity": step},
                                   cpu_time=10.0)
        return TrialResult(status="complete", metrics={"accuracy": q}, test_metrics={"accuracy": q - 0.01},
                           trainable_params=None, train_time=1.0, peak_rss_mb=1.0, cpu_time=100.0)


@pytest.fixture
def searched(tmp_path):
    runner = FakeRunner()
    store = Store(f"sqlite:///{tmp_path / 'tg.db'}")
    out = run_search(prepare_search(load_space_text(SPACE, "tg.yaml")), store, runner=runner)
    return out, store, runner


def test_points_at_the_target_are_means_over_their_seeds(searched):
    out, store, runner = searched
    rows = Verifications(store).of("tg")
    complete = [r for r in out.records if r.status == "complete"]
    assert complete and any(r.status == "pruned" for r in out.records)
    for r in complete:
        mine = sorted((v for v in rows if v.trial_number == r.number), key=lambda v: v.seed)
        assert [v.seed for v in mine] == [0, 1, 2] and all(v.status == "complete" for v in mine)
        assert mine[0].metrics == r.metrics  # the trial's own run is its first seed: not trained twice
        mean = sum(v.metrics["accuracy"] for v in mine) / 3
        assert r.values[0] == pytest.approx(mean) and r.extras["target"]["seeds"] == [0, 1, 2]
        assert r.extras["target"]["test"][0] == pytest.approx(sum(v.test_metrics["accuracy"] for v in mine) / 3)
    # Seed runs train the target's steps on their own seeds, never at a rung; trials go to the target.
    seed_specs = [s for s in runner.specs if not s.proxy.rungs]
    assert len(seed_specs) == 2 * len(complete) and {s.proxy.seed for s in seed_specs} == {1, 2}
    assert all(s.proxy.steps == 36 and s.test_split for s in runner.specs)
    # The other seeds draw their rows from every training row, not from the trials' 64: a
    # target as long as the proxy's rows would otherwise train every seed on the same ones.
    from safetensors import safe_open

    def n_train(spec) -> int:
        with safe_open(spec.data_path, "np") as f:
            return f.get_slice("train.labels").get_shape()[0]

    trial_data = {s.data_path for s in runner.specs if s.proxy.rungs}
    assert len(trial_data) == 1 and n_train(runner.specs[0]) == 64
    assert {s.data_path for s in seed_specs}.isdisjoint(trial_data) and all(n_train(s) > 1000 for s in seed_specs)
    assert {r.protocol.get("rows") for r in rows} == {"drawn by seed from every training row"}
    # The trials the search trained, and their seeds, are all there is: nothing pending is left behind.
    assert not [v for v in rows if v.status in ("pending", "running")]


def test_default_lora_is_trained_at_its_own_best_rate_among_several(searched):
    from autopeft.space.default_lora import DEFAULT_LORA

    out, _, _ = searched
    refs = [r for r in out.records if r.extras.get("baseline") == DEFAULT_LORA]
    rates = sorted(r.candidate.learning_rate for r in refs)
    assert len(refs) == 3 and rates[0] < 1e-3 < rates[-1]  # three points across LoRA's band
    reached = [r for r in refs if r.status == "complete"]
    # Judged only against each other at each rung: the middle rate (first, best here) goes on;
    # a worse rate stops at the first rung whatever the rest of the front does.
    best = max(refs, key=lambda r: _quality_of(r))
    assert best in reached and all(_quality_of(r) >= _quality_of(best) - 1e-9 or r.status == "pruned" for r in refs)


def _quality_of(record) -> float:
    return 0.8 - 0.1 * abs(math.log10(record.candidate.learning_rate / 1e-3))


def test_the_answer_compares_the_front_with_default_lora_on_the_same_seeds(searched):
    from autopeft.search.analysis.answer import answer
    from autopeft.search.seeds import rows_of

    out, store, _ = searched
    space = load_space_text(SPACE, "tg.yaml")
    a = answer(out.study, out.records, rows_of(Verifications(store), out.study, space), "accuracy")
    assert a.reference is not None and a.front
    assert {p.trial for p in a.paired} == {r.number for r in a.front} - {a.reference.number}
    n = out.study.splits["test"]
    # The intervals hold at 95 % together: each at 1 - 0.05 / (the points compared).
    z = statistics.NormalDist().inv_cdf(1 - 0.025 / len(a.paired))
    for p in a.paired:
        assert p.seeds == (0, 1, 2)
        # The fake keeps no per-example outcomes: paired by seed only, and said to be approximate.
        c = p.comparison
        assert c.how == "by seed only" and "unpaired by example: approximate" in p.describe()
        # Its seed offsets are the same for both points, so the seeds show no spread: the error
        # is one test example, plus the test split's own sampling error of two accuracies.
        pa = statistics.fmean(v.test_metrics["accuracy"] for v in rows_of(Verifications(store), out.study, space)
                              if v.trial_number == p.trial)
        pb = statistics.fmean(v.test_metrics["accuracy"] for v in rows_of(Verifications(store), out.study, space)
                              if v.trial_number == a.reference.number)
        se = math.sqrt((1 / n) ** 2 + (pa * (1 - pa) + pb * (1 - pb)) / n)
        assert c.family == len(a.paired) and c.half_width == pytest.approx(z * se, rel=1e-4)
    assert a.sentence and a.tau[1] >= 1


def test_seeds_that_agree_to_the_example_are_not_a_difference_of_none():
    from autopeft.search.analysis.answer import paired

    rows = [VerificationRecord(study="s", subject=f"trial:{n}", seed=seed, protocol={}, candidate=CANDIDATE, trial_number=n,
                               status="complete", test_metrics={"accuracy": acc})
            for n, accs in ((1, (0.70, 0.72)), (0, (0.68, 0.70))) for seed, acc in enumerate(accs)]
    # both seeds +2 examples of 100: no spread at all, which two seeds can show by chance
    assert paired(1, 0, rows, "accuracy", 1).verdict == "better"
    # ... unless the error is taken no lower than the floor (the 95 % half-width is 1.96 floors)
    floored = paired(1, 0, rows, "accuracy", 1, floor=0.011)
    assert floored.verdict == "within noise" and floored.comparison.half_width == pytest.approx(0.011 * 1.959964)
    assert paired(1, 0, rows, "accuracy", 1, floor=0.001).verdict == "better", "of 1,000 examples it is one"
    # ... but 100 test rows alone carry ~6 points of sampling error on a difference of two accuracies
    assert paired(1, 0, rows, "accuracy", 1, floor=0.001, n_test=100).verdict == "within noise"


def test_the_search_ends_with_the_answer_and_show_says_the_same(tmp_path, monkeypatch, capsys):
    from autopeft.cli import app
    from typer.testing import CliRunner

    import autopeft.trials.executor as executor

    fake = FakeRunner()
    monkeypatch.setattr(executor, "run_isolated", fake)
    (tmp_path / "tg.yaml").write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    cli = CliRunner()
    out = cli.invoke(app, ["search", str(tmp_path / "tg.yaml"), "--storage", url])
    assert out.exit_code == 0, out.output
    for words in ("Pareto-optimal at the target", "target: 36 steps, 3 seed(s)", "default LoRA (trial",
                  "vs default LoRA on the test split", "answer: "):
        assert words in out.output
    shown = cli.invoke(app, ["show", "tg", "--storage", url])
    assert shown.exit_code == 0 and "answer: " in shown.output and "3/3 seeds" in shown.output
    answer_line = [line for line in out.output.splitlines() if line.startswith("answer: ")]
    assert answer_line == [line for line in shown.output.splitlines() if line.startswith("answer: ")]
    # What it cost: every trial process and every seed run trained apart (the trial's own run,
    # stored as its first seed, is counted once, with the trial)
    store = Store(url)
    records, runs = store.trials("tg"), [r for r in Verifications(store).of("tg") if r.status == "complete"]
    trained = [r for r in records if r.status in ("complete", "pruned", "failed")]
    pruned, complete = sum(r.status == "pruned" for r in trained), sum(r.status == "complete" for r in trained)
    seeds_trained = len(runs) - complete
    assert pruned and seeds_trained
    spent = next(line for line in shown.output.splitlines() if line.startswith("spent: "))
    assert spent.startswith(f"spent: {10 * pruned + 100 * (complete + seeds_trained):,} CPU-seconds in {len(trained)} "
                            f"trial(s) and {seeds_trained} seed/verification run(s); near-duplicates: ")
    assert spent in out.output.splitlines()


def test_a_rerun_of_a_dead_trial_resumes_its_checkpoint_and_keeps_its_rungs(tmp_path):
    """A trial whose process died left its rung checkpoint; the ledger re-queues its point and
    the re-run starts from that step, with the rungs it had passed — then removes the folder."""
    import dataclasses

    from autopeft.methods import get_method
    from autopeft.search.fidelity import checkpoints
    from autopeft.search.session import SearchSession

    store = Store(f"sqlite:///{tmp_path / 'tg.db'}")
    space = load_space_text(SPACE.replace("trials: 9", "trials: 1").replace("startup_trials: 3", "startup_trials: 1"),
                            "tg.yaml")
    space = dataclasses.replace(space, search=dataclasses.replace(space.search, baseline=False))
    fake = FakeRunner()
    session = SearchSession(prepare_search(space), store, runner=fake)
    ticket = session.ledger.ask(session.prep.encoding.suggest)
    # What a killed run leaves: its record running with a checkpoint folder, a step-12 checkpoint in it.
    folder = checkpoints.folder_for(store, "tg", ticket.record, None)
    (folder / "step-4").mkdir(parents=True)
    (folder / "step-12").mkdir()
    dead = dataclasses.replace(ticket.record, extras={**ticket.record.extras, "checkpoints": str(folder),
                                                      "rungs": [[4, 0.5], [12, 0.6]]})
    store.save_trial(dead)
    rerun = dataclasses.replace(dead, number=dead.number + 1, extras={"retry_of": dead.number})
    overrides, rungs = session._towards_target(get_method("lora"), rerun)
    assert overrides["resume_from"] == str(folder / "step-12") and overrides["checkpoint_dir"] == str(folder)
    assert rungs == [Rung(4, 0.5), Rung(12, 0.6)]
    # A trial that is no re-run starts afresh in a folder of its own.
    fresh, none = session._towards_target(get_method("lora"),
                                          dataclasses.replace(dead, number=7, extras={}))
    assert "resume_from" not in fresh and fresh["checkpoint_dir"].endswith("trial-7") and none == []
    # AdaLoRA's rank allocator keeps per-step state no checkpoint holds: never checkpointed.
    ada, _ = session._towards_target(get_method("adalora"),
                                     rerun)
    assert ada == {"test_split": True}
    session.ledger.close()


def test_target_null_makes_the_proxy_the_target_again():
    from autopeft.space import apply_overrides, parse_space
    import yaml

    doc = apply_overrides(yaml.safe_load(SPACE), ["target=null"])
    sp = parse_space(doc, "tg.yaml")
    assert sp.target is None and sp.proxy.steps == 4 and sp.proxy.rungs == ()


# ---------------------------------------------------------------- the answer, paired by example
def _study(n_test: int):
    from datetime import datetime, timezone

    from autopeft.store.records import StudyRecord

    return StudyRecord(name="s", created_at=datetime.now(timezone.utc), space_yaml="", space_hash="h",
                       objectives=(("accuracy", "max"), ("trainable_params", "min")), trials_target=4, model="m",
                       model_fingerprint="f", dataset="d", data_fingerprint="f", splits={"test": n_test})


def _record(number: int, accuracy: float, params: int, baseline: bool = False):
    from datetime import datetime, timezone

    from autopeft.space.default_lora import DEFAULT_LORA
    from autopeft.store.records import TrialRecord

    return TrialRecord(study="s", number=number, status="complete", candidate=CANDIDATE, params={},
                       started_at=datetime.now(timezone.utc), values=[accuracy, float(params)],
                       trainable_params=params, metrics={"accuracy": accuracy},
                       extras={"baseline": DEFAULT_LORA} if baseline else {})


def _rows(right_by_trial: dict, n: int, seeds=(0, 1), outcomes: bool = True):
    """Seed rows whose test outcomes are right on k rows of n (per trial and seed, k or
    (offset, k): right on rows offset..offset+k-1)."""
    rows = []
    for trial, ks in right_by_trial.items():
        for seed, k in zip(seeds, ks):
            offset, k = k if isinstance(k, tuple) else (0, k)
            right = "0" * offset + "1" * k + "0" * (n - k - offset)
            test = {"accuracy": k / n, **({"outcomes": {"metric": "accuracy", "right": right, "split": "abc"}}
                                         if outcomes else {})}
            rows.append(VerificationRecord(study="s", subject=f"trial:{trial}", seed=seed, protocol={}, candidate=CANDIDATE,
                                           trial_number=trial, status="complete", test_metrics=test))
    return rows


def test_the_answer_names_the_best_and_the_smallest_point_not_worse_than_default_lora():
    from autopeft.search.analysis.answer import answer

    n = 500
    # default LoRA (trial 0, 100k parameters) right on 350 of 500; trial 1 (2k) worse by 50 rows;
    # trial 2 (10k) a row better, within noise; trial 3 (400k) better by 60 rows on both seeds.
    records = [_record(0, 0.70, 100_000, baseline=True), _record(1, 0.60, 2_000), _record(2, 0.702, 10_000),
               _record(3, 0.82, 400_000)]
    rows = _rows({0: (350, 350), 1: (300, 300), 2: (351, 351), 3: (410, 410)}, n)
    a = answer(_study(n), records, rows, "accuracy")
    verdicts = {p.trial: p.verdict for p in a.paired}
    assert verdicts == {1: "worse", 2: "within noise", 3: "better"}
    assert all(p.comparison.how == "paired bootstrap" and p.comparison.examples == n for p in a.paired)
    assert a.best.trial == 3 and a.smallest.trial == 2  # trial 1 is smaller, but worse
    assert a.sentence.startswith("trial 3 beats default LoRA by 0.1200 (95% interval ")
    assert "paired bootstrap over 2 seeds × 500 test rows" in a.sentence
    assert "the smallest point not shown worse than default LoRA is trial 2 with 10,000 trainable parameters (10.0%" in a.sentence
    # The same answer, deterministic: `autopeft show` computes it again from the same rows.
    assert answer(_study(n), records, rows, "accuracy").sentence == a.sentence


def test_without_a_win_the_answer_says_what_the_protocol_cannot_separate():
    from autopeft.search.analysis.answer import answer

    n = 500
    records = [_record(0, 0.70, 100_000, baseline=True), _record(2, 0.71, 10_000), _record(3, 0.712, 400_000)]
    # +5 and +6 rows of 500 on each of two seeds (1.0 and 1.2 points), each the balance of some
    # 60 rows the points answer differently: within what 2 seeds x 500 rows can tell
    rows = _rows({0: (350, 340), 2: ((30, 355), (30, 345)), 3: ((30, 356), (30, 346))}, n)
    a = answer(_study(n), records, rows, "accuracy")
    assert a.best.trial == 3 and a.best.verdict == "within noise" and a.smallest.trial == 2
    hw = a.best.comparison.half_width
    assert a.sentence.startswith("nothing found here beats default LoRA beyond noise: the best, trial 3")
    assert f"2 seeds × 500 test rows cannot separate differences under {100 * hw:.1f} points here" in a.sentence
    assert 100 * hw > 1.2  # the gain it could not separate
    assert "the smallest point not shown worse than default LoRA is trial 2" in a.sentence


def test_an_older_study_without_outcomes_is_compared_by_seed_and_says_so():
    from autopeft.search.analysis.answer import answer

    n = 500
    records = [_record(0, 0.70, 100_000, baseline=True), _record(2, 0.80, 10_000)]
    a = answer(_study(n), records, _rows({0: (350, 350), 2: (400, 400)}, n, outcomes=False), "accuracy")
    (p,) = a.paired
    assert p.comparison.how == "by seed only" and p.verdict == "better"
    assert "2 seeds, unpaired by example: approximate" in a.sentence
    # Outcomes of different test rows (another split's digest) are not paired either.
    mixed = _rows({0: (350, 350), 2: (400, 400)}, n)
    mixed[0] = dataclasses.replace(mixed[0], test_metrics={**mixed[0].test_metrics,
                                                           "outcomes": {**mixed[0].test_metrics["outcomes"], "split": "zzz"}})
    assert answer(_study(n), records, mixed, "accuracy").paired[0].comparison.how == "by seed only"


def test_every_point_worse_is_said():
    from autopeft.search.analysis.answer import answer

    records = [_record(0, 0.70, 100_000, baseline=True), _record(1, 0.5, 2_000)]
    a = answer(_study(500), records, _rows({0: (350, 350), 1: (250, 250)}, 500), "accuracy")
    assert a.smallest is None and a.sentence.endswith("every point compared is worse than default LoRA")
