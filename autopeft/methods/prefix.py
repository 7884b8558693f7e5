"""Prefix tuning: ``num_virtual_tokens`` learned key/value vectors prepended to the attention
of *every* layer (peft ``PrefixTuningConfig``, no reparametrisation MLP).

Candidate mapping: ``rank`` -> ``num_virtual_tokens``. Prefix tuning has no per-module or
per-layer placement in peft, so ``targets``, ``layers``, ``alpha`` and ``dropout`` are
**ignored** (``uses`` says so): two candidates differing only there build the same config.
With per-layer ranks, ``rank`` is their largest and the prefix still spans every layer.

Count (peft's ``PrefixEncoder`` is one ``Embedding(N, num_layers * 2 * token_dim)``) plus the
task head: ``N * num_layers * 2 * token_dim + head_params``. ``token_dim`` is the width of
the residual stream, read as the input width of the layer's first linear module (BERT's
query, GPT-2's ``c_attn``); ``build`` writes it and ``num_layers`` into the config, so the
counted, trained and exported shapes are the same ones. Models whose keys/values are
narrower than the hidden size (grouped-query attention) are not covered by this count.
"""

from __future__ import annotations

from autopeft.errors import MethodError
from autopeft.methods.base import BuildContext, MethodBase, task_type_for


def token_dim(arch) -> int:
    if not arch.linears:
        raise MethodError("prefix tuning: the model's layers have no linear module to read the hidden size from")
    return arch.linears[0].in_features


class PrefixTuning(MethodBase):
    name = "prefix"
    uses = frozenset({"rank"})
    # P-tuning v2 and peft's prefix-tuning examples train at 5e-3..1e-2.
    learning_rate_band = (2.0e-3, 2.0e-2)

    def build(self, cand, ctx: BuildContext):
        from peft import PrefixTuningConfig

        if cand.rank < 1:
            raise MethodError(f"prefix tuning needs at least one virtual token, got rank {cand.rank}")
        return PrefixTuningConfig(
            task_type=task_type_for(ctx.arch),
            num_virtual_tokens=cand.rank,
            num_layers=ctx.arch.num_layers,
            token_dim=token_dim(ctx.arch),
            base_model_name_or_path=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        if cand.rank < 1:
            raise MethodError(f"prefix tuning needs at least one virtual token, got rank {cand.rank}")
        return cand.rank * ctx.arch.num_layers * 2 * token_dim(ctx.arch) + ctx.arch.head_params
