"""What a model looks like to a PEFT method: its layer stack and the linear modules in a layer.

Read from the model itself (built on the ``meta`` device, so no weights are loaded), never
hard-coded: BERT, RoBERTa, DistilBERT and GPT-2 style stacks are all found the same way.
The answer is cached as JSON, so validating a space against a known model is instant.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from autopeft.assets.cache import cache_dir
from autopeft.errors import AssetError

#: peft's default ``modules_to_save`` for sequence classification: the task head.
HEAD_MODULES = ("classifier", "score")
_CACHE_VERSION = 3


@dataclass(frozen=True)
class LinearSpec:
    """A linear (or GPT-2 Conv1D) module inside one transformer layer.

    Attributes:
        name: Dotted path relative to the layer, e.g. ``attention.self.query``.
        in_features: Input width.
        out_features: Output width.
    """

    name: str
    in_features: int
    out_features: int
    conv1d: bool = False  # GPT-2's transposed Conv1D; some peft methods cannot adapt it

    @property
    def is_down_projection(self) -> bool:
        """True for the FFN's output projection (wide -> narrow): IA3's feed-forward module."""
        return self.in_features > self.out_features


@dataclass(frozen=True)
class ModelInfo:
    """The structure PEFT methods need, read from the model.

    Attributes:
        model_type: ``config.model_type`` (``bert``, ``roberta`` ...).
        layers_path: Dotted path of the layer stack, e.g. ``bert.encoder.layer``.
        num_layers: Number of layers in the stack.
        linears: The linear modules of a layer (every layer has the same ones).
        total_params: Parameters of the whole model with its task head.
        head_modules: Head module names peft trains in full (``modules_to_save``).
        head_params: Parameters in those head modules.
        num_labels: Classes of the task head the counts were made for (0: no such head).
        task: The task kind (``autopeft.tasks``) the model was built for.
    """

    model_type: str
    layers_path: str
    num_layers: int
    linears: tuple[LinearSpec, ...]
    total_params: int
    head_modules: tuple[str, ...]
    head_params: int
    num_labels: int
    task: str = "classification"

    def linear(self, name: str) -> LinearSpec:
        for spec in self.linears:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def match_targets(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Resolve user target names to relative module paths (suffix match, as peft does).

        An empty ``names`` means all linear modules. Raises ``KeyError`` with the name that
        matched nothing.
        """
        if not names:
            return tuple(s.name for s in self.linears)
        chosen: list[str] = []
        for name in names:
            hits = [s.name for s in self.linears if s.name == name or s.name.endswith("." + name)]
            if not hits:
                raise KeyError(name)
            chosen.extend(h for h in hits if h not in chosen)
        order = [s.name for s in self.linears]
        return tuple(sorted(chosen, key=order.index))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelInfo":
        data = dict(data)
        data["linears"] = tuple(LinearSpec(**s) for s in data["linears"])
        data["head_modules"] = tuple(data["head_modules"])
        return cls(**data)


def inspect_model(model_ref, num_labels: int, task: str = "classification") -> ModelInfo:
    """Read the structure of ``model_ref`` with the head of ``task`` (cached)."""
    key = hashlib.sha256(f"{_CACHE_VERSION}:{model_ref.fingerprint}:{num_labels}:{task}".encode()).hexdigest()[:24]
    path = cache_dir() / "arch" / f"{key}.json"
    if path.exists():
        try:
            return ModelInfo.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            pass  # a stale or torn cache entry: recompute below
    info = _inspect(model_ref, num_labels, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info.to_json()))
    tmp.replace(path)
    return info


def _inspect(model_ref, num_labels: int, task: str) -> ModelInfo:

    from autopeft.assets.models import load_config
    from autopeft.tasks import task_kind

    kind = task_kind(task)
    config = load_config(model_ref, **kind.model_kwargs(num_labels))
    model = build_on_meta(model_ref, num_labels, task, config)
    layers_path, layers = _find_layer_stack(model)
    if layers is None:
        raise AssetError(f"model '{model_ref.name}': found no stack of transformer layers with linear modules")
    linears = tuple(
        LinearSpec(name, *_features(module), conv1d=type(module).__name__ == "Conv1D")
        for name, module in layers[0].named_modules() if _features(module)
    )
    # peft trains the classification head in full (modules_to_save); an LM head stays frozen.
    head = tuple(n for n in HEAD_MODULES if _has_module(model, n)) if kind.labelled else ()
    head_params = sum(
        p.numel() for name, p in model.named_parameters() if any(_in_module(name, h) for h in head)
    )
    return ModelInfo(
        model_type=config.model_type,
        layers_path=layers_path,
        num_layers=len(layers),
        linears=linears,
        total_params=sum(p.numel() for p in model.parameters()),
        head_modules=head,
        head_params=head_params,
        num_labels=num_labels,
        task=task,
    )


def build_on_meta(model_ref, num_labels: int, task: str = "classification", config=None):
    """The model with the head of ``task``, built on the ``meta`` device: structure and
    shapes without weights or memory (reading it, and checking what peft can do with it)."""
    import torch

    from autopeft.assets.models import load_config
    from autopeft.tasks import task_kind

    kind = task_kind(task)
    config = config if config is not None else load_config(model_ref, **kind.model_kwargs(num_labels))
    try:
        with torch.device("meta"):
            return kind.auto().from_config(config, trust_remote_code=model_ref.trust_remote_code)
    except (ValueError, KeyError) as e:
        raise AssetError(
            f"model '{model_ref.name}' ({config.model_type}) has no {kind.auto_class} in "
            f"transformers: {str(e).splitlines()[0]}"
        ) from e


def _features(module) -> tuple[int, int] | None:
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # GPT-2: weight is (in, out)
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def _find_layer_stack(model):
    """The longest ModuleList of same-typed blocks that contain linear modules."""
    import torch

    best = ("", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            kinds = {type(m) for m in module}
            if len(kinds) == 1 and any(_features(m) for m in module[0].modules()):
                if best[1] is None or len(module) > len(best[1]):
                    best = (name, module)
    return best


def _has_module(model, name: str) -> bool:
    return any(n == name or n.endswith("." + name) for n, _ in model.named_modules())


def _in_module(param_name: str, module: str) -> bool:
    return param_name.startswith(module + ".") or f".{module}." in param_name
