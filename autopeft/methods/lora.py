"""LoRA (with DoRA and rsLoRA switches): low-rank updates W + (alpha/r) B A."""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, rank_patterns, selected_modules, target_regex, task_type_for


class LoRA(MethodBase):
    name = "lora"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers", "dora", "rslora"})
    supports_ist = True  # its adapter is the identity when its parameters are zero (autopeft.trials.ist)
    # Hu et al. 2021 (RoBERTa/DeBERTa on GLUE) train at 4e-4..5e-4, peft's LoRA examples at
    # 1e-4..3e-4 on long runs, and autopeft's default LoRA at 1e-3. DoRA and rsLoRA, switches
    # of LoRA, share it; so do the LoRA-like methods (adalora, loha, lokr).
    learning_rate_band = (2.0e-4, 2.0e-3)

    def build(self, cand, ctx: BuildContext):
        from peft import LoraConfig

        modules = selected_modules(cand, ctx.arch)
        ranks, alphas = rank_patterns(cand, ctx.arch, modules)
        return LoraConfig(
            task_type=task_type_for(ctx.arch),
            r=cand.rank,
            lora_alpha=cand.alpha,
            lora_dropout=cand.dropout,
            target_modules=target_regex(ctx.arch, cand.layers, modules),
            rank_pattern=ranks,
            alpha_pattern=alphas,
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
