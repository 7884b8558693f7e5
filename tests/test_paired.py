"""The paired comparison on the test split: a bootstrap over seeds and test examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autopeft.errors import AutoPeftError
from autopeft.search.analysis.paired import PAIRED, UNPAIRED, PairingError, bootstrap, by_seed, outcome_bits


def _base(seeds: int, n: int, rate: float = 0.7, rng_seed: int = 0) -> np.ndarray:
    """0/1 outcomes ``(seeds, n)``: each run right on about ``rate`` of the rows, seeds differing."""
    rng = np.random.default_rng(rng_seed)
    return (rng.random((seeds, n)) < rate).astype(int)


def _fix(outcomes: np.ndarray, k: int, rows=None) -> np.ndarray:
    """The same runs right on ``k`` more rows each: its first ``k`` wrong rows (or the given ``rows``)."""
    out = outcomes.copy()
    for s in range(len(out)):
        wrong = np.flatnonzero(out[s] == 0) if rows is None else np.asarray(rows)
        out[s, wrong[:k]] = 1
    return out


def test_two_examples_better_on_two_seeds_of_100_rows_is_within_noise():
    base = _base(2, 100)
    point = _fix(base, 2)
    c = bootstrap(point, base, (0, 1))
    assert c.diff == pytest.approx(0.02) and c.how == PAIRED and c.examples == 100
    assert c.verdict == "within noise" and c.low <= 0 < c.high
    assert c.seeds == (0, 1) and c.resamples == 2000


def test_a_large_consistent_gain_is_better_and_its_mirror_worse():
    base = _base(2, 100)
    point = _fix(base, 20)  # 20 of 100 rows more on both seeds
    better = bootstrap(point, base)
    assert better.verdict == "better" and better.low > 0 and better.diff == pytest.approx(0.20)
    worse = bootstrap(base, point)
    assert worse.verdict == "worse" and worse.high < 0 and worse.diff == pytest.approx(-0.20)
    assert worse.half_width == pytest.approx(better.half_width, rel=0.25)


def test_a_family_of_comparisons_holds_together_so_the_luckiest_is_not_called_better():
    # On each of 3 seeds, 12 of 500 rows more right and 4 others wrong: a net +8 rows is better
    # alone, not once it is one of four points compared (the best of them is named).
    base = _base(3, 500, rng_seed=3)
    point = _fix(base, 12)
    for s in range(3):
        point[s, np.flatnonzero(base[s] == 1)[-4:]] = 0
    alone, of_four = bootstrap(point, base), bootstrap(point, base, family=4)
    assert alone.verdict == "better" and of_four.verdict == "within noise"
    assert of_four.low < alone.low and of_four.high > alone.high and of_four.diff == alone.diff
    # Each tail still rests on 50 resamples: 0.625 % of 8,000.
    assert of_four.resamples == 8000 and of_four.each_level == pytest.approx(0.9875)
    assert "95% interval" in of_four.interval() and "joint over 4 points (Bonferroni: 98.75% each)" in of_four.interval()
    assert "Bonferroni" not in alone.interval()
    # The fallback by seed widens the same way: z at 1 - 0.025 / 4.
    a, b = {0: 0.72, 1: 0.74}, {0: 0.70, 1: 0.71}
    one, four = by_seed(a, b, n_test=500, share=True), by_seed(a, b, n_test=500, share=True, family=4)
    assert four.half_width / one.half_width == pytest.approx(2.4977 / 1.95996, rel=1e-3)


def test_the_bootstrap_is_deterministic_for_its_seed():
    base = _base(3, 200, rng_seed=1)
    point = _base(3, 200, rate=0.72, rng_seed=2)
    first, again = bootstrap(point, base, rng_seed=5), bootstrap(point, base, rng_seed=5)
    assert first == again
    others = {(bootstrap(point, base, rng_seed=s).low, bootstrap(point, base, rng_seed=s).high) for s in range(6, 10)}
    assert len(others | {(first.low, first.high)}) > 1, "the resampling does depend on its seed"


def test_pairing_by_example_finds_a_consistent_gain_that_unpaired_noise_hides():
    # Three seeds whose accuracies differ by luck, on 500 rows; the point answers the same
    # 10 rows right on every seed where default LoRA got them wrong, and is otherwise the same run.
    base = np.stack([_base(1, 500, rate=r, rng_seed=s)[0] for s, r in enumerate((0.66, 0.70, 0.74))])
    base[:, :10] = 0  # rows default LoRA gets wrong on every seed
    point = _fix(base, 10, rows=range(10))
    paired = bootstrap(point, base, (0, 1, 2))
    assert paired.verdict == "better" and paired.diff == pytest.approx(10 / 500)
    # The same accuracies compared without the rows: the test split's sampling error hides it.
    acc = lambda x: {s: float(x[s].mean()) for s in range(3)}  # noqa: E731
    unpaired = by_seed(acc(point), acc(base), n_test=500, share=True, floor=1 / 500)
    assert unpaired.diff == pytest.approx(paired.diff)
    assert unpaired.verdict == "within noise" and unpaired.how == UNPAIRED and unpaired.low < 0
    assert "unpaired by example: approximate" in unpaired.interval()


def test_one_seed_never_gives_a_verdict():
    base = _base(1, 300)
    c = bootstrap(_fix(base, 60), base)
    assert c.low > 0 and c.verdict == "within noise"  # the rows alone would say better; training luck is unseen
    assert "1 seed × 300 test rows cannot tell a difference from training luck" == c.resolution()


def test_the_resolution_is_the_interval_half_width_in_points():
    base = _base(2, 500)
    c = bootstrap(_base(2, 500, rng_seed=9), base)
    words = c.resolution()
    assert words.startswith("2 seeds × 500 test rows cannot separate differences under ")
    assert f"{100 * (c.high - c.low) / 2:.1f} points" in words
    assert c.interval().startswith(f"95% interval {c.low:+.4f}..{c.high:+.4f}, paired bootstrap over 2 seeds")


def test_more_seeds_and_rows_separate_smaller_differences():
    narrow = bootstrap(_base(5, 2000, rng_seed=3), _base(5, 2000, rng_seed=4)).half_width
    wide = bootstrap(_base(2, 200, rng_seed=3), _base(2, 200, rng_seed=4)).half_width
    assert narrow < wide / 2


def test_the_seed_spread_is_widened_to_its_unbiased_size():
    # Two seeds that disagree by 10 points and no example noise to speak of (every run right on
    # a block of rows): resampling two seeds alone would give the spread of a mean of 2 drawn
    # from 2, sd 2.5 points; widened by sqrt(2) its 95 % interval reaches past +-3.5 points.
    n = 2000
    base = np.zeros((2, n), dtype=int)
    point = base.copy()
    point[0, :200] = 1  # +10 points on seed 0, 0 on seed 1
    c = bootstrap(point, base)
    assert c.diff == pytest.approx(0.05)
    assert c.low < 0.05 - 0.05 * math.sqrt(2) + 0.01 and c.verdict == "within noise"


@pytest.mark.parametrize("a,b", [((2, 10), (2, 11)), ((2, 10), (3, 10)), ((0, 10), (0, 10)), ((10,), (10,))])
def test_outcomes_that_cannot_pair_are_refused(a, b):
    with pytest.raises(PairingError) as e:
        bootstrap(np.zeros(a), np.zeros(b))
    assert isinstance(e.value, AutoPeftError) and "shape" in str(e.value)


@pytest.mark.parametrize("asked", [dict(level=1.0), dict(level=0.0), dict(family=0), dict(resamples=0)])
def test_an_impossible_level_family_or_resample_count_is_one_clear_error(asked):
    with pytest.raises(PairingError) as e:  # level 1 used to divide by zero before the check
        bootstrap(np.ones((2, 10)), np.zeros((2, 10)), **asked)
    assert "must hold" in str(e.value)


def test_outcome_bits_read_the_stored_text():
    assert outcome_bits("0110").tolist() == [0, 1, 1, 0]
    with pytest.raises(PairingError):
        outcome_bits("01x0")


def test_by_seed_without_a_shared_seed_is_none():
    assert by_seed({0: 0.7}, {1: 0.7}) is None


def test_the_evaluation_keeps_each_example_right_or_wrong_in_split_order():
    """``evaluate`` sorts rows by length to batch them; the outcomes come back in the split's order."""
    import types

    import torch

    from autopeft.search.analysis.paired import outcome_bits as bits
    from autopeft.trials.evaluation import OUTCOMES, evaluate, outcomes_record

    class Parity(torch.nn.Module):
        """Predicts class ``input_ids[:, 0] % 2``."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask, labels):
            logits = torch.nn.functional.one_hot(input_ids[:, 0] % 2, 2).float() + 0 * self.w
            return types.SimpleNamespace(logits=logits, loss=torch.nn.functional.cross_entropy(logits, labels))

    n = 37
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (n, 6), generator=gen)
    mask = (torch.arange(6)[None, :] < torch.randint(1, 7, (n, 1), generator=gen)).long()  # lengths vary: sorted
    labels = torch.randint(0, 2, (n,), generator=gen)
    split = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    hits: dict = {}
    out = evaluate(Parity(), split, 2, batch_size=8, outcomes=hits)
    right = ids[:, 0] % 2 == labels
    assert hits["accuracy"].tolist() == right.tolist()  # in the split's order, though scored sorted by length
    assert out["accuracy"] == pytest.approx(float(right.float().mean()))
    record = outcomes_record(hits["accuracy"], labels, "accuracy")
    assert bits(record["right"]).tolist() == right.int().tolist() and record["metric"] == "accuracy"
    # The split's digest tells a different order of rows apart.
    assert outcomes_record(right.flip(0), labels.flip(0), "accuracy")["split"] != record["split"]
    assert outcomes_record(right, labels.clone(), "accuracy")["split"] == record["split"]
    # trial_metrics keeps them under OUTCOMES when asked (the test split), never otherwise.
    from autopeft.trials.evaluation import trial_metrics

    spec = types.SimpleNamespace(metric="accuracy", max_new_tokens=8, model="m", num_labels=2,
                                 proxy=types.SimpleNamespace(batch_size=8))
    test = trial_metrics(Parity(), spec, split, {}, outcomes=True)
    assert test[OUTCOMES] == record and test["accuracy"] == out["accuracy"]
    assert OUTCOMES not in trial_metrics(Parity(), spec, split, {})
