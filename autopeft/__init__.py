"""autopeft: find the Pareto front of PEFT configurations for a model and a task.

The public Python API (see ``autopeft.api``)::

    from autopeft import search, load_study

    result = search("space.yaml", storage="sqlite:///autopeft.db", trials=10, progress=print)
    result.front, result.trials          # pandas DataFrames
    result.pick("knee"); result.export("./adapter")
    load_study("quickstart", "sqlite:///autopeft.db")

Heavy libraries (torch, transformers, peft, botorch, pandas) are imported lazily by the
functions that need them, so ``import autopeft`` and YAML validation stay instant.
"""

from autopeft.errors import AutoPeftError

__version__ = "0.1.0"
__all__ = ["AutoPeftError", "StudyResult", "__version__", "load_study", "search"]


def __getattr__(name: str):
    # Lazy: importing autopeft.api at package import would cost nothing heavy today, but the
    # public names must never be what makes `import autopeft` slow.
    if name in ("load_study", "StudyResult"):
        from autopeft import api

        return getattr(api, name)
    if name == "search":  # the package autopeft.search, callable as autopeft.api.search
        import importlib

        return importlib.import_module("autopeft.search")
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")
