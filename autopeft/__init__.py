"""autopeft: find the Pareto front of PEFT configurations for a model and a task.

Heavy libraries (torch, transformers, peft, botorch) are imported lazily by the modules
that need them, so ``import autopeft`` and YAML validation stay instant.
"""

from autopeft.errors import AutoPeftError

__version__ = "0.1.0"
__all__ = ["AutoPeftError", "__version__"]
