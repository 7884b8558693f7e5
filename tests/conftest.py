"""Shared fixtures: the bundled model (resolved once), its structure, and a private cache.

Nothing is registered here (no methods, samplers or plugins): tests see autopeft exactly
as a user does. The only global effect is ``AUTOPEFT_CACHE``, pointed at a session tmp
dir so that no test reads or writes ``~/.cache/autopeft``; a test that needs its own
cache overrides it with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AUTOPEFT_CACHE", str(tmp_path_factory.mktemp("autopeft-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def model_ref(_private_cache):
    """The bundled ``minilm-l6`` alias resolved to its local directory."""
    from autopeft.assets.models import resolve_model
    from autopeft.space.schema import ModelSpec

    return resolve_model(ModelSpec("minilm-l6"))


@pytest.fixture(scope="session")
def model_info(model_ref):
    """The structure of ``minilm-l6`` with a 3-class head, read from the model."""
    from autopeft.assets.architecture import inspect_model

    return inspect_model(model_ref, 3)


@pytest.fixture(scope="session")
def _base_model(model_ref):
    import torch
    from transformers import AutoModelForSequenceClassification

    from autopeft.assets.models import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)  # the new classification head is randomly initialised
    return AutoModelForSequenceClassification.from_pretrained(model_ref.location, num_labels=3)


@pytest.fixture
def base_model(_base_model):
    """A fresh, private copy of the bundled model with a 3-class head (loaded once per session)."""
    return copy.deepcopy(_base_model)
