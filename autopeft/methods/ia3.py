"""IA3: learned scaling vectors on activations (keys, values and the FFN's input)."""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, selected_modules, target_regex, task_type_for


class IA3(MethodBase):
    name = "ia3"
    uses = frozenset({"targets", "layers"})
    # T-Few (Liu et al. 2022) trains IA3 at 3e-3, peft's method-comparison benchmark near 5e-3.
    learning_rate_band = (1.0e-3, 1.0e-2)

    def build(self, cand, ctx: BuildContext):
        from peft import IA3Config

        modules = selected_modules(cand, ctx.arch)
        # IA3 scales the *input* of feed-forward modules; peft requires them to be a subset
        # of the targets, so they are the selected down-projections, in the same layers.
        ff = tuple(m for m in modules if ctx.arch.linear(m).is_down_projection)
        return IA3Config(
            task_type=task_type_for(ctx.arch),
            target_modules=target_regex(ctx.arch, cand.layers, modules),
            feedforward_modules=target_regex(ctx.arch, cand.layers, ff) if ff else [],
            base_model_name_or_path=ctx.base_model,
        )

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        per_layer = 0
        for name in selected_modules(cand, ctx.arch):
            spec = ctx.arch.linear(name)
            per_layer += spec.in_features if spec.is_down_projection else spec.out_features
        return per_layer * len(cand.layers) + ctx.arch.head_params


