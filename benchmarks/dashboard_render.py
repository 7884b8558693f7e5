"""Time every dashboard page on a synthetic 1,000-trial study (each under 2 s here).

    python benchmarks/dashboard_render.py [--trials 1000] [--repeat 3]

Each page is rendered with Streamlit's ``AppTest`` (the real script, no browser) from a
fresh session, so the timing includes loading the study from SQLite and building the
figures; the first ("cold") run also pays the imports and the store's schema check and is
reported separately. ``synthetic_study`` is also used by ``tests/test_dashboard.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta

MODULES = ("query", "key", "value", "dense")


def synthetic_study(store, name: str = "synthetic", trials: int = 1000, seed: int = 0, layers: int = 6,
                    objectives=(("accuracy", "max"), ("trainable_params", "min"))):
    """Write a plausible study of ``trials`` trials straight into ``store`` (no training).

    Accuracy rises with trainable parameters, with noise; ~85% complete, 8% failed, 5%
    infeasible, 2% running; AdaLoRA trials carry a rank allocation; trial 0 is default LoRA.
    """
    from autopeft.store import StudyRecord, TrialRecord, utcnow

    rng = random.Random(seed)
    start = utcnow()
    study = StudyRecord(
        name=name, created_at=start, space_yaml=f"study: {name}\n", space_hash="0" * 32,
        objectives=tuple(objectives), trials_target=trials,
        model="minilm-l6", model_fingerprint="f" * 16, dataset="tweet-sentiment", data_fingerprint="d" * 16,
        budget_params=200_000,
    )
    store.add_study(study)
    for n in range(trials):
        method = "lora" if n == 0 else rng.choice(["lora", "ia3", "adalora"])
        rank = 8 if n == 0 else rng.choice([2, 4, 8, 16])
        targets = ["query", "value"] if n == 0 else rng.choice([["query", "value"], ["query", "key", "value"], "all-linear"])
        k = layers if n == 0 else rng.randint(1, layers)
        chosen = list(range(layers - k, layers))
        modules = list(MODULES) if targets == "all-linear" else targets
        params = (rank * 768 * len(modules) * k if method != "ia3" else 384 * len(modules) * k) + 770
        roll = rng.random() if n else 0.0
        status = "complete" if roll < 0.85 else "failed" if roll < 0.93 else "infeasible" if roll < 0.98 else "running"
        accuracy = min(0.95, 0.45 + 0.4 * (1 - math.exp(-params / 40_000)) + rng.gauss(0, 0.03))
        memory = 850.0 + params / 2_000 + rng.uniform(0, 60)
        source = {"accuracy": accuracy, "trainable_params": float(params), "peak_memory": memory}
        extras = {}
        if method == "adalora" and status == "complete":
            extras = {"rank_allocation": {f"base_model.model.bert.encoder.layer.{l}.attention.self.{m}.lora_E": rng.randint(0, rank)
                                          for l in chosen for m in modules if m != "dense"}}
        peft_config = {"peft_type": {"lora": "LORA", "ia3": "IA3", "adalora": "ADALORA"}[method], "task_type": "SEQ_CLS",
                       "target_modules": [f"layer.{l}.attention.self.{m}" for l in chosen for m in modules]}
        if method == "lora":
            peft_config.update(r=rank, lora_alpha=2 * rank)
        elif method == "adalora":
            peft_config.update(init_r=rank, target_r=max(1, rank // 2), total_step=30)
        else:
            peft_config["feedforward_modules"] = []
        when = start + timedelta(seconds=20 * n)
        store.save_trial(TrialRecord(
            study=name, number=n, status=status,
            candidate={"method": method, "rank": rank, "alpha": 2.0 * rank, "dropout": 0.0, "targets": targets,
                       "layers": chosen, "learning_rate": 10 ** rng.uniform(-3.5, -2.3), "dora": False, "rslora": False},
            params={"method": method, "rank": rank}, started_at=when,
            peft_config=peft_config, trainable_params=params,
            metrics={"accuracy": accuracy} if status == "complete" else {},
            values=[source[o] for o, _ in objectives] if status == "complete" else None,
            curve=[[s, 0.7 * math.exp(-s / 20) + 0.2] for s in range(0, 31, 5)] if status in ("complete", "failed") else [],
            resources={"wall_time": 12.0, "train_time": 9.0, "peak_rss_mb": memory} if status in ("complete", "failed") else {},
            extras=extras,
            error={"failed": "non-finite loss at step 12", "infeasible": f"over budget: {params:,} > 200,000"}.get(status),
            finished_at=None if status == "running" else when + timedelta(seconds=15), sampler_time=0.01,
        ))
    return study


PAGES = ["Studies", "Pareto front", "Hypervolume", "Trials", "Importance", "Compare", "Export", "New search"]


def render_page(url: str, page: str, study: str | None = None, timeout: float = 60):
    """Run the app once on ``page`` in a fresh AppTest session; returns the AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ["AUTOPEFT_DASHBOARD_STORAGE"] = url
    from autopeft.dashboard.launch import APP  # the installed app script `autopeft dashboard` runs

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.session_state["page"] = page
    if study:
        at.session_state["study"] = study
    return at.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from autopeft.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        store = Store(url)
        synthetic_study(store, "synthetic", args.trials)
        synthetic_study(store, "synthetic-b", args.trials, seed=1)  # for Compare
        store.close()
        print(f"built 2 synthetic studies of {args.trials} trials in {time.perf_counter() - t0:.1f} s")
        rows = []
        for page in PAGES:
            # The first render of a page in this process pays one-time imports (plotly, and
            # peft + torch + transformers for Export): reported as "cold", apart from the rest.
            t0 = time.perf_counter()
            render_page(url, page, "synthetic")
            cold = time.perf_counter() - t0
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                at = render_page(url, page, "synthetic")
                times.append(time.perf_counter() - t0)
                problems = [e.value for e in at.exception] + [e.value for e in at.error]
                if problems:
                    print(f"  {page}: {problems[0][:200]}", file=sys.stderr)
            rows.append((page, cold, statistics.median(times), max(times)))
    print(f"\n{'page':<14} {'cold s':>7} {'median s':>9} {'max s':>7}")
    for page, cold, med, worst in rows:
        print(f"{page:<14} {cold:>7.3f} {med:>9.3f} {worst:>7.3f}")
    slowest = max(rows, key=lambda r: r[2])
    verdict = "OK" if slowest[2] < 2.0 else "OVER"
    print(f"\nsummary: {len(rows)} pages x {args.repeat} warm runs on {args.trials} trials: slowest {slowest[0]} "
          f"{slowest[2]:.2f} s median (target < 2 s: {verdict}); slowest cold first render "
          f"{max(r[1] for r in rows):.2f} s ({max(rows, key=lambda r: r[1])[0]})")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
