"""VeRA: one pair of frozen random projections ``A (r x in_max)``, ``B (out_max x r)`` shared
by every adapted module; each module learns only two scaling vectors,
``dW x = diag(lambda_b) B diag(lambda_d) A x``.

Trainable per adapted module: ``lambda_d`` (r) + ``lambda_b`` (out_features). ``A`` and ``B``
are buffers regenerated from ``projection_prng_key`` (peft also saves them,
``save_projection=True``), never trained, so they are not in the count.

Shapes: VeRA's shared projections must cover every targeted module. peft 0.21 sizes them to
the element-wise largest (out, in) over the targets and slices per module, so any mix of
shapes works — including ``all-linear`` on BERT (384x384, 384->1536, 1536->384): checked on
MiniLM in ``tests/test_methods_extra.py``. Only ``nn.Linear`` / GPT-2 ``Conv1D`` targets are
supported by peft; a candidate with no module is a ``MethodError`` (from ``target_regex``).

Candidate mapping: ``rank`` -> ``r`` (VeRA wants large r; its cost is r per module),
``dropout`` -> ``vera_dropout``; ``alpha`` is unused (VeRA has no scaling factor). Per-layer
ranks: the projections are shared, so one r for all (peft's ``VeraConfig`` has no
``rank_pattern``): VeRA uses ``rank`` (the largest per-layer rank) in every adapted layer;
layers switched off (rank 0) stay off.
"""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, selected_modules, target_regex, task_type_for
from autopeft.methods.ia3 import IA3


class VeRA(MethodBase):
    name = "vera"
    uses = frozenset({"rank", "dropout", "targets", "layers"})
    supports_ist = True  # its adapter is the identity when its parameters are zero (autopeft.trials.ist)
    learning_rate_band = IA3.learning_rate_band  # scaling vectors like IA3's, trained at similar or higher rates

    def build(self, cand, ctx: BuildContext):
        from peft import VeraConfig

        return VeraConfig(
            task_type=task_type_for(ctx.arch),
            r=cand.rank,
            vera_dropout=cand.dropout,
            target_modules=target_regex(ctx.arch, cand.layers, selected_modules(cand, ctx.arch)),
            base_model_name_or_path=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        per_layer = sum(cand.rank + ctx.arch.linear(m).out_features for m in selected_modules(cand, ctx.arch))
        return per_layer * len(cand.layers) + ctx.arch.head_params
