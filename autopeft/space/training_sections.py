"""The readers of ``proxy:`` and ``target:``: how a trial trains (examples, steps, schedule,
device, precision, a user runner, IST) and how far (the target's steps and seeds, and the
rungs a trial is judged at on the way there).

The other sections' readers are in ``autopeft.space.sections``; checks across sections are
``autopeft.space.loader``'s.
"""

from __future__ import annotations

import dataclasses
import math
import re

from autopeft.space.nodes import Node, Reader, boolean, integer, into, number, optional, read_into, string
from autopeft.space.schema import IstSpec, ProxySpec, TargetSpec
from autopeft.trials.device import DEVICES, PRECISIONS
from autopeft.trials.spec import SCHEDULES


# ---------------------------------------------------------------------------- proxy


def _rungs(node: Node) -> tuple[int, ...]:
    if isinstance(node.value, str):  # 'auto' is read by read_proxy; any other word is a mistake
        raise node.fail(f"expected 'auto' or a list of strictly increasing step counts, got {node.value!r}")
    rungs = tuple(n.int(low=1) for n in node.list(nonempty=False))
    if list(rungs) != sorted(set(rungs)):
        raise node.fail(f"expected strictly increasing step counts, got {node.value!r}")
    return rungs


def _device(node: Node) -> str:
    value = node.str()
    if value in DEVICES or re.fullmatch(r"cuda:\d+", value):
        return value
    raise node.fail(f"expected one of {', '.join(DEVICES)} or cuda:N, got '{value}'")


def _runner(node: Node) -> str | None:
    from autopeft.trials.user_runner import RUNNER_REF

    if node.value is None:
        return None
    value = node.str()
    if not RUNNER_REF.match(value):
        raise node.fail(f"expected 'package.module:function' (your training function), got '{value}'")
    return value


IST: dict[str, Reader] = {"active_fraction": number(low=0.01, high=1.0), "every": integer(low=1)}

PROXY: dict[str, Reader] = {
    "train_examples": integer(low=2),
    "eval_examples": integer(low=2),
    "steps": integer(low=1),
    "batch_size": integer(low=1, high=4096),
    "max_length": integer(low=4, high=8192),
    "warmup": number(low=0, high=0.9),
    "schedule": string(SCHEDULES),
    "warmup_steps": optional(integer(low=0)),
    "seed": integer(low=0),
    "log_every": integer(low=1),
    "timeout": number(positive=True),
    "memory_limit_mb": optional(integer(low=256)),
    "threads": optional(integer(low=1, high=256)),
    "prefix_cache": boolean,
    "rungs": _rungs,
    "signal": string(),  # checked against the task in autopeft.space.loader
    "eta": integer(low=2),
    "device": _device,
    "precision": string(PRECISIONS),
    "gradient_checkpointing": boolean,
    "runner": _runner,
    "ist": optional(into(IstSpec, IST)),
}


def read_proxy(node: Node) -> ProxySpec:
    """``proxy:``; ``rungs: auto`` sets ``auto_rungs`` (the rungs are placed while the study runs,
    on the way to ``target:``; without a target the proxy is the target, and there are none).

    ``auto`` is also the default when the proxy names neither ``rungs`` nor ``steps`` (the
    lowest rung) and has no ``runner``: a fixed first rung cut runs that had not begun to
    learn, so rungs are placed by hand only when asked for."""
    given = node.value if isinstance(node.value, dict) else {}
    if given.get("rungs") == "auto":
        rest = Node({k: v for k, v in given.items() if k != "rungs"}, node.path, node.source)
        return dataclasses.replace(read_into(rest, ProxySpec, PROXY), auto_rungs=True)
    proxy = read_into(node, ProxySpec, PROXY)
    if not {"rungs", "steps"} & set(given) and given.get("runner") is None:
        proxy = dataclasses.replace(proxy, auto_rungs=True)
    return proxy


# ---------------------------------------------------------------------------- target


def read_target(node: Node, proxy: ProxySpec) -> tuple[TargetSpec, ProxySpec]:
    """``target:`` and the proxy it turns into: trials train to ``target.steps``, judged at
    rungs from ``proxy.steps`` (the lowest) up by factors of ``proxy.eta``, unless
    ``proxy.rungs`` names them."""
    tk = node.mapping({"steps", "epochs", "seeds"})
    if "steps" in tk and "epochs" in tk:
        raise tk["epochs"].fail("give target.steps or target.epochs, not both")
    epochs = tk["epochs"].number(positive=True) if "epochs" in tk else None
    if "steps" in tk:
        steps = tk["steps"].int(low=1)
        where = tk["steps"]
    else:  # one epoch over the training rows unless told otherwise
        epochs = 1.0 if epochs is None else epochs
        steps = max(1, math.ceil(epochs * proxy.train_examples / proxy.batch_size))
        where = tk["epochs"] if "epochs" in tk else node
    seeds = tk["seeds"].int(low=1, high=100) if "seeds" in tk else TargetSpec.seeds
    if proxy.auto_rungs:  # placed while the study runs (autopeft.search.fidelity.placement): no lowest rung to meet
        return (TargetSpec(steps=steps, seeds=seeds, epochs=epochs),
                dataclasses.replace(proxy, steps=steps, rungs=()))
    if steps < proxy.steps:
        raise where.fail(f"expected a target of at least proxy.steps={proxy.steps} (the lowest rung), got {steps} steps")
    if proxy.rungs:
        if proxy.rungs[-1] >= steps:
            raise where.fail(f"expected a target beyond the last of proxy.rungs ({proxy.rungs[-1]}), got {steps} steps")
        rungs = proxy.rungs
    else:
        rungs, rung = [], proxy.steps
        while rung < steps:
            rungs.append(rung)
            rung *= proxy.eta
        rungs = tuple(rungs)
    return TargetSpec(steps=steps, seeds=seeds, epochs=epochs), dataclasses.replace(proxy, steps=steps, rungs=rungs)
