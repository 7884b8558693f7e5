"""``target:``: trials trained towards the user's training length, seeds at the top, the answer there."""

from __future__ import annotations

import math

import pytest

from autopeft.errors import SpaceError
from autopeft.search.loop import run_search
from autopeft.search.prepare import prepare_search
from autopeft.space import load_space_text
from autopeft.store import Store
from autopeft.store.verifications import VerificationRecord, Verifications
from autopeft.trials.spec import TrialResult

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
    # The trials the search trained, and their seeds, are all there is: nothing pending is left behind.
    assert not [v for v in rows if v.status in ("pending", "running")]


def test_default_lora_is_trained_at_its_own_best_rate_among_several(searched):
    from autopeft.search.baseline import DEFAULT_LORA

    out, _, _ = searched
    refs = [r for r in out.records if r.extras.get("baseline") == DEFAULT_LORA]
    rates = sorted(r.candidate["learning_rate"] for r in refs)
    assert len(refs) == 3 and rates[0] < 1e-3 < rates[-1]  # three points across LoRA's band
    reached = [r for r in refs if r.status == "complete"]
    # Judged only against each other at each rung: the middle rate (first, best here) goes on;
    # a worse rate stops at the first rung whatever the rest of the front does.
    best = max(refs, key=lambda r: _quality_of(r))
    assert best in reached and all(_quality_of(r) >= _quality_of(best) - 1e-9 or r.status == "pruned" for r in refs)


def _quality_of(record) -> float:
    return 0.8 - 0.1 * abs(math.log10(record.candidate["learning_rate"] / 1e-3))


def test_the_answer_compares_the_front_with_default_lora_on_the_same_seeds(searched):
    from autopeft.search.answer import answer
    from autopeft.search.seeds import rows_of

    out, store, _ = searched
    space = load_space_text(SPACE, "tg.yaml")
    a = answer(out.study, out.records, rows_of(Verifications(store), out.study, space), "accuracy")
    assert a.reference is not None and a.front
    assert {p.trial for p in a.paired} == {r.number for r in a.front} - {a.reference.number}
    for p in a.paired:
        assert p.seeds == (0, 1, 2)
        # The fake's seed offsets are the same for both points: a paired difference has no
        # spread, and its standard error is one test example, the resolution of an accuracy.
        assert p.se == pytest.approx(1 / out.study.splits["test"])
    assert a.sentence and a.tau[1] >= 1


def test_seeds_that_agree_to_the_example_are_not_a_difference_of_none():
    from autopeft.search.answer import paired

    rows = [VerificationRecord(study="s", subject=f"trial:{n}", seed=seed, protocol={}, candidate={}, trial_number=n,
                               status="complete", test_metrics={"accuracy": acc})
            for n, accs in ((1, (0.70, 0.72)), (0, (0.68, 0.70))) for seed, acc in enumerate(accs)]
    # both seeds +2 examples of 100: no spread at all, which two seeds can show by chance
    assert paired(1, 0, rows, "accuracy", 1).verdict == "better"
    one_example = paired(1, 0, rows, "accuracy", 1, floor=0.01)
    assert one_example.verdict == "within noise" and one_example.se == pytest.approx(0.01)
    assert paired(1, 0, rows, "accuracy", 1, floor=0.001).verdict == "better", "of 1,000 examples it is one"


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
    assert rungs == [[4, 0.5], [12, 0.6]]
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
