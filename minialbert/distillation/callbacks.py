"""What a distillation run records as it goes: OUT/log.jsonl rows of the losses, and the zero-shot
STS-B curve of the student."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)
COMPONENTS = ("mlm", "attention", "hidden", "output", "embedding", "sentence")


class JsonlLogCallback(TrainerCallback):
    """OUT/log.jsonl: one JSON object per logging step with step, loss, components, learning rate."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            row = {"step": state.global_step, **{k: logs[k] for k in ("loss", *COMPONENTS, "learning_rate", "epoch",
                                                                        "padding_fraction") if k in logs},
                   "tokens": state.num_input_tokens_seen}
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


class ZeroShotCallback(TrainerCallback):
    """The zero-shot STS-B dev score of the student's mean-pooled final states (as `bench embed`
    scores it) at step 0, every `every` steps and at the end, as rows of OUT/log.jsonl
    ({"step", "tokens", "zero_shot_spearman", "zero_shot_pearson"}): the curve that shows whether
    training keeps what the initialisation gave, with no fine-tuning noise."""

    def __init__(self, data_dir: str, every: int, tokenizer, path: Path, split: str = "dev",
                 max_pairs: int | None = None):
        from ..inference.embeddings import ZeroShotSTSB

        self.stsb, self.every, self.tokenizer, self.path = ZeroShotSTSB(data_dir, split, max_pairs), every, tokenizer, path
        self.split = split
        self.last_step = None

    def _score(self, state, model):
        if not state.is_world_process_zero or state.global_step == self.last_step:
            return
        encoder = model.student.minialbert
        training = encoder.training
        scores = self.stsb.score(encoder.eval(), self.tokenizer)
        encoder.train(training)
        self.last_step = state.global_step
        row = {"step": state.global_step, "tokens": state.num_input_tokens_seen,
               "zero_shot_spearman": scores["spearman"], "zero_shot_pearson": scores["pearson"],
               "zero_shot_split": self.split, "zero_shot_pairs": len(self.stsb.pairs)}
        logger.info("step %d: zero-shot STS-B %s Spearman %.2f", state.global_step, self.split, scores["spearman"])
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self._score(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._score(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._score(state, model)

