"""Sampler quality on a tabular benchmark: hypervolume vs trials for botorch, gp, tpe, nsga2, random.

The table (``benchmarks/data/tabular_tweet.jsonl``, made by ``benchmarks/make_table.py``)
holds one real proxy fine-tune for every point of the grid in
``benchmarks/tabular_space.yaml``. Each sampler runs an optuna ask/tell loop over the very
``SpaceEncoding`` the grid was made from: ``study.ask()`` ->
``encoding.suggest(trial)`` (the search's only ``suggest_*`` call site) -> look the point
up in the table -> ``study.tell`` the table's accuracy and trainable parameters on the
scale ``autopeft search`` tells them (``autopeft.search.scales``: log10 parameters). The
sampler is ``make_sampler(..., encoding)``, as in a search: repeats of a configuration
already tried are redrawn (``autopeft.search.sampling.dedup``). No training happens here, so a
60-trial search costs only the samplers' own time.

Snapping. A suggestion is mapped to the nearest grid point before the lookup:
first the fields its method ignores are set to the grid's canonical value (IA3 has no
rank, so every IA3 suggestion with any rank index is the one IA3 row of the table with
those targets and that top-k), then, should the table lack that exact point (a failed or
not yet run trial), the nearest table row is taken under a distance where a categorical
mismatch (method, targets) costs 1 and an integer/ordinal dimension (rank index, top-k)
costs |difference| / its range. The sampler is told the table's objective values of the
snapped point under its own suggested parameters, so it learns the table's landscape.
Since this grid is the full cross product of the space's discrete dimensions, snapping
is an exact lookup for every complete row; only ignored fields are ever changed.

Hypervolume. Objectives: accuracy (max) and trainable parameters (min) on a log10 scale
(parameters span three orders of magnitude; on a linear scale every small adapter sits at
the same corner and the front reduces to accuracy alone). Both axes are normalised with
one fixed box for every sampler and seed: 0 = the table's ideal (best accuracy, fewest
parameters of any row), 1 = the reference point = the table's worst value of each
objective plus 10 % of its range (``autopeft.search.analysis.hypervolume.REFERENCE_MARGIN``).
The exact 2-D volume comes from ``autopeft.search.analysis.hypervolume`` (optuna's WFG). 1.0 would
be a single point at the ideal; the table's own best (all rows) is printed as "table".

Noise ceiling: the table's second-seed rows give the seed-to-seed accuracy spread of the
same protocol; it is printed beside the results, in accuracy points and as a share of
the normalised accuracy axis.

Usage:
    python benchmarks/sampler_quality.py [--seeds 5] [--trials 60] [--cap botorch=20] [--noise table|SD]
        [--start stratified|random] [--quick] [--png PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPACE = HERE / "tabular_space.yaml"
TABLE = HERE / "data" / "tabular_tweet.jsonl"
PNG = HERE / "data" / "sampler_quality.png"
SAMPLERS = ("botorch", "gp", "tpe", "nsga2", "random")
OBJECTIVES = (("accuracy", "max"), ("trainable_params", "min"))
CHECKPOINTS = (10, 20, 30, 40, 50, 60)


# --------------------------------------------------------------------------- the table
class Table:
    """The grid's rows (seed 0) keyed by their encoded parameters, with the repeats."""

    def __init__(self, path: Path, encoding) -> None:
        from autopeft.methods import get_method

        self.encoding = encoding
        self.get_method = get_method
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["status"] == "complete" and r["accuracy"] is not None]
        self.rows = {self.key(r["params"]): r for r in rows if r["seed"] == 0}
        repeats = {self.key(r["params"]): r for r in rows if r["seed"] == 1}
        self.pairs = [(self.rows[k]["accuracy"], r["accuracy"]) for k, r in repeats.items() if k in self.rows]
        if not self.rows:
            raise SystemExit(f"{path} has no complete rows: run benchmarks/make_table.py first")
        self.keys = list(self.rows)
        self.params = [self.rows[k]["params"] for k in self.keys]
        self.values = np.array([[self.rows[k]["accuracy"], self.rows[k]["trainable_params"]] for k in self.keys], float)

    def canonical(self, params: dict) -> dict:
        """``params`` with the fields its method ignores set to their first value."""
        params = dict(params)
        uses = self.get_method(self.encoding.decode(params).method).uses
        if "rank" in params and "rank" not in uses:
            params["rank"] = _first(self.encoding.distributions["rank"])
        return params

    def key(self, params: dict) -> str:
        return json.dumps(self.canonical(params), sort_keys=True)

    def snap(self, params: dict) -> int:
        """Index of the table row nearest to ``params`` (exact match first)."""
        key = self.key(params)
        if key in self.rows:
            return self.keys.index(key)
        p = self.canonical(params)
        return int(np.argmin([self._distance(p, q) for q in self.params]))

    def _distance(self, a: dict, b: dict) -> float:
        from optuna.distributions import CategoricalDistribution

        d = 0.0
        for name, dist in self.encoding.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                d += float(a[name] != b[name])
            else:
                d += abs(a[name] - b[name]) / max(1, dist.high - dist.low)
        return d


