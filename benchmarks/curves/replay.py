"""Replay search strategies against the learning-curve table and charge them the steps they train.

The table (``benchmarks/data/curves_<task>.jsonl``, made by ``build.py``) holds every
configuration of a quickstart-sized space trained for real to the target (150 steps), measured
every 15 steps. A strategy is replayed on it many times (search seeds) and charged the training
steps it trains: a trial stopped at a rung at step s costs s steps, a trial that goes on
costs only its extra steps, a trial at the target 150. No training happens here.

**The autopeft strategies run the product's own loop**: ``SearchSession.step()`` on a
throw-away SQLite store, with the space ``<task>.yaml`` plus the strategy's overrides, a
per-method learning-rate band (the table's bands), ``target: {steps: 150, seeds: 1}`` (the
table carries the seed means) and ``search.seed`` = the replay seed. Its runner
(:class:`TableRunner`) looks the trial's configuration up in the table and reports, at each
of the spec's rungs (or probes), what that run showed there: accuracy, macro-F1, validation
loss with its standard error (rows that have it), training loss, the number of validation
examples, and the loss of answering the validation split's label frequencies; the session's
own code decides (sampler, de-duplication, reference and start-up trials, rung placement,
``autopeft.search.fidelity``'s promotion).
A session costs ~0.2 s per trial in the store (SQLite on tmpfs) besides the sampler.

**Rung signal.** A strategy names what its rungs judge by (``accuracy``, ``macro_f1``,
``eval_loss``, ``train_loss``). When the product reads ``proxy.signal``, it is set and the
runner reports every signal as measured; before that, the session judges by the task metric
(accuracy, maximised), so the runner reports the chosen signal in its place, oriented so that
larger is better (a loss negated), and the product's promotion ranks by it.

**Nearest configuration.** The space's ``top_k`` takes every integer 2..6 and learning rates
are continuous, the table has ``top_k`` 2 and 6 and three rates per method: a configuration
the table lacks is answered by its nearest table configuration, same method, targets and
placement (the nearest ``top_k``, ties to the smaller), nearest rank, nearest learning rate
in log space (``table.Table.nearest``). The sampler is told the answer under its own
parameters, so it learns the table's landscape.

**Peers** (Syne Tune, neps) run as scripts in their own virtual environments
(``peer_synetune.py``, ``peer_neps.py``) on the same table through ``table.py`` and write the
same trace; every trace is scored by the same code.

**Figure of merit**: hypervolume at the target of the configurations a strategy has trained
to the target, against cumulative training steps. Objectives: validation accuracy at 150
steps (max; the mean of the table's seeds where it has two) and trainable parameters (min,
log10). Reference point: the table's worst accuracy and largest parameter count. HV is
normalised by that of the whole table's front: 1.0 = the true front.

Budget: ``--budget`` runs to the target's worth of steps (default 60 x 150 = 9,000 steps;
``auto``: a third of the table's configurations, 10 to 60 runs, for a table still being built).

Reported over ``--seeds`` search seeds (default 20): HV at 10, 25, 50 and 100 % of the budget
(mean ± sd), the steps each strategy needs to reach random search's mean final HV, and wins
at equal steps between every pair of strategies (paired by seed).

Usage:
    python benchmarks/curves/replay.py [--task tweet] [--seeds 20] [--budget 60] [--only a,b]
        [--seeds-for botorch=5,gp=5] [--jobs 1] [--traces PATH] [--quick]

``--quick`` (2 seeds, 10 runs' budget, random, random+halving, tpe and the peers) is the smoke
run; the GP-based samplers (botorch, gp, new) take ~1 s per proposal on 2 CPU cores, so a
full run gives them fewer seeds with ``--seeds-for``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from strategies import DEFAULT, STRATEGIES, AutopeftStrategy, PeerStrategy  # noqa: E402
from table import SIGNALS, Charger, Config, Table, Trace, hv_at, steps_to  # noqa: E402

DATA = HERE.parent / "data"
TARGET = 150
FRACTIONS = (0.10, 0.25, 0.50, 1.00)


# --------------------------------------------------------------------------- the space
def base_overrides(target: int = TARGET) -> list[str]:
    """The table's space as a search towards its target: per-method rate bands, one seed."""
    from build import BANDS

    bands = ", ".join(f"{m}: {{log: [{lo!r}, {hi!r}]}}" for m, (lo, hi) in BANDS.items())
    return [f"space.learning_rate={{{bands}}}", f"target={{steps: {target}, seeds: 1}}", "search.trials=100000"]


