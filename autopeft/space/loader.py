"""YAML (plus ``--set`` overrides) -> a validated ``SearchSpace``.

Strict by design: unknown keys, wrong types, empty choices and inverted ranges are errors
that name the file, the key path and what was expected. Only ``yaml.safe_load`` is used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

from pathlib import Path
from typing import Any, Callable

import yaml

from autopeft.errors import SpaceError
from autopeft.trials.device import DEVICES, PRECISIONS
from autopeft.trials.spec import SCHEDULES
from autopeft.space.schema import (
    COST_OBJECTIVES,
    TASK_METRICS,
    Budget,
    Choice,
    Dimension,
    Fixed,
    IstSpec,
    ModelSpec,
    Objective,
    PerLayer,
    PerMethod,
    Placement,
    ProxySpec,
    Range,
    SearchSpace,
    SearchSpec,
    SpaceSpec,
    TargetSpec,
    Targets,
    TaskSpec,
    VerifySpec,
    default_learning_rate,
)

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IMPORTANCE = ("none", "spt")
_YAML11_FLOAT = re.compile(r"[-+]?[0-9]*\.?[0-9]+[eE][-+]?[0-9]+")


class _Node:
    """A value with the key path it came from, so every error can say where it is."""

    def __init__(self, value: Any, path: str, source: str) -> None:
        self.value, self.path, self.source = value, path, source

    def fail(self, problem: str) -> SpaceError:
        return SpaceError(self.source, self.path or "<top level>", problem)

    def child(self, key: str | int) -> "_Node":
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return _Node(self.value[key], path, self.source)

    def mapping(self, allowed: set[str], required: set[str] = frozenset()) -> dict[str, "_Node"]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping with keys {sorted(allowed)}, got {_show(self.value)}")
        for key in self.value:
            if key not in allowed:
                raise SpaceError(
                    self.source,
                    f"{self.path}.{key}" if self.path else str(key),
                    f"unknown key; expected one of {sorted(allowed)}",
                )
        for key in sorted(required):
            if key not in self.value:
                raise self.fail(f"missing required key '{key}'")
        return {k: self.child(k) for k in self.value}

    def list(self, nonempty: bool = True) -> list["_Node"]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_show(self.value)}")
        if nonempty and not self.value:
            raise self.fail("expected a non-empty list")
        return [self.child(i) for i in range(len(self.value))]

    def str(self, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"expected a non-empty string, got {_show(self.value)}")
        if choices is not None and self.value not in choices:
            raise self.fail(f"expected one of {list(choices)}, got {self.value!r}")
        return self.value

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_show(self.value)}")
        return self.value

    def int(self, low: int | None = None, high: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected an integer, got {_show(self.value)}")
        _check_bounds(self, self.value, low, high)
        return self.value

    def number(self, low: float | None = None, high: float | None = None, positive: bool = False) -> float:
        value = self.value
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads `1e-4` (no dot) as a string; accept it
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number, got {_show(self.value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(f"expected a finite number, got {self.value!r}")
        if positive and value <= 0:
            raise self.fail(f"expected a number > 0, got {self.value!r}")
        _check_bounds(self, value, low, high)
        return value


def _check_bounds(node: _Node, value: float, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise node.fail(f"expected a value >= {low}, got {value!r}")
    if high is not None and value > high:
        raise node.fail(f"expected a value <= {high}, got {value!r}")


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


# ---------------------------------------------------------------------------- dimensions


def _dimension(node: _Node, item: Callable[[_Node], Any], *, numeric: bool, integer: bool = False) -> Dimension:
    """A scalar (fixed), a list (choice) or, for numbers, ``{log|range: [low, high]}``."""
    value = node.value
    if isinstance(value, list):
        items = [item(n) for n in node.list()]
        if len(set(map(_key, items))) != len(items):
            raise node.fail(f"expected distinct values, got duplicates in {value!r}")
        if len(items) == 1:
            return Fixed(items[0])
        return Choice(tuple(sorted(items) if numeric else items))
    if isinstance(value, dict):
        if not numeric:
            raise node.fail(f"expected a value or a list of values, got {_show(value)}")
        (kind, bounds), *rest = list(node.mapping({"log", "range"}).items()) or [(None, None)]
        if kind is None or rest:
            raise node.fail("expected exactly one of 'log: [low, high]' or 'range: [low, high]'")
        pair = bounds.list()
        if len(pair) != 2:
            raise bounds.fail(f"expected [low, high], got {bounds.value!r}")
        low, high = (item(n) for n in pair)
        if low > high:
            raise bounds.fail(f"low <= high must hold, but got low={low}, high={high}")
        if kind == "log" and low <= 0:
            raise bounds.fail(f"a log range needs low > 0, got low={low}")
        return Range(low, high, log=(kind == "log"), integer=integer)
    return Fixed(item(node))


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _targets(node: _Node) -> tuple[Targets, ...]:
    def one(n: _Node) -> Targets:
        if n.value == "all-linear":
            return Targets(())
        if isinstance(n.value, str):
            return Targets((n.str(),))
        names = tuple(m.str() for m in n.list())
        if len(set(names)) != len(names):
            raise n.fail(f"expected distinct module names, got {n.value!r}")
        return Targets(names)

    if isinstance(node.value, str):
        return (one(node),)
    items = node.list()
    if all(isinstance(n.value, str) for n in items) and "all-linear" not in node.value:
        # [query, value] is one set of modules, as in peft's target_modules; choices are
        # written as a list of sets: [[query, value], [query, key, value], all-linear].
        return (one(node),)
    choices = tuple(one(n) for n in items)
    if len({c.label for c in choices}) != len(choices):
        raise node.fail("expected distinct target choices")
    return choices


def _targets_top_k(node: _Node) -> tuple[int, int]:
    keys = node.mapping({"top_k", "by"}, required={"top_k", "by"})
    keys["by"].str(("importance",))
    n = keys["top_k"]
    if isinstance(n.value, int) and not isinstance(n.value, bool):
        return (n.int(low=1),) * 2
    pair = n.list()
    if len(pair) != 2:
        raise n.fail(f"expected [low, high], got {n.value!r}")
    low, high = pair[0].int(low=1), pair[1].int(low=1)
    if low > high:
        raise n.fail(f"low <= high must hold, but got low={low}, high={high}")
    return low, high


def _placement(node: _Node) -> Placement:
    value = node.value
    if value == "all":
        return Placement("all")
    if isinstance(value, list):
        layers = tuple(n.int(low=0) for n in node.list())
        if len(set(layers)) != len(layers):
            raise node.fail(f"expected distinct layer indices, got {value!r}")
        return Placement("fixed", layers=tuple(sorted(layers)))
    keys = node.mapping({"top_k", "by", "per_layer", "range"})
    kinds = [k for k in ("top_k", "per_layer", "range") if k in keys]
    if len(kinds) != 1:
        raise node.fail("expected exactly one of 'top_k', 'per_layer', 'range' (or 'all', or a list of layers)")
    kind = kinds[0]
    if "by" in keys and kind != "top_k":
        raise keys["by"].fail("'by' only applies to top_k")
    if kind == "per_layer":
        if not keys["per_layer"].bool():
            raise keys["per_layer"].fail("expected true (use 'all' for every layer)")
        return Placement("per_layer")
    n = keys[kind]
    if isinstance(n.value, int) and not isinstance(n.value, bool) and kind == "top_k":
        low = high = n.int(low=1)
    else:
        pair = n.list()
        if len(pair) != 2:
            raise n.fail(f"expected [low, high], got {n.value!r}")
        low, high = pair[0].int(low=0 if kind == "range" else 1), pair[1].int(low=0 if kind == "range" else 1)
        if low > high:
            raise n.fail(f"low <= high must hold, but got low={low}, high={high}")
    by = keys["by"].str(("top", "bottom", "importance")) if "by" in keys else "top"
    return Placement(kind, low=low, high=high, by=by)


def _rank(node: _Node, space: dict[str, _Node]) -> Dimension:
    """A rank dimension, or ``{per_layer: [0, 2, 4, 8]}``: one rank per layer, 0 = no adapter."""
    if isinstance(node.value, dict) and "per_layer" in node.value:
        choices = node.mapping({"per_layer"})["per_layer"]
        values = tuple(sorted({n.int(low=0) for n in choices.list()}))
        if len(values) < 2 or values[-1] == 0:
            raise choices.fail(f"expected at least two ranks including one > 0, got {choices.value!r}")
        if "layers" in space and space["layers"].value != "all":
            raise space["layers"].fail("per-layer ranks already place adapters (rank 0 = off); use 'all' or drop 'layers'")
        return PerLayer(values)
    return _dimension(node, lambda n: n.int(low=1), numeric=True, integer=True)


def _learning_rate(node: _Node, method: Dimension) -> Dimension:
    """One rate dimension for every method, or ``{method: band}`` for each method of the space.

    A band is ``{log: [low, high]}`` (searched on a log scale) or a number (that method's rate).
    """
    value = node.value
    if not isinstance(value, dict) or not value or set(value) & {"log", "range"}:
        return _dimension(node, lambda n: n.number(positive=True), numeric=True)
    methods = list(method.values) if isinstance(method, Choice) else [method.value]
    for key in value:
        if key not in methods:
            raise SpaceError(node.source, f"{node.path}.{key}",
                             f"not a method of this space; expected a band for each of space.method {methods}")
    bands = []
    for name in methods:
        if name not in value:
            low, high = default_learning_rate(name)
            raise SpaceError(node.source, f"{node.path}.{name}",
                             f"missing: space.method has '{name}'; give its band, e.g. {{log: [{low:g}, {high:g}]}}")
        n = node.child(name)
        dim = _dimension(n, lambda m: m.number(positive=True), numeric=True)
        if isinstance(dim, Fixed):
            bands.append((name, dim.value, dim.value))
        elif isinstance(dim, Range) and dim.log:
            bands.append((name, dim.low, dim.high))
        else:
            raise n.fail("expected a number or {log: [low, high]}: a per-method band is searched on a log scale")
    return PerMethod(tuple(bands))


def _default_learning_rate(method: Dimension) -> PerMethod:
    """The built-in band of each method of the space (``schema.LEARNING_RATE_FAMILIES``)."""
    methods = list(method.values) if isinstance(method, Choice) else [method.value]
    return PerMethod(tuple((m, *default_learning_rate(m)) for m in methods))


def _rungs(node: _Node) -> tuple[int, ...]:
    rungs = tuple(n.int(low=1) for n in node.list(nonempty=False))
    if list(rungs) != sorted(set(rungs)):
        raise node.fail(f"expected strictly increasing step counts, got {node.value!r}")
    return rungs


def _budget(node: _Node) -> Budget:
    keys = node.mapping({"max_trainable_params"})
    if "max_trainable_params" not in keys:
        return Budget()
    n = keys["max_trainable_params"]
    v = n.value
    if isinstance(v, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%|k|K|m|M)?\s*", v)
        if not m:
            raise n.fail(f"expected a count (120000, 250k, 1.5M) or a percentage (1%), got {v!r}")
        number, unit = float(m.group(1)), m.group(2)
        if unit == "%":
            if not 0 < number <= 100:
                raise n.fail(f"expected a percentage in (0, 100], got {v!r}")
            return Budget(max_fraction=number / 100)
        scale = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}.get(unit or "", 1)
        return Budget(max_params=max(1, int(number * scale)))
    return Budget(max_params=n.int(low=1))


def _test_examples(node: _Node) -> int | float:
    """A count of rows, or a fraction written as a percentage (``20%``) or a number below 1."""
    v = node.value
    if isinstance(v, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", v)
        if not m or not 0 <= float(m.group(1)) <= 50:
            raise node.fail(f"expected a count (2000) or a percentage of the rows up to 50% (20%), got {v!r}")
        return float(m.group(1)) / 100
    if isinstance(v, float) and not isinstance(v, bool):
        if not 0 <= v <= 0.5:
            raise node.fail(f"expected a fraction of the rows in [0, 0.5] or a count, got {v}")
        return v
    return node.int(low=0)


def _objectives(node: _Node, metric: str) -> tuple[Objective, ...]:
    from autopeft.tasks import METRIC_DIRECTIONS

    allowed = set(TASK_METRICS) | set(COST_OBJECTIVES)
    keys = node.mapping(allowed)
    if not 2 <= len(keys) <= 3:
        raise node.fail(f"expected 2 or 3 objectives (the task metric and 1-2 costs), got {len(keys)}")
    out = []
    for name, n in keys.items():
        natural = COST_OBJECTIVES.get(name) or METRIC_DIRECTIONS[name]
        if name in TASK_METRICS and name != metric:
            raise SpaceError(node.source, n.path, f"the task metric is '{metric}' (task.metric); expected '{metric}' here")
        if n.str(("max", "min")) != natural:
            raise n.fail(f"'{name}' can only be optimised as '{natural}'")
        out.append(Objective(name, natural))
    if metric not in keys:
        raise node.fail(f"expected the task metric '{metric}' among the objectives")
    return tuple(out)


def _device(node: _Node) -> str:
    value = node.str()
    if value in DEVICES or re.fullmatch(r"cuda:\d+", value):
        return value
    raise node.fail(f"expected one of {', '.join(DEVICES)} or cuda:N, got '{value}'")


def _runner(node: _Node) -> str | None:
    from autopeft.trials.user_runner import RUNNER_REF

    if node.value is None:
        return None
    value = node.str()
    if not RUNNER_REF.match(value):
        raise node.fail(f"expected 'package.module:function' (your training function), got '{value}'")
    return value


def _noise(node: _Node, objectives) -> tuple[tuple[str, float], ...]:
    """``search.noise``: objective name -> observation sd; every objective in order, unlisted ones 0."""
    names = [o.name for o in objectives]
    given = {k: n.number(low=0) for k, n in node.mapping(set(names)).items()}
    if not given:
        return ()
    return tuple((name, given.get(name, 0.0)) for name in names)


def _dataclass_from(node: _Node, cls: type, readers: dict[str, Callable[[_Node], Any]]):
    keys = node.mapping(set(readers))
    return cls(**{k: readers[k](n) for k, n in keys.items()})


_TASK_KEYS = {"type", "dataset", "text", "label", "metric", "template", "choices", "max_new_tokens", "messages", "test"}
_INSTRUCTION_KEYS = ("template", "choices", "max_new_tokens", "messages")


def _task(node: _Node) -> TaskSpec:
    from autopeft.tasks import INSTRUCTION_METRICS, TASKS, TEMPLATES

    tk = node.mapping(_TASK_KEYS, required={"dataset"})
    kind = TASKS[tk["type"].str(tuple(TASKS)) if "type" in tk else "classification"]
    if "label" in tk and not kind.labelled:
        raise tk["label"].fail(f"a {kind.name} task has no label column; expected text: column or [prompt, completion]")
    if kind.name != "causal_lm":
        for key in _INSTRUCTION_KEYS:
            if key in tk:
                raise tk[key].fail(f"only a causal_lm task has '{key}' (instruction data); add type: causal_lm or drop it")
    if "messages" in tk and "text" in tk:
        raise tk["messages"].fail("give the chat column (messages) or the text columns (text), not both")
    messages = tk["messages"].str() if "messages" in tk else None
    if "text" in tk and isinstance(tk["text"].value, list):
        text = tuple(n.str() for n in tk["text"].list())
        if len(text) > 2:
            raise tk["text"].fail("expected one text column or a pair of them")
        if len(set(text)) != len(text):
            raise tk["text"].fail(f"expected two different columns, got {list(text)}")
    elif messages is not None:
        text = ()
    else:
        text = (tk["text"].str(),) if "text" in tk else ("text",)
    metric = tk["metric"].str(tuple(kind.metrics)) if "metric" in tk else kind.default_metric
    instruction = kind.name == "causal_lm" and (messages is not None or len(text) == 2)
    if not instruction:
        if metric in INSTRUCTION_METRICS:
            raise tk["metric"].fail(f"{metric} scores an answer after a prompt: it needs instruction data, "
                                    "text: [prompt, completion] or messages: COLUMN")
        for key in ("template", "choices", "max_new_tokens"):
            if key in tk:
                raise tk[key].fail(f"'{key}' applies to instruction data (text: [prompt, completion] or "
                                   "messages: COLUMN); a single text column is a plain corpus")
    template = tk["template"].str(TEMPLATES) if "template" in tk else None
    if messages is not None and template == "plain":
        raise tk["template"].fail("a messages column is rendered with the chat template; use template: chat "
                                  "or give text: [prompt, completion]")
    choices: tuple[str, ...] = ()
    if "choices" in tk:
        items = tk["choices"].list()
        choices = tuple(_answer(n) for n in items)
        normal = [c.strip().casefold() for c in choices]
        if any(not c for c in normal):
            raise tk["choices"].fail(f"expected non-blank answers, got {list(choices)!r}")
        if len(set(normal)) != len(normal):
            raise tk["choices"].fail(f"expected distinct answers (compared after strip + casefold), got {list(choices)!r}")
        if len(choices) < 2:
            raise tk["choices"].fail(f"expected at least two answers to choose among, got {list(choices)!r}")
    return TaskSpec(
        dataset=tk["dataset"].str(),
        text=text,
        label=tk["label"].str() if "label" in tk else "label",
        metric=metric,
        type=kind.name,
        template=template,
        choices=choices,
        max_new_tokens=tk["max_new_tokens"].int(low=1, high=1024) if "max_new_tokens" in tk else 16,
        messages=messages,
        test=tk["test"].str() if "test" in tk and tk["test"].value is not None else None,
    )


def _answer(node: _Node) -> str:
    """An allowed answer: a string, or an integer (``choices: [1, 2, 3]`` means the strings)."""
    value = node.value
    if isinstance(value, bool):  # YAML 1.1 reads yes/no/on/off as booleans: the user meant the word
        raise node.fail(f"YAML read this answer as the boolean {value}; quote it, e.g. 'yes'")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise node.fail(f"expected an answer (a string; quote numbers other than integers), got {_show(value)}")


# ---------------------------------------------------------------------------- the document

_TOP = {"study", "model", "task", "objectives", "budget", "space", "proxy", "search", "importance", "verify", "target"}


def parse_space(document: Any, source: str = "<memory>") -> SearchSpace:
    """Validate a parsed YAML document and compile it to a ``SearchSpace``.

    Raises:
        SpaceError: naming ``source``, the key path and what was expected.
    """
    from autopeft.methods import method_names
    from autopeft.search.samplers import sampler_names

    root = _Node(document, "", source)
    top = root.mapping(_TOP, required={"study", "model", "task", "space"})

    study = top["study"].str()
    if not _STUDY_NAME.match(study):
        raise top["study"].fail("expected letters, digits, '.', '_' or '-' (at most 100, no '/' or spaces)")

    m = top["model"]
    if isinstance(m.value, str):
        model = ModelSpec(m.str())
    else:
        mk = m.mapping({"name", "trust_remote_code", "revision"}, required={"name"})
        model = ModelSpec(
            mk["name"].str(),
            trust_remote_code=mk["trust_remote_code"].bool() if "trust_remote_code" in mk else False,
            revision=mk["revision"].str() if "revision" in mk else None,
        )

    from autopeft.tasks import METRIC_DIRECTIONS

    task = _task(top["task"])

    objectives = (
        _objectives(top["objectives"], task.metric)
        if "objectives" in top
        else (Objective(task.metric, METRIC_DIRECTIONS[task.metric]), Objective("trainable_params", "min"))
    )
    budget = _budget(top["budget"]) if "budget" in top else Budget()
    verify = _dataclass_from(
        top["verify"] if "verify" in top else _Node({}, "verify", source),
        VerifySpec,
        {"test_examples": _test_examples, "max_test_examples": lambda n: n.int(low=0),
         "seeds": lambda n: n.int(low=1, high=100)},
    )

    sp = top["space"].mapping(
        {"method", "rank", "alpha", "targets", "layers", "learning_rate", "dropout", "dora", "rslora"},
        required={"method"},
    )
    known = method_names()
    targets_top_k = None
    if "targets" in sp and isinstance(sp["targets"].value, dict):
        targets_top_k = _targets_top_k(sp["targets"])
    method = _dimension(sp["method"], lambda n: n.str(known), numeric=False)
    alpha_is_ratio = False
    if "alpha" in sp and isinstance(sp["alpha"].value, dict) and "ratio" in sp["alpha"].value:
        ratio = sp["alpha"].mapping({"ratio"})["ratio"]
        alpha = _dimension(ratio, lambda n: n.number(positive=True), numeric=True)
        alpha_is_ratio = True
    elif "alpha" in sp:
        alpha = _dimension(sp["alpha"], lambda n: n.number(positive=True), numeric=True)
    else:  # the common default lora_alpha = 2 * r
        alpha, alpha_is_ratio = Fixed(2.0), True
    space = SpaceSpec(
        method=method,
        rank=_rank(sp["rank"], sp) if "rank" in sp else Fixed(8),
        alpha=alpha,
        alpha_is_ratio=alpha_is_ratio,
        targets=(
            () if targets_top_k else _targets(sp["targets"]) if "targets" in sp else (Targets(("query", "value")),)
        ),
        targets_top_k=targets_top_k,
        layers=_placement(sp["layers"]) if "layers" in sp else Placement("all"),
        learning_rate=_learning_rate(sp["learning_rate"], method) if "learning_rate" in sp else _default_learning_rate(method),
        dropout=_dimension(sp["dropout"], lambda n: n.number(low=0, high=0.9), numeric=True) if "dropout" in sp else Fixed(0.0),
        dora=_dimension(sp["dora"], lambda n: n.bool(), numeric=False) if "dora" in sp else Fixed(False),
        rslora=_dimension(sp["rslora"], lambda n: n.bool(), numeric=False) if "rslora" in sp else Fixed(False),
    )

    proxy = _dataclass_from(
        top["proxy"] if "proxy" in top else _Node({}, "proxy", source),
        ProxySpec,
        {
            "train_examples": lambda n: n.int(low=2),
            "eval_examples": lambda n: n.int(low=2),
            "steps": lambda n: n.int(low=1),
            "batch_size": lambda n: n.int(low=1, high=4096),
            "max_length": lambda n: n.int(low=4, high=8192),
            "warmup": lambda n: n.number(low=0, high=0.9),
            "schedule": lambda n: n.str(SCHEDULES),
            "warmup_steps": lambda n: None if n.value is None else n.int(low=0),
            "seed": lambda n: n.int(low=0),
            "log_every": lambda n: n.int(low=1),
            "timeout": lambda n: n.number(positive=True),
            "memory_limit_mb": lambda n: None if n.value is None else n.int(low=256),
            "threads": lambda n: None if n.value is None else n.int(low=1, high=256),
            "prefix_cache": lambda n: n.bool(),
            "rungs": _rungs,
            "eta": lambda n: n.int(low=2),
            "device": _device,
            "precision": lambda n: n.str(PRECISIONS),
            "gradient_checkpointing": lambda n: n.bool(),
            "runner": _runner,
            "ist": lambda n: None if n.value is None else _dataclass_from(
                n, IstSpec, {"active_fraction": lambda m: m.number(low=0.01, high=1.0), "every": lambda m: m.int(low=1)}
            ),
        },
    )
    search = _dataclass_from(
        top["search"] if "search" in top else _Node({}, "search", source),
        SearchSpec,
        {
            "sampler": lambda n: n.str(sampler_names()),
            "trials": lambda n: n.int(low=1),
            "startup_trials": lambda n: n.int(low=1),
            "seed": lambda n: None if n.value is None else n.int(low=0),
            "baseline": lambda n: n.bool(),
            "noise": lambda n: _noise(n, objectives),
        },
    )
    target = None
    if "target" in top and top["target"].value is not None:  # `--set target=null`: the proxy is the target
        target, proxy = _target(top["target"], proxy)
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
    importance = top["importance"].str(_IMPORTANCE) if "importance" in top else "none"
    if space.layers.by == "importance" and importance == "none":
        raise SpaceError(source, "space.layers.by", "placement by importance needs 'importance: spt' at the top level")
    if space.targets_top_k and importance == "none":
        raise SpaceError(source, "space.targets.by", "targets by importance need 'importance: spt' at the top level")

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


def _target(node: _Node, proxy: ProxySpec) -> tuple[TargetSpec, ProxySpec]:
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


def apply_overrides(document: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``document``."""
    doc = json.loads(json.dumps(document)) if document is not None else {}
    for item in overrides:
        if "=" not in item:
            raise SpaceError("--set", item, "expected key.path=value, e.g. proxy.steps=10")
        path, _, raw = item.partition("=")
        parts = path.strip().split(".")
        if not all(parts):
            raise SpaceError("--set", path, "expected a dotted key path such as search.trials")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise SpaceError("--set", path, f"the value is not valid YAML: {_first_line(e)}") from None
        if not isinstance(doc, dict):
            raise SpaceError("--set", path, "the document is not a mapping")
        node = doc
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise SpaceError("--set", ".".join(parts[: i + 1]), f"is {_show(nxt)}, not a mapping; cannot set {path}")
            node = nxt
        node[parts[-1]] = value
    _narrow_learning_rates(doc, [item.partition("=")[0].strip() for item in overrides])
    return doc


def _narrow_learning_rates(doc: dict, paths: list[str]) -> None:
    """``--set space.method=lora`` on a space with a band per method keeps the bands of the
    methods still searched (a band for a method outside ``space.method`` is an error), unless
    ``space.learning_rate`` is overridden too."""
    if "space.method" not in paths or any(p == "space.learning_rate" or p.startswith("space.learning_rate.")
                                          for p in paths):
        return
    sp = doc.get("space")
    rates = sp.get("learning_rate") if isinstance(sp, dict) else None
    if not isinstance(rates, dict) or set(rates) & {"log", "range"}:
        return
    methods = sp.get("method")
    methods = methods if isinstance(methods, list) else [methods]
    kept = {k: v for k, v in rates.items() if k in methods}
    if kept:  # none left: the stale bands are reported as such
        sp["learning_rate"] = kept


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
        raise SpaceError(source, where, f"not valid YAML: {_first_line(e)}") from None
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
        paths = [item.partition("=")[0].strip() for item in overrides]
        if any(e.path == p or e.path.startswith((p + ".", p + "[")) for p in paths):
            raise SpaceError("--set", e.path, e.problem) from None
        raise


def _first_line(e: Exception) -> str:
    return str(getattr(e, "problem", None) or e).splitlines()[0]


#: ``proxy`` keys that bound or place a trial without changing what it measures: a study can
#: be resumed with other values. ``device``: a study started on a laptop's CPU can be resumed
#: by GPU workers (``--set proxy.device=cuda``). ``timeout`` and ``memory_limit_mb``: caps at
#: which a trial is stopped and recorded failed; a trial that finishes measures the same.
#: Not here, because they change results: anything of the data, the training or the model, and
#: ``log_every`` (the learning curve a language-model run is judged diverged by), ``precision``,
#: ``prefix_cache`` and ``gradient_checkpointing`` (what a step computes, its time and memory).
_RUN_ENVIRONMENT_KEYS = ("device", "timeout", "memory_limit_mb")


def space_hash(space: SearchSpace) -> str:
    """A stable hash of what changes results.

    Ignores the trial count (which may grow), the run-environment keys of ``proxy``
    (:data:`_RUN_ENVIRONMENT_KEYS`), and ``proxy.threads`` unless ``train_time`` is an
    objective (torch threads change how fast a step runs, not what it computes). An omitted
    ``space.learning_rate`` is hashed as the built-in bands it stands for, so a change to
    those bands is a change of the space.
    """
    doc = json.loads(json.dumps(space.document))
    (doc.get("search") or {}).pop("trials", None)
    proxy = doc.get("proxy") or {}
    for key in _RUN_ENVIRONMENT_KEYS:
        proxy.pop(key, None)
    if "train_time" not in space.objective_names:
        proxy.pop("threads", None)
    sp = doc.get("space")
    if isinstance(sp, dict) and "learning_rate" not in sp:
        # From the document's methods: a prepared space may have dropped some the model refuses.
        methods = sp.get("method")
        sp["learning_rate"] = {"built-in": {str(m): list(default_learning_rate(str(m)))
                                            for m in (methods if isinstance(methods, list) else [methods])}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
