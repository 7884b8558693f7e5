"""One reader per top-level key of a search-space document (``model:``, ``task:``, ...), but
``proxy:`` and ``target:`` (how a trial trains and how far: ``autopeft.space.training_sections``).

A section that is only known keys, each with a type, a range and a default, is a table of
readers (``VERIFY``, ``MODEL``, the table of ``search:``; ``PROXY`` and ``IST`` beside the
proxy's reader) filled into its dataclass, whose field defaults are the defaults of the keys.
The sections whose keys depend on each other (``task``, ``objectives``, ``budget``, ``space``)
are written out. Checks across sections are ``autopeft.space.loader``'s.
"""

from __future__ import annotations

import re

from autopeft.errors import SpaceError
from autopeft.space import dimensions
from autopeft.space.nodes import Node, Reader, boolean, integer, number, optional, read_into, show, string
from autopeft.space.schema import (
    COST_OBJECTIVES,
    TASK_METRICS,
    Budget,
    Fixed,
    ModelSpec,
    Objective,
    Placement,
    SearchSpec,
    SpaceSpec,
    Targets,
    TaskSpec,
    VerifySpec,
)

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
IMPORTANCE = ("none", "spt")


def read_study(node: Node) -> str:
    study = node.str()
    if not _STUDY_NAME.match(study):
        raise node.fail("expected letters, digits, '.', '_' or '-' (at most 100, no '/' or spaces)")
    return study


def read_importance(node: Node) -> str:
    return node.str(IMPORTANCE)


# ---------------------------------------------------------------------------- model

MODEL: dict[str, Reader] = {"name": string(), "trust_remote_code": boolean, "revision": string()}


def read_model(node: Node) -> ModelSpec:
    """A hub id or local path, or ``{name, trust_remote_code, revision}``."""
    if isinstance(node.value, str):
        return ModelSpec(node.str())
    return read_into(node, ModelSpec, MODEL, required={"name"})


# ---------------------------------------------------------------------------- task

_TASK_KEYS = {"type", "dataset", "text", "label", "metric", "template", "choices", "max_new_tokens", "messages", "test"}
_INSTRUCTION_KEYS = ("template", "choices", "max_new_tokens", "messages")


def read_task(node: Node) -> TaskSpec:
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


def _answer(node: Node) -> str:
    """An allowed answer: a string, or an integer (``choices: [1, 2, 3]`` means the strings)."""
    value = node.value
    if isinstance(value, bool):  # YAML 1.1 reads yes/no/on/off as booleans: the user meant the word
        raise node.fail(f"YAML read this answer as the boolean {value}; quote it, e.g. 'yes'")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise node.fail(f"expected an answer (a string; quote numbers other than integers), got {show(value)}")


# ---------------------------------------------------------------------------- objectives, budget


def read_objectives(node: Node, metric: str) -> tuple[Objective, ...]:
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


def default_objectives(metric: str) -> tuple[Objective, ...]:
    """Without ``objectives:``: the task metric and the trainable parameters."""
    from autopeft.tasks import METRIC_DIRECTIONS

    return Objective(metric, METRIC_DIRECTIONS[metric]), Objective("trainable_params", "min")


def read_budget(node: Node) -> Budget:
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


# ---------------------------------------------------------------------------- verify


def _test_examples(node: Node) -> int | float:
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


VERIFY: dict[str, Reader] = {
    "test_examples": _test_examples,
    "max_test_examples": integer(low=0),
    "seeds": integer(low=1, high=100),
}


def read_verify(node: Node) -> VerifySpec:
    return read_into(node, VerifySpec, VERIFY)


# ---------------------------------------------------------------------------- space

_SPACE_KEYS = {"method", "rank", "alpha", "targets", "layers", "learning_rate", "dropout", "dora", "rslora"}


def read_space(node: Node) -> SpaceSpec:
    """``space:``; absent keys are one LoRA of rank 8, alpha 2 * rank, on query and value."""
    from autopeft.methods import method_names

    sp = node.mapping(_SPACE_KEYS, required={"method"})
    known = method_names()
    targets_top_k = None
    if "targets" in sp and isinstance(sp["targets"].value, dict):
        targets_top_k = dimensions.targets_top_k(sp["targets"])
    method = dimensions.dimension(sp["method"], string(known), numeric=False)
    alpha_is_ratio = False
    if "alpha" in sp and isinstance(sp["alpha"].value, dict) and "ratio" in sp["alpha"].value:
        ratio = sp["alpha"].mapping({"ratio"})["ratio"]
        alpha = dimensions.dimension(ratio, number(positive=True), numeric=True)
        alpha_is_ratio = True
    elif "alpha" in sp:
        alpha = dimensions.dimension(sp["alpha"], number(positive=True), numeric=True)
    else:  # the common default lora_alpha = 2 * r
        alpha, alpha_is_ratio = Fixed(2.0), True
    return SpaceSpec(
        method=method,
        rank=dimensions.rank(sp["rank"], sp) if "rank" in sp else Fixed(8),
        alpha=alpha,
        alpha_is_ratio=alpha_is_ratio,
        targets=(
            () if targets_top_k
            else dimensions.targets(sp["targets"]) if "targets" in sp
            else (Targets(("query", "value")),)
        ),
        targets_top_k=targets_top_k,
        layers=dimensions.placement(sp["layers"]) if "layers" in sp else Placement("all"),
        learning_rate=(
            dimensions.learning_rate(sp["learning_rate"], method) if "learning_rate" in sp
            else dimensions.built_in_learning_rate(method)
        ),
        dropout=_switch(sp, "dropout", number(low=0, high=0.9), Fixed(0.0), numeric=True),
        dora=_switch(sp, "dora", boolean, Fixed(False)),
        rslora=_switch(sp, "rslora", boolean, Fixed(False)),
    )


def _switch(sp: dict[str, Node], key: str, item: Reader, default: Fixed, *, numeric: bool = False):
    """The dimension at ``space.<key>``, or ``default`` without one."""
    return dimensions.dimension(sp[key], item, numeric=numeric) if key in sp else default


# ---------------------------------------------------------------------------- search


def _sampler(node: Node) -> str:
    # The registry lives with the samplers it registers (search.sampling.samplers needs only space.schema).
    from autopeft.search.sampling.samplers import sampler_names

    return node.str(sampler_names())


def read_search(node: Node, objectives: tuple[Objective, ...]) -> SearchSpec:
    def noise(n: Node) -> tuple[tuple[str, float], ...]:
        """Objective name -> observation sd; every objective in order, unlisted ones 0."""
        names = [o.name for o in objectives]
        given = {k: m.number(low=0) for k, m in n.mapping(set(names)).items()}
        if not given:
            return ()
        return tuple((name, given.get(name, 0.0)) for name in names)

    return read_into(node, SearchSpec, {
        "sampler": _sampler,
        "trials": integer(low=1),
        "startup_trials": integer(low=1),
        "seed": optional(integer(low=0)),
        "baseline": boolean,
        "noise": noise,
    })