def product_reads_signal() -> bool:
    """Whether the product judges rungs by ``proxy.signal`` (else by the task metric)."""
    from autopeft.trials.spec import ProxySpec

    return "signal" in {f.name for f in dataclasses.fields(ProxySpec)}


def strategy_space(task: str, strategy: AutopeftStrategy, seed: int):
    """The ``SearchSpace`` a strategy searches at one seed (``SpaceError`` when the product refuses it)."""
    from autopeft.space import load_space

    overrides = base_overrides() + strategy.space_overrides(TARGET) + [f"search.seed={seed}"]
    if product_reads_signal():
        overrides.append(f"proxy.signal={strategy.signal}")
    return load_space(HERE / f"{task}.yaml", overrides)


def refusal(task: str, strategy: AutopeftStrategy) -> str | None:
    """Why the product cannot run ``strategy`` (None: it can)."""
    from autopeft.errors import AutoPeftError
    from autopeft.search.sampling.samplers import sampler_names

    if strategy.sampler not in sampler_names():
        return f"the product has no sampler {strategy.sampler!r} (it has {', '.join(sampler_names())})"
    try:
        strategy_space(task, strategy, 0)
    except AutoPeftError as e:
        return str(e)
    return None


# --------------------------------------------------------------------------- the runner
class TableRunner:
    """A session's runner that trains nothing: ``runner(spec, on_rung=None) -> TrialResult``.

    The trial's configuration is read from its record (the candidate the session decoded), the
    answer is the nearest table configuration, and every step reached is charged.
    """

    def __init__(self, table: Table, store, signal: str, orient: bool, prior_loss: float | None = None) -> None:
        self.table = table
        self.prior_loss = prior_loss  # the validation split's label entropy: the same for every run
        self.store = store
        self.signal = signal
        self.orient = orient  # report the signal in the task metric's place, larger = better
        self.charger = Charger()

    def config_of(self, spec) -> "tuple[Config, object]":
        cand = self.store.trial(spec.study, spec.trial).candidate
        row = self.table.nearest(cand.method, cand.rank, cand.targets.label, len(cand.layers), cand.learning_rate)
        return row.config, row

    def metrics(self, row, step: int, metric: str) -> dict:
        m = row.metrics_at(step)
        if self.prior_loss is not None:
            m["eval_prior_loss"] = self.prior_loss
        if self.orient and self.signal != metric:
            value = m[self.signal]
            m[metric] = -value if SIGNALS[self.signal] == "min" else value
        return m

    def __call__(self, spec, on_rung=None):
        from autopeft.trials.spec import TrialResult

        config, row = self.config_of(spec)
        steps = spec.proxy.steps
        for step in (spec.proxy.rungs if on_rung is not None else ()):
            if step >= steps:
                continue
            self.charger.reach(spec.trial, config, step)
            m = self.metrics(row, step, spec.metric)
            if not on_rung(step, m):
                return TrialResult("pruned", metrics=m, trainable_params=row.trainable_params,
                                   curve=[list(c) for c in row.curve if c[0] <= step], extras={"fidelity": step})
        self.charger.reach(spec.trial, config, steps)
        return TrialResult("complete", metrics=row.metrics_at(steps), trainable_params=row.trainable_params,
                           curve=[list(c) for c in row.curve if c[0] <= steps])


