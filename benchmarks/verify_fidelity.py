"""How far the proxy front holds, per bundled classification task: search, then verify.

For each task (tweet sentiment, BBC news): a quickstart-size search (the quickstart's space on
that data set), then ``autopeft verify --front --seeds 3 --steps 150 --baseline``. Printed per
task: Kendall tau / Spearman rho of proxy metric vs verified test mean (with n), the pooled
seed sd (the noise floor the tau must be read against), how many proxy front points stay on
the verified front, and the verified knee vs default LoRA (test mean ± sd, parameters).

Target : on each task a verified front point matches default LoRA within one sd at
<= 50% of its parameters; tau is reported whatever it is. A diverged baseline is reported as
such and never counts as met.

Usage:
    python benchmarks/verify_fidelity.py [--quick] [--tasks tweet-sentiment,bbc-news] [--workdir DIR]
        [--set proxy.steps=90 ...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_task(dataset: str, work: Path, quick: bool, extra: list[str]) -> str:
    from autopeft.cli import main
    from autopeft.search.analysis.trust import dominating_baseline, fidelity, summarize
    from autopeft.space import load_space
    from autopeft.store import Store
    from autopeft.store.verifications import Verifications

    url = f"sqlite:///{work / f'{dataset}.db'}"
    study = f"vf-{dataset}"
    sets = [f"study={study}", f"task.dataset={dataset}", *extra]
    if quick:
        sets += ["search.trials=3", "search.sampler=random", "proxy.steps=4", "proxy.train_examples=64",
                 "proxy.eval_examples=48", "proxy.max_length=24", "verify.test_examples=60"]
    args = ["search", str(ROOT / "search_spaces" / "quickstart.yaml"), "--storage", url]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    if main(args) != 0:
        raise SystemExit(f"search on {dataset} failed")
    search_s = time.perf_counter() - t0
    verify = ["verify", study, "--storage", url, "--baseline"] + (
        ["--top", "2", "--seeds", "2", "--steps", "4"] if quick else ["--seeds", "3", "--steps", "150"])
    t0 = time.perf_counter()
    if main(verify) != 0:
        raise SystemExit(f"verify on {dataset} failed")
    verify_s = time.perf_counter() - t0

    store = Store(url)
    s = store.get_study(study)
    space = load_space(ROOT / "search_spaces" / "quickstart.yaml", sets)
    metric = space.task.metric
    verified = summarize(Verifications(store).of(study), metric)
    trials = [v for v in verified if v.trial_number is not None]
    fid = fidelity(s, store.trials(study), trials, metric, space.proxy.steps, space.proxy.eval_examples)
    base = next((v for v in verified if v.subject == "baseline"), None)
    print(f"\n== {dataset}: search {search_s:.0f} s, verify {verify_s:.0f} s")
    print(fid.describe())
    for v in trials:
        print(f"  trial {v.trial_number:>3} {v.candidate.method:8} {v.trainable_params:>9,} params  "
              f"test {v.test[0]:.4f} ± {v.test[1]:.4f}  val {v.val[0]:.4f}  seeds {len(v.seeds)}"
              + (f"  DIVERGED ({v.diverged})" if v.diverged else ""))
    if base is None:
        return f"{dataset}: no baseline"
    print(f"  default LoRA {base.trainable_params:>9,} params  test {base.test[0]:.4f} ± {base.test[1]:.4f}"
          + (f"  DIVERGED ({base.diverged})" if base.diverged else ""))
    if base.diverged:
        return f"{dataset}: baseline diverged — not a comparison (tau {fid.kendall_tau})"
    noise = base.test[1]
    matches = [v for v in trials if not v.diverged and v.test[0] >= base.test[0] - max(noise, v.test[1])
               and v.trainable_params <= 0.5 * base.trainable_params]
    beats = dominating_baseline(s, verified, metric) or []
    tau = "n/a" if fid.kendall_tau is None else f"{fid.kendall_tau:.2f}"
    return (f"{dataset}: tau {tau} (n={fid.n}), {fid.front_kept}/{fid.front_size} front points kept, "
            f"{len(beats)} dominate default LoRA, target {'MET' if matches else 'MISSED'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3-trial searches, 4-step verification: a smoke run")
    ap.add_argument("--tasks", default="tweet-sentiment,bbc-news")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the quickstart space, as `autopeft search --set` (e.g. the proxy verify advises)")
    args = ap.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="verify-fidelity-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        parts = [run_task(t, work, args.quick, args.set) for t in args.tasks.split(",")]
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print("SUMMARY verify_fidelity: " + "; ".join(parts) + (f" (with {', '.join(args.set)})" if args.set else "")
          + (" (quick run)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
