"""The LLM path on the real bundled decoder (SmolLM2-135M-Instruct, Llama, 30 layers).

Instruction data rendered with the chat template, prompts cut from the left and never the
answer; choice accuracy (cached prompt pass) equal to scoring each sequence in full;
exact match by greedy decoding; the frozen-prefix cache on Llama layers; SPT, per-layer
ranks and AdaLoRA's rank_pattern export on the decoder; the default-LoRA baseline's
targets from module names; bad instruction data as one-line errors before training.
Sizes are tiny (a few examples, short sequences, a step or two): what is tested is the
path, not the figures (benchmarks/llm_step.py and the README quote those).
"""

from __future__ import annotations

import json
import math

import pytest

from autopeft.errors import SpaceError
from autopeft.space import load_space_text

ALIAS = "smollm2-135m"


def space_yaml(**task) -> str:
    fields = {"type": "causal_lm", "dataset": "tweet-sentiment-instruct", "text": "[prompt, completion]",
              "metric": "choice_accuracy", **task}
    body = ", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None)
    return f"""
study: llm-test
model: {ALIAS}
task: {{{body}}}
objectives: {{{fields['metric']}: {'min' if fields['metric'] in ('eval_loss', 'perplexity') else 'max'}, trainable_params: min}}
space:
  method: [lora, ia3]
  rank: [2, 4]
  targets: [[q_proj, v_proj], all-linear]
  layers: {{top_k: [1, 2], by: top}}
  learning_rate: {{log: [1.0e-4, 1.0e-3]}}
proxy: {{train_examples: 16, eval_examples: 12, steps: 2, batch_size: 4, max_length: 72, threads: 2, log_every: 1}}
search: {{sampler: random, trials: 2, seed: 0}}
"""


def one_line(text: str, *parts: str) -> None:
    assert "\n" not in text.strip(), text
    for part in parts:
        assert part in text, text


# ------------------------------------------------------------------------------ the DSL (no model)


@pytest.mark.parametrize("change, key, words", [
    ({"text": "prompt"}, "task.metric", "needs instruction data"),
    ({"text": "prompt", "metric": "eval_loss", "choices": "[a, b]"}, "task.choices", "plain corpus"),
    ({"choices": "[good, Good]"}, "task.choices", "distinct"),
    ({"choices": "[yes, no]"}, "task.choices[0]", "quote it"),
    ({"choices": "[only]"}, "task.choices", "at least two"),
    ({"text": None, "messages": "chat", "template": "plain"}, "task.template", "chat template"),
    ({"messages": "chat"}, "task.messages", "not both"),
    ({"max_new_tokens": 0}, "task.max_new_tokens", ">= 1"),
    ({"template": "jinja"}, "task.template", "chat"),
])
def test_instruction_keys_are_checked_with_their_key_path(change, key, words):
    with pytest.raises(SpaceError) as e:
        load_space_text(space_yaml(**change), "llm.yaml")
    assert e.value.path == key
    one_line(str(e.value), "llm.yaml", words)


def test_instruction_keys_belong_to_causal_lm_only():
    yaml = space_yaml(type="classification", text="text", metric="accuracy", choices="[a, b]")
    with pytest.raises(SpaceError, match=r"task\.choices: only a causal_lm task"):
        load_space_text(yaml.replace("model: smollm2-135m", "model: minilm-l6"), "llm.yaml")


def test_the_new_metrics_are_maximised_and_registered():
    from autopeft.tasks import METRIC_DIRECTIONS, TASKS

    assert METRIC_DIRECTIONS["choice_accuracy"] == METRIC_DIRECTIONS["exact_match"] == "max"
    assert {"eval_loss", "perplexity", "choice_accuracy", "exact_match"} == set(TASKS["causal_lm"].metrics)
    space = load_space_text(space_yaml(metric="exact_match", max_new_tokens=4), "llm.yaml")
    assert [(o.name, o.direction) for o in space.objectives] == [("exact_match", "max"), ("trainable_params", "min")]
    assert space.task.max_new_tokens == 4 and space.task.instruction


# ------------------------------------------------------------------------------ bad data: exit 2 before training


@pytest.fixture
def bad_rows(tmp_path):
    def write(rows, name="data.jsonl"):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return write


