"""The proxy's measured fidelity (``autopeft.search.analysis.trust.fidelity``) on the figures of a real
verified study: the quickstart on tweet-sentiment, 4 points verified at 150 steps x 3 seeds
(benchmarks/README.md, "Verified fidelity"); the expected values are worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.search.analysis.trust import Verified, fidelity
from test_pareto import rec, study_record

# trial: (proxy accuracy, trainable params, verified test mean, test sd)
TWEET = {0: (0.4667, 74_883, 0.6958, 0.0169), 1: (0.4600, 1_923, 0.5855, 0.0091),
         6: (0.6567, 8_067, 0.6693, 0.0127), 9: (0.6533, 3_459, 0.6570, 0.0010)}


def measured(points):
    records, verified = [], []
    for n, (proxy, params, test, sd) in points.items():
        records.append(dataclasses.replace(rec(n, (proxy, params)), metrics={"accuracy": proxy}))
        verified.append(Verified(f"trial:{n}", n, (0, 1, 2), (test, sd), (test, sd), params, None, rec(n, (proxy, params)).candidate))
    return records, verified


def test_tau_rho_noise_and_the_front_of_the_tweet_study():
    records, verified = measured(TWEET)
    f = fidelity(study_record(), records, verified, "accuracy", proxy_steps=30, eval_examples=300)
    # 6 pairs: the proxy orders default LoRA (trial 0) below trials 6 and 9, the test above them:
    # 4 concordant, 2 discordant -> tau 2/6; rank differences 0, 2, 1, 1 -> rho 1 - 6*6/(4*15)
    assert f.n == 4
    assert f.kendall_tau == pytest.approx(1 / 3)
    assert f.spearman_rho == pytest.approx(0.4)
    assert f.seed_sd == pytest.approx(((0.0169**2 + 0.0091**2 + 0.0127**2 + 0.0010**2) / 4) ** 0.5)
    # proxy front: trials 1, 6, 9 (0 is dominated by 6); verified, all four are optimal
    assert (f.front_kept, f.front_size) == (3, 3)
    assert f.advice.startswith("The proxy ranks configurations poorly here (tau 0.33 < 0.5; the front held: all 3")
    assert "proxy.steps 30 -> 90" in f.advice and "proxy.eval_examples 300 -> 600" in f.advice
    assert f.describe().endswith(f.advice)


def test_a_front_point_the_test_split_dominates_is_counted_as_moved():
    points = {**TWEET, 9: (0.6533, 3_459, 0.5800, 0.0100)}  # verified: worse than the cheaper trial 1
    records, verified = measured(points)
    f = fidelity(study_record(), records, verified, "accuracy", proxy_steps=30, eval_examples=300)
    assert (f.front_kept, f.front_size) == (2, 3)
    assert "the front moved: 2 of 3 proxy front points survive" in f.advice


def test_a_proxy_that_ranks_well_gets_no_advice_and_two_points_no_tau():
    good = {n: (test, params, test, sd) for n, (_, params, test, sd) in TWEET.items()}  # proxy = truth
    records, verified = measured(good)
    f = fidelity(study_record(), records, verified, "accuracy", proxy_steps=30, eval_examples=300)
    assert f.kendall_tau == pytest.approx(1.0) and f.advice is None
    records, verified = measured({n: TWEET[n] for n in (0, 1)})
    f = fidelity(study_record(), records, verified, "accuracy", proxy_steps=30, eval_examples=300)
    assert f.kendall_tau is None and "too few for a rank correlation" in f.describe()
