"""One search to the target against search + verify, and against random search, side by side.

Three flows on the same task, data, model and answer protocol (a 90-step training over
``target.seeds`` seeds, scored on the test split the searches never read), each run once per
search seed, one after the other in this process:

* ``old``: search, then verify. ``autopeft search`` with ``target: null`` (every trial one
  30-step run, 10 trials: the quickstart's size without a target), then
  ``autopeft verify STUDY --front --seeds K --steps 90 --baseline``: the proxy front and
  default LoRA (at the best of its own learning-rate sweep) re-trained at the target.
* ``new``: ``autopeft search search_spaces/quickstart.yaml`` as shipped: successive halving
  from 10 steps to the 90-step target, the survivors over K seeds, default LoRA inside.
* ``random``: the same as ``new`` with ``search.sampler=random``: the honest AutoML
  baseline at the same compute.

Per run it prints: CPU-seconds (every trial and seed process's own user + system time, from
the records, plus this process's: the asks and bookkeeping) and wall seconds; Kendall tau
between the cheapest evidence each flow ranks by (the 30-step proxy; the 10-step rung) and the
target validation mean, over the points measured at both; the front at the target
(validation means); its knee and its best point against default LoRA at its own rate, paired
on the test split (``autopeft.search.analysis.answer.paired``: a paired bootstrap over seeds and test
rows where the runs kept their per-example outcomes, "better" only when its 95 % interval
excludes 0); the best point at <= 25 % of default LoRA's parameters and whether it is
within one seed-sd of default LoRA; near-duplicates (a trial with the same method, targets,
placement and rank as an earlier one at a rate within x1.5 of it:
``autopeft.search.sampling.dedup.near_duplicates``).

Both flows choose their front on validation means and are judged on test means. K is the
quickstart's ``target.seeds`` (2) for both; search + verify with 3 verify seeds would cost
more, so K = 2 is the comparison most favourable to it. verify draws its 1,440 training rows
from the whole training split, the target runs from the search's 1,440 (the same count, one
pass each).

Usage:
    python benchmarks/one_search.py [--seeds 0,1] [--flows old,new,random] [--task tweet-sentiment]
        [--workdir DIR] [--quick]

A flow may name its trial count and its lowest rung: ``new:24`` is the search to the target
with 24 trials (about the CPU-seconds of search + verify), ``new@30`` the same search judged
first at 30 steps instead of the space's 10.

``--quick``: 4-step rungs and target, tiny data, 4 trials: a smoke run of the script (CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autopeft.candidate import Candidate

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "quickstart.yaml"

TARGET_STEPS = 90
OLD_PROXY = ["target=null", "proxy.steps=30", "search.trials=10"]
QUICK = ["proxy.train_examples=96", "proxy.eval_examples=48", "proxy.max_length=24", "verify.max_test_examples=60",
         "search.startup_trials=2"]


@dataclasses.dataclass(frozen=True)
class Point:
    """A configuration measured at the target: per-seed validation and test metric."""

    number: int | None  # trial number; None for verify's default LoRA
    candidate: Candidate
    params: int
    val: dict
    test: dict
    cheap: float | None  # the flow's cheapest evidence for it (30-step proxy / lowest rung)
    diverged: bool
    test_runs: dict = dataclasses.field(default_factory=dict)  # seed -> the run's whole test metrics (outcomes too)


def _self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _spent(store, runs, study: str) -> float:
    trials = sum((t.resources.cpu_time or 0.0) for t in store.trials(study))
    return trials + sum((r.cpu_time or 0.0) for r in runs.of(study))


def _points_new(store, runs, study: str, metric: str) -> tuple[list[Point], Point | None]:
    from autopeft.search.analysis.answer import reference
    from autopeft.search.analysis.pareto import diverged

    s = store.get_study(study)
    records = store.trials(study)
    mi = [n for n, _ in s.objectives].index(metric)
    rows = [r for r in runs.of(study) if r.status == "complete" and metric in r.test_metrics]
    pts = {}
    for r in records:
        if r.status != "complete" or "target" not in r.extras:
            continue
        mine = [x for x in rows if x.trial_number == r.number]
        pts[r.number] = Point(r.number, r.candidate, r.trainable_params or 0,
                              {x.seed: x.metrics[metric] for x in mine}, {x.seed: x.test_metrics[metric] for x in mine},
                              r.extras["rungs"][0][1] if r.extras.get("rungs") else None, diverged(r) is not None,
                              {x.seed: x.test_metrics for x in mine})
    ref = reference(records, 1, mi)
    return list(pts.values()), (pts.get(ref.number) if ref is not None else None)


def _points_old(store, runs, study: str, metric: str) -> tuple[list[Point], Point | None]:
    from autopeft.search.analysis.trust import summarize

    by_number = {t.number: t for t in store.trials(study)}
    done = [r for r in runs.of(study) if r.status == "complete" and metric in r.test_metrics]
    verified = {v.subject: v for v in summarize(done, metric)}
    pts, base = [], None
    for subject, v in verified.items():
        if subject.startswith("sweep:"):
            continue
        mine = [r for r in done if r.subject == subject and r.seed in v.seeds]
        t = by_number.get(v.trial_number)
        p = Point(v.trial_number, v.candidate, v.trainable_params, {r.seed: r.metrics[metric] for r in mine},
                  {r.seed: r.test_metrics[metric] for r in mine},
                  t.metrics.get(metric) if t is not None else None, v.diverged is not None,
                  {r.seed: r.test_metrics for r in mine})
        if subject == "baseline":
            base = p
        else:
            pts.append(p)
    return pts, base


def _as_records(points: list[Point], objectives, metric: str):
    """Healthy points as trial records whose values are the target validation means (for the
    front and knee; ``extras["verified"]`` says their health was judged at the target)."""
    from datetime import datetime, timezone

    from autopeft.store.records import TrialRecord

    out = []
    for i, p in enumerate(points):
        values = [statistics.fmean(p.val.values()) if n == metric else float(p.params) for n, _ in objectives]
        out.append(TrialRecord(study="bench", number=i, status="complete", candidate=p.candidate, params={},
                               started_at=datetime.now(timezone.utc), values=values, trainable_params=p.params,
                               extras={"verified": {}}))
    return out


def _vs(point: Point, base: Point, metric: str, floor: float, family: int = 1) -> str:
    """``point`` against default LoRA; ``family``: the comparisons made together (their
    intervals hold at 95 % jointly, as the search's answer's do)."""
    if point.number is not None and point.number == base.number:
        return "is default LoRA"
    from autopeft.search.analysis.answer import paired
    from autopeft.store.verifications import VerificationRecord

    rows = [VerificationRecord(study="bench", subject=str(n), seed=s, protocol={}, candidate=p.candidate, trial_number=n,
                               status="complete", test_metrics=p.test_runs.get(s) or {metric: v})
            for n, p in ((0, point), (1, base)) for s, v in p.test.items()]  # with outcomes: paired by example
    pr = paired(0, 1, rows, metric, 1, floor, family=family)
    return "no shared seed" if pr is None else pr.describe()


def _tau(points: list[Point]) -> tuple[float | None, int]:
    from scipy.stats import kendalltau

    pairs = [(p.cheap, statistics.fmean(p.val.values())) for p in points if p.cheap is not None and p.val]
    if len(pairs) < 3:
        return None, len(pairs)
    tau = kendalltau([a for a, _ in pairs], [b for _, b in pairs]).statistic
    return (None if math.isnan(tau) else float(tau)), len(pairs)


def _near_duplicates(store, study: str) -> int:
    from autopeft.search.sampling.dedup import near_duplicates

    tried = sorted((t for t in store.trials(study) if t.status in ("complete", "pruned", "failed")),
                   key=lambda t: t.number)
    return len(near_duplicates([t.candidate for t in tried]))


def _mean_sd(d: dict) -> str:
    v = list(d.values())
    return f"{statistics.fmean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"


def run(flow: str, seed: int, work: Path, task: str, quick: bool) -> dict:
    from autopeft.cli import main
    from autopeft.search.analysis.answer import SHARE_METRICS
    from autopeft.search.analysis.pareto import knee, pareto_front
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    name = flow.replace(":", "x").replace("@", "r")  # new:24@30 -> study newx24r30
    url = f"sqlite:///{work / f'{name}-{seed}.db'}"
    study = f"{name}-{seed}"
    flow_only, _, lowest = flow.partition("@")
    kind, _, trials = flow_only.partition(":")
    sets = [f"study={study}", f"task.dataset={task}", f"search.seed={seed}", *(QUICK if quick else [])]
    if quick:
        sets += ["proxy.steps=2", "search.trials=4", "target.steps=4"] if kind != "old" else []
    if kind == "old":
        sets += OLD_PROXY + (["proxy.steps=2", "search.trials=4"] if quick else [])
    if kind == "random":
        sets.append("search.sampler=random")
    if trials:
        sets.append(f"search.trials={int(trials)}")
    if lowest:
        sets.append(f"proxy.steps={int(lowest)}")
    args = ["search", str(SPACE), "--storage", url]
    for s in sets:
        args += ["--set", s]
    cpu0, t0 = _self_cpu(), time.perf_counter()
    if main(args) != 0:
        raise SystemExit(f"{flow} search (seed {seed}) failed")
    if kind == "old":
        from autopeft.space import load_space

        k = load_space(SPACE).target.seeds
        steps = 4 if quick else TARGET_STEPS
        if main(["verify", study, "--storage", url, "--front", "--seeds", str(k), "--steps", str(steps), "--baseline"]) != 0:
            raise SystemExit(f"verify (seed {seed}) failed")
    wall = time.perf_counter() - t0
    store = Store(url)
    runs = Verifications(store)
    cpu = _self_cpu() - cpu0 + _spent(store, runs, study)
    s = store.get_study(study)
    metric = next(n for n, _ in s.objectives if n != "trainable_params")
    points, base = (_points_old if kind == "old" else _points_new)(store, runs, study, metric)
    out = dict(flow=flow, seed=seed, cpu=cpu, wall=wall, tau=_tau(points), near=_near_duplicates(store, study),
               measured=len(points), base=base)
    healthy = [p for p in points if not p.diverged and p.val]
    if not healthy:
        return out
    recs = _as_records(healthy, s.objectives, metric)
    front = pareto_front(recs, s.objectives)
    k = healthy[knee(recs, s.objectives).number]
    best = max((healthy[r.number] for r in front), key=lambda p: statistics.fmean(p.val.values()))
    out.update(front=[healthy[r.number] for r in front], knee=k, best=best)
    if base is not None and base.test:
        small = [p for p in healthy if p.params <= 0.25 * base.params and p.test]
        out["small"] = max(small, key=lambda p: statistics.fmean(p.test.values()), default=None)
        floor = 1.0 / s.splits["test"] if metric in SHARE_METRICS and (s.splits or {}).get("test") else 0.0
        compared = [(name, p) for name, p in (("knee", k), ("best", best)) if p.test]
        out["vs"] = {name: _vs(p, base, metric, floor, family=len(compared)) for name, p in compared}
    return out


def describe(r: dict) -> list[str]:
    from autopeft.methods import get_method

    tau, n = r["tau"]
    lines = [f"== {r['flow']} seed {r['seed']}: {r['cpu']:.0f} CPU-s, {r['wall']:.0f} s wall; "
             f"tau(cheapest, target) {'n/a' if tau is None else f'{tau:.2f}'} over {n}; "
             f"near-duplicates {r['near']}; {r['measured']} point(s) measured at the target"]
    base = r.get("base")
    if base is not None and base.test:
        lines.append(f"  default LoRA {base.params:>8,} params  lr {base.candidate.learning_rate:.1e}  "
                     f"test {_mean_sd(base.test)}" + ("  DIVERGED" if base.diverged else ""))
    for p in r.get("front", []):
        c = p.candidate
        rank = f"r{c.rank}" if "rank" in get_method(c.method).uses else "-"
        lines.append(f"  front  {c.method:8} {rank:<4} {p.params:>8,} params  lr {c.learning_rate:.1e}"
                     f"  val {_mean_sd(p.val)}  test {_mean_sd(p.test) if p.test else '-'}")
    for name, text in r.get("vs", {}).items():
        p = r[name]
        lines.append(f"  {name}: {p.candidate.method} {p.params:,} params vs default LoRA: {text}")
    small = r.get("small")
    if base is not None and base.test:
        if small is None:
            lines.append("  no point at <= 25% of default LoRA's parameters reached the target")
        else:
            sd = statistics.stdev(base.test.values()) if len(base.test) > 1 else 0.0
            gap = statistics.fmean(base.test.values()) - statistics.fmean(small.test.values())
            lines.append(f"  best at <= 25% of default LoRA's parameters: {small.candidate.method} {small.params:,} "
                         f"params, test {_mean_sd(small.test)}, {gap:+.4f} below default LoRA "
                         f"({'within' if gap <= sd else 'outside'} one seed-sd {sd:.4f})")
    return lines


def summary(results: list[dict]) -> str:
    parts = []
    for flow in dict.fromkeys(r["flow"] for r in results):
        mine = [r for r in results if r["flow"] == flow]
        taus = [r["tau"][0] for r in mine if r["tau"][0] is not None]
        knees = [r["vs"]["knee"] for r in mine if "vs" in r and "knee" in r["vs"]]
        small_ok = sum(1 for r in mine if r.get("small") is not None and r.get("base") is not None
                       and statistics.fmean(r["base"].test.values()) - statistics.fmean(r["small"].test.values())
                       <= (statistics.stdev(r["base"].test.values()) if len(r["base"].test) > 1 else 0.0))
        parts.append(f"{flow} {statistics.fmean(r['cpu'] for r in mine):.0f} CPU-s "
                     f"({statistics.fmean(r['wall'] for r in mine):.0f} s wall) per search, "
                     f"tau {'/'.join(f'{t:.2f}' for t in taus) or 'n/a'}, "
                     f"knee vs default LoRA: {'; '.join(knees) or 'n/a'}, "
                     f"<=25%-params point within one sd in {small_ok}/{len(mine)}, "
                     f"near-duplicates {sum(r['near'] for r in mine)}")
    return "SUMMARY one_search: " + " | ".join(parts)


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default=None, help="search seeds, comma-separated (default 0,1; 0 with --quick)")
    ap.add_argument("--flows", default="old,new,random")
    ap.add_argument("--task", default="tweet-sentiment")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="one-search-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for seed in (int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",")):
            for flow in args.flows.split(","):
                r = run(flow, seed, work, args.task, args.quick)
                results.append(r)
                print("\n".join(describe(r)), flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(results) + (" (quick run)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
