"""Multi-fidelity: trials per hour and final hypervolume with vs without ``proxy.rungs``, same budget.

Two arms of the same search (``search_spaces/quickstart.yaml``: MiniLM-L6 on tweet
sentiment, LoRA / IA3 / AdaLoRA, botorch), run through the product's own loop
(``autopeft.search.loop.run_search``, the code behind ``autopeft search``), each into its
own SQLite file under a temporary directory:

* ``plain``: every trial trains ``proxy.steps`` (S) steps;
* ``rungs``: ``proxy.rungs`` (default ``[S/3]``) and ``proxy.eta`` (default 3): each trial
  is evaluated at the rung and only the best 1/eta of the trials at that rung (by
  non-dominated sorting, ``autopeft.search.fidelity``) train on to S; the others are
  recorded as ``pruned``.

Same budget = the same number of training steps, ``--budget-trials`` x S (the plain arm
runs exactly that many full trials). Steps, not seconds: on a shared machine the same
trial can take twice as long a minute later, and a step count is what a search spends
whatever the load. A trial costs the steps it actually trained: S when complete, its
rung when pruned, the last step of its curve when failed, nothing when infeasible (never
trained). Rung evaluations are not steps; they show up in the wall time instead.

How the budget is enforced. ``run_search`` stops on a trial count only (``search.trials``;
pruned trials count), and there is no step budget in the product. Rather than add one to
the loop (being reworked elsewhere), the benchmark drives it: one trained trial per call,
``run_search(prep, store, trials=k + 1, sampler=sampler)`` resuming the same study, until
the arm has spent the budget. The sampler object is created once per arm and passed to
every call: a fresh seeded sampler per call would restart its random stream and propose
the start-up trials' points again (optuna's ``RandomSampler(seed)`` starts over; a real
resume of ``autopeft search`` during the start-up trials has the same effect). A new trial
is started while the arm has spent less than the budget and at least the cheapest
trial (the first rung, or S) still fits. The last trial may cross the budget (promoted past
its rung with fewer than S steps left): it runs, counts in the trial rate, but a result
counts only if the arm had spent at most the budget when that trial ended.

Hypervolume. Accuracy (max) x log10 trainable parameters (min), one fixed box for both
arms and every seed, taken from the space, not from the results: reference point =
(majority-class accuracy of the validation split, the largest trainable-parameter count
the space allows within its budget); ideal = (accuracy 1, the smallest count the space
allows). Normalised: 1 = the whole box. Only complete (full-fidelity) trials inside the
budget count: a pruned trial's accuracy is at fewer steps and is not a result (the product
keeps them off the front for the same reason). The volume is
``autopeft.search.analysis.hypervolume``'s exact computation (optuna's WFG). Accuracy and parameter
counts are read from each record's metrics and ``trainable_params``, not from the objective
values told to optuna (whose scale may change).

Noise. ``--seeds`` replicates of each arm; a replicate's seed is ``search.seed`` (the
sampler's) and both arms of a replicate use the same one, so they start from the same
random candidates (paired). ``proxy.seed`` stays the space's: the same data split for
every run keeps one box and one majority class. Arms run interleaved (seed 0 plain, seed
0 rungs, seed 1 plain, ...) so that load on the shared machine hits both alike. Printed:
mean ± sd per arm, the paired difference (rungs - plain) with its sd, and each arm's
seed-to-seed spread (max - min) beside it.

Shared caches. Before any timed run the frozen-prefix cache (``proxy.prefix_cache``, on
in the quickstart) is filled for every placement the space can produce, and the trial
forkserver is started (a one-trial warm-up search); otherwise the first arm to run would
pay both and the second arm would look faster.

Targets : the rungs arm runs more trials per hour than the plain arm (MET when it
does in every seed) and reaches an equal or better final hypervolume at the same step
budget (MET when the mean paired difference is >= 0; a miss says whether it lies within
the seed-to-seed spread). Trials per hour = trained trials (complete + pruned + failed) /
the arm's wall seconds (sampler, store and trial processes included, set-up excluded).
Wall seconds on a shared machine move with whatever else runs, so each run's CPU seconds
(this process + its trial processes) and trials per CPU-hour are printed beside them: the
same comparison, robust to the load.

Usage:
    python benchmarks/multi_fidelity.py [--seeds 2] [--budget-trials 8] [--rungs 10] [--eta 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
#: --quick: a tiny proxy (the space's model, data and sampler; few examples and steps).
QUICK = ("proxy.train_examples=64", "proxy.eval_examples=48", "proxy.max_length=32", "proxy.steps=6",
         "proxy.log_every=2")


@dataclass
class Run:
    """One arm at one seed."""

    arm: str
    seed: int
    budget: int
    records: list = field(default_factory=list)
    wall: float = 0.0
    cpu: float = float("nan")
    spent: int = 0
    box: "Box | None" = None

    @property
    def trained(self) -> list:
        return [r for r in self.records if r.status in ("complete", "pruned", "failed")]

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)

    def in_budget(self, full_steps: int) -> list:
        """Complete trials that ended with the arm's spend still inside the budget."""
        out, spent = [], 0
        for r in sorted(self.records, key=lambda r: r.number):
            spent += trial_steps(r, full_steps)
            if r.status == "complete" and spent <= self.budget:
                out.append(r)
        return out

    def per_hour(self, n: int) -> float:
        return n / self.wall * 3600 if self.wall > 0 else float("nan")

    def per_cpu_hour(self, n: int) -> float:
        return n / self.cpu * 3600 if self.cpu > 0 else float("nan")


