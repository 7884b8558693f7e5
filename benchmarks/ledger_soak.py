"""Ledger soak: many workers on one PostgreSQL study, killed and stopped as they train.

32 worker processes (``autopeft.search.worker.Worker``, the class behind ``autopeft worker``)
serve one 400-trial study. Their trials sleep 0.5-2 s instead of training (no CPU: the
ledger is under test, not the model). While they run, 10 workers are killed with SIGKILL
and 5 stopped with SIGTERM, each in the middle of a trial, and each replaced at once by a
fresh worker. Then the study is audited:

- completed: trials complete; trained: what the budget counts (complete/failed/pruned
  that no retry replaces).
- lost (must be 0): killed or interrupted trials whose point never completed on a retry,
  or optuna trials that have parameters but no record.
- duplicated (must be 0): points trained to completion more than once.
- budget overshoot (must be <= workers - 1): trained - target.
- records left running (must be 0), and records whose state optuna does not share (0).
- coordination overhead: seconds per trial spent in ledger calls (budget check, reap, ask
  minus the sampler, record updates, tell + record), from each worker's debug log.

Workers are forked from a forkserver that has imported torch, transformers and peft once:
32 interpreters importing them each would need ~13 GB and minutes of CPU on 2 cores.
Each worker still opens its own database connections, prepares the study from its stored
YAML, keeps its own heartbeats and handles its own signals, as ``autopeft worker`` does.

Usage:
    python benchmarks/ledger_soak.py [--storage URL] [--workers 32] [--trials 400] [--kills 10] [--terms 5]
    python benchmarks/ledger_soak.py --quick      # 6 workers, 40 trials, 2 kills, 1 SIGTERM

``--storage`` (default ``$AUTOPEFT_TEST_POSTGRES_URL``) names the server; the soak creates
a fresh database on it and drops it afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

SPACE = """
study: soak
model: minilm-l6
task: {{dataset: tweet-sentiment}}
space: {{method: [lora, ia3], rank: [2, 4, 8], targets: [[query, value], all-linear], layers: {{top_k: [1, 6]}},
        learning_rate: {{log: [1.0e-4, 1.0e-2]}}}}
proxy: {{train_examples: 32, eval_examples: 16, steps: 3, max_length: 16}}
search: {{sampler: random, trials: {trials}, seed: 0}}
"""
#: Modules every worker needs, imported once in the forkserver.
PRELOAD = ["torch", "transformers", "peft", "optuna", "sqlalchemy", "psycopg", "autopeft.methods",
           "autopeft.search.worker", "autopeft.search.prepare"]


# --------------------------------------------------------------------------- worker side
def sleeping_runner(spec, **_):
    """A trial that sleeps 0.5-2 s and reports made-up metrics.

    While it sleeps, ``$SOAK_MARKERS/<pid>`` exists: the soak kills workers that are mid-trial.
    """
    from autopeft.trials.spec import TrialResult

    marker = Path(os.environ["SOAK_MARKERS"]) / str(os.getpid())
    marker.touch()
    t0 = time.perf_counter()
    try:
        time.sleep(random.uniform(0.5, 2.0))
    finally:
        marker.unlink(missing_ok=True)
    took = time.perf_counter() - t0
    return TrialResult(status="complete", metrics={"accuracy": random.random()}, curve=[[3, 1.0]],
                       trainable_params=None, train_time=took, wall_time=took, peak_rss_mb=0.0)


def worker_main(url: str, study: str, log_path: str, heartbeat: int, grace: int, retries: int) -> None:
    """One worker process: serve ``study`` until its budget is met; exit 128 + signal if stopped."""
    from autopeft.search.worker import Worker
    from autopeft.store import Store

    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(created).3f %(levelname)s %(message)s"))
    logger = logging.getLogger("autopeft")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the ledger's per-trial overhead lines are DEBUG
    random.seed(os.getpid())
    with open(log_path, "a") as out:
        def log(line: str) -> None:
            out.write(f"{time.time():.3f} {line}\n")
            out.flush()

        store = Store(url)
        try:
            worker = Worker(store, runner=sleeping_runner, log=log, heartbeat=heartbeat, grace=grace,
                            retries=retries, poll=1.0)
            outcome = worker.run_study(study)
            log(f"EXIT trained {outcome.trials} signal {outcome.signal}")
        finally:
            store.close()
    sys.exit(outcome.exit_code)


def submit(url: str, trials: int) -> None:
    """Create the study and optuna's tables once (what `autopeft db upgrade` + `search --submit-only` do)."""
    from autopeft.search.loop import open_study, optuna_study
    from autopeft.search.prepare import prepare_search
    from autopeft.search.sampling.samplers import make_sampler
    from autopeft.space import load_space_text
    from autopeft.store import Store

    store = Store(url)
    try:
        prep = prepare_search(load_space_text(SPACE.format(trials=trials), "soak.yaml"))  # tokenised once, cached
        optuna_study(store, open_study(store, prep), make_sampler(prep.space.search))
    finally:
        store.close()


