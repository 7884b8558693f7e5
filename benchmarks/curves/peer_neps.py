"""neps' multi-objective Hyperband replayed on the learning-curve table; writes its traces (``table.Trace``).

Runs in its own virtual environment: neps 0.17 pins botorch 0.12 and gpytorch 1.13 and would
pull a CUDA torch, so it is installed without its dependencies and they are added by hand, the
CPU torch first (from the local wheel):

    python3 -m venv /work/venv-neps
    /work/venv-neps/bin/pip install --no-deps "neural-pipeline-search==0.17.*"
    /work/venv-neps/bin/pip install torch==2.13.0
    /work/venv-neps/bin/pip install numpy "pandas<3" "networkx<3" scipy more-itertools "portalocker<3" \
        "pyyaml<7" typing-extensions "botorch==0.12.*" gpytorch==1.13.0 "pymoo>=0.6.1.5" \
        "seaborn<0.14,>=0.13" "tensorboard<3,>=2"
    /work/venv-neps/bin/pip install --no-deps "ifbo>=0.4.0" "submitit>=1.5.1" requests charset-normalizer \
        idna urllib3 certifi

(torchvision, which neps lists, is not needed to import or run it; ``pip list`` shows no
``nvidia-*`` package.)

The optimizer is ``neps.algorithms.mo_hyperband`` (Hyperband brackets whose promotions rank
by a multi-objective selector, epsilon-net by default: the one neps 0.17 offers for several
objectives with a fidelity besides MOASHA, which Syne Tune's peer already runs) with ``eta`` 3,
driven through ``neps.AskAndTell`` one trial at a time. The fidelity is the training step,
15..150 (the table's first evaluation to the target): neps places its rungs at 150/9, 150/3
and 150; a rung between two evaluation steps sees the last evaluation before it and is charged
the steps it names. Objectives told: (-validation accuracy, log10 trainable parameters), both
minimised. A promoted configuration continues its run: it is charged only its extra steps.
The space is the autopeft space's encoding, answered by the nearest table configuration
(``table.Table.nearest``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build import BANDS  # noqa: E402
from table import RANKS, Charger, Table, Trace  # noqa: E402

TARGETS = ("query+value", "query+key+value", "all-linear")
LOWEST = 15


def space(target: int):
    from neps.space import HPOCategorical, HPOFloat, HPOInteger, SearchSpace

    return SearchSpace({
        "method": HPOCategorical(choices=list(BANDS)),
        "rank": HPOInteger(lower=0, upper=len(RANKS) - 1),
        "targets": HPOCategorical(choices=list(TARGETS)),
        "top_k": HPOInteger(lower=2, upper=6),
        "lr_offset": HPOFloat(lower=0.0, upper=1.0),
        "step": HPOInteger(lower=LOWEST, upper=target, is_fidelity=True),
    })


def answer(table: Table, config: dict):
    lo, hi = BANDS[config["method"]]
    rate = lo * (hi / lo) ** float(config["lr_offset"])
    return table.nearest(config["method"], RANKS[int(config["rank"])], config["targets"], int(config["top_k"]), rate)


def replay(table: Table, seed: int, budget: int, target: int) -> Trace:
    import random

    import numpy as np
    import torch

    import neps

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    opt = neps.AskAndTell(neps.algorithms.mo_hyperband(space(target), eta=3))
    charger = Charger()
    runs: dict[str, int] = {}  # neps config id (without its rung suffix) -> our run number
    while charger.spent < budget:
        trial = opt.ask()
        config = dict(trial.config)
        base = str(trial.metadata.id).split("_")[0]
        run = runs.setdefault(base, len(runs))
        step = int(round(float(config["step"])))
        row = answer(table, config)
        charger.reach(run, row.config, step)
        m = row.metrics_at(step)
        opt.tell(trial, {"objective_to_minimize": [-m["accuracy"], math.log10(row.trainable_params)]})
    return Trace("neps", seed, budget, tuple(charger.events), note="neps mo_hyperband (epsnet), AskAndTell")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget", type=int, required=True, help="steps")
    ap.add_argument("--target", type=int, default=150)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("neps").setLevel(logging.WARNING)
    table = Table.load(args.table, args.target)
    traces = [replay(table, int(s), args.budget, args.target) for s in args.seeds.split(",") if s]
    Path(args.out).write_text(json.dumps([t.to_json() for t in traces]))
    print(f"neps: {len(traces)} traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