def replay_autopeft(task: str, strategy: AutopeftStrategy, prep, table: Table, seed: int, budget: int) -> Trace:
    """One search of ``strategy`` at search seed ``seed`` until ``budget`` steps are trained."""
    from autopeft.search.session import SearchSession
    from autopeft.store import Store

    space = strategy_space(task, strategy, seed)
    prep = dataclasses.replace(prep, space=space)
    folder = Path(tempfile.mkdtemp(prefix="curves-replay-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    try:
        store = Store(f"sqlite:///{folder / 'replay.db'}")
        runner = TableRunner(table, store, strategy.signal, orient=not product_reads_signal(),
                             prior_loss=prior_loss(prep))
        session = SearchSession(prep, store, runner=runner)
        try:
            while runner.charger.spent < budget and not session.exhausted:
                if session.step() is None:
                    break
        finally:
            session.ledger.close()
            if hasattr(store, "close"):
                store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Trace(strategy.name, seed, budget, tuple(runner.charger.events))


_PREP = None


@functools.lru_cache(maxsize=4)
def _prior_loss(path: str) -> float | None:
    import math

    try:
        from autopeft.trials.data import load_split

        labels = load_split(path)["eval"]["labels"].tolist()
    except Exception:  # noqa: BLE001 - an older product or no data: trials then report none
        return None
    counts = [labels.count(c) for c in set(labels)]
    return -sum(c / len(labels) * math.log(c / len(labels)) for c in counts)


def prior_loss(prep) -> float | None:
    """The loss of answering the validation split's label frequencies (what a trial reports as
    ``eval_prior_loss``; the table's runs were evaluated on this same split)."""
    return _prior_loss(prep.data.path) if prep.data is not None else None


def _prepared(task: str):
    global _PREP
    if _PREP is None:
        import logging
        import warnings

        from autopeft.search.prepare import prepare_search
        from autopeft.space import load_space

        warnings.filterwarnings("ignore")
        logging.getLogger("autopeft").setLevel(logging.WARNING)
        _PREP = prepare_search(load_space(HERE / f"{task}.yaml", base_overrides()))
    return _PREP


def _autopeft_job(task: str, table_path: str, name: str, seed: int, budget: int) -> tuple[dict, float]:
    import torch

    torch.set_num_threads(1)  # one job per core: the GP fits of two jobs must not fight for both
    table = Table.load(table_path, TARGET)
    prep = _prepared(task)  # once per process: not a cost of the strategy
    t0 = time.perf_counter()
    trace = replay_autopeft(task, STRATEGIES[name], prep, table, seed, budget)
    return trace.to_json(), time.perf_counter() - t0


def replay_peer(strategy: PeerStrategy, table_path: Path, seeds: list[int], budget: int, out: Path,
                timeout: float) -> tuple[list[Trace], str | None]:
    """Run a peer's script in its environment; its traces, or why there are none."""
    python = strategy.interpreter()
    if not Path(python).exists():
        return [], f"no interpreter at {python} (make it: {strategy.install})"
    cmd = [python, str(HERE / strategy.script), "--table", str(table_path), "--seeds", ",".join(map(str, seeds)),
           "--budget", str(budget), "--target", str(TARGET), "--out", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return [], f"exit {proc.returncode}: {tail}"
    return [Trace.from_json(t) for t in json.loads(out.read_text())], None


# --------------------------------------------------------------------------- scoring
def mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.3f} ± {sd:.3f}"


def report(table: Table, traces: dict[str, list[Trace]], budget: int, times: dict[str, float]) -> list[str]:
    """The tables of a replay, as lines; the last is the SUMMARY line."""
    lines = []
    curves = {name: {t.seed: table.hv_curve(t) for t in ts} for name, ts in traces.items()}
    marks = [int(round(f * budget)) for f in FRACTIONS]
    lines.append(f"HV at the target (normalised: 1.0 = the table's front), mean ± sd over seeds, "
                 f"at steps trained ({', '.join(f'{int(f * 100)} %' for f in FRACTIONS)} of {budget:,}):")
    head = f"{'strategy':<16} {'seeds':>5} " + " ".join(f"{'HV@' + format(m, ','):>15}" for m in marks) \
        + f" {'trials':>7} {'at target':>9} {'s/seed':>7}"
    lines.append(head)
    finals: dict[str, dict[int, float]] = {}
    for name, by_seed in curves.items():
        cols = [mean_sd([hv_at(c, m) for c in by_seed.values()]) for m in marks]
        finals[name] = {s: hv_at(c, budget) for s, c in by_seed.items()}
        started = statistics.fmean(len({e.trial for e in t.events if e.spent <= budget}) for t in traces[name])
        reached = statistics.fmean(len([e for e in t.events if e.step >= TARGET and e.spent <= budget])
                                   for t in traces[name])
        per = times.get(name, 0.0) / max(1, len(by_seed))
        lines.append(f"{name:<16} {len(by_seed):>5} " + " ".join(f"{c:>15}" for c in cols)
                     + f" {started:>7.1f} {reached:>9.1f} {per:>7.1f}")
    level = statistics.fmean(finals["random"].values()) if finals.get("random") else None
    reach: dict[str, str] = {}
    if level is not None:
        lines.append("")
        lines.append(f"steps to reach random search's mean final HV ({level:.3f}): median over the seeds that "
                     "reached it, and how many did")
        for name, by_seed in curves.items():
            got = [steps_to(c, level) for c in by_seed.values()]
            done = sorted(g for g in got if g is not None)
            med = f"{statistics.median(done):,.0f}" if done else "never"
            reach[name] = med
            lines.append(f"{name:<16} {med:>8} steps  ({len(done)}/{len(got)} seeds)")
    names = list(curves)
    if len(names) > 1:
        lines.append("")
        lines.append("wins-ties-losses at equal steps, paired by seed (row vs column), at "
                     + ", ".join(f"{int(f * 100)} %" for f in FRACTIONS[1:]) + " of the budget:")
        lines.append(f"{'':<16} " + " ".join(f"{n:>22}" for n in names[1:]))
        for i, a in enumerate(names[:-1]):
            cells = []
            for j, b in enumerate(names[1:], start=1):
                if j <= i:
                    cells.append(f"{'':>22}")
                    continue
                parts = []
                for m in marks[1:]:
                    w = t = lo = 0
                    for s in set(curves[a]) & set(curves[b]):
                        x, y = hv_at(curves[a][s], m), hv_at(curves[b][s], m)
                        w, t, lo = (w + 1, t, lo) if x > y + 1e-9 else (w, t, lo + 1) if y > x + 1e-9 else (w, t + 1, lo)
                    parts.append(f"{w}-{t}-{lo}")
                cells.append(f"{' '.join(parts):>22}")
            lines.append(f"{a:<16} " + " ".join(cells))
    goals = goal_lines(curves, budget, level) if NEW in curves and level is not None else []
    if goals:
        lines.append("")
        lines.extend(f"goal {label}: {text}: {'met' if met else 'not met'}" for label, text, met in goals)
    best = max(finals, key=lambda n: statistics.fmean(finals[n].values()) if finals[n] else 0.0) if finals else "-"
    summary = "; ".join(f"{n} {statistics.fmean(v.values()):.3f}" for n, v in finals.items() if v)
    lines.append("")
    met = ("; goals: " + ", ".join(f"{label} {'met' if ok else 'not met'}" for label, _, ok in goals)) if goals else ""
    lines.append(f"SUMMARY curves/replay: HV@{budget:,} steps (mean over seeds; table {table.runs} runs, "
                 f"{len(table.rows)} configurations): {summary}; best {best}"
                 + ("; steps to random's final HV: " + ", ".join(f"{n} {v}" for n, v in reach.items()) if reach else "")
                 + met)
    return lines


#: The strategy the goals are about, and the rivals it must beat at equal steps.
NEW = "new"
RIVALS = ("random+halving", "synetune-moasha", "neps")
WINS_NEEDED = 0.75  # 15 of 20 seeds


def goal_lines(curves: dict, budget: int, level: float) -> list[tuple[str, str, bool]]:
    """The benchmark's goals for the new search, each ``(label, what was measured, met)``:
    it reaches random search's mean final HV within a third of the budget (in the median seed),
    and at the budget's end it beats each rival in at least 3/4 of the seeds (paired by seed)."""
    out = []
    got = sorted(g for g in (steps_to(c, level) for c in curves[NEW].values()) if g is not None)
    n = len(curves[NEW])
    third = budget / 3
    median = statistics.median(got) if len(got) * 2 > n else None  # reached in most seeds, else never
    out.append(("A", f"{NEW} reaches random's final HV ({level:.3f}) in <= 1/3 of the budget ({third:,.0f} steps): "
                     f"median {'never' if median is None else format(median, ',.0f')} over {n} seeds, "
                     f"{sum(g <= third for g in got)}/{n} seeds within it", median is not None and median <= third))
    for rival in RIVALS:
        if rival not in curves:
            out.append((f"B vs {rival}", "not replayed", False))
            continue
        common = sorted(set(curves[NEW]) & set(curves[rival]))
        wins = sum(hv_at(curves[NEW][s], budget) > hv_at(curves[rival][s], budget) + 1e-9 for s in common)
        need = WINS_NEEDED * len(common)
        out.append((f"B vs {rival}", f"{NEW} has the higher HV at {budget:,} steps in {wins}/{len(common)} seeds "
                                     f"(needed {need:.0f})", bool(common) and wins >= need))
    return out


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("tweet", "bbc"), default="tweet")
    ap.add_argument("--table", default=None, help="default: benchmarks/data/curves_<task>.jsonl")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", default="60",
                    help="in runs to the target: N x 150 steps; 'auto': a third of the table's configurations, 10..60")
    ap.add_argument("--only", default=None, help="comma-separated strategies (default: all registered)")
    ap.add_argument("--seeds-for", default="", help="fewer seeds for some, e.g. botorch=5,gp=5")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the autopeft replays")
    ap.add_argument("--peer-timeout", type=float, default=3600.0)
    ap.add_argument("--traces", default=None, help="write every trace here (JSON)")
    ap.add_argument("--quick", action="store_true",
                    help="the smoke run: 2 seeds, budget 10 runs, no GP-based sampler (their fits take minutes)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.budget = 2, "10"
        if args.only is None:
            args.only = "random,random+halving,tpe,synetune-moasha,neps"
    started = time.perf_counter()
    table_path = Path(args.table or DATA / f"curves_{args.task}.jsonl")
    if not table_path.exists():
        print(f"no table at {table_path}: build it first (benchmarks/curves/build.py --task {args.task})")
        return 2
    table = Table.load(table_path, TARGET)
    runs = min(60, max(10, len(table.rows) // 3)) if args.budget == "auto" else int(args.budget)
    budget = runs * TARGET
    names = [n.strip() for n in args.only.split(",")] if args.only else list(DEFAULT)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        ap.error(f"unknown strategies {unknown}; registered: {', '.join(STRATEGIES)}")
    seeds_for = {k: int(v) for k, v in (kv.split("=") for kv in args.seeds_for.split(",") if kv)}
    print(f"table {table_path.name}: {table.runs} runs, {len(table.rows)} configurations "
          f"({sum(r.seeds > 1 for r in table.rows.values())} with 2 seeds); front HV 1.0 = {table.front_hv:.4f} "
          f"(reference: accuracy {table.worst_accuracy:.3f}, {table.largest:,} parameters)")
    print(f"budget {budget:,} steps ({runs} runs to the target of {TARGET}); seeds {args.seeds}; "
          f"2 CPU cores; rung signal via {'proxy.signal' if product_reads_signal() else 'the task metric (oriented)'}",
          flush=True)

    traces: dict[str, list[Trace]] = {}
    times: dict[str, float] = {}  # seconds per strategy: the sum over its seeds' replays
    ours: dict[str, list[int]] = {}
    for name in names:
        strategy = STRATEGIES[name]
        seeds = list(range(seeds_for.get(name, args.seeds)))
        why = refusal(args.task, strategy) if isinstance(strategy, AutopeftStrategy) else None
        if why:
            print(f"{name}: skipped: {why}", flush=True)
        elif isinstance(strategy, AutopeftStrategy):
            ours[name] = seeds
    # The product's strategies first, all (strategy, seed) replays in one pool of --jobs processes.
    for (name, trace), seconds in run_autopeft(args.task, table_path, ours, budget, args.jobs):
        traces.setdefault(name, []).append(trace)
        times[name] = times.get(name, 0.0) + seconds
    for name in ours:
        print(f"{name}: {len(traces.get(name, []))} seeds, {times.get(name, 0.0):.0f} s", flush=True)
    for name in names:
        strategy = STRATEGIES[name]
        if not isinstance(strategy, PeerStrategy):
            continue
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            got, why = replay_peer(strategy, table_path, list(range(seeds_for.get(name, args.seeds))), budget,
                                   Path(tmp) / "trace.json", args.peer_timeout)
        if why:
            print(f"{name}: skipped: {why}", flush=True)
            continue
        traces[name] = got
        times[name] = time.perf_counter() - t0
        print(f"{name}: {len(got)} seeds, {times[name]:.0f} s", flush=True)
    traces = {n: sorted(traces[n], key=lambda t: t.seed) for n in names if n in traces}
    if not traces:
        print("SUMMARY curves/replay: no strategy ran")
        return 1
    if args.traces:
        Path(args.traces).write_text(json.dumps({n: [t.to_json() for t in ts] for n, ts in traces.items()}))
    lines = report(table, traces, budget, times)
    print()
    print("\n".join(lines[:-1]))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(lines[-1])
    return 0


def run_autopeft(task: str, table_path: Path, seeds: dict[str, list[int]], budget: int, jobs: int):
    """Yield ``((strategy, trace), seconds)`` of every (strategy, seed) replay, in ``jobs`` processes."""
    # Later registrations first: the newest strategies are the slowest (GP fits), so the pool's tail is short.
    work = [(name, s) for name, ss in reversed(list(seeds.items())) for s in ss]
    if jobs <= 1:
        table = Table.load(table_path, TARGET)
        prep = _prepared(task) if work else None
        for name, s in work:
            t0 = time.perf_counter()
            trace = replay_autopeft(task, STRATEGIES[name], prep, table, s, budget)
            yield (name, trace), time.perf_counter() - t0
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_autopeft_job, task, str(table_path), name, s, budget) for name, s in work]
        for (name, _), future in zip(work, futures):
            trace, seconds = future.result()
            yield (name, Trace.from_json(trace)), seconds


if __name__ == "__main__":
    sys.exit(main())
