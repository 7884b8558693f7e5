"""Frozen, validated dataclasses that a search-space YAML compiles to.

Nothing here imports torch: a space can be loaded and checked for shape instantly. Checks
that need the model (module names, layer counts, the budget) live in ``autopeft.space.check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

Scalar = Union[int, float, str, bool]

# A trial's candidate holds its Targets, and the store (below this layer) holds candidates:
# both live in autopeft.candidate, re-exported here because a space's ``targets:`` compiles to them.
from autopeft.candidate import Targets  # noqa: F401
from autopeft.tasks import METRIC_DIRECTIONS
# The proxy settings are the trial's contract (they travel inside every TrialSpec): defined
# there, re-exported here because a space's ``proxy:`` section compiles to them.
from autopeft.trials.spec import IstSpec, ProxySpec  # noqa: F401

TASK_METRICS = tuple(METRIC_DIRECTIONS)
#: Objective name -> the only direction that makes sense for it.
COST_OBJECTIVES = {"trainable_params": "min", "peak_memory": "min", "train_time": "min"}


@dataclass(frozen=True)
class Fixed:
    """A value that does not vary: not a search dimension."""

    value: Scalar


@dataclass(frozen=True)
class Choice:
    """A finite set of values. Numeric choices are ordinal (BO sees their order)."""

    values: tuple

    @property
    def ordinal(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)


@dataclass(frozen=True)
class Range:
    """A numeric interval; ``integer`` ranges are sampled as ints, ``log`` on a log scale."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class PerLayer:
    """One ordinal choice per layer (``rank: {per_layer: [0, 2, 4, 8]}``); 0 switches a layer off."""

    values: tuple[int, ...]


@dataclass(frozen=True)
class PerMethod:
    """A learning-rate band per method (``learning_rate: {lora: {log: [3e-4, 3e-3]}, ia3: ...}``).

    One search dimension in [0, 1] places the rate inside the chosen method's band on a log
    scale (``autopeft.space.encoding``), so the model learns "how far up its band" across
    methods whose good rates differ tenfold. A band with ``low == high`` fixes that method's rate.
    """

    bands: tuple[tuple[str, float, float], ...]  # (method, low, high)

    def band(self, method: str) -> tuple[float, float]:
        for name, low, high in self.bands:
            if name == method:
                return low, high
        raise KeyError(f"no learning-rate band for method '{method}'")

    @property
    def searched(self) -> bool:
        """Whether any band is an interval (else every method's rate is fixed)."""
        return any(low < high for _, low, high in self.bands)


Dimension = Union[Fixed, Choice, Range, PerLayer, PerMethod]


@dataclass(frozen=True)
class Placement:
    """Where adapters go along depth.

    ``all``: every layer. ``top_k``: the k preferred layers, k in [low, high], ranked by
    ``by`` (``top`` = closest to the output, ``bottom``, or ``importance``). ``per_layer``:
    one on/off bit per layer. ``range``: a contiguous block inside [low, high].
    ``fixed``: exactly ``layers``.
    """

    kind: Literal["all", "top_k", "per_layer", "range", "fixed"] = "all"
    low: int = 0
    high: int = 0
    by: Literal["top", "bottom", "importance"] = "top"
    layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    trust_remote_code: bool = False
    revision: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """The task: ``classification`` (text -> label) or ``causal_lm`` (text, or a
    [prompt, completion] pair or a chat whose completion alone is scored).

    Attributes:
        dataset: Bundled alias, local file or hub id.
        text: Text columns: one (classification, or a plain LM corpus), a pair (sentence
            pairs, or prompt and completion). Empty when ``messages`` names the column.
        label: The label column (classification).
        metric: The task metric (``autopeft.tasks``).
        type: ``classification`` or ``causal_lm``.
        template: Instruction data only: ``chat`` renders prompt and completion with the
            tokenizer's chat template, ``plain`` concatenates them. None: ``chat`` when the
            tokenizer has a template, else ``plain`` (``prepare_search`` decides).
        choices: Instruction data only: the allowed answers (``choice_accuracy`` picks among
            them; every completion must be one). Empty: derived from the data's completions.
        max_new_tokens: Greedy-decoding cap for ``exact_match``.
        messages: Instruction data only: a column of chats (lists of ``{role, content}``);
            the last message (the assistant's) is the completion.
        test: A local file (same formats and columns as ``dataset``) that is the held-out
            test split; the data set then gives train and validation only, and
            ``verify.test_examples`` / ``max_test_examples`` are ignored. None: the test
            split is carved from the data set.
    """

    dataset: str
    text: tuple[str, ...]
    label: str
    metric: str = "accuracy"
    type: str = "classification"
    template: str | None = None
    choices: tuple[str, ...] = ()
    max_new_tokens: int = 16
    messages: str | None = None
    test: str | None = None

    @property
    def instruction(self) -> bool:
        """Prompt/completion pairs or chats: a completion is what is scored."""
        return self.type == "causal_lm" and (self.messages is not None or len(self.text) == 2)


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["max", "min"]


