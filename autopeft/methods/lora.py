"""LoRA (with DoRA and rsLoRA switches): low-rank updates W + (alpha/r) B A."""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, selected_modules, target_regex, task_type_for


class LoRA(MethodBase):
    name = "lora"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers", "dora", "rslora"})

    def build(self, cand, ctx: BuildContext):
        from peft import LoraConfig

        modules = selected_modules(cand, ctx.arch)
        # Per-layer ranks: r is the largest; layers with another rank get a rank_pattern entry
        # (peft matches its keys against the end of module names) and the alpha that keeps
        # alpha / r the same in every layer.
        patterns = {
            target_regex(ctx.arch, (layer,), modules): cand.rank_of(layer)
            for layer in cand.layers if cand.rank_of(layer) != cand.rank
        }
        scale = cand.alpha / cand.rank
        return LoraConfig(
            task_type=task_type_for(ctx.arch),
            r=cand.rank,
            lora_alpha=cand.alpha,
            lora_dropout=cand.dropout,
            target_modules=target_regex(ctx.arch, cand.layers, modules),
            rank_pattern=patterns,
            alpha_pattern={k: scale * r for k, r in patterns.items()},
            use_dora=cand.dora,
            use_rslora=cand.rslora,
            base_model_name_or_path=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        total = 0
        for layer in cand.layers:
            for name in selected_modules(cand, ctx.arch):
                spec = ctx.arch.linear(name)
                total += cand.rank_of(layer) * (spec.in_features + spec.out_features)
                if cand.dora:  # DoRA adds a magnitude vector per output feature
                    total += spec.out_features
        return total + ctx.arch.head_params
