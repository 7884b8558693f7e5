"""Which PEFT methods a model can take, asked of peft and transformers themselves.

Whether a method works on a model depends on the installed releases, not only on the
method: transformers 5.24 with peft 0.21 refuses prefix tuning on BERT ("Model does not
support past key values"), which earlier releases accepted. So the answer is never a
version table: the check builds the model on the ``meta`` device (no weights, no memory),
inserts the method's adapter with the method's own ``wrap`` and runs one forward pass.
What peft or transformers raises to refuse is the method's refusal, in their own words;
an error of autopeft's own code is a bug and is raised as one, never taken for a refusal.

A forward pass on ``meta`` cannot do everything a real one does (``Tensor.item()``, for
one): an error that is only a ``meta``-device limitation proves nothing about the method,
so it does not refuse it (the trial itself is the judge then).
"""

from __future__ import annotations

from dataclasses import dataclass

from autopeft.errors import MethodError


@dataclass(frozen=True)
class Refusal:
    """A method the model cannot take.

    Attributes:
        method: The registered method name.
        reason: What peft / transformers said (first line), or why the config could not be built.
    """

    method: str
    reason: str


def refusals(model_ref, arch, candidates: dict, steps: int) -> tuple[Refusal, ...]:
    """The methods among ``candidates`` that ``model_ref`` cannot take.

    Args:
        model_ref: The resolved model (``autopeft.assets.models.ModelRef``).
        arch: Its structure (``ModelInfo``), with the task head the search uses.
        candidates: ``{method name: a Candidate of that method}``, e.g. its smallest.
        steps: Proxy steps (some configs scale schedules with them).

    Returns:
        One ``Refusal`` per method that cannot be used, in the order of ``candidates``.
    """
    import warnings

    import torch

    from autopeft.assets.architecture import build_on_meta
    from autopeft.methods import BuildContext, get_method

    out = []
    for name, cand in candidates.items():
        method = get_method(name)
        try:
            config = method.config_json(method.build(cand, BuildContext(arch, steps)))
        except MethodError:
            continue  # a property of this candidate, not of the method: the space check reports it
        model = build_on_meta(model_ref, arch.num_labels, arch.task)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # deprecation chatter from a throw-away model
                wrapped = method.wrap(model, config)
                ids = torch.zeros((1, 8), dtype=torch.long, device="meta")
                # No attention mask: BERT's mask handling calls .item(), which meta tensors refuse.
                wrapped(input_ids=ids)
        except Exception as e:  # noqa: BLE001 - sorted below: a refusal, a meta limit, or a bug
            if _meta_limitation(e):
                continue
            if not _refuses(e):
                e.add_note(f"raised while checking whether the model takes '{name}'; not how peft or transformers "
                           "refuse a model, so a bug in autopeft or in the method's code, not a refusal")
                raise
            out.append(Refusal(name, _first_line(e)))
    return tuple(out)


def installed_versions() -> str:
    """``peft X, transformers Y``: what a refusal depends on."""
    from importlib.metadata import version

    return f"peft {version('peft')}, transformers {version('transformers')}"


#: What peft, transformers and torch raise when a model cannot take an adapter: peft's
#: "Model does not support past key values" (ValueError), an unsupported module type
#: (TypeError, NotImplementedError), shapes that do not fit the model (RuntimeError).
_REFUSING = (ValueError, TypeError, NotImplementedError, RuntimeError)


def _refuses(error: Exception) -> bool:
    """True when ``error`` says the model cannot take the method.

    autopeft's methods refuse with ``MethodError``; peft, transformers (and a plugin
    method's own code) with the kinds in ``_REFUSING``. Anything else, or one of those
    kinds raised in autopeft's own code, is a bug (autopeft's, or the method's): never a refusal.
    """
    if isinstance(error, MethodError):
        return True
    return isinstance(error, _REFUSING) and not _raised_in_autopeft(error)


def _raised_in_autopeft(error: Exception) -> bool:
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module == "autopeft" or module.startswith("autopeft.")


def _meta_limitation(error: Exception) -> bool:
    """True when ``error`` only says the ``meta`` device cannot do this (not a refusal)."""
    return isinstance(error, (RuntimeError, NotImplementedError)) and "meta" in str(error).lower()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__).rstrip()
