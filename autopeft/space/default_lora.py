"""Default LoRA: the configuration a user would otherwise have guessed, defined once.

LoRA r=8, alpha 16 (:data:`BASELINE`), on the attention's query and value projections of
every layer, without DoRA or rsLoRA. Everything that compares with it reads it from here: a
study's reference trial (``autopeft.search.sampling.baseline``, whose record carries the role
:data:`DEFAULT_LORA`), the answer at the target (``autopeft.search.analysis.answer``),
``verify --baseline`` (``autopeft.search.verify``), ``export --train --baseline``
(``autopeft.retrain``) and the dashboard. It lives in the space layer, below all of them
(its rates read a ``SearchSpace``), so that every one of them can import it.

Query and value are found by the model's own module names (``query``/``value`` in BERT,
``q_proj``/``v_proj`` in Llama, ``q_lin``/``v_lin`` in DistilBERT, GPT-2's fused
``c_attn``), never by a table of model types.

Its learning rate: a reference trial asks for :data:`STANDARD_LR`, or, towards a
``target:``, for three rates across LoRA's band (:func:`reference_rates`); re-training it at
full fidelity sweeps :data:`BASELINE_RATES` (one seed each, best on validation:
:func:`best_rate`). A borrowed rate made it diverge twice (an IA3 trial's 2e-2, a LoRA
trial's 1.2e-2 on another subset of layers), and a diverged run is never a comparison.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from autopeft.candidate import Candidate, Targets
from autopeft.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.space.schema import SearchSpace

#: The role of a study's default-LoRA reference trial (``extras["baseline"]`` of its record).
DEFAULT_LORA = "default LoRA"
#: Default LoRA's method, rank and alpha; its targets are the model's query and value
#: projections (:func:`baseline_targets`), on every layer.
BASELINE = {"method": "lora", "rank": 8, "alpha": 16.0}
#: The learning rate a reference trial asks for (snapped into the space).
STANDARD_LR = 1e-3
#: The learning-rate sweep of a re-trained baseline: standard LoRA rates, one seed each,
#: the best on validation.
BASELINE_RATES = (1e-4, 3e-4, 1e-3, 3e-3)

_QUERY_WORDS = {"query", "q", "wq"}
_VALUE_WORDS = {"value", "v", "wv"}


def baseline_targets(arch) -> tuple[str, ...]:
    """The relative names of the attention's query and value projections in a layer of ``arch``.

    A linear is the query (value) projection when a word of its own name (split at ``_``)
    is ``query``/``q``/``wq`` (``value``/``v``/``wv``): ``attention.self.query``,
    ``self_attn.q_proj``, ``attention.q_lin``. A fused projection holding both
    (``query_key_value``) is taken once; with neither (GPT-2's ``c_attn``), the first linear
    of the attention block, which is the fused query/key/value projection.

    Raises:
        ExportError: the model's names say neither.
    """

    def words(name: str) -> set[str]:
        return set(re.split(r"_", name.rsplit(".", 1)[-1].lower()))

    def short(name: str) -> str:  # `q_proj` rather than `self_attn.q_proj` when that names one module
        last = name.rsplit(".", 1)[-1]
        return last if sum(n.rsplit(".", 1)[-1] == last for n in names) == 1 else name

    names = [s.name for s in arch.linears]
    query = [n for n in names if words(n) & _QUERY_WORDS]
    value = [n for n in names if words(n) & _VALUE_WORDS]
    if query and value:
        return tuple(dict.fromkeys([short(query[0]), short(value[0])]))
    fused = [n for n in names if re.search(r"attn|attention", n, re.IGNORECASE)]
    if fused:
        return (short(fused[0]),)
    raise ExportError(f"cannot tell the query and value projections among the model's linear modules "
                      f"({', '.join(names)}); the default-LoRA baseline needs them")


def baseline_candidate(chosen: Candidate | None, arch, learning_rate: float | None = None) -> Candidate:
    """Default LoRA (``BASELINE`` on the query and value projections of every layer of
    ``arch``, a ``ModelInfo``) with the ``chosen`` trial's dropout (0 without one), and its
    learning rate unless ``learning_rate`` is given (then ``chosen`` may be None).

    Nothing else of the chosen candidate carries over: its per-layer ranks (``layer_ranks``,
    from a ``rank: {per_layer: ...}`` space) would otherwise replace r=8 on the baseline.
    """
    return Candidate(
        method=BASELINE["method"], rank=BASELINE["rank"], alpha=BASELINE["alpha"],
        dropout=0.0 if chosen is None else chosen.dropout,
        targets=Targets(baseline_targets(arch)), layers=tuple(range(arch.num_layers)),
        learning_rate=chosen.learning_rate if learning_rate is None else learning_rate,
        dora=False, rslora=False, layer_ranks=None,
    )


def is_default_lora(candidate: Candidate, num_layers: int) -> bool:
    """Whether ``candidate`` is default LoRA: ``BASELINE``'s
    method and rank, no DoRA/rsLoRA, on every one of ``num_layers`` layers, and targets that are
    exactly the query and value projections ``baseline_targets`` names among them (``query``/
    ``value`` in BERT, ``q_proj``/``v_proj`` in Llama, a fused ``query_key_value`` or ``c_attn``).

    For a trial the study did not mark as its default-LoRA reference (a study created with
    ``search.baseline: false``, or before references existed) when the model is not loaded:
    the rule is applied to the trial's own target names.
    """
    from types import SimpleNamespace

    c = candidate
    targets = c.targets.modules  # none: all-linear, never default LoRA
    if (c.method != BASELINE["method"] or c.rank != BASELINE["rank"] or c.dora or c.rslora
            or not targets or len(c.layers) != num_layers):
        return False
    try:
        wanted = baseline_targets(SimpleNamespace(linears=[SimpleNamespace(name=str(t)) for t in targets]))
    except ExportError:  # neither a query nor a value projection among them
        return False
    return sorted(wanted) == sorted(map(str, targets))


def reference_rates(space: SearchSpace) -> list[float]:
    """The learning rates of a study's default-LoRA reference trials: :data:`STANDARD_LR`;
    towards a ``target:``, three points of LoRA's band (its middle first, then a sixth from the
    top and from the bottom), of which successive halving keeps the best at each rung
    (``autopeft.search.fidelity``): the reference is trained at its own rate, as
    ``verify --baseline``'s sweep does, inside the search."""
    from autopeft.space.schema import PerMethod, Range

    lr = space.space.learning_rate
    if space.target is None:
        return [STANDARD_LR]
    if isinstance(lr, PerMethod):
        try:
            low, high = lr.band("lora")
        except KeyError:
            return [STANDARD_LR]
    elif isinstance(lr, Range):
        low, high = lr.low, lr.high
    else:
        return [STANDARD_LR]
    if low == high:
        return [low]
    return [low * (high / low) ** f for f in (0.5, 5 / 6, 1 / 6)]


def best_rate(scored, *, maximise: bool) -> float:
    """The learning rate a sweep picks: ``scored`` is ``[(rate, metric, why it diverged or None),
    ...]`` over the runs that trained. The best healthy run's rate; a diverged run's only when
    every run diverged. Ties go to the first (the order the rates were tried in)."""
    healthy = [s for s in scored if s[2] is None] or list(scored)
    sign = 1 if maximise else -1
    return max(healthy, key=lambda s: sign * s[1])[0]
