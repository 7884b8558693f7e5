"""The search: samplers, the ask/tell loop, objectives, and Pareto picks.

This package is also the public ``autopeft.search(...)`` function (``autopeft.api.search``):
``from autopeft import search`` must give the function, yet the import system binds the
attribute ``autopeft.search`` to this package as soon as any ``autopeft.search.*`` module is
imported, which would shadow a function of that name. So the package itself is callable
(its module class gains ``__call__``): ``search("space.yaml", trials=4)`` runs a search, and
``autopeft.search.loop`` and the other submodules stay where they are.
"""

import sys as _sys
import types as _types


class _CallableSearch(_types.ModuleType):
    def __call__(self, space, **kwargs):
        """Run or resume a search: ``autopeft.api.search`` (see its docstring)."""
        from autopeft.api import search

        return search(space, **kwargs)

    @property
    def __signature__(self):  # help() and notebooks' tooltips show the real parameters
        import inspect

        from autopeft.api import search

        return inspect.signature(search)


_sys.modules[__name__].__class__ = _CallableSearch