def validate(tmp_path, yaml: str, capsys, model=None) -> str:
    """``autopeft validate`` of ``yaml`` (on ``model``, a local decoder directory, when given):
    exit 2 and the one-line error it printed."""
    from autopeft.cli import main

    if model is not None:
        yaml = yaml.replace(f"model: {ALIAS}", f"model: {model}")
    path = tmp_path / "space.yaml"
    path.write_text(yaml)
    assert main(["validate", str(path)]) == 2
    return capsys.readouterr().err


def rows(n=6, **override):
    out = [{"prompt": f"Tweet {i}: nice day", "completion": ["negative", "neutral", "positive"][i % 3]} for i in range(n)]
    for i, row in override.items():
        out[int(i.lstrip("r"))] = row
    return out


def test_an_answer_outside_the_declared_choices_names_its_row(tmp_path, bad_rows, capsys, tiny_random_llama):
    data = bad_rows(rows(r4={"prompt": "Tweet 4", "completion": "mixed"}))
    err = validate(tmp_path, space_yaml(dataset=data, choices="[negative, neutral, positive]"), capsys, tiny_random_llama)
    one_line(err, "autopeft: error:", str(data), "row 5", "'mixed'", "task.choices", "add it to task.choices or fix the row")


def test_an_empty_completion_names_its_row(tmp_path, bad_rows, capsys, tiny_random_llama):
    data = bad_rows(rows(r2={"prompt": "Tweet 2", "completion": "  "}))
    err = validate(tmp_path, space_yaml(dataset=data), capsys, tiny_random_llama)
    one_line(err, "row 3", "column 'completion'", "empty", "fill it in or drop the row")


def test_a_chat_whose_last_message_is_not_the_answer_names_its_row(tmp_path, bad_rows, capsys, tiny_random_llama):
    chats = [{"chat": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "yes" if i % 2 else "no"}]}
             for i in range(6)]
    chats[3] = {"chat": [{"role": "assistant", "content": "no"}, {"role": "user", "content": "q3"}]}
    err = validate(tmp_path, space_yaml(dataset=bad_rows(chats), text=None, messages="chat"), capsys, tiny_random_llama)
    one_line(err, "row 4", "column 'chat'", "'assistant'")


def test_template_chat_for_a_model_without_one_is_a_one_line_error(tmp_path, bad_rows, capsys, tiny_random_gpt2):
    yaml = space_yaml(dataset=bad_rows(rows()), template="chat", metric="eval_loss")
    yaml = yaml.replace(f"model: {ALIAS}", f"model: {tiny_random_gpt2 / 'model'}").replace("q_proj, v_proj", "c_attn")
    err = validate(tmp_path, yaml, capsys)
    one_line(err, "task.template", "has no chat template", "template: plain")


def test_too_many_distinct_answers_for_choice_accuracy_says_what_to_do(tmp_path, bad_rows, capsys, tiny_random_llama):
    data = bad_rows([{"prompt": f"p{i}", "completion": f"answer {i}"} for i in range(40)])
    err = validate(tmp_path, space_yaml(dataset=data), capsys, tiny_random_llama)
    one_line(err, "40 distinct answers", "task.choices", "exact_match")


# ------------------------------------------------------------------------------ rendering and truncation


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from autopeft.assets.datasets import load_tokenizer

    return load_tokenizer(smollm2)


