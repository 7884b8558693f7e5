"""Task kinds: what head the model gets, what peft task type that is, how it is scored.

``classification``: a sequence-classification head (peft trains it in full as
``modules_to_save``), scored by accuracy or macro-F1 (higher is better). ``causal_lm``: the
model's own LM head, trained on text (or on the completion of prompt/completion pairs or
chat messages), scored by validation loss or perplexity (lower is better) or, for
instruction data, by ``choice_accuracy`` (the allowed answer with the highest
log-likelihood after the prompt is the prediction: no sampling) or ``exact_match`` (greedy
decoding, compared after strip + casefold); both higher is better. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskKind:
    name: str
    auto_class: str  # the transformers Auto* class that builds the model with its head
    peft_task_type: str
    metrics: dict  # metric -> "max" | "min"
    default_metric: str
    labelled: bool  # needs a label column

    def model_kwargs(self, num_labels: int) -> dict:
        return {"num_labels": num_labels} if self.labelled else {}

    def auto(self):
        import transformers

        return getattr(transformers, self.auto_class)

    def from_pretrained_line(self, path_expr: str, num_labels: int) -> str:
        """Python that loads the base model (for load snippets and model cards)."""
        extra = f", num_labels={num_labels}" if self.labelled else ""
        return f"base = {self.auto_class}.from_pretrained({path_expr}{extra})"


TASKS = {
    "classification": TaskKind("classification", "AutoModelForSequenceClassification", "SEQ_CLS",
                               {"accuracy": "max", "macro_f1": "max"}, "accuracy", True),
    "causal_lm": TaskKind("causal_lm", "AutoModelForCausalLM", "CAUSAL_LM",
                          {"eval_loss": "min", "perplexity": "min", "choice_accuracy": "max", "exact_match": "max"},
                          "eval_loss", False),
}

#: Metrics that score an answer after a prompt: they need instruction data
#: (``text: [prompt, completion]`` or ``messages: COLUMN``), not a plain corpus.
INSTRUCTION_METRICS = ("choice_accuracy", "exact_match")
#: Chat rendering of instruction data: ``chat`` (the tokenizer's chat template) or ``plain``
#: (prompt and completion concatenated, an end-of-sequence token after the completion).
TEMPLATES = ("chat", "plain")

#: Every task metric -> its only sensible direction.
METRIC_DIRECTIONS = {m: d for kind in TASKS.values() for m, d in kind.metrics.items()}


def task_kind(name: str) -> TaskKind:
    return TASKS[name]

#: What every task reports at a rung besides its own metrics: the validation loss and the
#: mean training loss of the last steps (smaller is better).
LOSS_SIGNALS = {"eval_loss": "min", "train_loss": "min"}


def rung_signals(task_type: str, metric: str) -> dict[str, str]:
    """The signals a task of ``task_type`` scored by ``metric`` reports at a rung -> direction.

    Its own metric, the losses, and for classification both of its rates (a rung evaluates
    them together). Answer metrics other than the study's own are not computed at a rung.
    """
    out = {metric: METRIC_DIRECTIONS[metric], **LOSS_SIGNALS}
    if task_type == "classification":
        out.update(TASKS["classification"].metrics)
    elif task_type == "causal_lm":
        out["perplexity"] = "min"
    return out