def trial_steps(record, full_steps: int) -> int:
    """Training steps a trial spent: S complete, its rung pruned, its curve's end failed, 0 untrained."""
    if record.status == "complete":
        return full_steps
    if record.status == "pruned":
        fidelity = record.extras.get("fidelity")
        if fidelity is None and record.extras.get("rungs"):
            fidelity = record.extras["rungs"][-1][0]
        return int(fidelity or 0)
    if record.status == "failed" and record.curve:
        return int(max(step for step, _ in record.curve))
    return 0


class Box:
    """The fixed hypervolume box: accuracy (max) x log10 trainable parameters (min)."""

    def __init__(self, majority: float, low: int, high: int) -> None:
        self.majority, self.low, self.high = majority, low, high
        self.reference = np.array([-majority, math.log10(high)])
        self.area = (1.0 - majority) * (math.log10(high) - math.log10(low))

    def hv(self, records) -> float:
        from autopeft.search.analysis.hypervolume import _compute

        if not records:
            return 0.0
        losses = np.array([[-float(r.metrics["accuracy"]), math.log10(r.trainable_params)] for r in records])
        return _compute(losses, self.reference) / self.area


def cpu_seconds() -> float:
    """CPU seconds of this process plus every reaped trial process so far.

    Trial processes are children of multiprocessing's forkserver (``autopeft.trials.executor``), so
    their CPU shows up in the forkserver's ``cutime + cstime`` once it reaps them (as in
    ``overhead.py``). NaN when the forkserver is not running.
    """
    import multiprocessing.forkserver as fs
    import os

    pid = getattr(fs._forkserver, "_forkserver_pid", None)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return float("nan")
    return time.process_time() + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def majority_accuracy(data_path: str) -> float:
    from safetensors.numpy import load_file

    labels = load_file(data_path)["eval.labels"]
    return float(np.bincount(labels.astype(int)).max() / len(labels))


