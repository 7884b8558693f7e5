"""LoKr (LyCORIS): the weight update is a Kronecker product ``dW = (alpha/r) W1 ⊗ W2``.

peft factorises each matrix as ``out = a*b``, ``in = c*d`` (``factorization``, the two
factors nearest the square root), keeps ``W1`` (a x c) full and ``W2`` (b x d) full when
``r >= max(b, d) / 2``, else low-rank ``W2a (b x r) W2b (r x d)``. So on a 384-wide model
(384 = 16 * 24) ranks >= 12 make W2 full and the count stops growing with the rank: the
search sees that in ``trainable_params``.

Candidate mapping: ``rank`` -> ``r``, ``alpha`` -> ``alpha``, ``dropout`` -> ``rank_dropout``;
peft defaults otherwise (``decompose_both=False``, ``decompose_factor=-1``). Per-layer ranks
(``Candidate.layer_ranks``) become ``rank_pattern``/``alpha_pattern``, as for LoRA.
"""

from __future__ import annotations

from autopeft.methods.base import BuildContext, MethodBase, lycoris_config, selected_modules
from autopeft.methods.lora import LoRA


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """``peft.tuners.lokr.layer.factorization`` (peft 0.21), repeated here so that counting
    needs no torch; ``tests/test_methods_extra.py`` checks the two agree."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    if m > n:
        n, m = m, n
    return m, n


def lokr_params(in_features: int, out_features: int, r: int) -> int:
    """Trainable parameters peft's LoKr gives one ``nn.Linear`` (decompose_both=False)."""
    a, b = factorization(out_features)
    c, d = factorization(in_features)
    w1 = a * c
    w2 = b * d if r >= max(b, d) / 2 else r * (b + d)
    return w1 + w2


class LoKr(MethodBase):
    name = "lokr"
    uses = frozenset({"rank", "alpha", "dropout", "targets", "layers"})
    supports_ist = True  # its adapter is the identity when its parameters are zero (autopeft.trials.ist)
    learning_rate_band = LoRA.learning_rate_band  # a factorised update like LoRA's

    def build(self, cand, ctx: BuildContext):
        from peft import LoKrConfig

        return lycoris_config(LoKrConfig, "LoKr", cand, ctx)

    def count_trainable(self, cand, ctx: BuildContext) -> int:
        specs = [ctx.arch.linear(m) for m in selected_modules(cand, ctx.arch)]
        return sum(
            lokr_params(s.in_features, s.out_features, cand.rank_of(layer)) for layer in cand.layers for s in specs
        ) + ctx.arch.head_params