def _first(dist):
    from optuna.distributions import CategoricalDistribution

    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


# --------------------------------------------------------------------------- hypervolume
class Box:
    """The fixed normalisation box: losses (acc -> -acc, params -> log10 params) in [0, 1]."""

    def __init__(self, values: np.ndarray) -> None:
        from autopeft.search.analysis.hypervolume import REFERENCE_MARGIN

        losses = self.losses(values)
        self.ideal = losses.min(axis=0)
        worst = losses.max(axis=0)
        self.reference = worst + REFERENCE_MARGIN * (worst - self.ideal)
        self.scale = self.reference - self.ideal

    @staticmethod
    def losses(values: np.ndarray) -> np.ndarray:
        values = np.atleast_2d(values)
        return np.column_stack([-values[:, 0], np.log10(values[:, 1])])

    def reference_units(self) -> tuple[float, float]:
        """The reference point as (accuracy, trainable parameters)."""
        return float(-self.reference[0]), float(10 ** self.reference[1])

    def hv(self, values: np.ndarray) -> float:
        from autopeft.search.analysis.hypervolume import _compute

        if len(values) == 0:
            return 0.0
        return _compute((self.losses(values) - self.ideal) / self.scale, np.ones(2))


# --------------------------------------------------------------------------- one search
def run_one(table: Table, box: Box, sampler_name: str, seed: int, trials: int, startup: int,
            noise: float | None = None, start: str = "stratified") -> tuple[list[float], float]:
    """HV after each trial of one seeded search, and the CPU seconds the sampler spent."""
    import optuna

    from autopeft.search.sampling.samplers import make_sampler
    from autopeft.search.scales import scaled
    from autopeft.search.sampling.startup import startup_methods
    from autopeft.space.schema import SearchSpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Exactly what ``autopeft search`` builds: the registry's sampler, deduplicated by the
    # space's configuration key, told the objectives on their comparison scale.
    told_noise = () if noise is None else (("accuracy", noise), ("trainable_params", 0.0))  # search.noise
    spec = SearchSpec(sampler=sampler_name, trials=trials, startup_trials=startup, seed=seed, noise=told_noise)
    sampler = make_sampler(spec, table.encoding)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    if start == "stratified":  # what a new study enqueues (autopeft.search.sampling.startup); no references here
        for method in startup_methods(table.encoding, spec, trials):
            study.enqueue_trial({} if method is None else {"method": method})
    seen: list[int] = []
    curve: list[float] = []
    spent = 0.0
    for _ in range(trials):
        t0 = time.process_time()
        trial = study.ask()
        table.encoding.suggest(trial)
        spent += time.process_time() - t0
        i = table.snap(dict(trial.params))
        acc, params = table.values[i]
        study.tell(trial, scaled(OBJECTIVES, [acc, params]))
        seen.append(i)
        curve.append(box.hv(table.values[sorted(set(seen))]))
    return curve, spent