@pytest.mark.slow  # the converted decoder: ~25 s once per worker
def test_chat_rendering_is_the_template_and_only_the_answer_is_a_target(tokenizer):
    from autopeft.assets.instruct import pack, render

    r = render(tokenizer, "chat", ["Is rain positive?"], ["negative"])
    ids, mask, labels, prompt_len, kept = pack(r, 64, tokenizer.pad_token_id)
    whole = tokenizer.apply_chat_template([{"role": "user", "content": "Is rain positive?"},
                                           {"role": "assistant", "content": "negative"}], tokenize=False)
    n = int(mask[0].sum())
    assert tokenizer.decode(ids[0, :n]) == whole
    assert tokenizer.decode(ids[0, :prompt_len[0]]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(labels[0, prompt_len[0]:n]) == "negative<|im_end|>\n"
    assert (labels[0, :prompt_len[0]] == -100).all()


@pytest.mark.slow  # the converted decoder: ~25 s once per worker
def test_a_long_prompt_loses_its_start_and_a_too_long_answer_skips_the_example(tokenizer):
    from autopeft.assets.instruct import pack, render

    long_prompt = "word " * 200 + "Is this positive?"
    r = render(tokenizer, "chat", [long_prompt, "short", "short"], ["negative", "positive", "yes " * 80])
    ids, mask, labels, prompt_len, kept = pack(r, 48, tokenizer.pad_token_id)
    assert kept == [0, 1]  # the third answer alone is longer than 48 tokens
    assert int(mask[0].sum()) == 48
    text = tokenizer.decode(ids[0])
    assert text.endswith("Is this positive?<|im_end|>\n<|im_start|>assistant\nnegative<|im_end|>\n")
    assert "<|im_start|>system" not in text  # the start went, the question and the answer stayed


@pytest.mark.slow  # the converted decoder: ~25 s once per worker
def test_prepared_instruction_data_counts_skipped_examples_and_a_chat_column_equals_the_pair(smollm2, bad_rows):
    from autopeft.assets.datasets import prepare_data, resolve_dataset
    from autopeft.space.schema import ProxySpec, TaskSpec

    pairs = [{"prompt": f"Tweet {i}: it rained", "completion": "no" if i % 2 else "yes"} for i in range(20)]
    pairs[5]["completion"] = "yes " * 60  # alone longer than max_length
    chats = [{"m": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
             for r in pairs]
    proxy = ProxySpec(train_examples=12, eval_examples=8, max_length=40)
    a = prepare_data(smollm2, resolve_dataset(str(bad_rows(pairs, "pairs.jsonl"))),
                     TaskSpec("pairs", ("prompt", "completion"), "label", "eval_loss", "causal_lm"), proxy)
    b = prepare_data(smollm2, resolve_dataset(str(bad_rows(chats, "chats.jsonl"))),
                     TaskSpec("chats", (), "label", "eval_loss", "causal_lm", messages="m"), proxy)
    assert a.template == b.template == "chat"
    assert a.too_long == 1 and a.n_train + a.n_eval == 19
    from safetensors.numpy import load_file

    x, y = load_file(a.path), load_file(b.path)
    assert set(x) == set(y) and all((x[k] == y[k]).all() for k in x)
    assert a.choices == b.choices and len(a.choices) == 3  # few distinct completions: an answer set


def test_the_bundled_instruction_views_hold_the_same_rows():
    from autopeft.assets.datasets import load_dataset, resolve_dataset

    tweets = load_dataset(resolve_dataset("tweet-sentiment-instruct"))
    assert tweets.column_names == ["prompt", "completion"]
    assert set(tweets["completion"]) == {"negative", "neutral", "positive"}
    assert tweets[0]["prompt"].startswith("Tweet: ") and tweets[0]["prompt"].endswith("Answer with one word.")
    news = load_dataset(resolve_dataset("bbc-news-instruct"))
    assert len(news) == 2225 and set(news["completion"]) == {"business", "entertainment", "politics", "sports", "tech"}
    text = load_dataset(resolve_dataset("bbc-news-text"))
    assert text.column_names == ["text"] and len(text) == 2225
    assert news[0]["prompt"].startswith("Article: " + text[0]["text"].strip()[:40])
    # Same files, other rows: the fingerprints (and so the prepared-data keys) differ.
    assert len({resolve_dataset(n).fingerprint for n in ("bbc-news", "bbc-news-instruct", "bbc-news-text")}) == 3


# ------------------------------------------------------------------------------ scoring on the real decoder


@pytest.fixture(scope="module")
def tweets(smollm2):
    """8 validation tweets (and 16 training ones) prepared for the decoder, chat-rendered."""
    from autopeft.assets.datasets import prepare_data, resolve_dataset
    from autopeft.space.schema import ProxySpec, TaskSpec

    task = TaskSpec("tweet-sentiment-instruct", ("prompt", "completion"), "label", "choice_accuracy", "causal_lm")
    return prepare_data(smollm2, resolve_dataset(task.dataset), task,
                        ProxySpec(train_examples=16, eval_examples=8, max_length=64))


def lora(model, arch, layers=(28, 29), targets=("q_proj", "v_proj"), method="lora", steps=10):
    from autopeft.methods import BuildContext, get_method
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import Targets

    m = get_method(method)
    cand = Candidate(method, 4, 8.0, 0.0, Targets(targets), tuple(layers), 1e-3, False, False)
    wrapped = m.wrap(model, m.config_json(m.build(cand, BuildContext(arch, steps))))
    _perturb(wrapped)
    return wrapped


def _perturb(model):
    """LoRA's B starts at zero (the adapter is then the identity): make it count."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.normal_(0, 0.02)


@pytest.mark.slow
def test_cached_prompt_choice_scores_equal_full_sequence_scores(smollm2_model, smollm2_arch, tweets):
    import torch

    from autopeft.trials.data import load_split
    from autopeft.trials.generative import choice_accuracy, load_gen, score_choices, score_choices_full

    model = lora(smollm2_model, smollm2_arch).eval()
    split, gen = load_split(tweets.path)["eval"], load_gen(tweets.path)
    assert gen["choices"] == ["negative", "neutral", "positive"] and gen["loss_from_choices"]
    split = {k: v[:6] for k, v in split.items()}
    gen = {**gen, "prompt_len": gen["prompt_len"][:6], "gold": gen["gold"][:6]}
    cached = score_choices(model, split, gen, batch_size=4)  # two batches, prompts of different lengths
    full = score_choices_full(model, split, gen, batch_size=9)
    assert cached.shape == (6, 3) and torch.isfinite(cached).all()
    assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()
    assert choice_accuracy(cached, gen["gold"]) == choice_accuracy(full, gen["gold"])

    # The gold answers' scores are the validation loss: the trial's one pass gives both.
    from autopeft.trials.generative import loss_from_scores
    from autopeft.trials.evaluation import evaluate

    from_scores, from_pass = loss_from_scores(cached, gen), evaluate(model, split, 0, 6)
    assert from_scores["eval_loss"] == pytest.approx(from_pass["eval_loss"], abs=1e-4)
    # Both carry the same standard error over the 6 examples: the rung signal's noise on a decoder.
    assert from_pass["eval_examples"] == from_scores["eval_examples"] == 6
    assert from_scores["eval_loss_se"] > 0
    assert from_scores["eval_loss_se"] == pytest.approx(from_pass["eval_loss_se"], rel=1e-3)


def test_a_decoders_loss_carries_a_standard_error_that_shrinks_with_more_examples():
    import torch

    from autopeft.trials.generative import token_weighted_loss

    # Equal token counts: the ratio is a plain mean of per-token losses, whose standard error is known.
    nll = torch.tensor([2.0, 4.0, 3.0, 7.0], dtype=torch.float64)
    tokens = torch.full((4,), 2.0, dtype=torch.float64)
    got = token_weighted_loss(nll, tokens)
    per_token = nll / tokens
    assert got["eval_loss"] == pytest.approx(float(per_token.mean()))
    assert got["eval_loss_se"] == pytest.approx(float(per_token.std(unbiased=True) / 2.0))
    assert got["eval_examples"] == 4
    # Long answers weigh more in the ratio than in a mean of ratios.
    uneven = token_weighted_loss(torch.tensor([1.0, 30.0], dtype=torch.float64), torch.tensor([1.0, 10.0], dtype=torch.float64))
    assert uneven["eval_loss"] == pytest.approx(31.0 / 11.0)
    # The same spread over 4x the examples: half the standard error.
    more = token_weighted_loss(nll.repeat(4), tokens.repeat(4))
    assert more["eval_loss_se"] == pytest.approx(got["eval_loss_se"] / 2, rel=0.2)
    assert token_weighted_loss(nll[:1], tokens[:1])["eval_loss_se"] == 0.0
    assert token_weighted_loss(torch.tensor([float("nan")]), torch.tensor([1.0])) == {}


def test_a_decoders_prior_loss_is_that_of_answering_the_answer_frequencies():
    import math

    import torch

    from autopeft.trials.generative import loss_from_scores

    # 3 answers of 2, 1 and 3 tokens; gold answers 0, 0, 0, 1: frequencies 3/4 and 1/4.
    gen = {"gold": torch.tensor([0, 0, 0, 1]), "choice_len": torch.tensor([2, 1, 3])}
    knows_nothing = torch.full((4, 3), math.log(1 / 3))  # the same score for every answer
    got = loss_from_scores(knows_nothing, gen)
    tokens = 2 + 2 + 2 + 1
    assert got["eval_prior_loss"] == pytest.approx((-3 * math.log(0.75) - math.log(0.25)) / tokens)
    assert got["eval_loss"] == pytest.approx(4 * math.log(3) / tokens)
    # A run that has learned only the frequencies scores the prior exactly.
    frequencies = torch.log(torch.tensor([0.75, 0.25, 1e-9])).expand(4, 3)
    assert loss_from_scores(frequencies, gen)["eval_loss"] == pytest.approx(got["eval_prior_loss"])


@pytest.mark.slow
def test_exact_match_is_greedy_decoding_compared_after_strip_and_casefold(smollm2_model, tweets, tokenizer):
    import torch

    from autopeft.trials.data import load_split
    from autopeft.trials.generative import exact_match, load_gen

    split, gen = load_split(tweets.path)["eval"], load_gen(tweets.path)
    rows = slice(0, 2)
    split = {k: v[rows] for k, v in split.items()}
    gen = {**gen, "prompt_len": gen["prompt_len"][rows]}
    # What greedy decoding says, one prompt at a time with no padding: the reference.
    said = []
    with torch.no_grad():
        for i in range(2):
            ids = split["input_ids"][i:i + 1, :int(gen["prompt_len"][i])]
            for _ in range(3):
                nxt = smollm2_model(input_ids=ids).logits[0, -1].argmax()
                if int(nxt) in gen["stop_ids"]:
                    break
                ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            said.append(tokenizer.decode(ids[0, int(gen["prompt_len"][i]):]))
    assert exact_match(smollm2_model, split, {**gen, "gold_texts": [f"  {s.upper()} " for s in said]}, tokenizer, 3) == 1
    assert exact_match(smollm2_model, split, {**gen, "gold_texts": ["zzz"] + said[1:]}, tokenizer, 3) == 0.5


@pytest.mark.slow
def test_the_frozen_prefix_cache_is_exact_on_llama_layers(smollm2_model, smollm2_arch, tweets):
    """Llama layers get the rotary embeddings and the causal mask from the model as keyword
    arguments: skipping layers 0-27 and feeding layer 28 the cached states must compute what
    the whole model computes (measured here, within 1e-4), and full_stack() must restore it."""
    import torch

    from autopeft.trials.generative import load_gen, score_choices
    from autopeft.trials.batches import trim as _trim
    from autopeft.trials.data import load_split
    from autopeft.trials.model import forward, use_prefix_cache
    from autopeft.trials.spec import ProxySpec, TrialSpec

    model = lora(smollm2_model, smollm2_arch).eval()
    split = load_split(tweets.path)
    batch = _trim({k: v[:6] for k, v in split["eval"].items()})
    gen = load_gen(tweets.path)
    with torch.no_grad():
        expected = model(**batch)
        expected_scores = score_choices(model, split["eval"], gen)
    spec = TrialSpec("t", 0, "lora", "m", 0, tweets.path, {}, 1e-3, ProxySpec(steps=1, batch_size=6), task="causal_lm")
    skip = use_prefix_cache(model, spec, split)
    assert skip is not None, "adapters in layers 28-29 only: layers 0-27 can be skipped"
    assert sum(type(layer).__name__ == "PassThrough" for layer in model.base_model.model.model.layers) == 28
    cached_batch = _trim({k: v[:6] for k, v in split["eval"].items()})
    with torch.no_grad():
        got = forward(model, cached_batch, skip)
        with skip.full_stack():
            scores = score_choices(model, split["eval"], gen)
    assert torch.allclose(got.logits, expected.logits, atol=1e-4), (got.logits - expected.logits).abs().max()
    assert abs(float(got.loss) - float(expected.loss)) < 1e-4
    assert torch.allclose(scores, expected_scores, atol=1e-4)
    assert sum(type(layer).__name__ == "PassThrough" for layer in model.base_model.model.model.layers) == 28


# ------------------------------------------------------------------------------ placement and importance on the decoder


@pytest.mark.slow
def test_spt_sensitivity_ranks_the_decoders_layers_and_modules(smollm2, smollm2_arch, tweets):
    from autopeft.trials.importance import spt_sensitivity

    modules = tuple(s.name for s in smollm2_arch.linears)
    imap = spt_sensitivity(smollm2.location, 0, tweets.path, smollm2_arch.layers_path, modules,
                           batches=1, batch_size=2, task="causal_lm")
    assert imap.num_layers == 30 and imap.modules == modules
    assert all(v is not None and math.isfinite(v) and v > 0 for row in imap.scores for v in row)
    assert sorted(imap.layer_order()) == list(range(30))


@pytest.mark.slow  # the converted decoder: ~25 s once per worker
def test_per_layer_ranks_on_the_decoder_are_counted_as_peft_wraps_them(smollm2, smollm2_arch):
    """``rank: {per_layer: ...}`` on Llama: peft's rank_pattern per layer, counted analytically."""
    from autopeft.assets.architecture import build_on_meta
    from autopeft.methods import BuildContext, get_method
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import Targets

    layers, ranks = (0, 7, 15, 29), (2, 8, 4, 8)
    cand = Candidate("lora", 8, 16.0, 0.0, Targets(()), layers, 1e-3, False, False, layer_ranks=ranks)
    m, ctx = get_method("lora"), BuildContext(smollm2_arch, 10)
    config = m.config_json(m.build(cand, ctx))
    wrapped = m.wrap(build_on_meta(smollm2, 0, "causal_lm"), config)
    assert m.count_trainable(cand, ctx) == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    q = wrapped.base_model.model.model.layers[7].self_attn.q_proj
    assert q.lora_A["default"].weight.shape[0] == 8 and wrapped.base_model.model.model.layers[0].mlp.down_proj.r["default"] == 2
    assert not hasattr(wrapped.base_model.model.model.layers[1].self_attn.q_proj, "lora_A")


@pytest.mark.slow  # the converted decoder: ~25 s once per worker
def test_default_lora_targets_come_from_module_names(model_info, smollm2_arch, tiny_random_gpt2):
    from autopeft.assets.architecture import LinearSpec, inspect_model
    from autopeft.assets.models import resolve_model
    from autopeft.space.default_lora import baseline_candidate, baseline_targets
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import ModelSpec

    assert baseline_targets(smollm2_arch) == ("q_proj", "v_proj")
    assert baseline_targets(model_info) == ("query", "value")
    gpt2 = inspect_model(resolve_model(ModelSpec(str(tiny_random_gpt2 / "model"))), 0, "causal_lm")
    assert baseline_targets(gpt2) == ("c_attn",)  # fused query/key/value
    import dataclasses

    distil = dataclasses.replace(model_info, linears=tuple(LinearSpec(n, 8, 8) for n in (
        "attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")))
    assert baseline_targets(distil) == ("q_lin", "v_lin")
    chosen = Candidate.from_json({"method": "ia3", "rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": "all-linear",
                                  "layers": [29], "learning_rate": 1e-3, "dora": False, "rslora": False})
    base = baseline_candidate(chosen, smollm2_arch)
    assert (base.rank, base.targets.modules, base.layers) == (8, ("q_proj", "v_proj"), tuple(range(30)))


@pytest.mark.slow
def test_adalora_on_the_decoder_exports_its_learned_ranks_as_a_lora_rank_pattern(smollm2, smollm2_arch, tweets):
    from peft import get_peft_config, get_peft_model
    from transformers import AutoModelForCausalLM

    from autopeft.methods import BuildContext, get_method
    from autopeft.methods.adalora import as_lora
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import Targets
    from autopeft.trials.proxy import run_proxy
    from autopeft.trials.spec import ProxySpec, TrialSpec

    steps = 4
    cand = Candidate("adalora", 4, 8.0, 0.0, Targets(("q_proj", "v_proj")), (28, 29), 1e-2, False, False)
    m = get_method("adalora")
    config = m.config_json(m.build(cand, BuildContext(smollm2_arch, steps)))
    spec = TrialSpec("t", 0, "adalora", smollm2.location, 0, tweets.path, config, 1e-2,
                     ProxySpec(steps=steps, batch_size=2, threads=2, log_every=1), metric="exact_match",
                     task="causal_lm", max_new_tokens=2)
    result = run_proxy(spec)
    assert result.status == "complete"  # exact_match is the metric: decoded, beside the answer scores
    assert 0 <= result.metrics["choice_accuracy"] <= 1 and 0 <= result.metrics["exact_match"] <= 1
    allocation = result.extras["rank_allocation"]
    assert len(allocation) == 4 and all(0 <= r <= 4 for r in allocation.values())  # 2 layers x q, v
    lora = as_lora(config, allocation)
    assert lora["task_type"] == "CAUSAL_LM"
    wrapped = get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2.location), get_peft_config(lora))
    q, v = smollm2_arch.linear("self_attn.q_proj"), smollm2_arch.linear("self_attn.v_proj")
    size = {"q_proj": q.in_features + q.out_features, "v_proj": v.in_features + v.out_features}
    import re

    ranks = {re.sub(r"(\.lora_\w+)?(\.default)?$", "", name): r for name, r in allocation.items()}
    expected = sum(r * size[module.rsplit(".", 1)[-1]] for module, r in ranks.items())
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == expected


