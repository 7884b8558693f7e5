"""Compile a ``SpaceSpec`` to a fixed-dimensional optuna search space, and decode points.

Why fixed-dimensional: optuna's ``BoTorchSampler`` and ``GPSampler`` model only the
parameters present in *every* trial; a parameter suggested for one method only would be
sampled at random. So every dimension is suggested in every trial, whatever the method,
and a method simply ignores the fields it does not use (as AutoPEFT does). Numeric choice
lists become an integer *index* so BO sees their order; placement is one integer
(``top_k``), two (``range``) or one bit per layer (``per_layer``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from autopeft.space.schema import Choice, Dimension, Fixed, PerLayer, Range, SpaceSpec, Targets


@dataclass(frozen=True)
class Candidate:
    """One decoded point of the space: everything a method needs to build a peft config."""

    method: str
    rank: int
    alpha: float
    dropout: float
    targets: Targets
    layers: tuple[int, ...]
    learning_rate: float
    dora: bool
    rslora: bool
    #: Rank of each entry of ``layers`` when ranks vary per layer (``rank`` is then their max).
    layer_ranks: tuple[int, ...] | None = None

    def rank_of(self, layer: int) -> int:
        if self.layer_ranks is None:
            return self.rank
        return self.layer_ranks[self.layers.index(layer)]

    def to_json(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets.modules) or "all-linear"
        data["layers"] = list(self.layers)
        data["layer_ranks"] = None if self.layer_ranks is None else list(self.layer_ranks)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Candidate":
        data = dict(data)
        t = data["targets"]
        data["targets"] = Targets(()) if t == "all-linear" else Targets(tuple(t))
        data["layers"] = tuple(data["layers"])
        if data.get("layer_ranks") is not None:
            data["layer_ranks"] = tuple(data["layer_ranks"])
        return cls(**data)


_SCALARS = ("method", "rank", "alpha", "dropout", "learning_rate", "dora", "rslora")


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
        values = {name: self._value(name, params) for name in _SCALARS if name != "rank"}
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
        if isinstance(dim, Choice):
            return list(dim.values)
        return [int(dim.low), int(dim.high)] if dim.integer else [dim.low, dim.high]
