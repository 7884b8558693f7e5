"""A trial's metrics on one split: what the search ranks candidates by.

For classification, accuracy, macro-F1 and the mean cross-entropy (``evaluate``); for causal
language modelling, the token-weighted loss and its perplexity. Instruction data scored by
its answers (choice accuracy, exact match) goes through ``autopeft.trials.generative``
first; ``trial_metrics`` combines the two as a proxy run reports them.

On the test split a run also reports, under ``OUTCOMES``, whether it answered each example
right (accuracy for classification, choice accuracy for instruction data): two runs of a
study are scored on the same test rows in the same order (the split is carved from the data
set, its size and the study's seed alone: ``autopeft.assets.splits.three_way_split``), so
their outcomes pair example by example (``autopeft.search.analysis.paired``).
"""

from __future__ import annotations

import contextlib
import math

from autopeft.trials.batches import trim
from autopeft.trials.model import forward
from autopeft.trials.spec import TrialSpec

#: The ``test_metrics`` key of a run's per-example outcomes (``outcomes_record``).
OUTCOMES = "outcomes"


def trial_metrics(model, spec: TrialSpec, split: dict, gen: dict, *, skip=None, diagnostics: dict | None = None,
                  outcomes: bool = False) -> dict:
    """The metrics of ``spec`` on ``split``: its answers scored (``gen``, from
    ``autopeft.trials.generative.load_gen``; empty for other tasks), then one pass of
    ``evaluate`` when answer scoring did not yield the loss.

    ``skip``: the frozen-prefix cache's ``SkipPrefix`` (``autopeft.trials.model.use_prefix_cache``)
    or ``None``; answer scoring runs the full stack. ``diagnostics``, if given, receives what
    tells a collapsed run (``evaluate``'s, or the answers' when the metric is ``choice_accuracy``).
    ``outcomes``: also report, under ``OUTCOMES``, which examples the run got right
    (``outcomes_record``): asked on the test split only, where runs are compared pairwise."""
    from autopeft.trials.generative import generative_metrics

    hits: dict | None = {} if outcomes else None  # {metric: bool tensor (n,)}, filled by the scorers
    metrics = generative_metrics(
        model, split, gen, metric=spec.metric, max_new_tokens=spec.max_new_tokens,
        tokenizer_location=spec.model, batch_size=max(64, spec.proxy.batch_size),
        full_stack=skip.full_stack if skip is not None else contextlib.nullcontext,
        # Scored by its answers, a run answering one thing has collapsed (autopeft.search.analysis.divergence);
        # a loss-scored run is judged by its loss, whatever its answers.
        diagnostics=diagnostics if spec.metric == "choice_accuracy" else None, outcomes=hits,
    )
    if "eval_loss" not in metrics:  # answer scoring did not yield it: one pass of its own
        metrics.update(evaluate(model, split, spec.num_labels, batch_size=max(32, spec.proxy.batch_size * 2),
                                skip=skip, diagnostics=diagnostics, outcomes=hits))
    if hits:
        metric, right = next(iter(hits.items()))
        metrics[OUTCOMES] = outcomes_record(right, gen["gold"] if metric == "choice_accuracy" else split["labels"], metric)
    return metrics


def outcomes_record(right, gold, metric: str) -> dict:
    """Which examples of a split a run got right, in the split's order, as JSON-able text.

    Args:
        right: Bool tensor ``(n,)``: example ``i`` answered right.
        gold: Int tensor ``(n,)``: the gold labels (or answer indices) in the same order.
        metric: The share metric the outcomes make up (``accuracy``, ``choice_accuracy``).

    Returns:
        ``{"metric": metric, "right": "0110...", "split": digest}``: one character per
        example (``"1"`` right), and the first 12 hex digits of the SHA-1 of the gold labels
        in order, so that outcomes of two runs pair only when they scored the same rows in the
        same order (about 2 KB for the largest test split, 2,000 rows)."""
    import hashlib

    bits = "".join("1" if r else "0" for r in right.tolist())
    digest = hashlib.sha1(",".join(str(int(g)) for g in gold.tolist()).encode()).hexdigest()[:12]
    return {"metric": metric, "right": bits, "split": digest}


