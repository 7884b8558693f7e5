"""The reference points every new study starts with (``search.baseline: true``, the default).

A front means little without the point a user would otherwise have guessed. So a study,
when it is created (once: never on a resume, never by a second worker), enqueues as its
first trials (optuna ``enqueue_trial``):

1. **default LoRA**: the candidate of :func:`autopeft.space.default_lora.baseline_candidate`
   (LoRA r=8, alpha 16, the model's query and value projections, every layer, no DoRA/rsLoRA,
   dropout 0) at learning rate 1e-3 — or, in a study with a ``target:``, at three rates across
   LoRA's band (``reference_rates``), judged against each other at every rung so that the best
   goes on to the target. Method ``lora`` and that set of targets must be among the
   space's choices (else it is skipped, with one log line); every number the space cannot
   take exactly snaps to the nearest it can (``SpaceEncoding.encode(nearest=True)``: rank 8
   among ``[2, 64]`` becomes 2, a learning-rate range clips 1e-3, ``layers: {top_k: [1, 4]}``
   gives 4 layers) and one log line says so.
2. **the cheapest point**: of the space's corner candidates (every method, target set and
   DoRA flag, smallest and largest rank and layer set: ``autopeft.space.check.extreme_candidates``),
   the one with the fewest trainable parameters by the methods' exact analytic counts, with
   alpha 2 x rank, learning rate 1e-3 and dropout 0 snapped as above.

When both are the same point it is enqueued once (as default LoRA). They are ordinary trials
in every other way: trained by the same proxy, counted against ``search.trials``, over budget
→ infeasible. Each record carries its role in ``extras["baseline"]`` (copied by the ledger
from the optuna user attribute :data:`autopeft.search.ledger.pairing.ROLE`).
"""

from __future__ import annotations

import logging

from autopeft.search.ledger.pairing import ROLE
from autopeft.space.default_lora import DEFAULT_LORA, STANDARD_LR, baseline_candidate, reference_rates

log = logging.getLogger("autopeft")

#: The role of the space's cheapest point (default LoRA's is ``DEFAULT_LORA``).
CHEAPEST = "cheapest"


def reference_points(prep) -> list[tuple[str, dict]]:
    """``[(role, optuna params), ...]`` to enqueue for ``prep`` (a ``PreparedSearch``), in order."""
    points = []
    for rate in reference_rates(prep.space):
        params = _default_lora(prep, rate)
        if params is not None and not any(params == p for _, p in points):
            points.append((DEFAULT_LORA, params))
    params = _cheapest(prep)
    if params is not None:
        if any(params == p for _, p in points):
            log.info("study '%s': the cheapest point is default LoRA; enqueued once", prep.space.study)
        else:
            points.append((CHEAPEST, params))
    return points


def enqueue_references(ostudy, prep) -> list[tuple[str, dict]]:
    """Enqueue :func:`reference_points` in ``ostudy`` (an optuna study), marked with their role."""
    points = reference_points(prep)
    for role, params in points:
        ostudy.enqueue_trial(params, user_attrs={ROLE: role})
    return points


def _default_lora(prep, rate: float = STANDARD_LR) -> dict | None:
    from autopeft.errors import ExportError
    from autopeft.space.encoding import NotInSpace

    enc, study = prep.encoding, prep.space.study
    if "lora" not in enc.choices("method"):
        log.info("study '%s': no default-LoRA reference trial: the space has no method lora", study)
        return None
    if prep.space.space.targets_top_k:
        log.info("study '%s': no default-LoRA reference trial: targets chosen by importance cannot be "
                 "fixed to query/value", study)
        return None
    try:  # dropout 0; every other field is default LoRA's own
        wanted = baseline_candidate(None, prep.arch, learning_rate=rate)
        params = enc.encode(wanted, nearest=True)
    except (ExportError, NotInSpace) as e:
        log.info("study '%s': no default-LoRA reference trial: %s", study, e)
        return None
    _say_snapped(study, DEFAULT_LORA, wanted, enc.decode(params))
    return params


def _cheapest(prep) -> dict | None:
    import dataclasses

    from autopeft.errors import MethodError
    from autopeft.methods import BuildContext, get_method
    from autopeft.space.check import extreme_candidates
    from autopeft.space.encoding import NotInSpace

    enc = prep.encoding
    ctx = BuildContext(prep.arch, prep.space.proxy.steps)
    best = None
    for cand in extreme_candidates(enc):
        try:
            count = get_method(cand.method).count_trainable(cand, ctx)
        except MethodError:  # not buildable at this corner (e.g. every layer switched off)
            continue
        if best is None or count < best[0]:
            best = (count, cand)
    if best is None:
        log.info("study '%s': no cheapest-point reference trial: no corner of the space can be built", prep.space.study)
        return None
    cand = dataclasses.replace(best[1], alpha=2.0 * best[1].rank, learning_rate=STANDARD_LR, dropout=0.0)
    try:
        return enc.encode(cand, nearest=True)
    except NotInSpace as e:  # not expected: the corners come from the space itself
        log.info("study '%s': no cheapest-point reference trial: %s", prep.space.study, e)
        return None


def _say_snapped(study: str, role: str, wanted, got) -> None:
    """One log line naming what the space changed of ``wanted`` (encode() never changes targets)."""
    a, b = wanted.to_json(), got.to_json()
    a["layers"], b["layers"] = f"{len(a['layers'])} layers", f"{len(b['layers'])} layers"
    changed = [f"{k} {a[k]} -> {b[k]}" for k in a if k not in ("targets", "layer_ranks") and a[k] != b[k]
               and not (isinstance(a[k], float) and isinstance(b[k], float) and abs(a[k] - b[k]) <= 1e-9 * abs(a[k]))]
    if changed:
        log.info("study '%s': %s reference trial snapped to the space: %s", study, role, "; ".join(changed))
