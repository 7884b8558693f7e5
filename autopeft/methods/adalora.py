"""AdaLoRA: SVD-form LoRA whose rank budget is re-allocated across matrices during training.

The schedule (``tinit``, ``tfinal``, ``deltaT``, ``total_step``) scales with the proxy's
steps: a schedule written for 10k steps never allocates anything in a 30-step proxy.
Even scaled, AdaLoRA starts slower than LoRA, so short proxies are biased against it;
the benchmarks report that bias rather than hide it.
"""

from __future__ import annotations

from typing import Mapping

from autopeft.errors import MethodError
from autopeft.methods.base import BuildContext, MethodBase, selected_modules, target_regex, task_type_for
from autopeft.methods.lora import LoRA


def schedule(steps: int) -> dict:
    """Warm up for 10% of the steps, allocate until 70%, then freeze the final ranks."""
    tinit = max(1, int(0.1 * steps))
    tfinal = max(1, int(0.3 * steps))
    if tinit + tfinal >= steps:  # very short runs: allocate at least once
        tinit, tfinal = 0, max(0, steps // 3)
    return {"tinit": tinit, "tfinal": tfinal, "deltaT": max(1, (steps - tinit - tfinal) // 10), "total_step": steps}


class AdaLoRA(MethodBase):
    name = "adalora"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers"})
    supports_ist = True  # its adapter is the identity when its parameters are zero (autopeft.trials.ist)
    stateful_steps = True  # update_and_allocate keeps importance averages across steps
    learning_rate_band = LoRA.learning_rate_band  # LoRA in SVD form

    def build(self, cand, ctx: BuildContext):
        from peft import AdaLoraConfig

        # init_r is the searched rank; the budget keeps half of it on average.
        return AdaLoraConfig(
            task_type=task_type_for(ctx.arch),
            init_r=cand.rank,
            target_r=max(1, cand.rank // 2),
            lora_alpha=cand.alpha,
            lora_dropout=cand.dropout,
            target_modules=target_regex(ctx.arch, cand.layers, selected_modules(cand, ctx.arch)),
            base_model_name_or_path=ctx.base_model,
            **schedule(ctx.steps),
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        per_layer = sum(
            cand.rank * (ctx.arch.linear(m).in_features + ctx.arch.linear(m).out_features + 1)
            for m in selected_modules(cand, ctx.arch)
        )
        return per_layer * len(cand.layers) + ctx.arch.head_params

    def on_step(self, model, step: int) -> None:
        model.base_model.update_and_allocate(step)

    def summary(self, model) -> dict:
        """The final rank of every adapted matrix: AdaLoRA's learned importance."""
        pattern = model.peft_config[model.active_adapter].rank_pattern or {}
        from autopeft.store.trial_extras import rank_allocation_extras

        return rank_allocation_extras({name: int(sum(mask)) for name, mask in pattern.items()})

    def export_as(self, target: str, config: dict, rank_allocation: Mapping[str, float]) -> dict:
        """``lora``: the trial as plain LoRA with the ranks it learned (:func:`as_lora`)."""
        if target != "lora":
            raise MethodError(f"an adalora trial converts to lora only, not to {target}")
        if not rank_allocation:
            raise MethodError("an adalora trial converts to lora with the rank allocation it recorded, and this one has none")
        return as_lora(config, rank_allocation)

    def importance_map(self, rank_allocation: Mapping[str, float], arch):
        """The final rank of every adapted matrix, by layer and module."""
        if not rank_allocation:
            return None
        from autopeft.importance import ImportanceMap

        return ImportanceMap.from_named(
            "adalora", dict(rank_allocation), arch.layers_path, arch.num_layers,
            tuple(s.name for s in arch.linears), note="final AdaLoRA rank per matrix",
        )


def as_lora(config: dict, rank_allocation: Mapping[str, float]) -> dict:
    """A plain LoRA config (JSON) with AdaLoRA's learned ranks as ``rank_pattern``.

    Matrices AdaLoRA pruned to rank 0 are left out of ``target_modules``; ``r`` is the
    largest learned rank and every module's own rank is in ``rank_pattern``.
    """
    import re

    from peft import LoraConfig

    from autopeft.methods.base import config_to_json

    ranks: dict[str, int] = {}
    for name, rank in rank_allocation.items():
        module = re.sub(r"(\.lora_\w+)?(\.default)?$", "", name)
        ranks[module] = max(ranks.get(module, 0), int(rank))
    kept = {m: r for m, r in ranks.items() if r > 0}
    if not kept:
        raise MethodError("AdaLoRA pruned every matrix to rank 0; there is no LoRA to export")
    top = max(kept.values())
    lora = LoraConfig(
        task_type=config.get("task_type"),
        r=top,
        lora_alpha=config.get("lora_alpha", 2 * top),
        lora_dropout=config.get("lora_dropout", 0.0),
        target_modules="|".join(re.escape(m) for m in sorted(kept)),
        rank_pattern={re.escape(m): r for m, r in sorted(kept.items()) if r != top},
        base_model_name_or_path=config.get("base_model_name_or_path"),
    )
    return config_to_json(lora)
