"""YAML (plus ``--set`` overrides) -> a validated ``SearchSpace``.

Strict by design: unknown keys, wrong types, empty choices and inverted ranges are errors
that name the file, the key path and what was expected. Only ``yaml.safe_load`` is used.

This module reads the file, applies the overrides (``autopeft.space.overrides``), reads each
section (``autopeft.space.sections``; ``proxy:`` and ``target:`` in
``autopeft.space.training_sections``; with values from ``autopeft.space.nodes``) in the order
their dependencies need, and checks what holds across sections.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any

import yaml

from autopeft.errors import SpaceError
from autopeft.space.nodes import Node, first_line
from autopeft.space.overrides import apply_overrides, set_by_override
from autopeft.space.schema import Budget, ProxySpec, SearchSpace, SpaceSpec, TargetSpec
from autopeft.space.sections import (
    default_objectives,
    read_budget,
    read_importance,
    read_model,
    read_objectives,
    read_search,
    read_space,
    read_study,
    read_task,
    read_verify,
)
from autopeft.space.training_sections import read_proxy, read_target

_TOP = {"study", "model", "task", "objectives", "budget", "space", "proxy", "search", "importance", "verify", "target"}


def load_space(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """Read, override and validate a search-space YAML file.

    Raises:
        SpaceError: for an unreadable file, invalid YAML, or any invalid key.
    """
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(source, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(source, "", f"cannot read the file: {e}") from None
    return load_space_text(text, source, overrides)


def load_space_text(text: str, source: str = "<text>", overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """Like ``load_space`` for YAML already in memory (the dashboard's New search page)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError(source, where, f"not valid YAML: {first_line(e)}") from None
    if document is None:
        raise SpaceError(source, "", "the file is empty; expected a mapping with study, model, task and space")
    return parse_with_overrides(document, source, overrides)


def parse_with_overrides(document, source: str, overrides=()) -> SearchSpace:
    """``parse_space`` of ``document`` with ``key.path=value`` overrides applied; a bad value
    that came from an override is reported against ``--set``, not the file."""
    if not overrides:
        return parse_space(document, source)
    document = apply_overrides(document, overrides)
    try:
        return parse_space(document, source)
    except SpaceError as e:
        if set_by_override(e.path, overrides):
            raise SpaceError("--set", e.path, e.problem) from None
        raise


def parse_space(document: Any, source: str = "<memory>") -> SearchSpace:
    """Validate a parsed YAML document and compile it to a ``SearchSpace``.

    Raises:
        SpaceError: naming ``source``, the key path and what was expected.
    """
    top = Node(document, "", source).mapping(_TOP, required={"study", "model", "task", "space"})

    def section(name: str) -> Node:  # an absent section reads as empty: all its defaults
        return top[name] if name in top else Node({}, name, source)

    study = read_study(top["study"])
    model = read_model(top["model"])
    task = read_task(top["task"])
    objectives = read_objectives(top["objectives"], task.metric) if "objectives" in top else default_objectives(task.metric)
    budget = read_budget(top["budget"]) if "budget" in top else Budget()
    verify = read_verify(section("verify"))
    space = read_space(top["space"])
    proxy = read_proxy(section("proxy"))
    search = read_search(section("search"), objectives)
    target = None
    if "target" in top and top["target"].value is not None:  # `--set target=null`: the proxy is the target
        target, proxy = read_target(top["target"], proxy)
    if proxy.auto_rungs and target is None:  # the proxy is the target: no way to it to place rungs on
        proxy = dataclasses.replace(proxy, auto_rungs=False)
    _check_proxy(proxy, target, source)
    _check_signal(proxy, task, source)
    importance = read_importance(top["importance"]) if "importance" in top else "none"
    _check_importance(space, importance, source)

    return SearchSpace(
        study=study,
        model=model,
        task=task,
        objectives=objectives,
        budget=budget,
        space=space,
        proxy=proxy,
        search=search,
        importance=importance,
        verify=verify,
        target=target,
        source=source,
        document=document,
    )


def _check_proxy(proxy: ProxySpec, target: TargetSpec | None, source: str) -> None:
    """The proxy's keys against each other, once ``target:`` has set its steps and rungs."""
    if proxy.auto_rungs and proxy.runner:
        raise SpaceError(source, "proxy.rungs", f"proxy.runner ({proxy.runner}) trains the whole trial itself; "
                                                "rungs need the built-in trainer: drop one of them")
    if proxy.runner and (proxy.rungs or proxy.ist):
        # Rungs and IST act inside the built-in training loop, which a runner replaces.
        key = "proxy.rungs" if proxy.rungs else "proxy.ist"
        if target is not None and proxy.rungs:
            key = "target.steps"
        raise SpaceError(source, key, f"proxy.runner ({proxy.runner}) trains the whole trial itself; "
                                      f"{key} needs the built-in trainer: drop one of them")
    if proxy.warmup_steps is not None and proxy.warmup_steps > proxy.steps:
        limit = f"target.steps={proxy.steps}" if target is not None else f"proxy.steps={proxy.steps}"
        raise SpaceError(source, "proxy.warmup_steps", f"expected at most {limit}, got {proxy.warmup_steps}")
    if proxy.rungs and proxy.rungs[-1] > proxy.steps:
        raise SpaceError(source, "proxy.rungs", f"expected rungs at most proxy.steps={proxy.steps}, got {proxy.rungs[-1]}")


def _check_signal(proxy: ProxySpec, task, source: str) -> None:
    """``proxy.signal`` must be one the task produces at a rung."""
    from autopeft.tasks import rung_signals

    known = rung_signals(task.type, task.metric)
    if proxy.signal not in known:
        raise SpaceError(source, "proxy.signal", f"expected one of {', '.join(known)} (what a {task.type} task scored by "
                                                 f"{task.metric} reports at a rung), got '{proxy.signal}'")


def _check_importance(space: SpaceSpec, importance: str, source: str) -> None:
    """What the space ranks by importance needs the scores (``importance: spt``)."""
    if space.layers.by == "importance" and importance == "none":
        raise SpaceError(source, "space.layers.by", "placement by importance needs 'importance: spt' at the top level")
    if space.targets_top_k and importance == "none":
        raise SpaceError(source, "space.targets.by", "targets by importance need 'importance: spt' at the top level")