_CACHE: dict = {}


def _job(space: str, table_path: str, name: str, seed: int, trials: int, startup: int, noise: float | None = None,
         start: str = "stratified"):
    """One (sampler, seed) search in a worker process (``--jobs``)."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if "table" not in _CACHE:
        from autopeft.search.prepare import prepare_search
        from autopeft.space import load_space

        table = Table(Path(table_path), prepare_search(load_space(space), with_data=False).encoding)
        _CACHE["table"], _CACHE["box"] = table, Box(table.values)
    return run_one(_CACHE["table"], _CACHE["box"], name, seed, trials, startup, noise, start)


# --------------------------------------------------------------------------- report
def seed_sd(table: Table) -> float | None:
    """Per-run accuracy sd from the table's paired seed-0 / seed-1 rows (None without repeats)."""
    if len(table.pairs) < 2:
        return None
    diff = np.array(table.pairs)[:, 0] - np.array(table.pairs)[:, 1]
    return float(np.std(diff, ddof=1) / math.sqrt(2))  # per-evaluation sd from paired differences


def noise_line(table: Table, box: Box) -> str:
    if len(table.pairs) < 2:
        return "noise ceiling: no seed repeats in the table"
    a = np.array(table.pairs)
    diff = a[:, 0] - a[:, 1]
    sd = seed_sd(table)
    share = sd / box.scale[0]
    return (f"noise ceiling: {len(a)} points trained with 2 seeds: |acc diff| mean {np.mean(np.abs(diff)) * 100:.1f} pt, "
            f"max {np.max(np.abs(diff)) * 100:.1f} pt, per-run sd {sd * 100:.1f} pt = {share:.2f} of the normalised "
            f"accuracy axis")


