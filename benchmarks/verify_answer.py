"""Does a search's answer hold when its points are trained again? Paired tests on verify's runs.

After ``autopeft verify STUDY --seeds 5 --steps N --baseline`` (every proxy-front point and
default LoRA at the rate of its own sweep, each trained again over 5 seeds on rows drawn by
seed from the whole training split, scored on the same test rows), this prints, for every
verified point, the product's own paired bootstrap over seeds and test rows
(``autopeft.search.analysis.paired.bootstrap``) against default LoRA's verified runs: better,
worse or within noise at 95 %.

Compare it with the answer the search printed (``autopeft show STUDY``), which came from the
seeds at the target on the search's own training rows.

Usage:
    python benchmarks/verify_answer.py sqlite:///autopeft.db --study quickstart

Ends with one SUMMARY line: each point's verdict.
"""

from __future__ import annotations

import argparse
import sys


def verified_outcomes(store, study: str) -> dict[str, dict[int, str]]:
    """``{subject: {seed: outcome bits}}`` of the study's complete verification runs under the
    protocol default LoRA was verified with (subject ``trial:N``, or ``baseline``); the sweep's
    single runs and the seed runs at the search's target (another protocol) are left out."""
    from autopeft.store.verifications import Verifications

    rows = [r for r in Verifications(store).of(study)
            if r.status == "complete" and (r.test_metrics or {}).get("outcomes") and not r.subject.startswith("sweep:")]
    protocols = {r.protocol_key for r in rows if r.subject == "baseline"}
    out: dict[str, dict[int, str]] = {}
    for r in rows:
        if r.protocol_key in protocols:
            out.setdefault(r.subject, {})[r.seed] = r.test_metrics["outcomes"]["right"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storage")
    ap.add_argument("--study", required=True)
    args = ap.parse_args(argv)

    from autopeft.search.analysis.paired import bootstrap
    from autopeft.store import Store

    runs = verified_outcomes(Store(args.storage), args.study)
    base = runs.pop("baseline", None)
    if not base:
        print(f"study {args.study!r} has no verified default LoRA: run `autopeft verify {args.study} --baseline` first")
        return 1
    verdicts = []
    for subject in sorted(runs, key=lambda s: int(s.split(":")[1]) if s.startswith("trial:") else 0):
        seeds = sorted(set(runs[subject]) & set(base))
        if not seeds:
            continue
        point = [[int(c) for c in runs[subject][s]] for s in seeds]
        ref = [[int(c) for c in base[s]] for s in seeds]
        r = bootstrap(point, ref, seeds)
        print(f"{subject} vs default LoRA: {r.verdict} {r.diff:+.4f} (95% interval {r.low:+.4f}..{r.high:+.4f}, "
              f"paired bootstrap over {len(seeds)} seeds x {r.examples} test rows)")
        verdicts.append(f"{subject} {r.verdict} {r.diff:+.4f}")
    print(f"SUMMARY verify_answer ({args.study}, vs default LoRA's verified runs): " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
