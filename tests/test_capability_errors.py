"""The capability check refuses a method only for what peft/transformers say about the model;
an error of autopeft's own code surfaces as an error instead of dropping the method."""

from __future__ import annotations

import pytest

import autopeft.methods as registry
from autopeft.methods.capability import Refusal, refusals
from autopeft.space.encoding import Candidate
from autopeft.space.schema import Targets
from test_capability import _Refusing


def cand(method):
    return Candidate(method, 2, 4.0, 0.0, Targets(()), (0, 1), 1e-3, False, False)


class _Fake(_Refusing):
    """A method whose adapter is whatever ``wrap(model)`` does (raises, or returns)."""

    def __init__(self, name, wrap):
        super().__init__(name, None)
        self._wrap = wrap

    def wrap(self, model, config):
        return self._wrap(model)


def _peft_refuses(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=2, target_modules=["no_such_module"]))


def _key_error(model):
    return {}["rank"]


def _autopeft_value_error(model):
    registry.register_method(_Fake("Not Snake Case", None))  # autopeft's own code raises ValueError


def check(model_ref, model_info, monkeypatch, name, wrap):
    monkeypatch.setitem(registry._REGISTRY, name, _Fake(name, wrap))
    return refusals(model_ref, model_info, {name: cand(name)}, 10)


def test_a_peft_refusal_still_refuses(model_ref, model_info, monkeypatch):
    (got,) = check(model_ref, model_info, monkeypatch, "peftsays", _peft_refuses)
    assert got.method == "peftsays" and "no_such_module" in got.reason
    assert isinstance(got, Refusal)


@pytest.mark.parametrize("wrap, error", [(_key_error, KeyError), (_autopeft_value_error, ValueError)])
def test_a_bug_surfaces_instead_of_dropping_the_method(model_ref, model_info, monkeypatch, wrap, error):
    with pytest.raises(error) as info:
        check(model_ref, model_info, monkeypatch, "buggy", wrap)
    assert any("a bug in autopeft" in note for note in getattr(info.value, "__notes__", []))
