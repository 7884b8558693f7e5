"""LoHa (LyCORIS): the weight update is the Hadamard product of two low-rank products,
``dW = (alpha/r) (W1a W1b) * (W2a W2b)`` — rank up to r² for the parameters of 2 LoRAs.

Candidate mapping: ``rank`` -> ``r``, ``alpha`` -> ``alpha``, ``dropout`` -> ``rank_dropout``
(LyCORIS' per-rank dropout, its analogue of ``lora_dropout``); placement by the shared
``target_modules`` regex, so the exported config is plain peft.
"""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, selected_modules, target_regex, task_type_for


class LoHa(MethodBase):
    name = "loha"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers"})

    def build(self, cand, ctx: BuildContext):
        from peft import LoHaConfig

        return LoHaConfig(
            task_type=task_type_for(ctx.arch),
            r=cand.rank,
            alpha=cand.alpha,
            rank_dropout=cand.dropout,
            target_modules=target_regex(ctx.arch, cand.layers, selected_modules(cand, ctx.arch)),
            base_model_name_or_path=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        # Two (out x r)(r x in) pairs per linear module (peft's hada_w{1,2}_{a,b}).
        per_layer = sum(
            2 * cand.rank * (ctx.arch.linear(m).in_features + ctx.arch.linear(m).out_features)
            for m in selected_modules(cand, ctx.arch)
        )
        return per_layer * len(cand.layers) + ctx.arch.head_params
