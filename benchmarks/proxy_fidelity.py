"""Proxy fidelity: do short proxy fine-tunes rank configurations the way 10x longer training does?

``--configs`` configurations of the grid of ``benchmarks/tabular_space.yaml`` (LoRA / IA3 /
AdaLoRA, ranks, targets, top-k) on ``minilm-l6`` + ``tweet-sentiment``: first the points
the tabular benchmark trained at two seeds, then a fixed random sample. Each is trained
through our own code path (``Method.build`` -> ``TrialSpec`` ->
``autopeft.trials.executor.run_isolated``, one thread), with the space's data split, batch size,
max length and learning rate, at:

* the reference budget: ``--ref-steps`` optimiser steps (10x the main proxy);
* the main proxy: ``--proxy-steps`` steps, at seed 0 and seed 1 (the seed-1 run is the
  noise ceiling: how well the proxy agrees with *itself* across training seeds);
* the main proxy's steps at half the max length (a cheaper proxy setting);
* the tabular benchmark's own protocol (``proxy.steps`` of the space), read from its
  table at seeds 0 and 1, not retrained: how faithful is the table the samplers are
  scored on?

Only the budget differs between columns: same training pool, same validation split.
AdaLoRA's schedule scales with each run's steps. Kendall tau and Spearman rho (scipy)
between each column's accuracies and the reference's are printed, with the wall seconds
per trial and tau per trial-second (which proxy setting buys ranking fidelity cheapest).

Results are appended to ``benchmarks/data/proxy_fidelity.jsonl``; a rerun skips finished
runs (resumable).

Usage:
    python benchmarks/proxy_fidelity.py [--configs 16] [--proxy-steps 4] [--ref-steps 40] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE = HERE / "tabular_space.yaml"
OUT = HERE / "data" / "proxy_fidelity.jsonl"
TABLE = HERE / "data" / "tabular_tweet.jsonl"


def settings(proxy_steps: int, ref_steps: int, max_length: int, table_steps: int | None) -> list[dict]:
    """Every run per configuration, cheapest first. ``from_table`` runs are not trained here:
    they are the rows of the tabular benchmark (same data, batch, length and learning rate)."""
    out = [
        {"name": f"proxy {proxy_steps} steps, len {max_length // 2}", "steps": proxy_steps, "max_length": max_length // 2, "seed": 0},
        {"name": f"proxy {proxy_steps} steps", "steps": proxy_steps, "max_length": max_length, "seed": 0},
        {"name": f"proxy {proxy_steps} steps, seed 1", "steps": proxy_steps, "max_length": max_length, "seed": 1},
    ]
    if table_steps:
        out += [
            {"name": f"table {table_steps} steps", "steps": table_steps, "max_length": max_length, "seed": 0, "from_table": True},
            {"name": f"table {table_steps} steps, seed 1", "steps": table_steps, "max_length": max_length, "seed": 1, "from_table": True},
        ]
    out.append({"name": f"reference {ref_steps} steps", "steps": ref_steps, "max_length": max_length, "seed": 0, "reference": True})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(SPACE))
    ap.add_argument("--table", default=str(TABLE), help="tabular benchmark whose rows give the 'table' columns")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--proxy-steps", type=int, default=4)
    ap.add_argument("--ref-steps", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="3 configs, 2-step proxy, 20-step reference, tiny data, no table")
    args = ap.parse_args(argv)
    overrides: list[str] = []
    use_table = not args.quick
    if args.quick:
        args.configs, args.proxy_steps, args.ref_steps = 3, 2, 20
        overrides = ["proxy.batch_size=4", "proxy.max_length=16", "proxy.train_examples=120", "proxy.eval_examples=60"]
        if args.out == str(OUT):
            args.out = str(Path("/tmp") / f"proxy_fidelity_quick_{int(time.time())}.jsonl")
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    from scipy.stats import kendalltau, spearmanr

    from autopeft.methods import BuildContext, get_method
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.trials.executor import run_isolated
    from autopeft.search.prepare import trial_spec

    from make_table import grid_params, point_key, schedule

    base = load_space(args.space, overrides)
    proxy = base.proxy
    runs = settings(args.proxy_steps, args.ref_steps, proxy.max_length, proxy.steps if use_table else None)
    if args.quick:  # 3 configs x (proxy, proxy seed 1, reference): 9 tiny trials
        runs = [r for r in runs if ", len" not in r["name"]]
    preps = {}
    for length in sorted({r["max_length"] for r in runs}):
        preps[length] = prepare_search(load_space(args.space, overrides + [f"proxy.max_length={length}"]))
    prep = preps[proxy.max_length]
    grid = grid_params(prep.encoding)
    # The table's seed-repeated points (a fixed random sample of the grid): their 'table'
    # columns then exist at both seeds.
    repeated = [p for p, seed in schedule(grid, 8) if seed == 1]
    pool = repeated + [p for p in random.Random(1).sample(grid, len(grid)) if p not in repeated]
    configs = pool[: args.configs]

    table_rows = {}
    if use_table and Path(args.table).exists():
        for line in Path(args.table).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r["status"] == "complete":
                    table_rows[point_key(r["params"], r["seed"])] = r

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []

    def key(params, run):
        return json.dumps([params, run["steps"], run["max_length"], run["seed"], proxy.batch_size,
                           proxy.train_examples, proxy.eval_examples], sort_keys=True)

    done = {r["key"]: r for r in rows if r["status"] == "complete"}
    trained = [r for r in runs if not r.get("from_table")]
    total = len(trained) * len(configs)
    n = 0
    for run in trained:  # cheapest settings first: a partial file still has whole proxy columns
        p = preps[run["max_length"]]
        for params in configs:
            n += 1
            k = key(params, run)
            if k in done:
                continue
            cand = p.encoding.decode(params)
            method = get_method(cand.method)
            config = method.build(cand, BuildContext(p.arch, run["steps"], base_model=p.model.location))
            spec = trial_spec(p, cand, method.config_json(config), study="proxy-fidelity", trial=n,
                              steps=run["steps"], seed=run["seed"], log_every=max(1, run["steps"] // 5),
                              timeout=1800.0, threads=1)
            t0 = time.perf_counter()
            result = run_isolated(spec)
            row = {"key": k, "params": params, "run": run["name"], "steps": run["steps"],
                   "max_length": run["max_length"], "seed": run["seed"], "status": result.status,
                   "accuracy": result.metrics.get("accuracy"), "trainable_params": result.trainable_params,
                   "wall_time": time.perf_counter() - t0, "train_time": result.train_time, "error": result.error,
                   "candidate": cand.to_json()}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if result.status == "complete":
                done[k] = row
            print(f"[{n}/{total}] {run['name']}: {cand.method} r={cand.rank} {cand.targets.label} "
                  f"k={len(cand.layers)} acc={row['accuracy']} {row['wall_time']:.1f}s", flush=True)

    def column(run):
        if run.get("from_table"):
            return [table_rows.get(point_key(c, run["seed"])) for c in configs]
        return [done.get(key(c, run)) for c in configs]

    def agreement(a, b):
        pairs = [(x["accuracy"], y["accuracy"]) for x, y in zip(a, b)
                 if x and y and x.get("accuracy") is not None and y.get("accuracy") is not None]
        if len(pairs) < 3:
            return float("nan"), float("nan"), len(pairs), pairs
        x, y = zip(*pairs)
        return kendalltau(x, y).statistic, spearmanr(x, y).statistic, len(pairs), pairs

    ref_run = next(r for r in runs if r.get("reference"))
    ref = column(ref_run)
    print()
    print(f"Proxy fidelity: {len(configs)} configurations of {args.space} on {base.task.dataset}, batch "
          f"{proxy.batch_size}, learning rate {prep.encoding.decode(configs[0]).learning_rate:g}, "
          f"{proxy.train_examples} training / {proxy.eval_examples} validation examples; reference = "
          f"{ref_run['steps']} steps ({ref_run['steps'] // args.proxy_steps}x the main proxy's {args.proxy_steps})")
    header = f"{'setting (vs reference)':<30}{'n':>4}{'distinct':>9}{'Kendall tau':>13}{'Spearman rho':>14}{'s/trial':>9}{'tau per s':>11}"
    print(header)
    print("-" * len(header))
    summary = {}
    for run in runs:
        col = column(run)
        tau, rho, n_pairs, _ = agreement(col, ref)
        secs = [a["wall_time"] for a in col if a]
        mean_s = sum(secs) / len(secs) if secs else float("nan")
        summary[run["name"]] = (tau, rho, mean_s)
        label = run["name"] + (" (itself)" if run.get("reference") else "")
        distinct = len({round(a["accuracy"], 4) for a in col if a and a.get("accuracy") is not None})
        print(f"{label:<30}{n_pairs:>4}{distinct:>9}{tau:>13.3f}{rho:>14.3f}{mean_s:>9.1f}{tau / mean_s:>11.4f}")
    print("(distinct: different accuracy values in the column; a proxy that predicts the majority class for "
          "most configurations cannot rank them, whatever its tau)")
    print("(s/trial: wall seconds through run_isolated on the shared 2-core machine; 'table' rows were timed "
          "while the table was built)")
    ceilings = []
    for name in (f"proxy {args.proxy_steps} steps", f"table {proxy.steps} steps"):
        a = [r for r in runs if r["name"] == name]
        b = [r for r in runs if r["name"] == name + ", seed 1"]
        if not a or not b:
            continue
        tau, _, n_pairs, pairs = agreement(column(a[0]), column(b[0]))
        if n_pairs >= 3:
            diffs = [abs(p - q) for p, q in pairs]
            ceilings.append(f"{name}: tau {tau:.3f}")
            print(f"noise ceiling, {name} seed 0 vs seed 1: Kendall tau {tau:.3f}, |acc diff| mean "
                  f"{100 * sum(diffs) / len(diffs):.1f} pt, max {100 * max(diffs):.1f} pt (n={n_pairs})")
    proxies = {k: v for k, v in summary.items() if not k.startswith("reference") and "seed 1" not in k
               and v[0] == v[0] and v[2] > 0}
    best = max(proxies, key=lambda k: proxies[k][0] / proxies[k][2]) if proxies else "-"
    main_name = f"proxy {args.proxy_steps} steps"
    tau = summary[main_name][0]
    print(f"wall time {time.perf_counter() - started:.1f}s")
    print(f"SUMMARY proxy_fidelity: {main_name} vs {ref_run['steps']} steps: Kendall tau {tau:.3f} "
          f"(target >= 0.7: {'MET' if tau >= 0.7 else 'MISSED'}), Spearman rho {summary[main_name][1]:.3f}; "
          f"seed-to-seed {'; '.join(ceilings) or 'n/a'}; best tau per second: {best}"
          + (" (quick run)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
