"""``ImportanceMap``: how much each (layer, module) matters, whoever measured it.

SPT sensitivity (a pass over the frozen model before the search), AdaLoRA's final rank
allocation and IST's learned layer scores all produce this one type, so it is stored,
drawn as a heatmap and used for placement the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ImportanceMap:
    """Scores of shape (layers, modules); larger = more important.

    Attributes:
        kind: Who measured it: ``spt``, ``adalora`` or ``ist``.
        modules: Relative module names inside a layer (columns).
        scores: One row per layer, in layer order; ``None`` where nothing was measured.
        note: How the scores were computed (units, batches ...).
    """

    kind: str
    modules: tuple[str, ...]
    scores: tuple[tuple[float | None, ...], ...]
    note: str = ""

    def __post_init__(self) -> None:
        if any(len(row) != len(self.modules) for row in self.scores):
            raise ValueError(f"every row needs {len(self.modules)} scores, one per module")

    @property
    def num_layers(self) -> int:
        return len(self.scores)

    def layer_scores(self) -> tuple[float, ...]:
        """Per-layer importance: the sum of the measured module scores of the layer."""
        return tuple(sum(v for v in row if v is not None) for row in self.scores)

    def module_scores(self) -> dict[str, float]:
        """Per-module importance: the sum over layers."""
        return {m: sum(row[j] for row in self.scores if row[j] is not None) for j, m in enumerate(self.modules)}

    def layer_order(self) -> tuple[int, ...]:
        """Layers from most to least important (ties: the layer nearer the output first)."""
        scores = self.layer_scores()
        return tuple(sorted(range(self.num_layers), key=lambda i: (-scores[i], -i)))

    def to_json(self) -> dict:
        return {"kind": self.kind, "modules": list(self.modules), "scores": [list(r) for r in self.scores], "note": self.note}

    @classmethod
    def from_json(cls, data: dict) -> "ImportanceMap":
        return cls(data["kind"], tuple(data["modules"]), tuple(tuple(r) for r in data["scores"]), data.get("note", ""))

    @classmethod
    def from_named(cls, kind: str, values: dict[str, float], layers_path: str, num_layers: int,
                   modules: tuple[str, ...], note: str = "") -> "ImportanceMap":
        """Build from ``{full or suffix module name: score}`` (e.g. AdaLoRA's rank pattern).

        Names are matched as ``...{layers_path}.{layer}.{module}...``; unmatched ones are ignored.
        """
        grid: list[list[float | None]] = [[None] * len(modules) for _ in range(num_layers)]
        pattern = re.compile(rf"{re.escape(layers_path)}\.(\d+)\.(.+?)(?:\.lora_\w+|\.default|\.weight)*$")
        for name, value in values.items():
            m = pattern.search(name)
            if not m or m.group(2) not in modules:
                continue
            layer, j = int(m.group(1)), modules.index(m.group(2))
            if layer < num_layers:
                grid[layer][j] = (grid[layer][j] or 0.0) + float(value)
        return cls(kind, modules, tuple(tuple(r) for r in grid), note)
