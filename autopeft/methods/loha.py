"""LoHa (LyCORIS): the weight update is the Hadamard product of two low-rank products,
``dW = (alpha/r) (W1a W1b) * (W2a W2b)`` — rank up to r² for the parameters of 2 LoRAs.

Candidate mapping: ``rank`` -> ``r``, ``alpha`` -> ``alpha``, ``dropout`` -> ``rank_dropout``
(LyCORIS' per-rank dropout, its analogue of ``lora_dropout``); placement by the shared
``target_modules`` regex, so the exported config is plain peft. Per-layer ranks
(``Candidate.layer_ranks``) become ``rank_pattern``/``alpha_pattern``, as for LoRA.
"""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, lycoris_config, selected_modules
from autopeft.methods.lora import LoRA


class LoHa(MethodBase):
    name = "loha"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers"})
    supports_ist = True  # its adapter is the identity when its parameters are zero (autopeft.trials.ist)
    learning_rate_band = LoRA.learning_rate_band  # a low-rank update like LoRA's

    def build(self, cand, ctx: BuildContext):
        from peft import LoHaConfig

        return lycoris_config(LoHaConfig, "LoHa", cand, ctx)

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        # Two (out x r)(r x in) pairs per linear module (peft's hada_w{1,2}_{a,b}).
        width = sum(ctx.arch.linear(m).in_features + ctx.arch.linear(m).out_features for m in selected_modules(cand, ctx.arch))
        return sum(2 * cand.rank_of(layer) * width for layer in cand.layers) + ctx.arch.head_params
