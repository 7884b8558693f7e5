"""Compile a ``SpaceSpec`` to a fixed-dimensional optuna search space, and decode points.

Why fixed-dimensional: optuna's ``BoTorchSampler`` and ``GPSampler`` model only the
parameters present in *every* trial; a parameter suggested for one method only would be
sampled at random. So every dimension is suggested in every trial, whatever the method,
and a method simply ignores the fields it does not use (as AutoPEFT does). Numeric choice
lists become an integer *index* so BO sees their order; placement is one integer
(``top_k``), two (``range``) or one bit per layer (``per_layer``). A learning rate given per
method is one float ``learning_rate_offset`` in [0, 1], the rate's log-position inside the
chosen method's band (``lr = low * (high / low) ** offset``): what the model learns about
"high in the band" carries across methods whose good rates differ tenfold.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

# Candidate is defined below the store, which holds one per trial; it is the space's output type.
from autopeft.candidate import Candidate, Targets  # noqa: F401
from autopeft.space.schema import Choice, Dimension, Fixed, PerLayer, PerMethod, Range, SpaceSpec


_SCALARS = ("method", "rank", "alpha", "dropout", "learning_rate", "dora", "rslora")
#: The optuna parameter of a per-method learning rate (``schema.PerMethod``).
LR_OFFSET = "learning_rate_offset"


class NotInSpace(ValueError):
    """A candidate the space cannot express (``SpaceEncoding.encode``); the message names the field."""


class SpaceEncoding:
    """The optuna distributions of a space, and the map from their values to a ``Candidate``.

    Args:
        space: The validated space.
        num_layers: Layers in the model's stack.
        layer_order: Layers from most to least preferred for ``top_k`` placement. Defaults
            to the ``by`` rule (``top``: output side first; ``bottom``: input side first).
    """

    def __init__(self, space: SpaceSpec, num_layers: int, layer_order: Sequence[int] | None = None,
                 module_order: Sequence[str] = (), module_sizes: dict[str, int] | None = None) -> None:
        self.space = space
        self.num_layers = num_layers
        if layer_order is None:
            layer_order = range(num_layers - 1, -1, -1) if space.layers.by != "bottom" else range(num_layers)
        self.layer_order = tuple(layer_order)
        #: Modules of a layer from most to least important (``targets: {top_k: ...}``).
        self.module_order = tuple(module_order)
        self.module_sizes = dict(module_sizes or {})
        self.distributions = self._distributions()

    # ------------------------------------------------------------------ distributions
    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, Any] = {}
        for name in _SCALARS:
            dim: Dimension = getattr(self.space, name)
            if isinstance(dim, PerLayer):
                for i in range(self.num_layers):
                    out[f"rank_{i:02d}"] = IntDistribution(0, len(dim.values) - 1)
            elif isinstance(dim, PerMethod):
                if dim.searched:
                    out[LR_OFFSET] = FloatDistribution(0.0, 1.0)
            elif isinstance(dim, Choice):
                out[name] = IntDistribution(0, len(dim.values) - 1) if dim.ordinal else CategoricalDistribution(dim.values)
            elif isinstance(dim, Range):
                cls = IntDistribution if dim.integer else FloatDistribution
                out[name] = cls(int(dim.low) if dim.integer else dim.low, int(dim.high) if dim.integer else dim.high, log=dim.log)
        if len(self.space.targets) > 1:
            out["targets"] = CategoricalDistribution(tuple(t.label for t in self.space.targets))
        if self.space.targets_top_k and self.space.targets_top_k[0] < self.space.targets_top_k[1]:
            out["targets_top_k"] = IntDistribution(*self.space.targets_top_k)
        p = self.space.layers
        if p.kind == "top_k" and p.low < p.high:
            out["top_k"] = IntDistribution(p.low, p.high)
        elif p.kind == "range":
            out["layer_first"] = IntDistribution(p.low, p.high)
            out["layer_last"] = IntDistribution(p.low, p.high)
        elif p.kind == "per_layer":
            for i in range(self.num_layers):
                out[f"layer_{i:02d}"] = IntDistribution(0, 1)
        return out

    @property
    def dimensions(self) -> int:
        return len(self.distributions)

    # ------------------------------------------------------------------ suggest / decode
    def suggest(self, trial) -> Candidate:
        """Ask ``trial`` for every dimension (the only place that calls ``suggest_*``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        params = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, FloatDistribution):
                params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
            else:
                params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        return self.decode(params)

    def decode(self, params: dict[str, Any]) -> Candidate:
        """The ``Candidate`` for a full set of parameter values."""
        layers, layer_ranks = self._layers(params), None
        if isinstance(self.space.rank, PerLayer):
            ranks = [self.space.rank.values[params[f"rank_{i:02d}"]] for i in range(self.num_layers)]
            layers = tuple(i for i, r in enumerate(ranks) if r > 0)
            layer_ranks = tuple(ranks[i] for i in layers)
        values = {name: self._value(name, params) for name in _SCALARS if name not in ("rank", "learning_rate")}
        values["learning_rate"] = self._learning_rate(str(values["method"]), params)
        rank = max(layer_ranks, default=0) if layer_ranks is not None else int(self._value("rank", params))
        if self.space.targets_top_k:
            k = params.get("targets_top_k", self.space.targets_top_k[0])
            targets = Targets(tuple(self.module_order[:k]))
        elif "targets" in self.distributions:
            targets = next(t for t in self.space.targets if t.label == params["targets"])
        else:
            targets = self.space.targets[0]
        return Candidate(
            method=str(values["method"]),
            rank=rank,
            alpha=float(values["alpha"]) * (rank if self.space.alpha_is_ratio else 1),
            dropout=float(values["dropout"]),
            targets=targets,
            layers=layers,
            learning_rate=float(values["learning_rate"]),
            dora=bool(values["dora"]),
            rslora=bool(values["rslora"]),
            layer_ranks=layer_ranks,
        )

    def encode(self, candidate: Candidate, *, nearest: bool = False) -> dict[str, Any]:
        """The optuna parameters that :meth:`decode` maps to ``candidate`` (the inverse direction).

        Target sets compare as sets (``[value, query]`` is ``[query, value]``); a ratio alpha
        is ``candidate.alpha / candidate.rank``.

        Args:
            nearest: Numbers the space cannot take exactly snap to the nearest it can (on a
                log scale for positive values: rank 8 among ``[2, 64]`` is 2; a range clips),
                a fixed value replaces the candidate's, a layer count is clipped to the
                placement's bounds, and a ``top_k``-by-importance target set keeps its size.
                A method, or a set of targets, that is not among the choices is never
                snapped: it raises.

        Raises:
            NotInSpace: naming the first field the space cannot express (with ``nearest``:
                only the method or the targets).
        """
        params: dict[str, Any] = {}
        for name in _SCALARS:
            dim = getattr(self.space, name)
            if isinstance(dim, PerLayer):
                for i in range(self.num_layers):
                    r = candidate.rank_of(i) if i in candidate.layers else 0
                    params[f"rank_{i:02d}"] = _index(dim.values, r, f"rank of layer {i}", nearest)
                continue
            if isinstance(dim, PerMethod):
                params.update(self._encode_learning_rate(candidate, nearest))
                continue
            value = getattr(candidate, name)
            anything = False  # a ratio alpha of rank 0 (every layer off): every ratio decodes to it
            if name == "alpha" and self.space.alpha_is_ratio:
                anything = candidate.rank == 0
                value = candidate.alpha / candidate.rank if candidate.rank else _any(dim)
            if isinstance(dim, Fixed):
                if not ((nearest and name != "method") or anything or _same(dim.value, value)):
                    raise NotInSpace(f"{name}: the space fixes it at {dim.value!r}, got {value!r}")
            elif isinstance(dim, Choice) and dim.ordinal:
                params[name] = _index(dim.values, value, name, nearest)
            elif isinstance(dim, Choice):
                match = [v for v in dim.values if _same(v, value)]
                if not match:
                    raise NotInSpace(f"{name}: expected one of {list(dim.values)}, got {value!r}")
                params[name] = match[0]
            else:  # Range
                if not dim.low <= value <= dim.high or (dim.integer and value != int(value)):
                    if not nearest:
                        raise NotInSpace(f"{name}: expected a value in [{dim.low:g}, {dim.high:g}], got {value!r}")
                    value = min(max(value, dim.low), dim.high)
                params[name] = int(round(value)) if dim.integer else float(value)
        params.update(self._encode_targets(candidate.targets, nearest))
        if not isinstance(self.space.rank, PerLayer):
            params.update(self._encode_layers(tuple(sorted(candidate.layers)), nearest))
        return params

    def _learning_rate(self, method: str, params: dict[str, Any]) -> float:
        dim = self.space.learning_rate
        if not isinstance(dim, PerMethod):
            return float(self._value("learning_rate", params))
        low, high = dim.band(method)
        if low == high:
            return low
        u = float(params[LR_OFFSET])
        if u <= 0.0:
            return low
        if u >= 1.0:
            return high
        return min(max(low * (high / low) ** u, low), high)

    def _encode_learning_rate(self, candidate: Candidate, nearest: bool) -> dict[str, Any]:
        dim: PerMethod = self.space.learning_rate
        low, high = dim.band(candidate.method)
        value = candidate.learning_rate
        inside = (low <= value <= high) or _same(value, low) or _same(value, high)
        if not inside:
            if not nearest:
                raise NotInSpace(f"learning_rate: expected a value in [{low:g}, {high:g}] for method "
                                 f"{candidate.method}, got {value!r}")
            value = min(max(value, low), high)
        if not dim.searched:
            return {}
        if low == high or value <= low:
            return {LR_OFFSET: 0.0}
        if value >= high:
            return {LR_OFFSET: 1.0}
        return {LR_OFFSET: min(max(math.log(value / low) / math.log(high / low), 0.0), 1.0)}

    def describe_learning_rate(self) -> str:
        """The learning rate in words, e.g. ``log-offset in the method's band: lora 5e-04..5e-03,
        ia3 3e-03..3e-02`` (for a table next to the ``learning_rate_offset`` dimension)."""
        dim = self.space.learning_rate
        if isinstance(dim, PerMethod):
            methods = set(self.choices("method"))
            bands = ", ".join(f"{m} {lo:.0e}" + (f"..{hi:.0e}" if hi > lo else "")
                              for m, lo, hi in dim.bands if m in methods)
            return f"log-offset in the method's band: {bands}"
        if isinstance(dim, Range):
            return f"{dim.low:g}..{dim.high:g}" + (" (log)" if dim.log else "")
        if isinstance(dim, Choice):
            return "one of " + ", ".join(f"{v:g}" for v in dim.values)
        return f"{dim.value:g}"

    def _encode_targets(self, targets: Targets, nearest: bool) -> dict[str, Any]:
        wanted = set(targets.modules)
        if self.space.targets_top_k:
            low, high = self.space.targets_top_k
            k = len(wanted)
            if not nearest and (not low <= k <= high or wanted != set(self.module_order[:k])):
                raise NotInSpace(f"targets: the {low}..{high} most important modules cannot be {targets.label}")
            k = min(max(k, low), high)
            return {"targets_top_k": k} if low < high else {}
        match = [t for t in self.space.targets if set(t.modules) == wanted]
        if not match:
            raise NotInSpace(f"targets: expected one of {[t.label for t in self.space.targets]}, got {targets.label}")
        return {"targets": match[0].label} if "targets" in self.distributions else {}

    def _encode_layers(self, layers: tuple[int, ...], nearest: bool) -> dict[str, Any]:
        p = self.space.layers
        if p.kind in ("all", "fixed"):
            expressible = self._layers({})
            if not nearest and layers != expressible:
                raise NotInSpace(f"layers: the space places adapters on {list(expressible)}, got {list(layers)}")
            return {}
        if p.kind == "top_k":
            k = len(layers)
            if not nearest and (not p.low <= k <= p.high or layers != tuple(sorted(self.layer_order[:k]))):
                raise NotInSpace(f"layers: expected the {p.low}..{p.high} layers first in order "
                                 f"{list(self.layer_order)}, got {list(layers)}")
            return {"top_k": min(max(k, p.low), p.high)} if p.low < p.high else {}
        if p.kind == "range":
            a, b = (layers[0], layers[-1]) if layers else (p.low, p.low)
            if not nearest and (layers != tuple(range(a, b + 1)) or a < p.low or b > p.high):
                raise NotInSpace(f"layers: expected a contiguous block inside [{p.low}, {p.high}], got {list(layers)}")
            return {"layer_first": min(max(a, p.low), p.high), "layer_last": min(max(b, p.low), p.high)}
        return {f"layer_{i:02d}": int(i in layers) for i in range(self.num_layers)}

    def _value(self, name: str, params: dict[str, Any]):
        dim = getattr(self.space, name)
        if isinstance(dim, Fixed):
            return dim.value
        if isinstance(dim, Choice) and dim.ordinal:
            return dim.values[params[name]]
        return params[name]

    def _layers(self, params: dict[str, Any]) -> tuple[int, ...]:
        p = self.space.layers
        if p.kind == "all":
            return tuple(range(self.num_layers))
        if p.kind == "fixed":
            return p.layers
        if p.kind == "top_k":
            k = params.get("top_k", p.low)
            return tuple(sorted(self.layer_order[:k]))
        if p.kind == "range":
            a, b = sorted((params["layer_first"], params["layer_last"]))
            return tuple(range(a, b + 1))
        return tuple(i for i in range(self.num_layers) if params[f"layer_{i:02d}"])

    def extreme_layer_sets(self) -> list[tuple[int, ...]]:
        """The smallest and largest layer sets the space can produce (for param ranges)."""
        p = self.space.layers
        if isinstance(self.space.rank, PerLayer):  # any single layer can be the only one on
            return [(self.layer_order[0],), tuple(range(self.num_layers))]
        if p.kind == "top_k":
            return [tuple(sorted(self.layer_order[:p.low])), tuple(sorted(self.layer_order[:p.high]))]
        if p.kind == "range":
            return [(p.low,), tuple(range(p.low, p.high + 1))]
        if p.kind == "per_layer":
            return [(self.layer_order[0],), tuple(range(self.num_layers))]
        return [self._layers({})]

    def target_choices(self) -> list[Targets]:
        """Every target set of a choice; for ``top_k`` by importance, the smallest and the
        largest possible sets by parameter size (whatever the importance turns out to be)."""
        if not self.space.targets_top_k:
            return list(self.space.targets)
        low, high = self.space.targets_top_k
        by_size = sorted(self.module_order, key=lambda m: self.module_sizes.get(m, 0))
        return [Targets(tuple(by_size[:low])), Targets(tuple(by_size[-high:]))]

    def choices(self, name: str) -> list:
        """Every value a scalar field can take (ranges: their two ends)."""
        dim = getattr(self.space, name)
        if isinstance(dim, Fixed):
            return [dim.value]
        if isinstance(dim, PerLayer):
            return [v for v in dim.values if v > 0]
        if isinstance(dim, PerMethod):
            return sorted({v for _, low, high in dim.bands for v in (low, high)})
        if isinstance(dim, Choice):
            return list(dim.values)
        return [int(dim.low), int(dim.high)] if dim.integer else [dim.low, dim.high]


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b and type(a) is type(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _any(dim: Dimension):
    return dim.value if isinstance(dim, Fixed) else dim.values[0] if isinstance(dim, Choice) else dim.low


def _index(values: Sequence, value, name: str, nearest: bool) -> int:
    """The index of ``value`` among ordinal ``values``; with ``nearest``, of the closest one
    (on a log scale when both are positive)."""
    for i, v in enumerate(values):
        if _same(v, value):
            return i
    if not nearest:
        raise NotInSpace(f"{name}: expected one of {list(values)}, got {value!r}")

    def distance(v) -> float:
        if v > 0 and value > 0:
            return abs(math.log(v) - math.log(value))
        return abs(v - value)

    return min(range(len(values)), key=lambda i: (distance(values[i]), values[i]))
