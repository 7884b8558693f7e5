"""A local pool of workers: N ``autopeft worker`` processes on one study, on this machine.

``autopeft search --workers N`` runs its trials here instead of in its own process. The pool
is a backend in syne-tune's sense: it creates the study (and optuna's tables, once), starts N
worker processes that share it through the database, splits the cores between them (each
gets ``cores / N`` torch threads) and the GPUs (``gpu_assignment``: ``CUDA_VISIBLE_DEVICES``
per worker), waits for them, and stops them on Ctrl-C or SIGTERM (each worker records its
running trial and exits 143). It knows nothing of the terminal: what it says goes to ``log``.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

from autopeft.errors import AutoPeftError


def gpu_assignment(device: str, workers: int, gpus: Optional[str], per_gpu: int) -> list:
    """``CUDA_VISIBLE_DEVICES`` per local worker (None: leave it alone).

    A study that may use CUDA (device auto / cuda) spreads its workers over the visible GPUs,
    or over ``gpus`` (``--gpus``); asking for GPUs where CUDA is absent is an error, never a
    CPU run.
    """
    from autopeft.trials.device import DeviceUnavailable, assign_gpus, check, visible_gpus

    try:
        if gpus is not None:
            try:
                check("cuda", "fp32")  # the trials must not run on the CPU instead
            except DeviceUnavailable as e:
                raise DeviceUnavailable(f"--gpus {gpus}: {str(e).split(';')[0]}; leave out --gpus") from e
            chosen = tuple(g.strip() for g in gpus.split(",") if g.strip())
            if not chosen:
                raise DeviceUnavailable(f"--gpus: expected device numbers like 0,2,5, got '{gpus}'")
        elif device == "auto" or device == "cuda":
            chosen = visible_gpus()
        else:  # cpu, mps, or one named cuda:N device: the space decides
            chosen = ()
        return assign_gpus(workers, chosen, per_gpu)
    except DeviceUnavailable as e:
        raise AutoPeftError(str(e)) from e


def worker_command(study: str, settings=None) -> list[str]:
    """The command line of one local worker on ``study`` (``settings``: a ``LedgerSettings``, passed
    on so that the workers beat and judge each other as the search was told to)."""
    cmd = [sys.executable, "-c", "from autopeft.cli import run; run()", "worker", study]
    if settings is not None:
        cmd += ["--heartbeat", str(round(settings.heartbeat)), "--grace", str(round(settings.grace)),
                "--retries", str(settings.retries)]
    return cmd


def run_local_workers(store, prep, trials: Optional[int], workers: int, gpu_of: list, log: Callable[[str], None],
                      settings=None):
    """N local ``autopeft worker`` processes on the study, each with cores / N torch threads and
    its own GPU when there are GPUs (``gpu_of``, from ``gpu_assignment``; its trials see it as
    cuda:0), each beating and judging others' heartbeats by ``settings`` (a ``LedgerSettings``;
    None: the worker's defaults). Returns the ``SearchOutcome`` once every worker has exited.

    Raises:
        AutoPeftError: more than 4 workers on SQLite, or a worker exited with an error.
    """
    import subprocess

    from autopeft.search.optuna_setup import optuna_study
    from autopeft.search.reports import SearchOutcome
    from autopeft.search.sampling.samplers import make_sampler
    from autopeft.search.signals import StopSignals
    from autopeft.search.studies import open_study

    if store.url.startswith("sqlite") and workers > 4:
        raise AutoPeftError(f"--workers {workers} on SQLite: at most 4 local workers share one SQLite file safely; use PostgreSQL")
    study = open_study(store, prep, trials)
    # Create optuna's tables and study here, once: N workers starting together would race to.
    optuna_study(store, study, make_sampler(prep.space.search, prep.encoding))
    env = {**os.environ, "AUTOPEFT_STORAGE": store.url,  # the URL (and any password) stays off the command line
           "AUTOPEFT_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    cmd = worker_command(study.name, settings)
    on_gpus = f", GPUs {','.join(g for g in gpu_of)}" if gpu_of[0] is not None else ""
    log(f"running study {study.name} with {workers} workers ({env['AUTOPEFT_THREADS']} threads each{on_gpus})")
    procs = [subprocess.Popen(cmd, env=env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpu_of]
    interrupted = False
    stop = StopSignals()  # SIGTERM (Slurm, Kubernetes) stops the workers like Ctrl-C
    try:
        with stop.installed(), stop.interruptible():
            codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            p.terminate()  # workers record their running trial and exit 143
        codes = [p.wait() for p in procs]
    if not interrupted and any(codes):
        raise AutoPeftError(f"a worker exited with code {max(codes)}; `autopeft show {study.name}` lists what was stored")
    return SearchOutcome(study, store.trials(study.name), interrupted, stop.signal)
