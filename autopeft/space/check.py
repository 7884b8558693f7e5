"""Checks of a space that need the model: module names, layer indices, the budget."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from autopeft.assets.architecture import ModelInfo
from autopeft.errors import MethodError, SpaceError
from autopeft.space.encoding import Candidate, SpaceEncoding
from autopeft.space.schema import Choice, Fixed, SearchSpace


@dataclass(frozen=True)
class ParamRange:
    """Trainable parameters over the space: overall, and within the budget."""

    low: int
    high: int
    limit: int | None

    @property
    def feasible_high(self) -> int:
        return self.high if self.limit is None else min(self.high, self.limit)


def check_against_model(space: SearchSpace, arch: ModelInfo, encoding: SpaceEncoding) -> ParamRange:
    """Raise ``SpaceError`` (with the key path) if the space does not fit the model.

    Returns the trainable-parameter range of the space, computed analytically over its
    extremes (counts grow with rank and with the number of layers).
    """
    src = space.source
    for i, t in enumerate(space.space.targets):
        for name in t.modules:
            try:
                arch.match_targets((name,))
            except KeyError:
                available = ", ".join(s.name for s in arch.linears)
                raise SpaceError(
                    src, f"space.targets[{i}]" if len(space.space.targets) > 1 else "space.targets",
                    f"the model has no module '{name}' in its layers; available: {available}",
                ) from None
    if space.space.targets_top_k and space.space.targets_top_k[1] > len(arch.linears):
        raise SpaceError(src, "space.targets.top_k",
                         f"expected at most {len(arch.linears)} (a layer has {len(arch.linears)} linear modules), "
                         f"got {space.space.targets_top_k[1]}")
    p = space.space.layers
    n = arch.num_layers
    if p.kind == "top_k" and p.high > n:
        raise SpaceError(src, "space.layers.top_k", f"expected at most {n} (the model has {n} layers), got {p.high}")
    if p.kind == "range" and p.high >= n:
        raise SpaceError(src, "space.layers.range", f"expected layer indices in [0, {n - 1}], got {p.high}")
    if p.kind == "fixed" and p.layers[-1] >= n:
        raise SpaceError(src, "space.layers", f"expected layer indices in [0, {n - 1}], got {p.layers[-1]}")

    counts = [count_candidate(c, arch, space.proxy.steps, src) for c in extreme_candidates(encoding)]
    limit = space.budget.limit(arch.total_params)
    rng = ParamRange(min(counts), max(counts), limit)
    if limit is not None and rng.low > limit:
        raise SpaceError(
            src, "budget.max_trainable_params",
            f"excludes the whole space: its smallest candidate trains {rng.low:,} parameters, "
            f"the budget allows {limit:,} ({limit / arch.total_params:.3%} of {arch.total_params:,})",
        )
    return rng


def drop_refused_methods(space: SearchSpace, model_ref, arch: ModelInfo, encoding: SpaceEncoding):
    """``space`` without the methods the model cannot take, and what was dropped.

    Each method of the space is tried on the model (``autopeft.methods.capability``), so a
    method the installed peft/transformers refuse never enters the encoding: the sampler
    cannot propose it and no trial is spent finding out. The stored YAML (and so the
    study's space hash) is unchanged; every process that prepares the study drops the same.

    Returns:
        ``(space, refusals)``: ``space`` itself when nothing was dropped.

    Raises:
        SpaceError: at ``space.method`` when the model can take none of the methods.
    """
    from autopeft.methods.capability import refusals

    smallest: dict = {}
    for cand in extreme_candidates(encoding):
        if cand.method not in smallest:
            smallest[cand.method] = cand
    refused = refusals(model_ref, arch, smallest, space.proxy.steps)
    if not refused:
        return space, ()
    kept = [m for m in encoding.choices("method") if m not in {r.method for r in refused}]
    if not kept:
        from autopeft.methods.capability import installed_versions

        said = "; ".join(f"{r.method}: {r.reason.rstrip('.')}" for r in refused)
        raise SpaceError(space.source, "space.method",
                         f"model '{model_ref.name}' ({arch.model_type}) can take none of its methods under "
                         f"{installed_versions()}: {said}; choose another method")
    method = Choice(tuple(kept)) if len(kept) > 1 else Fixed(kept[0])
    return replace(space, space=replace(space.space, method=method)), refused


def extreme_candidates(encoding: SpaceEncoding) -> list[Candidate]:
    """Candidates at the corners of the space: every method, target set and DoRA flag,
    the smallest and largest rank, and the smallest and largest layer set."""
    ranks = encoding.choices("rank")
    out = []
    for method, targets, dora, rank, layers in itertools.product(
        encoding.choices("method"), encoding.target_choices(), encoding.choices("dora"), [min(ranks), max(ranks)],
        encoding.extreme_layer_sets(),
    ):
        out.append(Candidate(method, int(rank), 1.0, 0.0, targets, layers, 1e-3, bool(dora), False))
    return out


def count_candidate(cand: Candidate, arch: ModelInfo, steps: int, source: str = "<space>") -> int:
    from autopeft.methods import BuildContext, get_method

    try:
        return get_method(cand.method).count_trainable(cand, BuildContext(arch, steps))
    except MethodError as e:
        raise SpaceError(source, "space", str(e)) from None
