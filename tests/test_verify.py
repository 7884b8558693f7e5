"""``autopeft verify``: held-out test split, verification runs stored per trial x seed, resumable,
the verified front, the proxy's fidelity and a fairly trained baseline — on a real tiny study."""

from __future__ import annotations

import numpy as np
import pytest

from autopeft.assets.datasets import three_way_split
from autopeft.cli import main
from conftest import REPO

# bbc-news (2,225 articles), not the quickstart's tweets: verification trains on every training
# row, and each run on the 38k tweets took ~18 s more for its 4 steps (fixture 196 s -> 31 s).
QUICK = ["proxy.train_examples=64", "proxy.eval_examples=48", "proxy.steps=4", "proxy.batch_size=8",
         "proxy.max_length=24", "proxy.threads=1", "search.trials=3", "search.sampler=random",
         "verify.test_examples=60", "space.method=[lora, ia3]", "task.dataset=bbc-news",
         "target=null"]  # one flat proxy per point: verification is what this file tests


def test_the_test_split_is_disjoint_fixed_and_stratified():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    train, evals, test = three_way_split(labels, 400, 150, 100, seed=3)
    assert not (set(train) & set(test)) and not (set(evals) & set(test)) and not (set(train) & set(evals))
    assert np.bincount(labels[test]).tolist() == [50, 30, 20]
    # The test rows do not move when the proxy's sizes change: every verification sees the same ones.
    assert np.array_equal(test, three_way_split(labels, 50, 20, 100, seed=3)[2])
    assert not np.array_equal(test, three_way_split(labels, 400, 150, 100, seed=4)[2])


def test_only_searched_points_can_dominate_default_lora_not_its_own_sweep():
    """Found on bbc-news: the baseline's 3e-3 sweep run (one seed, 0.970) was listed among the
    points that dominate default LoRA (0.967): it is default LoRA."""
    from autopeft.candidate import Candidate
    from autopeft.search.analysis.trust import Verified, dominating_baseline
    from test_store_contract import CANDIDATE

    def point(subject, number, test, params, diverged=None):
        return Verified(subject, number, (0, 1, 2), (test, 0.0), (test, 0.005), params, diverged,
                        Candidate.from_json(CANDIDATE))

    base = point("baseline", None, 0.967, 75_653)
    sweep = point("sweep:0.003", None, 0.970, 75_653)
    small = point("trial:3", 3, 0.972, 7_685)
    worse = point("trial:9", 9, 0.845, 2_693)
    broken = point("trial:4", 4, 0.980, 5_000, diverged="seed 1: loss did not fall")
    assert dominating_baseline(None, [base, sweep, small, worse, broken], "accuracy") == [small]
    assert dominating_baseline(None, [sweep, small], "accuracy") is None  # no baseline: no comparison


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def verified_study(tmp_path_factory):
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.store import Store

    root = tmp_path_factory.mktemp("verify")
    url = f"sqlite:///{root / 'v.db'}"
    space = load_space(REPO / "search_spaces" / "quickstart.yaml", [*QUICK, "study=vq"])
    outcome = run_search(prepare_search(space), Store(url))
    assert any(r.status == "complete" for r in outcome.records)
    before = [(r.number, r.status, r.metrics, r.values) for r in Store(url).trials("vq")]
    code = main(["verify", "vq", "--storage", url, "--top", "1", "--seeds", "2", "--steps", "4", "--baseline"])
    assert code == 0
    return url, before