def plot(path: Path, curves: dict[str, np.ndarray], table_hv: float, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        x = np.arange(1, c.shape[1] + 1)
        mean, sd = c.mean(axis=0), c.std(axis=0)
        ax.plot(x, mean, label=f"{name} (n={c.shape[0]})")
        ax.fill_between(x, mean - sd, mean + sd, alpha=0.15)
    ax.axhline(table_hv, color="k", ls="--", lw=0.8, label="whole table")
    ax.set_xlabel("trials")
    ax.set_ylabel("normalised hypervolume (acc max, log10 params min)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--space", default=str(SPACE))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--startup", type=int, default=8, help="random start-up trials of the model-based samplers")
    ap.add_argument("--start", choices=("stratified", "random"), default="stratified",
                    help="the start-up trials: stratified over methods, as a new study enqueues them "
                    "(autopeft.search.sampling.startup), or the sampler's own random draws (before that)")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--cap", default="", help="per-sampler trial caps for the slow ones, e.g. botorch=20,gp=40 "
                    "(their curves then stop there; the CPU time is stated in the report)")
    ap.add_argument("--jobs", type=int, default=1, help="(sampler, seed) searches run in this many processes")
    ap.add_argument("--noise", default=None, help="tell BoTorch's GP a fixed accuracy noise (search.noise): an sd "
                    "in accuracy units, or 'table' for the table's own seed-to-seed sd (default: inferred)")
    ap.add_argument("--png", default=str(PNG))
    ap.add_argument("--json", default=None, help="also write the curves here")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 20 trials, botorch for 10 (a CI smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.cap = 2, 20, "botorch=10"
        args.samplers = "random,tpe,nsga2,botorch"
        if args.png == str(PNG):
            args.png = str(Path("/tmp") / "sampler_quality_quick.png")
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)  # the samplers' GP fits: one core, as a trial gets

    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space

    prep = prepare_search(load_space(args.space), with_data=False)
    table = Table(Path(args.table), prep.encoding)
    box = Box(table.values)
    table_hv = box.hv(table.values)
    names = [s for s in args.samplers.split(",") if s]
    noise = seed_sd(table) if args.noise == "table" else (float(args.noise) if args.noise else None)
    if noise is not None:
        print(f"botorch told a fixed accuracy noise sd {noise:.4f} (search.noise)")
    caps = {k: int(v) for k, v in (item.split("=") for item in args.cap.split(",") if item)}
    curves: dict[str, np.ndarray] = {}
    times: dict[str, float] = {}
    jobs = [(name, seed, min(args.trials, caps.get(name, args.trials))) for name in names for seed in range(args.seeds)]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(_job, args.space, args.table, name, seed, n, args.startup, noise, args.start) for name, seed, n in jobs]
            results = [f.result() for f in futures]
    else:
        results = [run_one(table, box, name, seed, n, args.startup, noise, args.start) for name, seed, n in jobs]
    for name in names:
        mine = [r for (nm, _, _), r in zip(jobs, results) if nm == name]
        n = len(mine[0][0])
        curves[name] = np.array([c for c, _ in mine])
        times[name] = sum(s for _, s in mine) / (args.seeds * n)
        print(f"  {name}: {args.seeds} seeds x {n} trials, {times[name] * 1000:.0f} CPU ms per ask", flush=True)

    acc_ref, par_ref = box.reference_units()
    print()
    print(f"Sampler quality on {args.table} ({len(table.rows)} grid points, seeds 0..{args.seeds - 1}, "
          f"{args.startup} start-up trials, {args.start})")
    print(f"objectives: accuracy max, log10(trainable params) min; reference point = (accuracy {acc_ref:.3f}, "
          f"{par_ref:,.0f} params); ideal = (accuracy {-box.ideal[0]:.3f}, {10 ** box.ideal[1]:,.0f} params)")
    print(f"normalised HV of the whole table: {table_hv:.4f}")
    checkpoints = sorted({t for t in CHECKPOINTS if t <= args.trials} | {c.shape[1] for c in curves.values()})
    header = f"{'sampler':<9}" + "".join(f"{'HV@' + str(t):>16}" for t in checkpoints) + f"{'CPU ms/ask':>11}"
    print(header)
    print("-" * len(header))
    at: dict[tuple[str, int], tuple[float, float]] = {}
    for name, c in curves.items():
        cells = []
        for t in checkpoints:
            if t <= c.shape[1]:
                col = c[:, t - 1]
                at[(name, t)] = (float(col.mean()), float(col.std(ddof=1)) if len(col) > 1 else 0.0)
                cells.append(f"{at[(name, t)][0]:.4f}±{at[(name, t)][1]:.4f}")
            else:
                cells.append("-")
        print(f"{name:<9}" + "".join(f"{x:>16}" for x in cells) + f"{times[name] * 1000:>11.0f}")
    print("(mean ± sd over sampler seeds)")
    print(noise_line(table, box))
    if plot(Path(args.png), curves, table_hv, f"{len(table.rows)}-point table, minilm-l6 + tweet-sentiment, "
            f"{args.seeds} seeds; shaded: ±1 sd"):
        print(f"plot: {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    print(f"wall time {time.perf_counter() - started:.1f}s")

    def get(name, t):
        return at.get((name, t), (float("nan"), 0.0))[0]

    t_b = min(20, curves["botorch"].shape[1]) if "botorch" in curves else 20
    t_r = min(60, curves["random"].shape[1]) if "random" in curves else 60
    if "botorch" not in curves:
        print(f"SUMMARY sampler_quality: botorch not run ({', '.join(f'{n} HV@{c.shape[1]} {c[:, -1].mean():.4f}' for n, c in curves.items())})")
        return 0
    b, r, tp = get("botorch", t_b), get("random", t_r), get("tpe", t_b)
    ok_r, ok_t = b >= r, b >= tp
    print(f"SUMMARY sampler_quality: botorch HV@{t_b} {b:.4f} {'>=' if ok_r else '<'} random HV@{t_r} {r:.4f} "
          f"[{'MET' if ok_r else 'MISSED'}]; botorch HV@{t_b} {'>=' if ok_t else '<'} tpe HV@{t_b} {tp:.4f} "
          f"[{'MET' if ok_t else 'MISSED'}]" + (" (quick run: not the benchmark's trial counts)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