# --------------------------------------------------------------------------- the soak
class Pool:
    """The live workers, replaced as they are killed."""

    def __init__(self, ctx, url: str, logs: Path, args) -> None:
        self.ctx, self.url, self.logs, self.args = ctx, url, logs, args
        self.procs: list = []
        self.started = 0

    def start(self):
        self.started += 1
        log = self.logs / f"worker-{self.started:03d}.log"
        a = self.args
        proc = self.ctx.Process(target=worker_main, args=(self.url, "soak", str(log), a.heartbeat, a.grace, a.retries),
                                name=f"soak-worker-{self.started}")
        proc.start()
        self.procs.append(proc)
        return proc

    def alive(self) -> list:
        return [p for p in self.procs if p.exitcode is None and p.is_alive()]


def trained_so_far(url: str) -> int:
    from autopeft.search.ledger.budget import trained_count
    from autopeft.store import Store

    store = Store(url, migrate=False)
    try:
        return trained_count(store.trial_summaries("soak"))
    finally:
        store.close()


def chaos(pool: Pool, url: str, markers: Path, events: list[str], target: int, deadline: float) -> list[dict]:
    """Fire ``events`` (kill/term) spread over the run, each at a worker in the middle of a trial."""
    import signal

    done: list[dict] = []
    thresholds = [target * (i + 1) / (len(events) + 2) for i in range(len(events))]
    while events and time.monotonic() < deadline and pool.alive():
        trained = trained_so_far(url)
        if trained < thresholds[len(done)]:
            time.sleep(0.25)
            continue
        busy = {int(m.name) for m in markers.iterdir() if m.name.isdigit()}
        victims = [p for p in pool.alive() if p.pid in busy]
        if not victims:
            time.sleep(0.05)
            continue
        victim, kind = random.choice(victims), events.pop(0)
        os.kill(victim.pid, signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        victim.join(timeout=120)
        (markers / str(victim.pid)).unlink(missing_ok=True)  # a killed sleeper leaves its marker
        done.append({"kind": kind, "pid": victim.pid, "exit": victim.exitcode, "trained": trained})
        pool.start()  # the replacement
    return done


def audit(url: str, target: int, grace: int) -> dict:
    """Read both ledgers and count what the soak promises."""
    import optuna

    from autopeft.search.ledger.budget import trained_count
    from autopeft.store import Store

    store = Store(url, migrate=False)
    try:
        records = store.trials("soak")
        trials = optuna.load_study(study_name="soak", storage=store.optuna_storage).get_trials(deepcopy=False)
    finally:
        store.close()
    by_number = {r.number: r for r in records}
    state = {"complete": "COMPLETE", "failed": "FAIL", "pruned": "PRUNED", "infeasible": ("COMPLETE", "FAIL")}
    disagree = [t.number for t in trials if t.number in by_number
                and t.state.name not in state.get(by_number[t.number].status, ())]
    waiting = {t.number for t in trials if t.state.name == "WAITING"}
    orphans = [t.number for t in trials if t.number not in by_number and t.params and t.number not in waiting]

    def ends_complete(r) -> bool:
        """Its retry chain ends in a completed trial, or in a retry still queued in optuna (the
        budget was met before anyone needed it: the next run of the study trains it first)."""
        seen = set()
        while r is not None and r.extras.get("retried_as") is not None and r.number not in seen:
            seen.add(r.number)
            if r.extras["retried_as"] in waiting:
                return True
            r = by_number.get(r.extras["retried_as"])
        return r is not None and r.status == "complete"

    stopped = [r for r in records if r.error and (r.error.startswith("worker lost") or r.error.startswith("interrupted"))]
    lost = [r.number for r in stopped if not ends_complete(r)] + orphans
    for number in lost[:5]:  # say why, so that a failure can be read from the log alone
        chain, r = [], by_number.get(number)
        while r is not None and len(chain) < 8:
            chain.append(f"{r.number} {r.status} {r.error!r}")
            r = by_number.get(r.extras.get("retried_as")) if r.extras.get("retried_as") is not None else None
        print(f"lost trial {number}: " + " -> ".join(chain) if chain else f"lost trial {number}: no record")
    points = Counter(json.dumps(r.params, sort_keys=True) for r in records if r.status == "complete")
    trained = trained_count(records)
    return {
        "records": len(records), "optuna_trials": len(trials),
        "completed": sum(r.status == "complete" for r in records), "trained": trained,
        "lost": lost, "duplicated": [p for p, n in points.items() if n > 1],
        "overshoot": trained - target, "running": [r.number for r in records if r.status == "running"],
        "disagree": disagree,
        "reaped": sum(1 for r in records if r.error and r.error.startswith("worker lost")),
        "late": sum(1 for r in records if r.error and "after that" in r.error),
        "interrupted": sum(1 for r in records if r.error and r.error.startswith("interrupted")),
        "waiting": sum(t.state.name == "WAITING" for t in trials),
    }


def overheads(logs: Path) -> tuple[list[float], list[float], int]:
    """Per-trial ledger overhead (wall ms, CPU ms) from every worker's debug log; heartbeat warnings."""
    wall, cpu, warnings_ = [], [], 0
    for path in logs.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "ms in ledger calls" in line:  # "... trial 7: 35.1 ms in ledger calls (12.0 ms CPU)"
                tail = line.rsplit(": ", 1)[1]
                wall.append(float(tail.split(" ms", 1)[0]))
                cpu.append(float(tail.split("(", 1)[1].split(" ms", 1)[0]))
            elif "WARNING" in line and "heartbeat" in line:
                warnings_ += 1
    return wall, cpu, warnings_


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def fresh_database(server: str) -> tuple[str, callable]:
    """A new database on ``server`` and a function that drops it."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(server)
    name = f"autopeft_soak_{uuid.uuid4().hex[:10]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return admin.set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default=os.environ.get("AUTOPEFT_TEST_POSTGRES_URL"),
                    help="PostgreSQL server URL (default $AUTOPEFT_TEST_POSTGRES_URL)")
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--kills", type=int, default=10, help="workers killed with SIGKILL mid-trial")
    ap.add_argument("--terms", type=int, default=5, help="workers stopped with SIGTERM mid-trial")
    ap.add_argument("--heartbeat", type=int, default=2)
    ap.add_argument("--grace", type=int, default=20,
                    help="32 processes on 2 shared cores can go seconds without a slice: a grace of a few "
                         "seconds would fail live trials as lost (they are then retried, but it is not the test)")
    ap.add_argument("--retries", type=int, default=5, help="re-runs per point (a retry may be killed too)")
    ap.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the soak's database")
    ap.add_argument("--quick", action="store_true", help="6 workers, 40 trials, 2 kills, 1 SIGTERM")
    args = ap.parse_args()
    if args.quick:
        args.workers, args.trials, args.kills, args.terms, args.timeout = 6, 40, 2, 1, 85
        args.heartbeat, args.grace = 1, 8
    if not args.storage or not args.storage.startswith("postgresql"):
        raise SystemExit("give --storage postgresql+psycopg://... or set AUTOPEFT_TEST_POSTGRES_URL "
                         "(eval \"$(bash .ci/postgres.sh | tail -1)\")")
    from autopeft.store import mask_url

    random.seed(args.seed)
    started = time.perf_counter()
    url, drop = fresh_database(args.storage)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"autopeft-soak-{uuid.uuid4().hex[:8]}"
    logs, markers = work / "logs", work / "markers"
    logs.mkdir(parents=True)
    markers.mkdir()
    os.environ["SOAK_MARKERS"] = str(markers)  # inherited by the forkserver, so by every worker
    print(f"ledger soak: {args.workers} workers, {args.trials} trials, {args.kills} kill -9 + {args.terms} SIGTERM "
          f"mid-trial; heartbeat {args.heartbeat} s, grace {args.grace} s, retries {args.retries}")
    print(f"database {mask_url(url)}; worker logs in {logs}; load average {os.getloadavg()[0]:.1f} at the start")
    try:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        setup = ctx.Process(target=submit, args=(url, args.trials))
        setup.start()
        setup.join()
        if setup.exitcode != 0:
            raise SystemExit(f"creating the study failed (exit {setup.exitcode})")
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        pool = Pool(ctx, url, logs, args)
        for _ in range(args.workers):
            pool.start()
        events = ["kill"] * args.kills + ["term"] * args.terms
        random.shuffle(events)
        fired = chaos(pool, url, markers, events, args.trials, deadline)
        while pool.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        timed_out = bool(pool.alive())
        for p in pool.alive():
            p.kill()
            p.join()
        elapsed = time.monotonic() - t0
        result = audit(url, args.trials, args.grace)
        codes = Counter(p.exitcode for p in pool.procs)
    finally:
        if not args.keep:
            drop()
    ms, cpu, heartbeat_warnings = overheads(logs)
    victims = {e["pid"] for e in fired}
    crashed = [p.exitcode for p in pool.procs if p.pid not in victims and p.exitcode not in (0, None)]
    kinds = Counter(e["kind"] for e in fired)
    expected_exit = all((e["exit"] == -9) if e["kind"] == "kill" else (e["exit"] == 143) for e in fired)

    rows = [
        ("workers started (incl. replacements)", f"{pool.started}"),
        ("events fired", f"{kinds['kill']} kill -9, {kinds['term']} SIGTERM (of {args.kills} + {args.terms}), "
                         f"exit codes as expected: {'yes' if expected_exit else 'NO'}"),
        ("worker exit codes", ", ".join(f"{c}: {n}" for c, n in sorted(codes.items(), key=lambda x: str(x[0])))),
        ("trials completed", f"{result['completed']}"),
        ("trials trained (budget count)", f"{result['trained']} (target {args.trials})"),
        ("lost", f"{len(result['lost'])}" + (f" {result['lost'][:10]}" if result["lost"] else "")),
        ("duplicated", f"{len(result['duplicated'])}"),
        ("budget overshoot", f"{result['overshoot']} (<= {args.workers - 1} allowed)"),
        ("records left running", f"{len(result['running'])}" + (f" {result['running'][:10]}" if result["running"] else "")),
        ("records optuna disagrees with", f"{len(result['disagree'])}"),
        ("reaped (worker lost, re-run)", f"{result['reaped']} (of them still alive, heartbeat starved: "
                                         f"{max(0, result['reaped'] - kinds['kill'])}; ended after that: {result['late']})"),
        ("interrupted (SIGTERM, re-run)", f"{result['interrupted']}"),
        ("records / optuna trials", f"{result['records']} / {result['optuna_trials']} ({result['waiting']} retries still "
                                    "queued: the budget was met before anyone needed them)"),
        ("heartbeat warnings logged", f"{heartbeat_warnings}"),
        ("ledger overhead per trial, wall", f"median {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
                                            f"max {max(ms):.1f} ms (n = {len(ms)})" if ms else "no data"),
        ("ledger overhead per trial, CPU", f"median {statistics.median(cpu):.1f} ms, p95 {percentile(cpu, 0.95):.1f} ms "
                                           "(the worker's own CPU time in those calls)" if cpu else "no data"),
        ("study wall time", f"{elapsed:.1f} s" + (" (TIMED OUT)" if timed_out else "")
                            + f"; load average {os.getloadavg()[0]:.1f} at the end (2 cores)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    ok = (not timed_out and not crashed and expected_exit and len(fired) == args.kills + args.terms
          and result["completed"] >= args.trials and not result["lost"] and not result["duplicated"]
          and 0 <= result["overshoot"] <= args.workers - 1 and not result["running"] and not result["disagree"])
    overhead = (f"median {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms wall "
                f"({statistics.median(cpu):.1f} / {percentile(cpu, 0.95):.1f} ms CPU)" if ms else "n/a")
    print(f"SUMMARY ledger_soak: {args.workers} workers, {args.trials} trials, {kinds['kill']} kill -9 + "
          f"{kinds['term']} SIGTERM: completed {result['completed']}, lost {len(result['lost'])}, "
          f"duplicated {len(result['duplicated'])}, overshoot {result['overshoot']} (<= {args.workers - 1}), "
          f"left running {len(result['running'])}; ledger overhead per trial {overhead}: "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
