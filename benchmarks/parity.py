"""Behaviour parity: do two studies, run by two versions of autopeft, hold the same results?

A refactor that moves code must not move results. Run the same search with the same seeds
under each version (each from its own clone and virtual environment), into two SQLite files,
then compare them here, trial by trial: status, configuration, trainable parameters, task
metrics and objective values (to ``--tol``), rungs, the target summary over seeds, and the
front; then every verification run (the target's seed runs, ``autopeft verify``'s and
``export --train``'s), matched by subject, seed and protocol key: status, trainable
parameters, validation and test metrics. CPU training with fixed seeds and thread counts is deterministic, so any difference
is a change of behaviour; use a sampler that is deterministic too (``random``: BoTorch's
fits are not bit-reproducible from one run to the next).

Usage (the README of benchmarks/ gives the exact commands used):
    python benchmarks/parity.py sqlite:////tmp/before.db sqlite:////tmp/after.db --study parity [--tol 1e-6]
"""

from __future__ import annotations

import argparse
import math


def _close(a, b, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return a == b


def _field(record, name: str):
    """A record's field, a candidate in its stored form: its learning rate is compared within tol."""
    value = getattr(record, name)
    return value.to_json() if name == "candidate" else value


def compare(url_a: str, url_b: str, study: str, tol: float) -> list[str]:
    """The differences between the two studies, one line each (empty: the same results)."""
    from autopeft.search.analysis.pareto import pareto_front
    from autopeft.store import Store

    a, b = Store(url_a), Store(url_b)
    ta, tb = {t.number: t for t in a.trials(study)}, {t.number: t for t in b.trials(study)}
    out = []
    if ta.keys() != tb.keys():
        out.append(f"trial numbers differ: {sorted(ta)} vs {sorted(tb)}")
    for n in sorted(ta.keys() & tb.keys()):
        x, y = ta[n], tb[n]
        for field in ("status", "candidate", "trainable_params", "metrics", "values"):
            if not _close(_field(x, field), _field(y, field), tol):
                out.append(f"trial {n} {field}: {_field(x, field)} vs {_field(y, field)}")
        for key in ("rungs", "target", "fidelity", "baseline"):
            if not _close(x.extras.get(key), y.extras.get(key), tol):
                out.append(f"trial {n} extras[{key}]: {x.extras.get(key)} vs {y.extras.get(key)}")
    sa, sb = a.get_study(study), b.get_study(study)
    fa = [r.number for r in pareto_front(list(ta.values()), sa.objectives)]
    fb = [r.number for r in pareto_front(list(tb.values()), sb.objectives)]
    if fa != fb:
        out.append(f"front: trials {fa} vs {fb}")
    return out + compare_runs(a, b, study, tol)


def compare_runs(a, b, study: str, tol: float) -> list[str]:
    """The differences between two studies' verification runs, matched by (subject, seed, protocol key)."""
    from autopeft.store.verifications import Verifications

    def runs(store) -> dict:
        return {(v.subject, v.seed, v.protocol_key): v for v in Verifications(store).of(study)}

    ra, rb = runs(a), runs(b)
    out = []
    if ra.keys() != rb.keys():
        out.append(f"verification runs differ: {len(ra)} vs {len(rb)}; only in one: "
                   f"{sorted(ra.keys() ^ rb.keys())[:4]}")
    for key in sorted(ra.keys() & rb.keys()):
        x, y = ra[key], rb[key]
        for field in ("status", "trainable_params", "metrics", "test_metrics"):
            if not _close(getattr(x, field), getattr(y, field), tol):
                out.append(f"run {key[0]} seed {key[1]} {field}: {getattr(x, field)} vs {getattr(y, field)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--study", required=True)
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    from autopeft.store import Store

    from autopeft.store.verifications import Verifications

    n = len(Store(args.before).trials(args.study))
    runs = len(Verifications(Store(args.before)).of(args.study))
    diffs = compare(args.before, args.after, args.study, args.tol)
    for line in diffs:
        print(line)
    print(f"SUMMARY parity: {n} trials and {runs} verification runs of study '{args.study}', "
          + (f"{len(diffs)} difference(s)" if diffs else f"identical (status, configuration, parameters, metrics and "
             f"values to {args.tol:g}, rungs, target means, front, every run's validation and test metrics)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
