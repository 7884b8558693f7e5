"""Bring your own training code: a function of yours trains the trial autopeft prepared.

``proxy.runner: "package.module:function"`` (or ``autopeft search --runner``) names a function
that receives one :class:`RunnerTrial` — the peft-wrapped model already on its device, the
tokenizer, the trial's spec (steps, learning rate, seed, device, precision, batch size) and
the prepared data — trains however it likes and returns the metrics as a dict. autopeft
still chooses the configuration, wraps and counts the model, enforces the budget, runs the
trial in its own process (timeouts, out-of-memory, crashes and non-finite metrics become
failed trials with their reason, exactly as for the built-in trainer), records, and exports
(the adapter saved is the model object the function trained in place).

The function's contract:

- return ``{"accuracy": 0.81, ...}``: finite numbers on the validation split; the task's
  metric (``spec.metric``, the search objective) must be among them;
- when ``trial.test_split`` is true (``autopeft verify``), also ``"test": {...}``, the same
  metrics on ``trial.split("test")``;
- optionally call ``trial.report(step, loss)`` as it trains (the learning curve survives a
  crash) and ``trial.optimizer_stepped(step)`` right after each optimiser step, before the
  gradients are cleared (AdaLoRA re-allocates its ranks there; a no-op for other methods).

The module is imported in the trial process, from the installed packages or else from the
working directory (as uvicorn finds an app), so ``mypackage.train:run`` in the directory the
search runs in is found without installing it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from autopeft.trials.spec import TrialFailure, TrialSpec

#: ``package.module:function`` (dotted module, one attribute).
RUNNER_REF = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class RunnerNotFound(Exception):
    """The runner reference does not name an importable callable (one-line message)."""


def load_runner(ref: str) -> Callable[["RunnerTrial"], dict]:
    """The function ``ref`` (``package.module:function``) names; ``RunnerNotFound`` otherwise."""
    if not RUNNER_REF.match(ref):
        raise RunnerNotFound(f"expected 'package.module:function', got {ref!r}")
    module_name, attr = ref.split(":")
    cwd = os.getcwd()
    try:
        module = _import(module_name, cwd)
    except ModuleNotFoundError as e:
        if e.name == module_name or module_name.startswith(f"{e.name}."):  # the module itself, not one it imports
            raise RunnerNotFound(f"cannot import module '{module_name}' (looked in {cwd} and the installed packages)") from e
        raise RunnerNotFound(f"importing '{module_name}' failed: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module raised on import: say so in one line
        raise RunnerNotFound(f"importing '{module_name}' failed: {type(e).__name__}: {e}") from e
    function = getattr(module, attr, None)
    if function is None:
        raise RunnerNotFound(f"module '{module_name}' has no '{attr}'")
    if not callable(function):
        raise RunnerNotFound(f"'{ref}' is not a function (it is a {type(function).__name__})")
    return function


def _import(module_name: str, directory: str):
    """``module_name`` from the installed packages, else from ``directory``: only its top-level
    package is looked up there (``sys.path`` is left alone; its submodules resolve through
    the package's own ``__path__``), as uvicorn finds an app in the working directory."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        found = importlib.machinery.PathFinder.find_spec(top, [directory]) if e.name == top else None
        if found is None:
            raise
    module = importlib.util.module_from_spec(found)
    sys.modules[top] = module
    try:
        if found.loader is not None:  # None: a namespace package (a folder without __init__.py)
            found.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise
    return importlib.import_module(module_name)


@dataclass(frozen=True)
class RunnerTrial:
    """What a user runner gets: one trial, ready to train.

    Attributes:
        model: The base model wrapped by peft with the trial's configuration, on ``device``;
            only the adapter (and a classification head) requires grad.
        tokenizer: The base model's tokenizer.
        spec: The whole trial spec: ``spec.learning_rate``, ``spec.proxy.steps``,
            ``spec.proxy.batch_size``, ``spec.proxy.seed``, ``spec.proxy.precision``,
            ``spec.metric``, ``spec.task``, ``spec.num_labels`` ...
        device: Where the model is (``cpu``, ``cuda:0``, ``mps``).
        data_path: The prepared splits (safetensors: ``train.*``, ``eval.*`` and, for
            verification, ``test.*``; ``input_ids``, ``attention_mask``, ``labels``).
        test_split: Whether the metrics on the test split are asked for too.
    """

    model: Any
    tokenizer: Any
    spec: TrialSpec
    device: str
    data_path: str
    test_split: bool
    _splits: dict = field(repr=False)
    _report: Callable[[int, float], None] = field(repr=False)
    _on_step: Callable[[int], None] = field(repr=False)

    def split(self, name: str) -> dict:
        """``{"input_ids", "attention_mask", "labels"}`` tensors of ``train``, ``eval`` or ``test``
        (padded to ``spec.proxy.max_length``; causal-LM labels are -100 outside the scored tokens)."""
        if name not in self._splits:
            raise KeyError(f"no split {name!r}: this trial has {sorted(self._splits)}")
        return {k: v for k, v in self._splits[name].items() if k in ("input_ids", "attention_mask", "labels")}

    def dataset(self, name: str):
        """The split as a ``datasets.Dataset`` in torch format (what ``transformers.Trainer`` takes)."""
        from datasets import Dataset

        return Dataset.from_dict({k: v.tolist() for k, v in self.split(name).items()}).with_format("torch")

    def report(self, step: int, loss: float) -> None:
        """One point of the learning curve (mean training loss up to ``step``)."""
        self._report(int(step), float(loss))

    def optimizer_stepped(self, step: int) -> None:
        """Call right after optimiser step ``step`` (1-based), gradients still present."""
        self._on_step(int(step))


def run_user(spec: TrialSpec, model, placement, splits: dict, emit: Callable[[dict], None]) -> tuple[dict, dict, list]:
    """Call the spec's runner on the prepared trial; (validation metrics, test metrics, curve).

    Raises ``TrialFailure`` (one line) when the runner cannot be loaded or returns metrics
    that cannot be recorded; anything the runner itself raises propagates to the trial
    process, which records it like any trial fault.
    """
    from transformers import AutoTokenizer

    from autopeft.methods import get_method

    try:
        function = load_runner(spec.proxy.runner)
    except RunnerNotFound as e:
        raise TrialFailure(f"proxy.runner: {e}") from e
    curve: list = []

    def report(step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrialFailure(f"non-finite loss ({loss}) at step {step}")
        curve.append([step, loss])
        emit({"kind": "curve", "step": step, "loss": loss})

    method = get_method(spec.method)
    trial = RunnerTrial(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(spec.model, trust_remote_code=spec.trust_remote_code,
                                                revision=spec.revision),
        spec=spec, device=str(placement.device), data_path=spec.data_path, test_split=spec.test_split,
        _splits=splits, _report=report, _on_step=lambda step: method.on_step(model, step),
    )
    returned = function(trial)
    metrics, test = _checked_metrics(returned, spec)
    return metrics, test, curve


def _checked_metrics(returned, spec: TrialSpec) -> tuple[dict, dict]:
    where = f"runner {spec.proxy.runner}"
    if not isinstance(returned, dict):
        raise TrialFailure(f"{where} returned {type(returned).__name__}; expected a dict of metrics "
                           f"such as {{'{spec.metric}': 0.8}}")
    returned = dict(returned)
    test = returned.pop("test", None)
    metrics = _numbers(returned, where)
    if spec.metric not in metrics:
        raise TrialFailure(f"{where} returned no '{spec.metric}' (the task metric); it returned "
                           f"{sorted(metrics) or 'nothing'}")
    if not spec.test_split:
        return metrics, {}
    if not isinstance(test, dict) or spec.metric not in test:
        raise TrialFailure(f"{where}: verification asks for the test split too; expected "
                           f"'test': {{'{spec.metric}': ...}} in what it returns (trial.test_split is true)")
    return metrics, _numbers(test, f"{where} 'test'")


def _numbers(metrics: dict, where: str) -> dict:
    out = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TrialFailure(f"{where}: metric '{name}' is {value!r}; expected a number") from None
        if not math.isfinite(number):
            raise TrialFailure(f"{where}: metric '{name}' is {number} (not finite)")
        out[str(name)] = number
    return out
