"""Bottleneck adapters (Houlsby et al. 2019 / Pfeiffer et al. 2020), which peft does not have.

An adapter is ``x -> up(act(down(x)))`` with ``down: d -> rank`` and ``up: rank -> d``,
added to the output of a chosen linear module of a chosen layer:

- ``serial`` (Houlsby/Pfeiffer): ``y = W x``, then ``y + up(act(down(y)))``;
- ``parallel`` (He et al. 2022): ``y = W x + up(act(down(x)))``.

``up`` is zero-initialised (weight and bias), so a freshly adapted model computes exactly
what the base model does and training starts there. Everything else is frozen except the
task head (``ModelInfo.head_modules``, as peft's ``modules_to_save`` for SEQ_CLS).

Surgery: the adapter becomes a child ``bottleneck`` (an ``nn.Sequential`` of ``down``,
``act``, ``up``) of the adapted linear module, run by a forward hook on that module. The base
model's parameter names do not change (``...query.weight`` stays), the adapter's are
``...query.bottleneck.down.weight`` etc., and the model deep-copies and pickles as usual.

The config (``BottleneckConfig``, JSON via ``to_json``/``from_json``; unknown keys rejected)::

    {"method": "bottleneck", "version": 1,
     "rank": 8,                                      # bottleneck width
     "layer_ranks": null,                            # or a width per entry of "layers"
     "targets": ["attention.output.dense", "output.dense"],  # module paths relative to a layer
     "layers": [4, 5],                               # indices into the layer stack
     "layers_path": "bert.encoder.layer",            # dotted path of the layer stack
     "head_modules": ["classifier"],                 # trained in full
     "placement": "serial",                          # serial | parallel
     "activation": "relu",                           # relu | gelu | tanh
     "base_model": "/path/or/hub-id"}                # provenance only (may be null)

Loading an exported adapter (``export`` writes ``bottleneck_config.json``; ``save_weights``
also writes the trained adapters and head as ``bottleneck_model.safetensors``)::

    import json
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification
    from autopeft.methods.bottleneck import apply

    config = json.load(open("DIR/bottleneck_config.json"))
    model = AutoModelForSequenceClassification.from_pretrained(config["base_model"], num_labels=K)
    model = apply(model, config)
    model.load_state_dict(load_file("DIR/bottleneck_model.safetensors"), strict=False)  # if trained

Search mapping: ``rank`` -> ``rank`` (per-layer ranks -> ``layer_ranks``),
``targets``/``layers`` -> placement; ``alpha``,
``dropout`` are unused; the search builds ``serial`` adapters (``parallel`` is reachable from
a config only: the candidate has no placement dimension yet).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from autopeft.errors import MethodError
from autopeft.methods.base import BuildContext, MethodBase, selected_modules

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck_model.safetensors"
PLACEMENTS = ("serial", "parallel")
ACTIVATIONS = ("relu", "gelu", "tanh")
_VERSION = 1


@dataclass(frozen=True)
class BottleneckConfig:
    """Where bottleneck adapters go and how wide they are (see the module docstring)."""

    rank: int
    targets: tuple[str, ...]
    layers: tuple[int, ...]
    layers_path: str
    head_modules: tuple[str, ...]
    placement: str = "serial"
    activation: str = "relu"
    base_model: str | None = None
    layer_ranks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise MethodError(f"bottleneck: rank must be an integer >= 1, got {self.rank!r}")
        if not self.targets or not self.layers:
            raise MethodError("a candidate must adapt at least one module in at least one layer")
        if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.layers):
            raise MethodError(f"bottleneck: layers must be non-negative integers, got {list(self.layers)}")
        if len(set(self.layers)) != len(self.layers) or len(set(self.targets)) != len(self.targets):
            raise MethodError("bottleneck: layers and targets must not repeat")
        if self.layer_ranks is not None and (
            len(self.layer_ranks) != len(self.layers)
            or any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in self.layer_ranks)
        ):
            raise MethodError(f"bottleneck: layer_ranks must be one integer >= 1 per layer, got {self.layer_ranks!r}")
        if self.placement not in PLACEMENTS:
            raise MethodError(f"bottleneck: placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.activation not in ACTIVATIONS:
            raise MethodError(f"bottleneck: activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    def rank_of(self, layer: int) -> int:
        return self.rank if self.layer_ranks is None else self.layer_ranks[self.layers.index(layer)]

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("targets", "layers", "head_modules"):
            data[key] = list(data[key])
        data["layer_ranks"] = None if self.layer_ranks is None else list(self.layer_ranks)
        return {"method": "bottleneck", "version": _VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> "BottleneckConfig":
        data = dict(data)
        if data.pop("method", "bottleneck") != "bottleneck" or data.pop("version", _VERSION) != _VERSION:
            raise MethodError(f"not a version-{_VERSION} bottleneck adapter config")
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - fields)
        missing = sorted(f for f in fields - set(data) if f not in ("placement", "activation", "base_model", "layer_ranks"))
        if unknown or missing:
            raise MethodError(f"bottleneck config: unknown keys {unknown}, missing keys {missing}")
        for key in ("targets", "layers", "head_modules"):
            data[key] = tuple(data[key])
        if data.get("layer_ranks") is not None:
            data["layer_ranks"] = tuple(data["layer_ranks"])
        return cls(**data)


def params_per_module(in_features: int, out_features: int, rank: int, placement: str) -> int:
    """Weights and biases of ``down`` and ``up`` for one adapted module."""
    width_in = out_features if placement == "serial" else in_features
    return (width_in * rank + rank) + (rank * out_features + out_features)


def apply(model, config):
    """Insert the adapters of ``config`` (a ``BottleneckConfig`` or its JSON) into ``model``
    in place, freeze everything but the adapters and the head, and return ``model``.

    Raises:
        MethodError: a layer or module of the config is not in ``model``, or it already
            has bottleneck adapters.
    """
    import torch

    cfg = config if isinstance(config, BottleneckConfig) else BottleneckConfig.from_json(config)
    if _config_of(model) is not None:
        raise MethodError("bottleneck: the model already has an adapter (apply once per model)")
    try:
        stack = model.get_submodule(cfg.layers_path)
    except AttributeError:
        raise MethodError(f"bottleneck: the model has no layer stack '{cfg.layers_path}'") from None
    for p in model.parameters():
        p.requires_grad_(False)
    act = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}[cfg.activation]
    hook = _serial_hook if cfg.placement == "serial" else _parallel_hook
    for i in cfg.layers:
        if i >= len(stack):
            raise MethodError(f"bottleneck: layer {i} is out of range (the model has {len(stack)})")
        for name in cfg.targets:
            try:
                target = stack[i].get_submodule(name)
            except AttributeError:
                raise MethodError(f"bottleneck: the model has no module '{name}' in layer {i}") from None
            if hasattr(target, "bottleneck"):
                raise MethodError(f"bottleneck: {cfg.layers_path}.{i}.{name} already has an adapter")
            d_in, d_out = _features(target)
            width_in = d_out if cfg.placement == "serial" else d_in
            weight = target.weight
            adapter = torch.nn.Sequential()
            adapter.add_module("down", torch.nn.Linear(width_in, cfg.rank_of(i)))
            adapter.add_module("act", act())
            adapter.add_module("up", torch.nn.Linear(cfg.rank_of(i), d_out))
            torch.nn.init.zeros_(adapter.up.weight)
            torch.nn.init.zeros_(adapter.up.bias)
            adapter.to(device=weight.device, dtype=weight.dtype)
            target.add_module("bottleneck", adapter)
            target.register_forward_hook(hook)
    for name, p in model.named_parameters():
        if ".bottleneck." in name or any(_in_module(name, h) for h in cfg.head_modules):
            p.requires_grad_(True)
    model.bottleneck_config = cfg
    return model


def _config_of(model) -> BottleneckConfig | None:
    return getattr(model, "bottleneck_config", None)


def _serial_hook(module, args, output):
    return output + module.bottleneck(output)


def _parallel_hook(module, args, output):
    return output + module.bottleneck(args[0])


def _features(module) -> tuple[int, int]:
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # GPT-2: weight is (in, out)
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    raise MethodError(f"bottleneck: cannot adapt a {type(module).__name__} (not a linear module)")


def _in_module(param_name: str, module: str) -> bool:
    return param_name.startswith(module + ".") or f".{module}." in param_name


class Bottleneck(MethodBase):
    name = "bottleneck"
    uses = frozenset({"rank", "targets", "layers"})
    learning_rate_band = (1.0e-4, 1.0e-3)  # ~1e-4 in Houlsby et al. 2019 and AdapterHub

    def build(self, cand, ctx: BuildContext) -> BottleneckConfig:
        layers = tuple(sorted(cand.layers))
        return BottleneckConfig(
            rank=cand.rank,
            layer_ranks=None if cand.layer_ranks is None else tuple(cand.rank_of(i) for i in layers),
            targets=selected_modules(cand, ctx.arch),
            layers=layers,
            layers_path=ctx.arch.layers_path,
            head_modules=tuple(ctx.arch.head_modules),
            base_model=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        cfg = self.build(cand, ctx)
        specs = [ctx.arch.linear(m) for m in cfg.targets]
        return sum(
            params_per_module(s.in_features, s.out_features, cfg.rank_of(layer), cfg.placement)
            for layer in cfg.layers for s in specs
        ) + ctx.arch.head_params

    def config_json(self, config) -> dict:
        return config.to_json() if isinstance(config, BottleneckConfig) else BottleneckConfig.from_json(config).to_json()

    def wrap(self, model, config: dict):
        return apply(model, config)

    def export(self, config: dict, out_dir: str) -> list[str]:
        data = self.config_json(config)
        with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        return [CONFIG_FILE]

    def load_snippet(self, out_dir: str, task: str, num_labels: int, weights: bool, base_expr: str | None = None) -> str:
        from autopeft.tasks import task_kind

        kind = task_kind(task)
        lines = [
            "import json, os",
            f"from transformers import {kind.auto_class}",
            "from autopeft.methods.bottleneck import apply",
            "",
            f"config = json.load(open(os.path.join({out_dir!r}, {CONFIG_FILE!r})))",
            kind.from_pretrained_line(base_expr or "config['base_model']", num_labels),
            "model = apply(base, config)",
        ]
        if weights:
            lines[1:1] = ["from safetensors.torch import load_file"]
            lines.append(f"model.load_state_dict(load_file(os.path.join({out_dir!r}, {WEIGHTS_FILE!r})), strict=False)")
        return "\n".join(lines)

    def save_weights(self, model, out_dir: str) -> None:
        """The config and every trained tensor (adapters and task head) as safetensors."""
        from safetensors.torch import save_file

        os.makedirs(out_dir, exist_ok=True)
        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, os.path.join(out_dir, WEIGHTS_FILE))
        config = _config_of(model)
        if config is not None:
            self.export(config.to_json(), out_dir)