@dataclass(frozen=True)
class Budget:
    """A hard cap on trainable parameters: absolute, or a fraction of the base model."""

    max_params: int | None = None
    max_fraction: float | None = None

    def limit(self, total_params: int) -> int | None:
        """The cap in parameters for a model of ``total_params`` parameters (None = no cap)."""
        if self.max_params is not None:
            return self.max_params
        if self.max_fraction is not None:
            return int(self.max_fraction * total_params)
        return None


@dataclass(frozen=True)
class SpaceSpec:
    method: Dimension
    rank: Dimension
    alpha: Dimension  # absolute lora_alpha, unless alpha_is_ratio
    alpha_is_ratio: bool
    targets: tuple[Targets, ...]
    layers: Placement
    #: One range for every method (a ``Fixed``/``Choice``/``Range``), or a ``PerMethod`` band each.
    learning_rate: Dimension
    dropout: Dimension
    dora: Dimension
    rslora: Dimension
    #: ``targets: {top_k: [low, high], by: importance}``: the k most important modules of a
    #: layer (one integer dimension), instead of a choice among ``targets``.
    targets_top_k: tuple[int, int] | None = None


@dataclass(frozen=True)
class SearchSpec:
    """How the search runs.

    Attributes:
        baseline: A new study enqueues default LoRA and the space's cheapest point as its
            first trials (``autopeft.search.sampling.baseline``); they count against ``trials``.
    """

    sampler: str = "botorch"
    trials: int = 20
    startup_trials: int = 8
    seed: int | None = 0
    baseline: bool = True
    #: Observation noise sd per objective, on the scale the sampler is told, in objective order
    #: (``search.noise: {accuracy: 0.05}``; unlisted objectives are exact). Empty: the GP infers
    #: it (the default). Only the botorch sampler reads it (``autopeft.search.sampling.acquisition``).
    noise: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class VerifySpec:
    """The held-out test split and how ``autopeft verify`` re-trains front points.

    Attributes:
        test_examples: Rows carved out of the data set before anything else, never read by
            the search: a count, or a fraction of the rows (``0.2``, written ``20%``).
        max_test_examples: At most this many, whatever the fraction gives.
        seeds: Training seeds per verified point (``verify --seeds`` overrides).
    """

    test_examples: int | float = 0.2
    max_test_examples: int = 2000
    seeds: int = 3


@dataclass(frozen=True)
class TargetSpec:
    """The training the user means to run, where the search decides (``target:``).

    A study with a target trains every trial as a prefix of that run: successive halving
    stops it at a rung (``proxy.steps``, then ``proxy.steps * eta``, ... below ``steps``) or
    lets it go on to ``steps``; a trial that reaches ``steps`` is trained again over
    ``seeds - 1`` more seeds, and the front, the knee and ``export --pick`` read the means
    over its seeds (``autopeft.search.seeds``).

    Attributes:
        steps: Optimiser steps of the target run (``epochs`` resolved against
            ``proxy.train_examples`` and ``proxy.batch_size``).
        seeds: Training seeds per point at the target (the trial's own run is seed
            ``proxy.seed``).
        epochs: The epochs the YAML asked for, when it did (for display).
    """

    steps: int
    seeds: int = 3
    epochs: float | None = None

    def describe(self) -> str:
        length = f"{self.epochs:g} epoch(s) = {self.steps} steps" if self.epochs is not None else f"{self.steps} steps"
        return f"{length}, {self.seeds} seed(s)"


@dataclass(frozen=True)
class SearchSpace:
    """A whole, validated search space: what to search, on what, and how."""

    study: str
    model: ModelSpec
    task: TaskSpec
    objectives: tuple[Objective, ...]
    budget: Budget
    space: SpaceSpec
    proxy: ProxySpec
    search: SearchSpec
    importance: str = "none"
    verify: VerifySpec = field(default_factory=VerifySpec)
    #: None: the proxy is the target (one run of ``proxy.steps`` per point, one seed).
    target: TargetSpec | None = None
    source: str = "<memory>"
    document: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def objective_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)
