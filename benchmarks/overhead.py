"""Overheads at the quickstart proxy size: the trial runner, and the sampler.

1. Runner overhead = trial wall time through ``trials.executor.run_isolated`` (fork from the
   forkserver, model load, peft wrap, training, evaluation, result over the pipe; timed in
   this process) / (steps x bare peft step time). The bare step time is measured in this
   same run with a plain in-process loop on the same peft config, data, batch size and
   thread count (forward, backward, clip, AdamW step, zero_grad; model loaded beforehand,
   first two steps discarded as warm-up). Also shown: the training loop alone
   (``TrialResult.train_time``) over the same denominator, and where the rest goes.
   Bare loop and trial alternate ``--repeats`` times so that both see the same machine
   load; the spread between repeats is printed as the noise of the figure.
2. Sampler share = seconds of one ``study.ask()`` with the botorch sampler (GP fit +
   qLogNEHVI optimisation) after ``--told`` told trials / the measured trial wall time.
   The told trials are real candidates of ``search_spaces/quickstart.yaml`` (random
   sampler) with their analytic trainable-parameter counts and a synthetic accuracy
   (uniform 0.40-0.60: the GP's cost depends on the number of points, not on their values).

Targets (issue 6): runner ratio <= 1.10, sampler share <= 5 % at 50 trials.

Usage:
    python benchmarks/overhead.py [--repeats 2] [--told 50] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def make_spec(prep, params: dict, steps: int, threads: int):
    from autopeft.methods import BuildContext, get_method
    from trials.spec import TrialSpec

    cand = prep.encoding.decode(params)
    method = get_method(cand.method)
    ctx = BuildContext(prep.arch, steps, base_model=prep.model.location)
    p = prep.space.proxy
    return cand, TrialSpec(
        study="overhead", trial=0, method=cand.method, model=prep.model.location, num_labels=prep.data.num_labels,
        data_path=prep.data.path, peft_config=method.config_json(method.build(cand, ctx)),
        learning_rate=cand.learning_rate, steps=steps, batch_size=p.batch_size, warmup=p.warmup, seed=p.seed,
        log_every=p.log_every, timeout=1800.0, threads=threads,
    )


def bare_step_time(spec, steps: int, warmup: int = 2) -> float:
    """Seconds per optimiser step of a plain in-process peft loop on ``spec``'s config and data."""
    import torch

    from autopeft.methods import get_method
    from trials.proxy import _batches, _load_base_model, _load_split

    torch.set_num_threads(spec.threads or 1)
    torch.manual_seed(spec.seed)
    model = get_method(spec.method).wrap(_load_base_model(spec), spec.peft_config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate)
    batches = _batches(_load_split(spec.data_path)["train"], spec.batch_size, torch.Generator().manual_seed(spec.seed))
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        loss = model(**next(batches)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def sampler_ask_time(prep, told: int, asks: int) -> list[float]:
    """Seconds per botorch ``study.ask()`` (+ suggest) after ``told`` told trials of the quickstart space."""
    import optuna

    from autopeft.methods import BuildContext, get_method
    from autopeft.search.samplers import make_sampler
    from autopeft.space.schema import SearchSpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = __import__("random").Random(0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    ctx = BuildContext(prep.arch, prep.space.proxy.steps)
    for _ in range(told):
        trial = study.ask()
        cand = prep.encoding.suggest(trial)
        study.tell(trial, [rng.uniform(0.4, 0.6), float(get_method(cand.method).count_trainable(cand, ctx))])
    study.sampler = make_sampler(SearchSpec(sampler="botorch", trials=told + asks, startup_trials=8, seed=0))
    times = []
    for _ in range(asks):
        t0 = time.perf_counter()
        trial = study.ask()
        cand = prep.encoding.suggest(trial)
        times.append(time.perf_counter() - t0)
        study.tell(trial, [rng.uniform(0.4, 0.6), float(get_method(cand.method).count_trainable(cand, ctx))])
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(QUICKSTART))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--told", type=int, default=50)
    ap.add_argument("--asks", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the trial and the bare loop")
    ap.add_argument("--quick", action="store_true", help="8 steps, 1 repeat, 12 told trials, 1 ask")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from trials.executor import run_isolated

    space = load_space(args.space)
    prep = prepare_search(space)
    steps = space.proxy.steps
    if args.quick:
        steps, args.repeats, args.told, args.asks = 8, 1, 12, 1
    # A mid-sized quickstart candidate: LoRA r=8 on query+value in all six layers.
    params = {"method": "lora", "rank": 2, "targets": "query+value", "top_k": 6, "learning_rate": 1e-3}
    params = {k: v for k, v in params.items() if k in prep.encoding.distributions}
    cand, spec = make_spec(prep, params, steps, args.threads)
    run_isolated(spec.__class__(**{**spec.__dict__, "steps": 1}))  # start the forkserver outside the timing

    rows = []
    for r in range(args.repeats):
        bare = bare_step_time(spec, steps)
        t0 = time.perf_counter()
        result = run_isolated(spec)
        wall = time.perf_counter() - t0
        if result.status != "complete":
            print(f"trial failed: {result.error}")
            return 1
        rows.append((bare, wall, result.train_time))
        print(f"  repeat {r + 1}: bare step {bare * 1000:.0f} ms, trial wall {wall:.2f}s, train loop {result.train_time:.2f}s",
              flush=True)

    asks = sampler_ask_time(prep, args.told, args.asks)
    ask = statistics.median(asks)

    print()
    print(f"Overheads at the quickstart proxy size ({args.space}): {cand.method} r={cand.rank} {cand.targets.label} "
          f"on {len(cand.layers)} layers, {steps} steps x batch {space.proxy.batch_size} x max_length "
          f"{space.proxy.max_length}, eval {space.proxy.eval_examples}, {args.threads} thread(s)")
    header = f"{'repeat':<7}{'bare ms/step':>13}{'steps x bare s':>15}{'trial wall s':>13}{'train loop s':>13}" \
             f"{'wall/bare':>10}{'loop/bare':>10}"
    print(header)
    print("-" * len(header))
    ratios, loops = [], []
    for i, (bare, wall, train) in enumerate(rows):
        ideal = steps * bare
        ratios.append(wall / ideal)
        loops.append(train / ideal)
        print(f"{i + 1:<7}{bare * 1000:>13.0f}{ideal:>15.2f}{wall:>13.2f}{train:>13.2f}{ratios[-1]:>10.2f}{loops[-1]:>10.2f}")
    ratio = statistics.mean(ratios)
    spread = (max(ratios) - min(ratios)) if len(ratios) > 1 else float("nan")
    wall = statistics.mean(w for _, w, _ in rows)
    train = statistics.mean(t for _, _, t in rows)
    print(f"wall - train loop = {wall - train:.2f}s per trial (fork, model load, peft wrap, evaluation of "
          f"{space.proxy.eval_examples} examples, result)")
    print(f"noise: wall/bare ratio spread between repeats {spread:.2f} (machine shared, 2 CPU cores)")
    share = ask / wall
    print(f"sampler: botorch ask after {args.told} told trials: median {ask:.2f}s over {len(asks)} asks "
          f"({', '.join(f'{a:.2f}' for a in asks)}); share of trial wall time {share * 100:.1f}%")
    print(f"wall time {time.perf_counter() - started:.1f}s")
    print(f"SUMMARY overhead: runner wall/bare {ratio:.2f} (target <= 1.10: {'MET' if ratio <= 1.10 else 'MISSED'}; "
          f"loop alone {statistics.mean(loops):.2f}); botorch ask {share * 100:.1f}% of a trial at {args.told} trials "
          f"(target <= 5%: {'MET' if share <= 0.05 else 'MISSED'})" + (" (quick run)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
