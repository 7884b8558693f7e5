"""Syne Tune's MOASHA replayed on the learning-curve table; writes its traces (``table.Trace``).

Runs in its own virtual environment (no autopeft there):

    python3 -m venv /work/venv-synetune
    /work/venv-synetune/bin/pip install "syne-tune==0.16.*" numpy
    /work/venv-synetune/bin/pip uninstall -y nvidia-nccl-cu12   # pulled by xgboost; not needed on CPU

The scheduler is ``syne_tune.optimizer.schedulers.multiobjective.MOASHA`` (multi-objective
asynchronous successive halving, non-dominated sorting at each rung) on the metrics
(-validation accuracy, log10 trainable parameters), both minimised, with ``time_attr`` the
training step, ``grace_period`` 30, ``max_t`` 150 and ``reduction_factor`` 3: rungs at 30 and
90, as autopeft's halving. Its scheduler loop is driven directly, one trial at a time
(``suggest`` -> ``on_trial_add`` -> ``on_trial_result`` at every evaluation step until it says
stop or the run reaches 150 -> ``on_trial_complete``): with a single worker this is what
Syne Tune's simulator backend does, without its wall-clock bookkeeping. The configuration
space is the autopeft space's encoding: method, rank index 0..3, targets, top-k 2..6 and the
learning rate's log-position in its method's band; each suggestion is answered by the nearest
table configuration (``table.Table.nearest``) and charged the steps it trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build import BANDS  # noqa: E402
from table import RANKS, Charger, Table, Trace  # noqa: E402

TARGETS = ("query+value", "query+key+value", "all-linear")


def config_space():
    from syne_tune.config_space import choice, randint, uniform

    return {"method": choice(list(BANDS)), "rank": randint(0, len(RANKS) - 1), "targets": choice(list(TARGETS)),
            "top_k": randint(2, 6), "lr_offset": uniform(0.0, 1.0)}


def answer(table: Table, config: dict):
    lo, hi = BANDS[config["method"]]
    rate = lo * (hi / lo) ** float(config["lr_offset"])
    return table.nearest(config["method"], RANKS[int(config["rank"])], config["targets"], int(config["top_k"]), rate)


def replay(table: Table, seed: int, budget: int, target: int) -> Trace:
    import math

    import numpy as np
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    np.random.seed(seed)  # MOASHA samples its configurations and brackets from numpy's global state
    scheduler = MOASHA(config_space(), metrics=["neg_accuracy", "log10_params"], do_minimize=True, time_attr="step",
                       max_t=target, grace_period=30, reduction_factor=3, random_seed=seed)
    charger = Charger()
    trial_id = 0
    while charger.spent < budget:
        suggestion = scheduler.suggest()
        if suggestion is None:
            break
        trial = Trial(trial_id=trial_id, config=suggestion.config, creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        row = answer(table, suggestion.config)
        result = None
        for step in table.eval_steps:
            charger.reach(trial_id, row.config, step)
            m = row.metrics_at(step)
            result = {"step": step, "neg_accuracy": -m["accuracy"], "log10_params": math.log10(row.trainable_params)}
            if step >= target:
                scheduler.on_trial_complete(trial, result)
                break
            if scheduler.on_trial_result(trial, result) == SchedulerDecision.STOP:
                break
        trial_id += 1
    return Trace("synetune-moasha", seed, budget, tuple(charger.events), note="syne-tune MOASHA, direct scheduler loop")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget", type=int, required=True, help="steps")
    ap.add_argument("--target", type=int, default=150)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    table = Table.load(args.table, args.target)
    traces = [replay(table, int(s), args.budget, args.target) for s in args.seeds.split(",") if s]
    Path(args.out).write_text(json.dumps([t.to_json() for t in traces]))
    print(f"synetune-moasha: {len(traces)} traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