def evaluate(model, split: dict, num_labels: int, batch_size: int = 64, skip=None, diagnostics: dict | None = None,
             outcomes: dict | None = None) -> dict:
    """Accuracy, macro-F1 (mean over classes of F1, 0 for a class never predicted nor
    present) and mean cross-entropy on ``split``; for language modelling (2-D labels), the
    token-weighted loss and its perplexity.

    ``diagnostics``, if given, receives ``predicted_classes`` (how many classes the model
    predicts at all) and ``majority_rate`` (the accuracy of always answering the most frequent
    class): a run that predicts one class has collapsed, whatever its accuracy looks like.
    ``outcomes``, if given, receives ``accuracy``: a bool tensor ``(n,)``, example ``i``
    predicted right, in the split's order (classification only: a language-modelling loss has
    no per-example verdict)."""
    import torch

    if split["labels"].dim() == 2:
        return _evaluate_lm(model, split, batch_size, skip)

    model.eval()
    preds, losses = [], []  # losses: one cross-entropy per example
    n = len(split["labels"])
    # Batches of similar length: each batch is trimmed to its longest example, so sorting
    # by length cuts the padding the model computes on (measured: benchmarks/overhead.py).
    order = torch.argsort(split["attention_mask"].sum(dim=1), stable=True)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            batch = trim({k: v[rows] for k, v in split.items()})
            out = forward(model, batch, skip)
            # Per example, not the batch mean: the rung signal's standard error comes from their spread.
            losses.append(torch.nn.functional.cross_entropy(out.logits.float(), batch["labels"], reduction="none").cpu())
            preds.append(out.logits.argmax(dim=-1).cpu())
    model.train()
    pred = torch.empty_like(split["labels"])
    pred[order] = torch.cat(preds)
    gold = split["labels"]
    if diagnostics is not None:
        diagnostics["predicted_classes"] = int(pred.unique().numel())
        diagnostics["majority_rate"] = float(torch.bincount(gold).max()) / max(len(gold), 1)
    if outcomes is not None:
        outcomes["accuracy"] = pred == gold
    per_example = torch.cat(losses).double()
    return {
        "accuracy": float((pred == gold).float().mean()),
        "macro_f1": macro_f1(pred.tolist(), gold.tolist(), num_labels),
        "eval_loss": float(per_example.mean()),
        # The standard error of that mean over the split's examples: how far two runs' losses
        # must differ before a rung tells them apart (autopeft.search.fidelity.signals).
        "eval_loss_se": float(per_example.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0,
        "eval_examples": n,
        # The loss of answering the split's label frequencies whatever the input: a classifier
        # whose loss is not below it has learned nothing about the inputs yet.
        "eval_prior_loss": _entropy(torch.bincount(gold).double()),
    }


def _entropy(counts) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _evaluate_lm(model, split: dict, batch_size: int, skip) -> dict:
    """The token-weighted loss on ``split`` (2-D labels, -100 where no token counts), its
    standard error over examples, and its perplexity."""
    import torch

    from autopeft.trials.generative import token_weighted_loss

    model.eval()
    total, tokens = 0.0, 0  # the model's own loss, token-weighted over batches: the value
    nll, counts = [], []  # per example, summed over its target tokens: the standard error
    with torch.no_grad():
        for start in range(0, len(split["labels"]), batch_size):
            batch = trim({k: v[start:start + batch_size] for k, v in split.items()})
            labels = batch["labels"][:, 1:]  # the model shifts labels by one
            n = int((labels != -100).sum())
            if not n:
                continue
            out = forward(model, batch, skip)
            total += float(out.loss) * n
            tokens += n
            token_nll = torch.nn.functional.cross_entropy(out.logits[:, :-1].float().transpose(1, 2), labels,
                                                          ignore_index=-100, reduction="none")
            nll.append(token_nll.sum(dim=1).double().cpu())
            counts.append((labels != -100).sum(dim=1).double().cpu())
    model.train()
    if not tokens:
        return {}
    nll, counts = torch.cat(nll), torch.cat(counts)
    kept = counts > 0
    out = token_weighted_loss(nll[kept], counts[kept])
    if not out:
        return {}
    # The model's own loss stays the value (on a Llama it differs from the per-example sum in
    # the 4th decimal); the per-example spread gives its standard error.
    loss = total / tokens
    return {**out, "eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def macro_f1(pred: list[int], gold: list[int], num_labels: int) -> float:
    """The mean over the ``num_labels`` classes of each class's F1 (0 when it has no true positive)."""
    scores = []
    for c in range(num_labels):
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / num_labels
