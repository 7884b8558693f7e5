"""An autopeft trial runner that trains with the Hugging Face ``Trainer``.

Use it (or copy it and change the training) with ``proxy.runner:
examples.hf_trainer_runner:train`` in a search space, or ``autopeft search SPACE --runner
examples.hf_trainer_runner:train``, run from the repository root (the working directory is on
the import path). autopeft hands over the peft-wrapped model, the tokenizer, the trial's spec
and the prepared splits; this function trains for ``spec.proxy.steps`` steps at the trial's
learning rate and returns the validation metrics (``"test"`` too when ``autopeft verify``
asks). See ``autopeft.trials.user_runner`` for the whole contract.
"""

from __future__ import annotations

import tempfile


def train(trial) -> dict:
    import numpy as np
    from transformers import Trainer, TrainerCallback, TrainingArguments

    spec, proxy = trial.spec, trial.spec.proxy
    classification = spec.task == "classification"

    class Report(TrainerCallback):
        """Hands the learning curve and the optimiser steps back to autopeft."""

        def on_optimizer_step(self, args, state, control, **kwargs):
            trial.optimizer_stepped(state.global_step + 1)  # AdaLoRA re-allocates ranks here

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                trial.report(state.global_step, logs["loss"])

    def metrics(prediction) -> dict:
        predicted = np.argmax(prediction.predictions, axis=-1)
        gold = prediction.label_ids
        f1 = [2 * ((predicted == c) & (gold == c)).sum() / max((predicted == c).sum() + (gold == c).sum(), 1)
              for c in range(spec.num_labels)]
        return {"accuracy": float((predicted == gold).mean()), "macro_f1": float(np.mean(f1))}

    with tempfile.TemporaryDirectory() as out:  # nothing kept: autopeft saves the adapter itself
        args = TrainingArguments(
            output_dir=out, max_steps=proxy.steps, learning_rate=spec.learning_rate,
            per_device_train_batch_size=proxy.batch_size, per_device_eval_batch_size=max(32, proxy.batch_size),
            warmup_steps=int(proxy.warmup * proxy.steps), lr_scheduler_type="linear", weight_decay=0.0,
            max_grad_norm=1.0, seed=proxy.seed, logging_steps=proxy.log_every, save_strategy="no",
            eval_strategy="no", report_to="none", disable_tqdm=True, label_names=["labels"],
            use_cpu=trial.device == "cpu", bf16=proxy.precision == "bf16", fp16=proxy.precision == "fp16",
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=trial.model, args=args, train_dataset=trial.dataset("train"),
                          compute_metrics=metrics if classification else None, callbacks=[Report()])
        trainer.train()

        def evaluate(split: str) -> dict:
            scores = trainer.evaluate(trial.dataset(split), metric_key_prefix=split)
            return {key.removeprefix(f"{split}_"): value for key, value in scores.items()
                    if key.removeprefix(f"{split}_") in ("accuracy", "macro_f1", "loss")}

        result = {k.replace("loss", "eval_loss"): v for k, v in evaluate("eval").items()}
        if trial.test_split:
            result["test"] = {k.replace("loss", "eval_loss"): v for k, v in evaluate("test").items()}
    return result
