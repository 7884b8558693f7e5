"""A causal LM scored by choice accuracy counts as diverged when it predicts one answer or
scores no better than always answering the most frequent one, not only when its loss did not
fall; the answer scoring reports both diagnostics under classification's keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from autopeft.search.analysis.divergence import divergence
from autopeft.search.analysis.pareto import diverged, eligible
from autopeft.store import TrialRecord, utcnow
from autopeft.store.trial_extras import Diagnostics
from autopeft.trials import generative
from test_store_contract import CANDIDATE

FALLING = [[5, 2.1], [10, 1.4]]
LM = {"eval_loss": 1.2, "perplexity": 3.3}


def test_choice_diagnostics_of_a_tiny_score_table():
    gold = torch.tensor([0, 0, 1, 2, 0])  # answer 0 is gold for 3 of 5 prompts
    scores = torch.tensor([[0.0, -1.0, -2.0], [0.0, -1.0, -2.0], [-1.0, 0.0, -2.0], [0.0, -1.0, -2.0],
                           [-1.0, 0.0, -2.0]], dtype=torch.float64)
    assert generative.choice_diagnostics(scores, gold) == {"predicted_classes": 2, "majority_rate": 0.6}
    assert generative.choice_accuracy(scores, gold) == pytest.approx(0.6)  # no better than always answering 0
    one = torch.tensor([[0.0, -3.0, -3.0]] * 5, dtype=torch.float64)
    assert generative.choice_diagnostics(one, gold)["predicted_classes"] == 1
    assert generative.choice_diagnostics(torch.empty((0, 3)), torch.empty(0, dtype=torch.long)) == {}


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_generative_metrics_fills_the_diagnostics_it_is_given(monkeypatch):
    gold = torch.tensor([0, 0, 0, 1])
    scores = torch.tensor([[0.0, -1.0]] * 4, dtype=torch.float64)  # always answer 0
    monkeypatch.setattr(generative, "score_choices", lambda model, split, gen, batch_size: scores)
    gen = {"choice_ids": torch.zeros((2, 1), dtype=torch.long), "gold": gold}
    diagnostics = {}
    metrics = generative.generative_metrics(_Model(), {}, gen, metric="choice_accuracy", max_new_tokens=4,
                                            diagnostics=diagnostics)
    assert metrics == {"choice_accuracy": 0.75}
    assert diagnostics == {"predicted_classes": 1, "majority_rate": 0.75}
    assert divergence(metrics, Diagnostics.from_extras(diagnostics), FALLING) == "predicts a single answer"
    # Without a diagnostics dict nothing changes for the caller.
    assert generative.generative_metrics(_Model(), {}, gen, metric="choice_accuracy", max_new_tokens=4) == metrics


def test_below_the_majority_answer_is_diverged_though_the_loss_fell():
    why = divergence({"choice_accuracy": 0.310, **LM}, Diagnostics(3, 0.42), FALLING)
    assert why == "choice accuracy 0.310 is no better than the most frequent answer (0.420)"
    assert divergence({"choice_accuracy": 0.42, **LM}, Diagnostics(2, 0.42), FALLING)


def test_a_single_predicted_answer_is_diverged():
    assert divergence({"choice_accuracy": 0.55, **LM}, Diagnostics(1, 0.55),
                      FALLING) == "predicts a single answer"


def test_a_learned_run_is_not_and_the_loss_check_still_applies():
    healthy = Diagnostics(4, 0.42)
    assert divergence({"choice_accuracy": 0.61, **LM}, healthy, FALLING) is None
    assert divergence({"choice_accuracy": 0.61, **LM}, healthy, [[5, 1.4], [10, 1.6]]).startswith(
        "training loss did not fall")
    # Recorded before these diagnostics existed: judged by its loss alone, as it was.
    assert divergence({"choice_accuracy": 0.31, **LM}, Diagnostics(), FALLING) is None
    # Pure language modelling and classification are unchanged.
    assert divergence(LM, Diagnostics(), FALLING) is None
    assert divergence({"accuracy": 0.5}, Diagnostics(1), FALLING) == "predicts a single class"


def test_such_a_trial_is_off_the_front():
    start = utcnow()

    def trial(number, accuracy, params):
        return TrialRecord(study="gen", number=number, status="complete", candidate={**CANDIDATE, "method": "vera"}, params={},
                           started_at=start + timedelta(seconds=number), trainable_params=params,
                           metrics={"choice_accuracy": accuracy, **LM}, values=[accuracy, float(params)],
                           curve=FALLING, extras={"predicted_classes": 3, "majority_rate": 0.42})

    records = [trial(0, 0.310, 800), trial(1, 0.63, 90_000)]
    assert diverged(records[0]).startswith("choice accuracy 0.310") and diverged(records[1]) is None
    assert [r.number for r in eligible(records)] == [1]
