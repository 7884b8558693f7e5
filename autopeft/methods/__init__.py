"""The registry of PEFT methods. Adding one = one module + one ``register_method`` line.

Registration refuses duplicates and badly formed names at import time, like peft's own
``register_peft_method``. Modules here import peft lazily, so listing methods is instant.
"""

from __future__ import annotations

import re

from autopeft.errors import MethodError
from autopeft.methods.base import BuildContext, Method, config_to_json

_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` under ``method.name``; refuse a duplicate or an invalid name."""
    name = getattr(method, "name", "")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        raise ValueError(f"method name must be lower_snake_case, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(f"unknown PEFT method {name!r}; known: {method_names()}") from None


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


from autopeft.methods.adalora import AdaLoRA  # noqa: E402
from autopeft.methods.ia3 import IA3  # noqa: E402
from autopeft.methods.bottleneck import Bottleneck  # noqa: E402
from autopeft.methods.loha import LoHa  # noqa: E402
from autopeft.methods.lokr import LoKr  # noqa: E402
from autopeft.methods.lora import LoRA  # noqa: E402
from autopeft.methods.prefix import PrefixTuning  # noqa: E402
from autopeft.methods.vera import VeRA  # noqa: E402

register_method(LoRA())
register_method(IA3())
register_method(AdaLoRA())
register_method(LoHa())
register_method(LoKr())
register_method(VeRA())
register_method(PrefixTuning())
register_method(Bottleneck())

__all__ = ["BuildContext", "Method", "config_to_json", "get_method", "method_names", "register_method"]
