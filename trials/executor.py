"""Run a trial in its own process, so an OOM, a segfault or a hang ends the trial, not the search.

Processes come from a multiprocessing *forkserver* that has imported torch, transformers
and peft once: each trial is a fresh fork (clean memory, its own peak-RSS figure, its own
address-space limit) that starts in milliseconds instead of re-importing for seconds. The
forkserver itself never runs a torch op, so forking it is safe for OpenMP.

Parent and child exchange only JSON bytes (``send_bytes``), never pickled objects.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable

from autopeft.trials.device import cpu_seconds, peak_rss_mb
from autopeft.trials.spec import OnRung, TrialFailure, TrialResult, TrialSpec

_PRELOAD = ["torch", "transformers", "peft", "autopeft.trials.proxy", "autopeft.methods"]
_context = None
_context_lock = threading.Lock()


def _mp_context():
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _context = ctx
        return _context


def run_isolated(spec: TrialSpec, on_event: Callable[[dict], None] | None = None,
                 on_rung: OnRung | None = None) -> TrialResult:
    """Run ``spec`` in a child process and return its result; never raises for trial faults.

    ``on_rung(step, metrics)`` answers, at each of ``spec.proxy.rungs``, whether the trial goes on
    (multi-fidelity); without it every trial trains to the end.

    A timeout, a crash (any signal, including the kernel's OOM killer), an exception or a
    non-finite loss all come back as ``TrialResult(status="failed", error=...)`` with the
    learning curve recorded so far. ``KeyboardInterrupt`` kills the child and propagates.
    """
    ctx = _mp_context()
    # Duplex: the child asks at each rung whether to go on, and waits for the answer.
    receiver, sender = ctx.Pipe(duplex=True)
    process = ctx.Process(target=_child, args=(spec.to_json(), sender, on_rung is not None, os.getcwd()), daemon=True,
                          name=f"trial-{spec.trial}")
    started = time.perf_counter()
    process.start()
    sender.close()
    curve: list = []
    result: TrialResult | None = None
    spent = 0.0  # the child's CPU seconds as of its last message: what a killed trial had cost
    try:
        while result is None:
            remaining = spec.proxy.timeout - (time.perf_counter() - started)
            if remaining <= 0:
                _kill(process)
                return TrialResult.failed(f"timeout: no result after {spec.proxy.timeout:g} s", curve,
                                          wall_time=spec.proxy.timeout, cpu_time=spent)
            if receiver.poll(min(remaining, 0.5)):
                try:
                    message = json.loads(receiver.recv_bytes())
                except EOFError:
                    break  # the child closed its end: it is gone
                spent = message.get("cpu", spent)
                if message["kind"] == "curve":
                    curve.append([message["step"], message["loss"]])
                    if on_event:
                        on_event(message)
                elif message["kind"] == "rung":
                    go_on = bool(on_rung(message["step"], message["metrics"])) if on_rung else True
                    receiver.send_bytes(json.dumps({"continue": go_on}).encode())
                elif message["kind"] == "result":
                    result = TrialResult(**message["result"])
            elif not process.is_alive():
                if receiver.poll(0):
                    continue  # it sent its result between the poll above and its exit: read that first
                break
    except KeyboardInterrupt:
        _kill(process)
        raise
    finally:
        receiver.close()
    process.join(timeout=30)
    if process.is_alive():
        _kill(process)
    if result is not None:
        return result
    return TrialResult.failed(_death_reason(process.exitcode), curve, wall_time=time.perf_counter() - started,
                              cpu_time=spent)


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGKILL:
            return f"crashed: killed by {name} (often the kernel's out-of-memory killer)"
        return f"crashed: killed by signal {name}"
    return f"crashed: the trial process exited with code {code} before reporting a result"


def _kill(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(timeout=10)


def _child(spec_json: str, sender, ask_at_rungs: bool = False, cwd: str | None = None) -> None:
    """Entry point of the trial process, in the caller's working directory (a fork of the
    forkserver starts in the forkserver's): relative paths and a ``proxy.runner`` module next
    to the user's files resolve as they would in the search process."""
    # The parent decides when a trial stops: Ctrl-C reaches the whole process group and
    # Slurm signals every process of a job, but the search records the trial and kills it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    if cwd:
        try:
            os.chdir(cwd)
        except OSError:  # the directory is gone: paths relative to it fail loudly by themselves
            pass
    spec = TrialSpec.from_json(spec_json)

    def send(message: dict) -> None:
        try:
            sender.send_bytes(json.dumps(message).encode())
        except (BrokenPipeError, ConnectionResetError):  # the search is gone: nobody to report to
            os._exit(1)

    curve: list = []

    def emit(event: dict) -> None:
        curve.append([event["step"], event["loss"]])
        send({**event, "cpu": cpu_seconds()})

    def decide(step: int, metrics: dict) -> bool:
        send({"kind": "rung", "step": step, "metrics": metrics, "cpu": cpu_seconds()})
        return bool(json.loads(sender.recv_bytes())["continue"])

    try:
        if spec.proxy.memory_limit_mb:
            _limit_memory(spec.proxy.memory_limit_mb)
        from autopeft.trials.proxy import run_proxy

        result = run_proxy(spec, emit, decide if ask_at_rungs else None)
    except BaseException as e:  # noqa: BLE001 - every failure becomes data, never a lost worker
        result = TrialResult.failed(describe_failure(e), curve, peak_rss_mb=peak_rss_mb())
    result = dataclasses.replace(result, cpu_time=cpu_seconds())
    send({"kind": "result", "result": json.loads(result.to_json())})
    sender.close()
    os._exit(0)  # skip interpreter teardown: torch's atexit work is pointless in a finished trial


def die_with_parent() -> None:
    """End this trial process as soon as the search that started it is gone.

    A search killed with ``kill -9`` (or by the OOM killer, or a lost node) cannot kill its
    trial, which would otherwise train to its end for nobody. Two guards:

    - A watchdog thread waits on ``multiprocessing.parent_process().sentinel``, a pipe whose
      other end only the search process holds: it reads end-of-file the moment the search
      dies, however it died, on any platform. The thread then ends the process at once.
    - On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the trial when its
      parent dies. Its parent is the forkserver, not the search: this covers the forkserver
      being killed (a process-group kill, the OOM killer), which leaves the watchdog nothing
      to wait for if the search survives.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            forkserver = os.getppid()
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() != forkserver:  # 1: PR_SET_PDEATHSIG
                os._exit(1)  # the parent died before the guard was set
        except (OSError, AttributeError):  # no prctl here: the watchdog alone guards
            pass
    parent = multiprocessing.parent_process()
    if parent is None:  # run in-process (tests): nothing to watch
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at what the process has now plus ``extra_mb``."""
    import resource

    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = current + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def describe_failure(e: BaseException) -> str:
    """One line naming the failure; out-of-memory is recognised whatever raised it."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    lowered = text.lower()
    # A device's OOM names the device: torch.cuda.OutOfMemoryError, or MPS's RuntimeError. The
    # trial process exits right after, which releases all of its device memory.
    if type(e).__name__ == "OutOfMemoryError" or "cuda out of memory" in lowered:
        return f"out of memory (cuda): {text}"[:500]
    if "mps backend out of memory" in lowered:
        return f"out of memory (mps): {text}"[:500]
    if isinstance(e, MemoryError) or "can't allocate memory" in lowered or "out of memory" in lowered:
        return f"out of memory: {text or 'MemoryError'}"[:500]
    if isinstance(e, TrialFailure):
        return text
    return f"{type(e).__name__}: {text}"[:500]
