"""The replay's strategies: a registry, so that a strategy is one line.

An autopeft strategy is a search as the product runs it, told by space overrides: the sampler
(a name of ``autopeft.search.sampling.samplers``), the rungs (a list of steps, ``()`` for none: every
trial trains to the target, or ``"auto"``: placed while the study runs), the rung signal
(``accuracy`` | ``macro_f1`` | ``eval_loss`` | ``train_loss``) and ``eta``, plus any other
``--set`` overrides. A peer strategy is a script run in its own virtual environment that
writes the same trace (``table.Trace``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class AutopeftStrategy:
    """A search by ``autopeft.search.session.SearchSession``, replayed on the table.

    Attributes:
        sampler: ``search.sampler``.
        rungs: ``proxy.rungs``: steps below the target, ``()`` (none), or ``"auto"``.
        signal: What a rung judges by (with trainable parameters).
        eta: ``proxy.eta``: at each rung the best ``1/eta`` go on.
        overrides: More ``--set`` overrides (``key.path=value``).
    """

    name: str
    summary: str
    sampler: str
    rungs: tuple[int, ...] | str = (30, 90)
    signal: str = "accuracy"
    eta: int = 3
    overrides: tuple[str, ...] = ()
    kind: str = field(default="autopeft", init=False)

    def __post_init__(self) -> None:
        from table import SIGNALS

        if self.signal not in SIGNALS:
            raise ValueError(f"strategy {self.name!r}: signal must be one of {sorted(SIGNALS)}, got {self.signal!r}")
        if isinstance(self.rungs, str) and self.rungs != "auto":
            raise ValueError(f"strategy {self.name!r}: rungs must be a list of steps or 'auto', got {self.rungs!r}")
        if self.eta < 2:
            raise ValueError(f"strategy {self.name!r}: eta must be at least 2, got {self.eta}")

    def space_overrides(self, target: int) -> list[str]:
        """The ``--set`` overrides of this strategy (the lowest rung is ``proxy.steps``)."""
        if self.rungs == "auto":
            rungs = ["proxy.rungs=auto"]
        elif self.rungs:
            rungs = [f"proxy.steps={self.rungs[0]}", f"proxy.rungs=[{', '.join(map(str, self.rungs))}]"]
        else:  # the lowest rung is the target: every trial trains to it
            rungs = [f"proxy.steps={target}", "proxy.rungs=[]"]
        return [f"search.sampler={self.sampler}", f"proxy.eta={self.eta}", *rungs, *self.overrides]


@dataclass(frozen=True)
class PeerStrategy:
    """Another library's optimizer, run as ``python <script>`` in its own environment.

    Attributes:
        script: The script in ``benchmarks/curves/`` (it writes a JSON list of traces).
        python: The interpreter of its environment (``$<env>`` overrides it).
        env: The environment variable naming another interpreter.
        install: How its environment was made (printed when it is missing).
    """

    name: str
    summary: str
    script: str
    python: str
    env: str
    install: str
    kind: str = field(default="peer", init=False)

    def interpreter(self) -> str:
        return os.environ.get(self.env) or self.python


STRATEGIES: dict[str, AutopeftStrategy | PeerStrategy] = {}


def register(strategy: AutopeftStrategy | PeerStrategy) -> None:
    """Add a strategy; refuses a name already taken."""
    if strategy.name in STRATEGIES:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    STRATEGIES[strategy.name] = strategy


#: Pure random draws need no reference trials (default LoRA, the cheapest point): every
#: configuration they train is drawn at random.
_PURE = ("search.baseline=false",)

register(AutopeftStrategy("random", "random search, every trial trained to the target", "random", rungs=(),
                          overrides=_PURE))
register(AutopeftStrategy("random+halving", "random search, successive halving at 30 and 90 steps on accuracy",
                          "random", overrides=_PURE))
register(AutopeftStrategy("botorch", "the search as shipped: BoTorch qLogNEHVI + halving at 30, 90 on accuracy",
                          "botorch"))
register(AutopeftStrategy("tpe", "optuna's multivariate TPE + halving at 30, 90 on accuracy", "tpe"))
register(AutopeftStrategy("gp", "optuna's GPSampler + halving at 30, 90 on accuracy", "gp"))
register(PeerStrategy("synetune-moasha", "Syne Tune's MOASHA (accuracy, log10 parameters), rungs 30, 90",
                      "peer_synetune.py", "/work/venv-synetune/bin/python", "CURVES_SYNETUNE_PYTHON",
                      'python3 -m venv /work/venv-synetune && /work/venv-synetune/bin/pip install "syne-tune==0.16.*" numpy'))
register(PeerStrategy("neps", "neps' multi-fidelity optimizer on the same space", "peer_neps.py",
                      "/work/venv-neps/bin/python", "CURVES_NEPS_PYTHON",
                      "see benchmarks/curves/peer_neps.py's docstring"))
#: The new search: sampler, rungs and signal as the product will ship them. Skipped (with the
#: reason printed) while the product does not know the sampler or the overrides.
register(AutopeftStrategy("new", "the new search: multi-fidelity BoTorch, rungs placed automatically, validation loss",
                          "mf-botorch", rungs="auto", signal="eval_loss"))

#: What a run replays unless told otherwise.
DEFAULT = tuple(STRATEGIES)
