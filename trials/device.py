"""Where a trial runs and in what precision: one code path for CPU, CUDA and Apple (MPS).

The spec says ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and
``precision`` (``fp32``, ``bf16``, ``fp16``); ``resolve`` turns them into a ``Placement``
inside the trial process (never in the forkserver parent, which must not initialise CUDA
before it forks). The model is loaded in fp32 and stays there — adapter weights included,
as peft recommends — while ``autocast`` runs the forward passes in the lower precision;
fp16 on CUDA adds a gradient scaler. The CPU runs the same lines as a GPU: only the
``torch.device`` differs, so the tests on this CPU-only machine cover the GPU path's logic.

Asking for what is absent is an error before any trial (``check``), never a silent fall
back to the CPU.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda", "mps")  # plus "cuda:N"
PRECISIONS = ("fp32", "bf16", "fp16")


class DeviceUnavailable(Exception):
    """The requested device or precision does not exist here; the message says which and what to use."""


@dataclass(frozen=True)
class Placement:
    """A resolved device and precision.

    Attributes:
        device: The ``torch.device`` string (``cpu``, ``cuda:0``, ``mps``).
        precision: ``fp32``, ``bf16`` or ``fp16``.
    """

    device: str
    precision: str

    @property
    def kind(self) -> str:
        """``cpu``, ``cuda`` or ``mps``."""
        return self.device.split(":")[0]

    def autocast(self):
        """The context the forward passes run in: ``torch.autocast`` below fp32, else nothing."""
        if self.precision == "fp32":
            return nullcontext()
        import torch

        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.kind, dtype=dtype)

    def grad_scaler(self):
        """A ``GradScaler`` for fp16 on CUDA (small fp16 gradients underflow without one), else None."""
        if self.precision != "fp16" or self.kind != "cuda":
            return None
        import torch

        return torch.amp.GradScaler("cuda")

    def reset_peak_memory(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_mb(self) -> tuple[float, str]:
        """The device's peak memory in MiB, and which figure it is.

        CUDA: ``max_memory_allocated`` (tensors, not the caching allocator's reserve);
        MPS: memory allocated now (MPS keeps no peak); CPU: the process's peak RSS.
        """
        import torch

        if self.kind == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_max_allocated"
        if self.kind == "mps":
            return torch.mps.current_allocated_memory() / 2**20, "mps_current_allocated"
        return peak_rss_mb(), "cpu_peak_rss"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) this process has used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cuda_count() -> int:
    import torch

    # NVML answers without creating a CUDA context, so a parent that only checks stays fork-safe.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def check(device: str, precision: str) -> str:
    """What ``resolve`` will pick for ``device``, or ``DeviceUnavailable`` with a one-line fix.

    Safe in a parent process: it never initialises CUDA.
    """
    import torch

    if device == "auto":
        kind = "cuda" if _cuda_count() else ("mps" if _mps_available() else "cpu")
    elif device == "cpu":
        kind = "cpu"
    elif device == "mps":
        if not _mps_available():
            raise DeviceUnavailable("device 'mps' is not available here (no Apple GPU, or torch built without MPS); "
                                    "use device: cpu or auto")
        kind = "mps"
    elif device == "cuda" or device.startswith("cuda:"):
        count = _cuda_count()
        if not count:
            built = "torch built without CUDA" if torch.version.cuda is None else "no CUDA GPU visible"
            raise DeviceUnavailable(f"device '{device}' is not available here ({built}, torch {torch.__version__}); "
                                    "use device: cpu or auto")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= count:
            raise DeviceUnavailable(f"device '{device}': only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
        kind = "cuda"
    else:
        raise DeviceUnavailable(f"unknown device '{device}'; expected one of auto, cpu, cuda, cuda:N, mps")
    if precision == "fp16" and kind == "cpu":
        raise DeviceUnavailable("precision fp16 needs a GPU (CPU autocast is bf16); use precision: bf16 or fp32")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceUnavailable("precision bf16: this CUDA GPU does not support bfloat16; use fp16 or fp32")
    return kind


def resolve(device: str, precision: str) -> Placement:
    """The ``Placement`` for a trial (call it in the trial process)."""
    kind = check(device, precision)
    if kind == "cuda":
        name = device if device.startswith("cuda:") else "cuda:0"
    else:
        name = kind
    return Placement(name, precision)


def assign_gpus(workers: int, gpus: tuple[str, ...], per_gpu: int = 1) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``workers`` local workers on a host with ``gpus``.

    Worker i gets GPU ``gpus[i mod G]``; never more than ``per_gpu`` workers on one GPU.
    With no GPUs every worker gets None (leave the variable alone: CPU or MPS).

    Raises:
        DeviceUnavailable: when ``workers`` would put more than ``per_gpu`` on a GPU.
    """
    if per_gpu < 1:
        raise DeviceUnavailable(f"--per-gpu must be at least 1, got {per_gpu}")
    if not gpus:
        return [None] * workers
    if workers > len(gpus) * per_gpu:
        raise DeviceUnavailable(
            f"{workers} workers on {len(gpus)} GPU(s) ({','.join(gpus)}) would put more than {per_gpu} "
            f"on one GPU; use at most {len(gpus) * per_gpu} workers, or --per-gpu {-(-workers // len(gpus))}"
        )
    return [gpus[i % len(gpus)] for i in range(workers)]


def visible_gpus() -> tuple[str, ...]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries: the ones it
    already lists (a job scheduler's allocation), else ``0 .. count-1``."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1")
    return tuple(str(i) for i in range(_cuda_count()))
