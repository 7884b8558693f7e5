"""``export --train --baseline`` trains default LoRA, whatever the chosen trial was."""

from __future__ import annotations

import pytest

from autopeft.methods import BuildContext, get_method
from autopeft.retrain import baseline_candidate
from autopeft.space.encoding import Candidate


@pytest.mark.parametrize("layers, ranks", [([0, 1, 2, 3, 4, 5], [4, 4, 2, 4, 8, 8]), ([4, 5], [2, 8])],
                         ids=["all layers", "two layers"])
def test_the_baseline_drops_the_chosen_trials_per_layer_ranks(model_info, layers, ranks):
    # A trial of a `rank: {per_layer: ...}` space (search_spaces/per-layer-rank.yaml).
    chosen = {"method": "lora", "rank": max(ranks), "alpha": 4.0, "dropout": 0.1, "targets": "all-linear",
              "layers": layers, "learning_rate": 3e-3, "dora": True, "rslora": True, "layer_ranks": ranks}
    base = baseline_candidate(chosen, model_info.num_layers)
    assert (base.method, base.rank, base.alpha, base.targets.modules) == ("lora", 8, 16.0, ("query", "value"))
    assert base.layers == tuple(range(model_info.num_layers)) and base.layer_ranks is None
    assert (base.dora, base.rslora, base.learning_rate) == (False, False, 3e-3)

    default = Candidate.from_json({"method": "lora", "rank": 8, "alpha": 16.0, "dropout": 0.1,
                                   "targets": ["query", "value"], "layers": list(range(model_info.num_layers)),
                                   "learning_rate": 3e-3, "dora": False, "rslora": False})
    lora, ctx = get_method("lora"), BuildContext(model_info, 10)
    assert lora.config_json(lora.build(base, ctx)) == lora.config_json(lora.build(default, ctx))
    assert lora.count_trainable(base, ctx) == lora.count_trainable(default, ctx)
