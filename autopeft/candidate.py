"""A candidate: one decoded point of a search space, the configuration a trial trains.

It lives at the bottom of the package (it imports nothing of autopeft) because every layer
holds one: the space decodes it (``autopeft.space.encoding``), the methods build a peft
config from it, and the store's records carry it, reading and writing its JSON
(:meth:`Candidate.to_json`) at the database's boundary only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Targets:
    """One choice of adapted modules: relative module names inside a layer, or all linears."""

    modules: tuple[str, ...]  # empty tuple means "all-linear"

    @property
    def all_linear(self) -> bool:
        return not self.modules

    @property
    def label(self) -> str:
        return "all-linear" if self.all_linear else "+".join(self.modules)


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
        """The stored form: targets a list of module names or ``"all-linear"``, tuples as lists."""
        data = asdict(self)
        data["targets"] = list(self.targets.modules) or "all-linear"
        data["layers"] = list(self.layers)
        data["layer_ranks"] = None if self.layer_ranks is None else list(self.layer_ranks)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Candidate:
        """The candidate of its stored form (:meth:`to_json`)."""
        data = dict(data)
        t = data["targets"]
        data["targets"] = Targets(()) if t == "all-linear" else Targets(tuple(t))
        data["layers"] = tuple(data["layers"])
        if data.get("layer_ranks") is not None:
            data["layer_ranks"] = tuple(data["layer_ranks"])
        return cls(**data)

