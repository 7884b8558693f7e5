"""What every PEFT method provides, and the helpers they share.

A method turns a ``Candidate`` (one decoded point of the search space) into a real peft
config, and counts its trainable parameters analytically, before any model is built, so
that over-budget candidates are never trained. The contract test in
``tests/test_methods.py`` holds every registered method to: count == peft's count, one
step changes only trainable parameters, and the config survives save/load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from autopeft.assets.architecture import ModelInfo
from autopeft.errors import MethodError


@dataclass(frozen=True)
class BuildContext:
    """What a method needs besides the candidate.

    Attributes:
        arch: The model's structure.
        steps: Optimiser steps the config will be trained for (schedules scale with it).
        base_model: Recorded in the config as ``base_model_name_or_path``.
    """

    arch: ModelInfo
    steps: int
    base_model: str | None = None


class Method(Protocol):
    """A PEFT method. Register an instance with ``autopeft.methods.register_method``."""

    name: str
    #: Candidate fields the method reads; the others are ignored for it.
    uses: frozenset[str]
    #: Whether IST sparse tuning (``proxy.ist``, ``autopeft.trials.ist``) can switch its layers off:
    #: true for adapters that vanish when their parameters are zero (LoRA family), not for
    #: IA3's scaling vectors or prefix tokens.
    supports_ist: bool
    #: Whether ``on_step`` keeps state of its own between steps (AdaLoRA's rank allocator):
    #: such a run cannot be checkpointed and resumed exactly (``autopeft.trials.checkpoint``).
    stateful_steps: bool
    #: The learning-rate band ``(low, high)`` a space gives the method when it omits
    #: ``space.learning_rate`` (``autopeft.space.dimensions.default_learning_rate``). A space that
    #: omits the rate is hashed with these numbers, so changing them makes it another space.
    learning_rate_band: tuple[float, float]

    def build(self, cand, ctx: BuildContext) -> Any:
        """The peft ``PeftConfig`` for ``cand``."""

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        """Trainable parameters of ``get_peft_model(model, build(cand, ctx))``."""

    def config_json(self, config) -> dict:
        """``config`` as JSON (stored with the trial, sent to the trial process)."""

    def wrap(self, model, config: dict):
        """The trainable model: ``model`` with the adapter of ``config`` (JSON) inserted."""

    def export(self, config: dict, out_dir: str) -> list[str]:
        """Write ``config`` into ``out_dir`` in the form its library loads; return file names."""

    def save_weights(self, model, out_dir: str) -> None:
        """Save the trained adapter (and its config) of ``model`` into ``out_dir``, as safetensors."""

    def load_snippet(self, out_dir: str, task: str, num_labels: int, weights: bool, base_expr: str | None = None) -> str:
        """Python that loads what ``export`` (and, with ``weights``, ``save_weights``) wrote.

        ``base_expr``: the Python expression the base model is loaded from (default: the
        model the exported config names, e.g. ``config.base_model_name_or_path``).
        """

    def on_step(self, model, step: int) -> None:
        """Called after every optimiser step, before gradients are zeroed."""

    def summary(self, model) -> dict:
        """Method-specific facts to record after training (e.g. AdaLoRA's final ranks)."""

    def export_as(self, target: str, config: dict, rank_allocation: Mapping[str, float]) -> dict:
        """A trial of this method as a config (JSON) of method ``target`` (``export --as``),
        from its ``config`` and the rank allocation its ``summary`` recorded
        (``TrialRecord.rank_allocation``; empty for a method that records none).

        Raises:
            MethodError: the trial cannot be converted to ``target``.
        """

    def importance_map(self, rank_allocation: Mapping[str, float], arch: ModelInfo):
        """The ``autopeft.importance.ImportanceMap`` a trial measured (from the rank allocation
        its ``summary`` recorded: AdaLoRA's final ranks), or None. The study stores it with the trial."""


class MethodBase:
    """Defaults for methods whose config is a peft ``PeftConfig``: peft builds, wraps and
    saves it. A method peft does not have overrides ``config_json``, ``wrap`` and ``export``."""

    name = ""
    uses: frozenset[str] = frozenset()
    supports_ist = False
    stateful_steps = False
    #: The band of a method that declares none (a plug-in): centred on 1e-3. A method's own
    #: band is a long-run rate from its papers and peft's examples, spanning 10x so that the
    #: search, not the band, picks the rate. Good rates differ about tenfold between methods,
    #: and one band shared by all would put some at the edge of divergence. A proxy of a few
    #: dozen steps wants the bands shifted up (``search_spaces/quickstart.yaml`` gives its own
    #: and says why).
    learning_rate_band: tuple[float, float] = (3.0e-4, 3.0e-3)

    def config_json(self, config) -> dict:
        return config_to_json(config)

    def wrap(self, model, config: dict):
        from peft import get_peft_config, get_peft_model

        return get_peft_model(model, get_peft_config(dict(config)))

    def export(self, config: dict, out_dir: str) -> list[str]:
        from peft import get_peft_config

        get_peft_config(dict(config)).save_pretrained(out_dir)
        return ["adapter_config.json"]

    def save_weights(self, model, out_dir: str) -> None:
        # peft writes adapter_model.safetensors (never a pickle) plus adapter_config.json;
        # the trained task head is part of it (modules_to_save).
        model.save_pretrained(out_dir, safe_serialization=True)

    def load_snippet(self, out_dir: str, task: str, num_labels: int, weights: bool, base_expr: str | None = None) -> str:
        from autopeft.tasks import task_kind

        kind = task_kind(task)
        head = [
            "from peft import PeftConfig, PeftModel, get_peft_model",
            f"from transformers import {kind.auto_class}",
            "",
            f"config = PeftConfig.from_pretrained({out_dir!r})",
            kind.from_pretrained_line(base_expr or "config.base_model_name_or_path", num_labels),
        ]
        if weights:
            return "\n".join(head + [f"model = PeftModel.from_pretrained(base, {out_dir!r})  # the trained head comes with it"])
        return "\n".join(head + ["model = get_peft_model(base, config)  # untrained adapter, ready to train"])

    def on_step(self, model, step: int) -> None:
        return None

    def summary(self, model) -> dict:
        return {}

    def export_as(self, target: str, config: dict, rank_allocation: Mapping[str, float]) -> dict:
        raise MethodError(f"a {self.name} trial converts to no other method; export it as it is")

    def importance_map(self, rank_allocation: Mapping[str, float], arch: ModelInfo):
        return None


def selected_modules(cand, arch: ModelInfo) -> tuple[str, ...]:
    """The relative module names ``cand`` adapts in each of its layers."""
    try:
        return arch.match_targets(cand.targets.modules)
    except KeyError as e:
        raise MethodError(f"the model has no module '{e.args[0]}' in its layers") from None


def require_linear(method: str, arch: ModelInfo, modules: tuple[str, ...]) -> None:
    """Refuse modules that are GPT-2-style Conv1D: peft's LoHa and LoKr adapt nn.Linear only."""
    conv = [m for m in modules if arch.linear(m).conv1d]
    if conv:
        raise MethodError(f"peft's {method} cannot adapt Conv1D modules ({', '.join(conv)}); use lora, ia3 or adalora here")


def target_regex(arch: ModelInfo, layers: tuple[int, ...], modules: tuple[str, ...]) -> str:
    """A peft ``target_modules`` regex naming exactly these modules in exactly these layers.

    One regex places every method the same way (IA3 has no ``layers_to_transform``), and
    it is plain peft: the exported config needs nothing from autopeft to load.
    """
    if not layers or not modules:
        raise MethodError("a candidate must adapt at least one module in at least one layer")
    layer_alt = "|".join(str(i) for i in sorted(layers))
    module_alt = "|".join(re.escape(m) for m in modules)
    return rf"{re.escape(arch.layers_path)}\.({layer_alt})\.({module_alt})"


def rank_patterns(cand, arch: ModelInfo, modules: tuple[str, ...]) -> tuple[dict, dict]:
    """peft ``rank_pattern`` and ``alpha_pattern`` for per-layer ranks.

    ``r`` is the largest rank; every layer with another rank gets an entry (peft matches the
    keys against the end of module names) and the alpha that keeps alpha / r the same in
    every layer. Empty dicts when all layers share one rank.
    """
    ranks = {
        target_regex(arch, (layer,), modules): cand.rank_of(layer)
        for layer in cand.layers if cand.rank_of(layer) != cand.rank
    }
    scale = cand.alpha / cand.rank
    return ranks, {k: scale * r for k, r in ranks.items()}


def lycoris_config(config_cls, label: str, cand, ctx: BuildContext):
    """A peft LyCORIS config (LoHa, LoKr: the same fields) for ``cand``, per-layer ranks included."""
    modules = selected_modules(cand, ctx.arch)
    require_linear(label, ctx.arch, modules)
    ranks, alphas = rank_patterns(cand, ctx.arch, modules)
    return config_cls(
        task_type=task_type_for(ctx.arch),
        r=cand.rank,
        alpha=cand.alpha,
        rank_dropout=cand.dropout,
        target_modules=target_regex(ctx.arch, cand.layers, modules),
        rank_pattern=ranks,
        alpha_pattern=alphas,
        base_model_name_or_path=ctx.base_model,
    )


def task_type_for(arch: ModelInfo) -> str:
    from autopeft.tasks import task_kind

    return task_kind(arch.task).peft_task_type


def config_to_json(config) -> dict:
    """``PeftConfig.to_dict()`` made JSON-safe (sets -> sorted lists, enums -> values), the
    same normalisation peft applies when it writes ``adapter_config.json``."""
    import enum

    def clean(value):
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (set, frozenset)):
            return sorted(clean(v) for v in value)
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if hasattr(value, "to_dict") and callable(value.to_dict):
            return clean(value.to_dict())
        return value

    return clean(config.to_dict())
