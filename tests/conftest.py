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
    import os

    mp = pytest.MonkeyPatch()
    mp.setenv("AUTOPEFT_CACHE", str(tmp_path_factory.mktemp("autopeft-cache")))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Workers share the cores: a trial per worker on every core oversubscribes them (measured:
        # one 41 s test took 235 s beside another worker). Trials that name their threads keep them.
        cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
        for var in ("AUTOPEFT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            mp.setenv(var, str(cores))
        import torch

        torch.set_num_threads(cores)
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


@pytest.fixture(scope="session")
def refused_on_bundled(model_ref, model_info):
    """``{method: reason}`` for the methods ``minilm-l6`` cannot take under the installed
    peft/transformers (``autopeft.methods.capability``): the contract tests train every other
    method, and assert this refusal for these (it depends on the releases, not on us)."""
    from autopeft.methods import method_names
    from autopeft.methods.capability import refusals
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import Targets

    cands = {m: Candidate(m, 2, 4.0, 0.0, Targets(("query", "value")), (4, 5), 1e-3, False, False)
             for m in method_names()}
    return {r.method: r.reason for r in refusals(model_ref, model_info, cands, 10)}


@pytest.fixture(scope="session")
def tiny_random_gpt2(tmp_path_factory):
    """A 2-layer GPT-2 LM with random weights, saved like any local HF model directory
    (``model/``, with the bundled model's tokenizer), and 120 prompt/completion rows
    (``data.jsonl``). Every peft method works on it under the releases CI locks, prefix
    tuning included (peft 0.21 + transformers 5.24 refuse prefix tuning on BERT)."""
    import json

    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from autopeft.assets.models import resolve_model
    from autopeft.space.schema import ModelSpec

    root = tmp_path_factory.mktemp("tiny-random-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ModelSpec("minilm-l6")).location)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rows = [{"prompt": f"Review {i}: the film was", "completion": " good" if i % 2 else " bad"} for i in range(120)]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


#: ChatML, as SmolLM2's own template renders it (the parts the data checks depend on).
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="session")
def tiny_random_llama(tmp_path_factory):
    """A 2-layer Llama with random weights and a ChatML chat template, saved like any local
    HF model directory: the decoder's module names (``q_proj`` ...) and chat rendering for
    tests of data checks and wiring, without converting the 135M bundled decoder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from autopeft.assets.models import resolve_model
    from autopeft.space.schema import ModelSpec

    root = tmp_path_factory.mktemp("tiny-random-llama") / "model"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ModelSpec("minilm-l6")).location)
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def smollm2(_private_cache, smollm2_conversions):
    """The bundled decoder ``smollm2-135m`` (Llama, 30 layers, chat template) resolved into
    the session's cache: converted from its GGUF file once for every test file that uses it
    (~25 s). Skipped where the package is missing, a failure under CI (.ci/run installs it)."""
    import importlib.util
    import os

    from autopeft.assets.models import BUNDLED_MODELS, bundled_model_path, resolve_model
    from autopeft.space.schema import ModelSpec

    path = bundled_model_path("smollm2-135m")
    if path is None or not path.is_file() or importlib.util.find_spec("gguf") is None:
        why = f"needs the bundled decoder: {BUNDLED_MODELS['smollm2-135m'].install}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return resolve_model(ModelSpec("smollm2-135m"))


@pytest.fixture(scope="session")
def smollm2_conversions(_private_cache):
    """Every real GGUF conversion of this test session (the source paths), counted from the
    start: ``tests/test_gguf.py`` asserts the bundled decoder is converted once and then read
    from the cache, on the same conversion every other decoder test uses."""
    from autopeft.assets import gguf

    calls: list = []
    real = gguf._convert_into

    def counting(source, out):
        calls.append(source)
        real(source, out)

    mp = pytest.MonkeyPatch()
    mp.setattr(gguf, "_convert_into", counting)
    yield calls
    mp.undo()


@pytest.fixture(scope="session")
def smollm2_arch(smollm2):
    """The structure of ``smollm2-135m`` with its LM head."""
    from autopeft.assets.architecture import inspect_model

    return inspect_model(smollm2, 0, "causal_lm")


@pytest.fixture(scope="session")
def _smollm2_model(smollm2):
    import torch
    from transformers import AutoModelForCausalLM

    from autopeft.assets.models import quiet_transformers

    quiet_transformers()
    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(smollm2.location).eval()


@pytest.fixture
def smollm2_model(_smollm2_model):
    """A fresh, private copy of the converted decoder (loaded once per session)."""
    return copy.deepcopy(_smollm2_model)


def pytest_collection_modifyitems(config, items):
    """Benchmark smoke runs (``bench``) are deselected unless ``AUTOPEFT_BENCH=1``: they guard
    the scripts in ``benchmarks/``, take minutes, and are reported as deselected, not passed."""
    import os

    if os.environ.get("AUTOPEFT_BENCH") == "1":
        return
    bench = [item for item in items if item.get_closest_marker("bench")]
    if bench:
        config.hook.pytest_deselected(items=bench)
        items[:] = [item for item in items if not item.get_closest_marker("bench")]