def warm_up(prep, space_path: str, overrides: tuple, workdir: Path) -> float:
    """Fill the frozen-prefix cache for every placement and start the trial forkserver."""

    from autopeft.search.loop import run_search
    from autopeft.space import load_space
    from autopeft.store import Store
    from autopeft.trials.data import load_split
    from autopeft.trials.model import load_base_model
    from autopeft.trials.prefix_cache import cache_path, prefix_states

    t0 = time.perf_counter()
    if prep.space.proxy.prefix_cache:
        model = load_base_model(prep.model.location, prep.space.task.type, prep.data.num_labels,
                                trust_remote_code=prep.model.trust_remote_code, revision=prep.model.revision)
        splits = load_split(prep.data.path)  # the trial's own reader
        splits.pop("test", None)  # trials never read it, nor cache states for it
        for layer in range(1, prep.arch.num_layers):
            prefix_states(model, prep.arch.layers_path, layer, splits,
                          Path(cache_path(prep.model.location, prep.data.path, layer)))
        del model
    from autopeft.search.prepare import prepare_search

    warm = load_space(space_path, (*overrides, "study=warm-up", "proxy.steps=1", "proxy.rungs=[]",
                                   "search.sampler=random", "search.trials=1"))
    run_search(prepare_search(warm), Store(f"sqlite:///{workdir / 'warm-up.db'}"))
    return time.perf_counter() - t0


class Progress:
    """``SearchEvents``: one line per finished trial."""

    def __init__(self, run: Run, full_steps: int, t0: float) -> None:
        self.run, self.full_steps, self.t0 = run, full_steps, t0

    def started(self, study, done, target): ...

    def trial_started(self, number, candidate): ...

    def trial_finished(self, record, records):
        spent = sum(trial_steps(r, self.full_steps) for r in records)
        acc = record.metrics.get("accuracy")
        acc = f"acc {acc:.3f}" if acc is not None else (record.error or "")[:40]
        params = f"{record.trainable_params:,}" if record.trainable_params else "-"
        print(f"    {self.run.arm:<6} seed {self.run.seed} trial {record.number:>2} {record.status:<10} {acc:<12} "
              f"params {params:>9}  steps {trial_steps(record, self.full_steps):>3}  spent {spent}/{self.run.budget}"
              f"  t {time.perf_counter() - self.t0:6.1f}s", flush=True)


def product_sampler(make_sampler, space, prep):
    """The sampler ``run_search`` would make itself (``make_sampler(search, encoding)`` since
    the sampler de-duplicates configurations; ``make_sampler(search)`` before that)."""
    import inspect

    if len(inspect.signature(make_sampler).parameters) > 1:
        return make_sampler(space.search, prep.encoding)
    return make_sampler(space.search)


