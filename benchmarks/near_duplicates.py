"""Near-duplicates late in a search: how much of the budget re-probes one configuration?

Seen in practice: a user's 12-trial BoTorch study spent 8 of 12 trials on one method / targets /
layer placement at nearby learning rates. ``autopeft.search.sampling.dedup`` only rejects a proposal
whose learning rate is within 12 % of a tried one; a rate 20-50 % away is a new
configuration to it, but inside what a short, noisy proxy can tell apart.

For every trial from ``--from`` on (default: the one after the random start-up trials),
in trial order, this counts

* ``exact``: the same configuration as an earlier trial (``dedup.configuration_key``: the
  fields the method uses, learning rates on the 20-per-decade grid) — dedup should make it 0;
* ``near``: same method, targets and layer placement (and rank, when the method uses it) as
  an earlier trial, learning rate within a factor ``--lr-factor`` (default 1.5) of its;
* ``family``: same method, targets and placement as an earlier trial, any rank and learning
  rate (the user's "one method/targets/placement");
* ``front-near``: ``near`` to a trial that was on the Pareto front (feasible, complete) when
  this trial was asked — probing next to the front;

and the largest group of the counted trials sharing method/targets/placement.

Usage:
    python benchmarks/near_duplicates.py SPACE.yaml --storage sqlite:////tmp/x.db [--study NAME]
    python benchmarks/near_duplicates.py SPACE.yaml --storage sqlite:////tmp/x.db --run --set search.trials=20
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections import Counter


def family(c) -> tuple:
    """Method, targets and placement of a decoded candidate (what the user's report grouped by)."""
    from autopeft.methods import get_method

    uses = get_method(c.method).uses
    return (c.method, c.targets.label if "targets" in uses else None, c.layers if "layers" in uses else None)


def config(c) -> tuple:
    """``family`` plus the rank when the method uses it."""
    from autopeft.methods import get_method

    return family(c) + ((c.rank if "rank" in get_method(c.method).uses else None),)


def dominates(a, b, directions) -> bool:
    better = [(x >= y) if d == "max" else (x <= y) for x, y, d in zip(a, b, directions)]
    strictly = [(x > y) if d == "max" else (x < y) for x, y, d in zip(a, b, directions)]
    return all(better) and any(strictly)


def hv_at(trials, n: int, box: tuple[float, float, float, float]) -> float:
    """Normalised HV of the complete, feasible trials among the first ``n`` (accuracy max, log10 params min)
    in a fixed box (accuracy low, high, params low, high): the same box for every study compared."""
    import numpy as np

    from autopeft.search.analysis.hypervolume import _compute

    acc_lo, acc_hi, p_lo, p_hi = box
    pts = [t.values for t in trials[:n] if t.values is not None and t.state.name == "COMPLETE"
           and all(v <= 0 for v in (t.system_attrs.get("constraints") or [0]))]
    if not pts:
        return 0.0
    v = np.array(pts, float)  # told scale: accuracy, log10 params
    losses = np.column_stack([(acc_hi - v[:, 0]) / (acc_hi - acc_lo),
                              (v[:, 1] - math.log10(p_lo)) / (math.log10(p_hi) - math.log10(p_lo))])
    return _compute(np.clip(losses, 0, 1), np.ones(2))


def analyse(space_path: str, storage: str, study_name: str | None, start: int | None, lr_factor: float,
            box=(0.4, 0.7, 1e3, 1e6)) -> dict:
    import optuna
    from optuna.trial import TrialState

    from autopeft.search.sampling.dedup import configuration_key
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(space_path)
    encoding = prepare_search(space, with_data=False).encoding
    key = configuration_key(encoding)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        study_name = space.study if space.study in names else names[-1]
    study = optuna.load_study(study_name=study_name, storage=storage)
    directions = [o.direction if hasattr(o, "direction") else o[1] for o in space.objectives]
    trials = sorted((t for t in study.get_trials(deepcopy=False) if set(t.params) == set(encoding.distributions)),
                    key=lambda t: t.number)
    start = space.search.startup_trials if start is None else start  # 0-based trial number
    rows, counted = [], []
    window = math.log(lr_factor)
    for i, t in enumerate(trials):
        c = encoding.decode(t.params)
        earlier = trials[:i]
        dec = [encoding.decode(e.params) for e in earlier]
        exact = any(key(e.params) == key(t.params) for e in earlier)
        near_of = [e for e, d in zip(earlier, dec)
                   if config(d) == config(c) and abs(math.log(d.learning_rate / c.learning_rate)) <= window]
        fam = any(family(d) == family(c) for d in dec)
        # the front when this trial was asked: complete, feasible trials that finished before it
        done = [e for e in earlier if e.state == TrialState.COMPLETE and e.values is not None
                and all(v <= 0 for v in (e.system_attrs.get("constraints") or [0]))]
        front = [e for e in done if not any(dominates(o.values, e.values, directions) for o in done)]
        front_near = any(e in front for e in near_of)
        row = dict(number=t.number, method=c.method, rank=config(c)[-1] or "-", targets=c.targets.label,
                   top_k=len(c.layers),
                   lr=c.learning_rate, state=t.state.name,
                   acc=(t.values[0] if t.values else None), exact=exact, near=bool(near_of), family=fam,
                   front_near=front_near, counted=i >= start)
        rows.append(row)
        if i >= start:
            counted.append((row, family(c)))
    groups = Counter(f for _, f in counted)
    biggest = groups.most_common(1)[0] if groups else (None, 0)
    hv = {n: hv_at(trials, n, box) for n in (12, 20, len(trials)) if n <= len(trials)}
    return dict(study=study_name, rows=rows, n=len(counted), start=start, hv=hv, box=box,
                exact=sum(r["exact"] for r, _ in counted), near=sum(r["near"] for r, _ in counted),
                family=sum(r["family"] for r, _ in counted), front_near=sum(r["front_near"] for r, _ in counted),
                biggest=biggest, lr_factor=lr_factor)


def report(res: dict) -> str:
    lines = [f"study {res['study']}: trials from #{res['start']} counted ({res['n']} trials)",
             f"{'#':>3} {'method':<8}{'rank':>5} {'targets':<18}{'top_k':>6}{'lr':>10}{'acc':>8}  "
             f"exact near family front-near"]
    for r in res["rows"]:
        acc = f"{r['acc']:.3f}" if r["acc"] is not None else r["state"][:6]
        flags = "  ".join(("x" if r[k] else ".").center(w) for k, w in
                          (("exact", 5), ("near", 4), ("family", 6), ("front_near", 10)))
        mark = "" if r["counted"] else "   (start-up)"
        lines.append(f"{r['number']:>3} {r['method']:<8}{r['rank']:>5} {r['targets']:<18}{r['top_k']:>6}"
                     f"{r['lr']:>10.2e}{acc:>8}  {flags}{mark}")
    fam, size = res["biggest"]
    lines.append(f"largest method/targets/placement group among counted trials: {size} of {res['n']} {fam}")
    lines.append("normalised HV (accuracy {:g}..{:g}, params {:g}..{:g} log10, fixed box): ".format(*res["box"])
                 + ", ".join(f"HV@{n} {v:.4f}" for n, v in res["hv"].items()))
    last = max(res["hv"], default=0)
    lines.append(f"SUMMARY near_duplicates: {res['study']} trials #{res['start']}+ ({res['n']}): exact repeats "
                 f"{res['exact']}, near (same config, lr within x{res['lr_factor']:g}) {res['near']}, next to the "
                 f"then-front {res['front_near']}, same method/targets/placement as an earlier trial {res['family']}; "
                 f"largest group {size}/{res['n']}; HV@{last} {res['hv'].get(last, 0.0):.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space")
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", default=None)
    ap.add_argument("--from", dest="start", type=int, default=None,
                    help="first trial number counted (default: search.startup_trials)")
    ap.add_argument("--lr-factor", type=float, default=1.5)
    ap.add_argument("--run", action="store_true", help="run `autopeft search SPACE --storage ...` first")
    ap.add_argument("--set", action="append", default=[], help="passed to autopeft search (with --run)")
    args = ap.parse_args(argv)
    if args.run:
        cmd = [sys.executable, "-m", "autopeft", "search", args.space, "--storage", args.storage]
        for s in args.set:
            cmd += ["--set", s]
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    print(report(analyse(args.space, args.storage, args.study, args.start, args.lr_factor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
