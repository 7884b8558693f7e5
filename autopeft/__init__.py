"""autopeft: find the Pareto front of PEFT configurations for a model and a task.

The public Python API (see ``autopeft.api``)::

    from autopeft import run_study, load_study

    result = run_study("space.yaml", storage="sqlite:///autopeft.db", trials=10, progress=print)
    result.front, result.trials          # pandas DataFrames
    result.pick("knee"); result.export("./adapter")
    load_study("quickstart", "sqlite:///autopeft.db")

``autopeft.search`` is the package of the search itself (samplers, the loop, Pareto picks),
not a function.

Heavy libraries (torch, transformers, peft, botorch, pandas) are imported lazily by the
functions that need them, so ``import autopeft`` and YAML validation stay instant.
"""

from autopeft._version import __version__
from autopeft.errors import AutoPeftError

__all__ = ["AutoPeftError", "StudyResult", "__version__", "load_study", "run_study"]


def __getattr__(name: str):
    # Lazy: importing autopeft.api at package import would cost nothing heavy today, but the
    # public names must never be what makes `import autopeft` slow.
    if name in ("run_study", "load_study", "StudyResult"):
        from autopeft import api

        return getattr(api, name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")