def run_arm(space_path: str, overrides: tuple, run: Run, full_steps: int, cheapest: int, workdir: Path) -> Run:
    """Start trials one at a time (resuming the same study) until ``run.budget`` steps are spent."""
    from autopeft.search.loop import run_search, trained_count
    from autopeft.search.prepare import prepare_search
    from autopeft.search.sampling.samplers import make_sampler
    from autopeft.space import load_space
    from autopeft.store import Store

    space = load_space(space_path, overrides)
    prep = prepare_search(space)
    store = Store(f"sqlite:///{workdir / f'{run.arm}-seed{run.seed}.db'}")
    sampler = product_sampler(make_sampler, space, prep)
    c0, t0 = cpu_seconds(), time.perf_counter()
    events = Progress(run, full_steps, t0)
    trained = 0
    while run.spent < run.budget and run.budget - run.spent >= cheapest:
        outcome = run_search(prep, store, trials=trained + 1, sampler=sampler, events=events)
        run.records = outcome.records
        run.spent = sum(trial_steps(r, full_steps) for r in run.records)
        now = trained_count(run.records)
        if now == trained or outcome.interrupted:  # nothing trainable proposed (or Ctrl-C): stop
            break
        trained = now
    run.wall = time.perf_counter() - t0
    time.sleep(0.5)  # the forkserver reaps the last trial process asynchronously
    run.cpu = cpu_seconds() - c0
    return run


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def fmt(xs: list[float], digits: int) -> str:
    m, s = mean_sd(xs)
    return f"{m:.{digits}f}±{s:.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(QUICKSTART))
    ap.add_argument("--seeds", type=int, default=2, help="replicates per arm (search.seed 0..N-1)")
    ap.add_argument("--budget-trials", type=int, default=8, help="budget = this many full trials' steps")
    ap.add_argument("--steps", type=int, default=None, help="full-fidelity steps S (default: the space's)")
    ap.add_argument("--rungs", default=None, help="comma-separated rung steps (default: S/3)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="keep the SQLite files here (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="tiny proxy: 6 steps, rung 2, 64/48 examples, budget 3 trials")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    base = tuple(QUICK) if args.quick else ()
    if args.quick:
        args.budget_trials = min(args.budget_trials, 3)
    if args.steps:
        base += (f"proxy.steps={args.steps}",)
    space = load_space(args.space, base)
    steps = space.proxy.steps
    rungs = [int(x) for x in args.rungs.split(",")] if args.rungs else [max(1, steps // 3)]
    budget = args.budget_trials * steps
    prep = prepare_search(space)
    box = Box(majority_accuracy(prep.data.path), prep.params.low, prep.params.feasible_high)
    arms = {
        "plain": ("proxy.rungs=[]",),
        "rungs": (f"proxy.rungs=[{', '.join(map(str, rungs))}]", f"proxy.eta={args.eta}"),
    }
    cheapest = {"plain": steps, "rungs": rungs[0]}
    p = space.proxy
    print(f"Multi-fidelity on {args.space}: {space.model.name} + {space.task.dataset}, sampler {space.search.sampler} "
          f"({space.search.startup_trials} start-up); proxy {steps} steps x batch {p.batch_size} x max_length "
          f"{p.max_length}, {p.train_examples}/{p.eval_examples} examples", flush=True)
    print(f"budget {budget} training steps per run (= {args.budget_trials} full trials); rungs arm: rungs {rungs} "
          f"eta {args.eta}; seeds {list(range(args.seeds))}", flush=True)

    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="multi_fidelity-")
        workdir = Path(tmp.name)
    print(f"warm-up (prefix cache for {prep.arch.num_layers - 1} placements, trial forkserver): "
          f"{warm_up(prep, args.space, base, workdir):.1f}s", flush=True)

    runs: list[Run] = []
    for seed in range(args.seeds):
        for arm, extra in arms.items():
            run = Run(arm, seed, budget, box=box)
            print(f"  {arm} seed {seed} ...", flush=True)
            overrides = (*base, *extra, f"search.seed={seed}", f"study=mf-{arm}-{seed}")
            runs.append(run_arm(args.space, overrides, run, steps, cheapest[arm], workdir))
    if tmp is not None:
        tmp.cleanup()

    print()
    print(f"Multi-fidelity vs plain at the same step budget ({budget} steps = {args.budget_trials} x {steps}-step "
          f"trials), {args.space}")
    print(f"hypervolume box: accuracy {box.majority:.3f} (majority class of the {p.eval_examples} validation examples) "
          f".. 1; trainable params {box.low:,} .. {box.high:,} (log10; the space's range within its budget); "
          f"1 = the whole box")
    print("trials = trained (complete + pruned + failed); full = complete; in budget = complete trials that ended "
          "inside the budget (the only ones in HV)")
    header = (f"{'arm':<7}{'seed':>5}{'trials':>8}{'full':>6}{'pruned':>8}{'infeas':>8}{'failed':>8}{'steps':>7}"
              f"{'in budget':>11}{'wall s':>9}{'trials/h':>10}{'full/h':>8}{'CPU s':>8}{'/CPU-h':>8}{'best acc':>10}"
              f"{'HV':>8}")
    print(header)
    print("-" * len(header))
    for r in runs:
        counted = r.in_budget(steps)
        best = max((float(x.metrics["accuracy"]) for x in counted), default=float("nan"))
        print(f"{r.arm:<7}{r.seed:>5}{len(r.trained):>8}{r.count('complete'):>6}{r.count('pruned'):>8}"
              f"{r.count('infeasible'):>8}{r.count('failed'):>8}{r.spent:>7}{len(counted):>11}{r.wall:>9.1f}"
              f"{r.per_hour(len(r.trained)):>10.1f}{r.per_hour(r.count('complete')):>8.1f}{r.cpu:>8.0f}"
              f"{r.per_cpu_hour(len(r.trained)):>8.1f}{best:>10.3f}"
              f"{box.hv(counted):>8.4f}")
    print("-" * len(header))
    stats = {}
    for arm in arms:
        rs = [r for r in runs if r.arm == arm]
        stats[arm] = {
            "trials": [len(r.trained) for r in rs],
            "wall": [r.wall for r in rs],
            "tph": [r.per_hour(len(r.trained)) for r in rs],
            "fph": [r.per_hour(r.count("complete")) for r in rs],
            "tpc": [r.per_cpu_hour(len(r.trained)) for r in rs],
            "hv": [box.hv(r.in_budget(steps)) for r in rs],
        }
    print()
    header = (f"{'arm':<7}{'trials':>12}{'wall s':>12}{'trials/h':>14}{'full/h':>14}{'trials/CPU-h':>15}"
              f"{'final HV':>16}")
    print(header)
    print("-" * len(header))
    for arm, s in stats.items():
        print(f"{arm:<7}{fmt(s['trials'], 1):>12}{fmt(s['wall'], 0):>12}{fmt(s['tph'], 1):>14}{fmt(s['fph'], 1):>14}"
              f"{fmt(s['tpc'], 1):>15}{fmt(s['hv'], 4):>16}")
    d_tph = [r - p for r, p in zip(stats["rungs"]["tph"], stats["plain"]["tph"])]
    d_hv = [r - p for r, p in zip(stats["rungs"]["hv"], stats["plain"]["hv"])]
    spread = {arm: (max(s["hv"]) - min(s["hv"]) if len(s["hv"]) > 1 else float("nan")) for arm, s in stats.items()}
    ratio = statistics.mean(stats["rungs"]["tph"]) / statistics.mean(stats["plain"]["tph"])
    ratio_cpu = statistics.mean(stats["rungs"]["tpc"]) / statistics.mean(stats["plain"]["tpc"])
    print("(mean ± sd over seeds)")
    print(f"rungs - plain, paired by seed: trials/h {fmt(d_tph, 1)} (x{ratio:.2f}; per CPU-hour x{ratio_cpu:.2f}); "
          f"HV {fmt(d_hv, 4)} "
          f"(per seed: {', '.join(f'{d:+.4f}' for d in d_hv)})")
    print(f"noise: HV seed-to-seed spread (max - min) plain {spread['plain']:.4f}, rungs {spread['rungs']:.4f}; "
          f"HV sd plain {mean_sd(stats['plain']['hv'])[1]:.4f}, rungs {mean_sd(stats['rungs']['hv'])[1]:.4f}")
    ok_rate = all(d > 0 for d in d_tph)
    mean_d_hv = statistics.mean(d_hv)
    ok_hv = mean_d_hv >= 0
    noise = max(spread.values()) if args.seeds > 1 else float("nan")
    hv_note = "" if ok_hv else (" (within the seed-to-seed spread)" if abs(mean_d_hv) <= noise else " (beyond the seed-to-seed spread)")
    print(f"wall time {time.perf_counter() - started:.1f}s")
    print(f"SUMMARY multi_fidelity: rungs {rungs} eta {args.eta} vs plain at {budget} steps, {args.seeds} seeds: "
          f"trials/h {statistics.mean(stats['rungs']['tph']):.0f} vs {statistics.mean(stats['plain']['tph']):.0f} "
          f"(x{ratio:.2f}, more in {'every' if ok_rate else 'not every'} seed; x{ratio_cpu:.2f} per CPU-hour) "
          f"[{'MET' if ok_rate else 'MISSED'}]; "
          f"final HV {fmt(stats['rungs']['hv'], 4)} vs {fmt(stats['plain']['hv'], 4)} (diff {mean_d_hv:+.4f}, "
          f"seed spread {noise:.4f}) [{'MET' if ok_hv else 'MISSED'}{hv_note}]"
          + (" (quick run: tiny proxy, not the benchmark's size)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
