"""Generative metrics of instruction data, with no sampling: choice accuracy and exact match.

``choice_accuracy``: for every validation prompt, the log-likelihood of each allowed answer
(the sum of its tokens' log-probabilities after the prompt); the prediction is the argmax.
Batched so that the prompt is run once: the prompts of a batch go through the model
left-padded with ``use_cache``, the key/value cache is repeated once per answer, and every
(prompt, answer) continuation is scored in one more forward pass of a few tokens. So 300
examples x 5 answers cost about one forward pass over the 300 prompts, not five. Methods
whose adapter *is* a key/value prefix (peft prompt learning) cannot share a cache this way:
for them each (prompt, answer) sequence is run in full (``score_choices_full``, also the
reference the tests hold the cached scores to).

``exact_match``: greedy decoding (at most ``max_new_tokens``, stopping at the end-of-turn
or end-of-sequence token), compared with the gold completion after ``strip`` + ``casefold``.

Both are higher-is-better; the validation loss and perplexity are computed beside them.
Answer scoring also yields what shows a collapsed run (``choice_diagnostics``: how many
distinct answers are predicted, and the rate of always answering the most frequent one).
"""

from __future__ import annotations

import contextlib
import json


def load_gen(path: str, split: str = "eval") -> dict:
    """The generative-metric arrays of a prepared split (``gen.*`` for validation, ``gentest.*``
    for test) with their metadata (gold texts, stop ids, pad id); the answer set is shared."""
    from safetensors import safe_open

    own = "gen." if split == "eval" else "gentest."
    out = {}
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["autopeft"])
        for key in f.keys():
            if key.startswith(own) or (key.startswith("gen.choice_") and split != "eval"):
                out[key.split(".", 1)[1]] = f.get_tensor(key)
    if "prompt_len" not in out:
        return {}
    gold = meta.get("gold", []) if split == "eval" else meta.get("gold_test", [])
    return {**out, "gold_texts": gold, "stop_ids": meta.get("stop_ids", []),
            "pad_id": meta.get("pad_id", 0), "choices": meta.get("choices", []),
            "loss_from_choices": bool(meta.get("loss_from_choices")) and split == "eval"}


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uses_prompt_learning(model) -> bool:
    """Whether the adapter is a learned key/value prefix (peft prompt learning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _device(model):
    return next(model.parameters()).device


def _left_padded(split: dict, rows, prompt_len, pad: int):
    """The prompts of ``rows`` left-padded to the longest: ``(ids, mask, positions)``.

    Positions count real tokens only, so a padded prompt sees the positions it would alone
    (rotary embeddings depend on them)."""
    import torch

    lengths = prompt_len[rows]
    width = int(lengths.max())
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, (r, n) in enumerate(zip(rows.tolist(), lengths.tolist())):
        ids[k, width - n:] = split["input_ids"][r, :n]
        mask[k, width - n:] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions


def _cache_of(output):
    return getattr(output, "cache", None) if getattr(output, "cache", None) is not None else getattr(output, "past_key_values", None)


def score_choices(model, split: dict, gen: dict, batch_size: int = 32):
    """Log-likelihood of every answer after every prompt: a float tensor ``(n, C)``.

    Args:
        split: The validation split (``input_ids`` hold each prompt in their first
            ``gen["prompt_len"]`` tokens).
        gen: ``load_gen``'s arrays: ``prompt_len`` (n,), ``choice_ids`` (C, Lc),
            ``choice_len`` (C,), ``pad_id``.
    """
    if uses_prompt_learning(model):
        return score_choices_full(model, split, gen, batch_size)
    import torch

    device = _device(model)
    prompt_len, choice_ids, choice_len = gen["prompt_len"], gen["choice_ids"], gen["choice_len"]
    n, C, width = len(prompt_len), len(choice_len), int(choice_len.max())
    choice_ids = choice_ids[:, :width]
    choice_mask = (torch.arange(width)[None, :] < choice_len[:, None]).long()
    scores = torch.empty((n, C), dtype=torch.float64)
    order = torch.argsort(prompt_len, stable=True)  # similar lengths together: less padding
    keep_last = _accepts(model, "logits_to_keep")
    with torch.no_grad():
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            b = len(rows)
            ids, mask, positions = _left_padded(split, rows, prompt_len, gen["pad_id"])
            extra = {"logits_to_keep": 1} if keep_last else {}
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                        use_cache=True, **extra)
            first = out.logits[:, -1].float().log_softmax(-1).cpu()  # predicts each answer's first token
            cache = _cache_of(out)
            cache.batch_repeat_interleave(C)  # prompt k's cache for each of its C answers, in order
            cont = choice_ids.repeat(b, 1)  # (b*C, width): all answers after prompt 0, then prompt 1 ...
            cont_mask = choice_mask.repeat(b, 1)
            full_mask = torch.cat([mask.repeat_interleave(C, 0), cont_mask], dim=1)
            cont_pos = prompt_len[rows].repeat_interleave(C)[:, None] + torch.arange(width)[None, :]
            out2 = model(input_ids=cont.to(device), attention_mask=full_mask.to(device),
                         position_ids=cont_pos.to(device), use_cache=True, **{_cache_kwarg(model): cache})
            logp = out2.logits[:, :-1].float().log_softmax(-1).cpu()
            token = torch.cat([first.repeat_interleave(C, 0).gather(1, cont[:, :1]),
                               logp.gather(2, cont[:, 1:, None]).squeeze(-1)], dim=1)
            scores[rows] = (token * cont_mask).sum(1).double().view(b, C)
    return scores


def score_choices_full(model, split: dict, gen: dict, batch_size: int = 32):
    """``score_choices`` by running every (prompt, answer) sequence in full (right-padded):
    C times the work, for models that cannot share a prompt's key/value cache."""
    import torch

    device = _device(model)
    prompt_len, choice_ids, choice_len = gen["prompt_len"], gen["choice_ids"], gen["choice_len"]
    n, C = len(prompt_len), len(choice_len)
    scores = torch.empty((n, C), dtype=torch.float64)
    per_batch = max(1, batch_size // C)
    with torch.no_grad():
        for start in range(0, n, per_batch):
            rows = list(range(start, min(n, start + per_batch)))
            seqs = [(split["input_ids"][r, :int(prompt_len[r])], choice_ids[c, :int(choice_len[c])])
                    for r in rows for c in range(C)]
            width = max(len(p) + len(a) for p, a in seqs)
            ids = torch.full((len(seqs), width), gen["pad_id"], dtype=torch.long)
            mask = torch.zeros_like(ids)
            for k, (p, a) in enumerate(seqs):
                ids[k, :len(p) + len(a)] = torch.cat([p, a])
                mask[k, :len(p) + len(a)] = 1
            logp = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1).cpu()
            for k, (p, a) in enumerate(seqs):
                at = torch.arange(len(p) - 1, len(p) + len(a) - 1)  # the logits that predict the answer's tokens
                scores[rows[k // C], k % C] = float(logp[k, at].gather(1, a[:, None]).sum())
    return scores


def _accepts(model, name: str) -> bool:
    import inspect

    base = _base(model)
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_kwarg(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name still works, with
    a deprecation warning): pass the one the model's ``forward`` names."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


def loss_from_scores(scores, gen: dict) -> dict:
    """``eval_loss`` (mean negative log-likelihood per completion token), its standard error,
    ``eval_examples`` and ``perplexity`` from the gold answers' scores: the validation loss
    itself when every completion is its gold answer's tokens (``gen["loss_from_choices"]``,
    checked when the data was prepared). Also ``eval_prior_loss``: that loss for answering
    the split's answer frequencies whatever the prompt."""
    gold = gen["gold"]
    nll = -scores.gather(1, gold[:, None]).squeeze(1).double()
    tokens = gen["choice_len"][gold].double()
    out = token_weighted_loss(nll, tokens)
    if out and len(gold):
        # The same loss of a run that has learned the answers' form and their frequencies but
        # nothing of the prompts: a decoder's answer loss falls to it within a few steps, so
        # rung placement counts learning only below it (autopeft.search.fidelity.placement).
        frequency = gold.bincount(minlength=int(gen["choice_len"].numel())).double() / len(gold)
        out["eval_prior_loss"] = float(-frequency[gold].log().sum() / tokens.sum().clamp(min=1))
    return out


def token_weighted_loss(nll, tokens) -> dict:
    """``eval_loss`` = sum(nll) / sum(tokens) over examples, with its standard error over the
    examples (the delta method for a ratio of means): a rung tells two runs' losses apart, and
    rung placement tells "has learned" from noise, only with it (``autopeft.search.fidelity``).

    Args:
        nll: ``(n,)`` each example's negative log-likelihood summed over its target tokens.
        tokens: ``(n,)`` each example's target tokens.
    """
    import math

    n = int(nll.numel())
    loss = float(nll.sum() / tokens.sum().clamp(min=1))
    if not math.isfinite(loss):
        return {}
    se = 0.0
    if n > 1:
        residual = nll - loss * tokens  # the ratio's linearisation, one term per example
        se = float(residual.std(unbiased=True) / math.sqrt(n) / tokens.mean().clamp(min=1e-9))
    return {"eval_loss": loss, "eval_loss_se": se, "eval_examples": n, "perplexity": math.exp(min(loss, 50.0))}


def choice_accuracy(scores, gold) -> float:
    """The fraction of prompts whose gold answer has the highest log-likelihood."""
    return float((scores.argmax(dim=1) == gold).double().mean())


def choice_diagnostics(scores, gold) -> dict:
    """What tells a collapsed run from a learned one, under the keys classification uses
    (``autopeft.trials.evaluation.evaluate``), so ``autopeft.search.analysis.divergence`` reads both alike:
    ``predicted_classes``, how many distinct answers the argmax predicts, and ``majority_rate``,
    the choice accuracy of always answering the split's most frequent gold answer. Empty for
    an empty split."""
    import torch

    if len(gold) == 0:
        return {}
    return {"predicted_classes": int(scores.argmax(dim=1).unique().numel()),
            "majority_rate": float(torch.bincount(gold).max()) / len(gold)}


def exact_match(model, split: dict, gen: dict, tokenizer, max_new_tokens: int, batch_size: int = 32) -> float:
    """Greedy decoding per prompt; the fraction equal to the gold completion (strip, casefold)."""
    import torch

    from autopeft.assets.instruct import normalise

    device = _device(model)
    prompt_len = gen["prompt_len"]
    order = torch.argsort(prompt_len, stable=True)
    hits = 0
    stops = list(gen["stop_ids"]) or None
    with torch.no_grad():
        for start in range(0, len(prompt_len), batch_size):
            rows = order[start:start + batch_size]
            ids, mask, _ = _left_padded(split, rows, prompt_len, gen["pad_id"])
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, eos_token_id=stops, pad_token_id=gen["pad_id"],
                                 temperature=None, top_p=None, top_k=None)
            texts = tokenizer.batch_decode(out[:, ids.shape[1]:].cpu(), skip_special_tokens=True)
            hits += sum(normalise(t) == normalise(gen["gold_texts"][int(r)]) for t, r in zip(texts, rows))
    return hits / max(1, len(prompt_len))


def generative_metrics(model, split: dict, gen: dict, *, metric: str, max_new_tokens: int, tokenizer_location=None,
                       batch_size: int = 32, full_stack=contextlib.nullcontext, diagnostics: dict | None = None,
                       outcomes: dict | None = None) -> dict:
    """``choice_accuracy`` when the data has an answer set; ``exact_match`` when it is the
    task metric (decoding costs more than scoring, so only when asked for).

    ``full_stack``: a context in which the model runs every layer (the frozen-prefix cache
    skips layers for the cached training and validation sequences only). ``diagnostics``, if
    given, receives :func:`choice_diagnostics` of the answer scores (nothing without an
    answer set), as ``evaluate``'s ``diagnostics`` does for classification. ``outcomes``, if
    given, receives ``choice_accuracy``: a bool tensor ``(n,)``, prompt ``i`` answered right."""
    out = {}
    if not gen:
        return out
    was_training = model.training
    model.eval()
    try:
        with full_stack():
            if "choice_ids" in gen:
                scores = score_choices(model, split, gen, batch_size)
                out["choice_accuracy"] = choice_accuracy(scores, gen["gold"])
                if outcomes is not None:
                    outcomes["choice_accuracy"] = scores.argmax(dim=1) == gen["gold"]
                if diagnostics is not None:
                    diagnostics.update(choice_diagnostics(scores, gen["gold"]))
                if gen.get("loss_from_choices"):
                    out.update(loss_from_scores(scores, gen))
            if metric == "exact_match":
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(tokenizer_location)
                out["exact_match"] = exact_match(model, split, gen, tokenizer, max_new_tokens, batch_size)
    finally:
        model.train(was_training)
    return out