# ------------------------------------------------------------------------------ search, export, export --train


@pytest.mark.slow
def test_a_decoder_search_exports_a_loadable_lora_and_export_train_reproduces_its_choice_accuracy(smollm2, tmp_path,
                                                                                                   capsys, monkeypatch):
    import re

    import torch
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from autopeft.cli import main
    from autopeft.search.prepare import prepare_search
    from autopeft.space import load_space
    from autopeft.store import Store
    from autopeft.trials.data import load_split
    from autopeft.trials.generative import choice_accuracy, load_gen, score_choices

    space = tmp_path / "llm.yaml"
    space.write_text(space_yaml().replace("method: [lora, ia3]", "method: lora\n  dora: [false, true]"))
    url = f"sqlite:///{tmp_path / 'llm.db'}"
    assert main(["search", str(space), "--storage", url]) == 0
    done = [r for r in Store(url).trials("llm-test") if r.status == "complete"]
    assert len(done) == 2
    for r in done:
        assert 0 <= r.metrics["choice_accuracy"] <= 1 and math.isfinite(r.metrics["eval_loss"])
    trial = done[0]

    out = tmp_path / "adapter"
    capsys.readouterr()
    assert main(["export", "llm-test", "--storage", url, "--trial", str(trial.number), "--out", str(out)]) == 0
    assert f"resolve_model(ModelSpec('{ALIAS}')).location" in capsys.readouterr().out  # the base is the converted GGUF
    config = PeftConfig.from_pretrained(str(out))
    assert config.task_type == "CAUSAL_LM"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2.location), config)
    assert model.get_nb_trainable_parameters()[0] == trial.trainable_params

    trained = tmp_path / "trained"
    assert main(["export", "llm-test", "--storage", url, "--trial", str(trial.number), "--out", str(trained), "--train",
                 "--seeds", "1", "--steps", "2", "--train-examples", "16"]) == 0
    card = (trained / "README.md").read_text()
    # (a 2-step run may be flagged "**diverged**" beside its name: autopeft.search.analysis.divergence)
    reported = float(re.search(r"\| chosen(?: \*\*diverged\*\*)? \| lora \| [\d,]+ \| ([\d.]+) ±", card).group(1))
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "resolve_model(ModelSpec('smollm2-135m'))" in snippet
    monkeypatch.chdir(trained)
    scope: dict = {}
    exec(snippet, scope)  # the model card's own load code: the base from the converted GGUF, the trained adapter
    loaded = scope["model"].eval()
    data = prepare_search(load_space(space, ["proxy.train_examples=16"])).data  # what export --train trained on
    split, gen = load_split(data.path)["eval"], load_gen(data.path)
    torch.set_num_threads(2)
    assert round(choice_accuracy(score_choices(loaded, split, gen), gen["gold"]), 4) == reported
