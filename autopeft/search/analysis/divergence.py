"""Whether a run diverged: a collapsed run is never a point to compare against.

A short proxy at a learning rate on the edge of stability can collapse to predicting one
class; its accuracy is then the share of that class, and a comparison with it reads as a
win that is not one (measured: default LoRA trained at an IA3 learning rate scored 0.45 and
0.503 accuracy against 0.76-0.96 at its own). So every run is checked the same way,
from what the trial reports (``autopeft.trials.evaluation.evaluate``'s diagnostics):

- classification: it predicts a single class, or scores no better than always answering
  the most frequent class of the validation split;
- answers scored by choice accuracy (a causal LM, ``autopeft.trials.generative``): it predicts
  a single answer, or scores no better than always answering the split's most frequent gold
  answer (a VeRA at 0.310 against the 0.42 of that rule was seen), or its loss did not fall;
- language modelling: its training loss did not fall.

A run recorded without these diagnostics is judged by what it has (its loss curve).
"""

from __future__ import annotations

from autopeft.store.trial_extras import Diagnostics


def divergence(metrics: dict, diagnostics: Diagnostics, curve: list) -> str | None:
    """Why the run counts as diverged, in a few words; None when it does not.

    ``diagnostics`` are the run's (``TrialRecord.diagnostics``, ``VerificationRecord.diagnostics``,
    or ``Diagnostics.from_extras`` of a trial result not stored yet).
    """
    if "accuracy" in metrics or "macro_f1" in metrics:
        if diagnostics.predicted_classes == 1:
            return "predicts a single class"
        rate, accuracy = diagnostics.majority_rate, metrics.get("accuracy")
        if rate is not None and accuracy is not None and accuracy <= rate + 1e-9:
            return f"accuracy {accuracy:.3f} is no better than the majority class ({rate:.3f})"
        return None
    if "choice_accuracy" in metrics:
        if diagnostics.predicted_classes == 1:
            return "predicts a single answer"
        rate, accuracy = diagnostics.majority_rate, metrics["choice_accuracy"]
        if rate is not None and accuracy is not None and accuracy <= rate + 1e-9:
            return f"choice accuracy {accuracy:.3f} is no better than the most frequent answer ({rate:.3f})"
    if len(curve) >= 2 and curve[-1][1] >= curve[0][1]:
        return f"training loss did not fall ({curve[0][1]:.3f} -> {curve[-1][1]:.3f})"
    return None