@pytest.mark.slow
def test_verify_stores_a_run_per_point_and_seed_on_validation_and_test(verified_study):
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    url, before = verified_study
    runs = Verifications(Store(url)).of("vq")
    by_subject = {}
    for r in runs:
        by_subject.setdefault(r.subject.split(":")[0], []).append(r)
    # --top 1, plus the study's completed reference trials (default LoRA, cheapest point), each x 2 seeds
    refs = {r.number for r in Store(url).trials("vq") if r.status == "complete" and r.extras.get("baseline")}
    points = {r.trial_number for r in by_subject["trial"]}
    assert refs and refs <= points and len(points) <= 1 + len(refs)
    assert len(by_subject["trial"]) == 2 * len(points) and len(by_subject["baseline"]) == 2 and len(by_subject["sweep"]) == 4
    for r in by_subject["trial"] + by_subject["baseline"]:
        assert r.status == "complete", r.error
        assert 0 <= r.metrics["accuracy"] <= 1 and 0 <= r.test_metrics["accuracy"] <= 1
        assert r.protocol["test_examples"] == 60 and r.protocol["steps"] == 4
    assert sorted(r.seed for r in by_subject["trial"]) == sorted([0, 1] * len(points))
    base_lr = {r.candidate.learning_rate for r in by_subject["baseline"]}
    assert len(base_lr) == 1 and base_lr <= {float(r.subject.split(":")[1]) for r in by_subject["sweep"]}
    # Verification never changes a trial's proxy results.
    assert [(r.number, r.status, r.metrics, r.values) for r in Store(url).trials("vq")] == before


@pytest.mark.slow
def test_a_second_verify_resumes_and_trains_nothing_again(verified_study, capsys):
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    url, _ = verified_study
    finished = {r.id: r.finished_at for r in Verifications(Store(url)).of("vq")}
    code, out, err = run(capsys, "verify", "vq", "--storage", url, "--top", "1", "--seeds", "2", "--steps", "4")
    assert code == 0, err
    assert "(0 new run(s))" in out
    assert {r.id: r.finished_at for r in Verifications(Store(url)).of("vq")} == finished


@pytest.mark.slow
def test_show_and_export_use_the_verified_means(verified_study, capsys, tmp_path):
    import json

    from autopeft.search.analysis.trust import dominating_baseline, summarize
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    url, _ = verified_study
    code, out, err = run(capsys, "show", "vq", "--storage", url)
    assert code == 0, err
    assert "verified test" in out and " ± " in out and "verified Pareto-optimal" in out
    assert "proxy fidelity" in out
    # The comparison line is the one the stored runs call for: a diverged baseline is never a
    # comparison; a healthy one lists exactly the searched points that dominate it.
    verified = summarize(Verifications(Store(url)).of("vq"), "accuracy")
    base = next(v for v in verified if v.subject == "baseline")
    if base.diverged:
        assert f"default LoRA diverged — not a comparison ({base.diverged})" in out
        assert "dominate default LoRA" not in out
    else:
        names = ", ".join(v.subject for v in dominating_baseline(None, verified, "accuracy")) or "none"
        assert f"params): {names}" in out and "not a comparison" not in out
    code, out, _ = run(capsys, "show", "vq", "--storage", url, "--proxy")
    assert "Pareto-optimal on the proxy" in out
    code, out, err = run(capsys, "export", "vq", "--storage", url, "--pick", "knee", "--verified", "--out", tmp_path / "a")
    assert code == 0, err
    provenance = json.loads((tmp_path / "a" / "autopeft.json").read_text())
    assert "among verified points" in json.dumps(provenance)


def test_verify_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys):
    from test_store_contract import study_record

    from autopeft.store import Store

    url = f"sqlite:///{tmp_path / 'e.db'}"
    Store(url).add_study(study_record("empty"))
    for args, expected in ((["verify", "nope"], "no study 'nope'"),
                           (["verify", "empty"], "has no completed trial to verify"),
                           (["verify", "empty", "--top", "0"], "--top must be at least 1, got 0")):
        code, _, err = run(capsys, *args, "--storage", url)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err


@pytest.mark.slow
def test_a_test_split_too_small_for_the_classes_is_refused(tmp_path, capsys):
    from autopeft.search.loop import run_search
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.store import Store

    url = f"sqlite:///{tmp_path / 's.db'}"
    space = load_space(REPO / "search_spaces" / "quickstart.yaml",
                       [*QUICK, "study=small", "search.trials=1", "verify.test_examples=2"])
    run_search(prepare_search(space), Store(url))
    code, _, err = run(capsys, "verify", "small", "--storage", url)
    assert code == 2 and "the test split has 2 examples for 5 classes" in err
