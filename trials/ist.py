"""IST (importance-aware sparse tuning) for LoRA-family adapters.

Layer importance is learned while training, by suppress-and-reward probes: every ``every``
steps a few random subsets of layers have their adapters suppressed (zeroed, which removes
the update of any LoRA-family adapter) and the loss on a held-out probe batch is measured;
each layer in a subset is credited with the loss increase its suppression caused. An
exponential moving average of those credits is the layer's score. Each step, only a
sampled ``active_fraction`` of the adapted layers receives gradients, drawn with
probability increasing with the score (softmax), so important layers train more often and
a step's backward pass stops at the lowest active layer — cheaper steps. The final scores
are recorded as an ``ImportanceMap`` of kind ``ist``.
"""

from __future__ import annotations

import math
import re

class IST:
    """Per-step layer sampling and periodic suppress-and-reward probes.

    Args:
        model: The peft model being trained.
        layers_path: Dotted path of the layer stack inside the model's parameter names.
        active_fraction: Share of adapted layers trained each step (at least one).
        every: Steps between probes.
        probe: A held-out batch (dict of tensors) the probes measure the loss on.
        seed: Seeds the sampling.
        probes: Random subsets suppressed per probe.
        momentum: EMA factor of the scores.
        temperature: Softmax temperature over scores normalised to unit spread.
    """

    def __init__(self, model, layers_path: str, active_fraction: float, every: int, probe: dict, *, seed: int = 0,
                 probes: int = 3, momentum: float = 0.7, temperature: float = 0.5) -> None:
        import torch

        pattern = re.compile(rf"{re.escape(layers_path)}\.(\d+)\.")
        self.groups: dict[int, list] = {}
        for name, p in model.named_parameters():
            m = pattern.search(name)
            if p.requires_grad and m:
                self.groups.setdefault(int(m.group(1)), []).append(p)
        if not self.groups:
            raise ValueError("IST found no trainable adapter parameters inside the layer stack")
        self.layers = sorted(self.groups)
        self.k = max(1, round(active_fraction * len(self.layers)))
        self.every, self.probe, self.model = every, probe, model
        self.scores = {layer: 0.0 for layer in self.layers}
        self.probes, self.momentum, self.temperature = probes, momentum, temperature
        self.generator = torch.Generator().manual_seed(seed)
        self.active_counts = {layer: 0 for layer in self.layers}

    def before_step(self, step: int, forward) -> None:
        """Probe (every ``every`` steps), then choose this step's active layers."""
        if step % self.every == 1 or self.every == 1:
            self._probe(forward)
        active = self._sample()
        for layer, params in self.groups.items():
            for p in params:
                p.requires_grad_(layer in active)
        for layer in active:
            self.active_counts[layer] += 1

    def finish(self) -> None:
        """Every adapter parameter trainable again (for evaluation and saving)."""
        for params in self.groups.values():
            for p in params:
                p.requires_grad_(True)

    def _sample(self) -> set[int]:
        import torch

        values = torch.tensor([self.scores[layer] for layer in self.layers], dtype=torch.float64)
        spread = float(values.max() - values.min()) or 1.0
        weights = torch.softmax((values - values.max()) / (spread * self.temperature), dim=0)
        picked = torch.multinomial(weights, self.k, replacement=False, generator=self.generator)
        return {self.layers[int(i)] for i in picked}

    def _probe(self, forward) -> None:
        import torch

        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            base = float(forward(dict(self.probe)).loss)
            credit = {layer: [] for layer in self.layers}
            for _ in range(self.probes):
                order = torch.randperm(len(self.layers), generator=self.generator)[: self.k]
                subset = [self.layers[int(i)] for i in order]
                saved = [(p, p.detach().clone()) for layer in subset for p in self.groups[layer]]
                for p, _ in saved:
                    p.zero_()
                loss = float(forward(dict(self.probe)).loss)
                for p, value in saved:
                    p.copy_(value)
                if math.isfinite(loss):
                    for layer in subset:
                        credit[layer].append(loss - base)  # suppressing it hurt: it matters
        self.model.train(was_training)
        for layer, gains in credit.items():
            if gains:
                self.scores[layer] = self.momentum * self.scores[layer] + (1 - self.momentum) * sum(gains) / len(gains)

    def importance(self, num_layers: int) -> dict:
        """The learned layer scores as ``ImportanceMap`` JSON (one column: the whole layer)."""
        from autopeft.importance import ImportanceMap

        rows = tuple((self.scores.get(i),) if i in self.scores else (None,) for i in range(num_layers))
        return ImportanceMap("ist", ("layer",), rows, note="EMA of the probe-loss increase when the layer's adapters are suppressed").to_json()
