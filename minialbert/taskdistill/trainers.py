"""The two training stages of task distillation on the Hugging Face Trainer (TinyBERT's task
stage, docs/method.md section 7): stage 1 aligns the student's iterations with the fine-tuned
teacher's layers on task inputs (the teacher runs beside the student: its per-layer states are too
large to keep); stage 2 trains on the teacher's logits, computed once over the transfer set and
carried in the batches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer

from ..compat import ordered_evaluation, tensorboard_callback
from ..distillation.losses import alignment_setup
from ..resumable import resumable_callbacks, resume_point, training_seconds
from .losses import intermediate_losses, prediction_loss
from .teacher import TEACHER_FIELDS, CheckedTeacher, load_task_teacher


class TeacherFieldsCollator:
    """The task's own collator, plus `teacher_logits` (padded to the batch's length for NER) and
    `has_label`; without them (evaluation) it is the task's collator unchanged."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples):
        if "teacher_logits" not in examples[0]:
            return self.base(examples)
        logits = [e["teacher_logits"] for e in examples]
        has = torch.tensor([int(e["has_label"]) for e in examples])
        batch = self.base([{k: v for k, v in e.items() if k not in TEACHER_FIELDS} for e in examples])
        if isinstance(logits[0][0], list):  # token level: pad with zeros; padded labels are -100
            T = batch["input_ids"].shape[1]
            C = len(logits[0][0])
            padded = torch.zeros(len(logits), T, C)
            for i, rows in enumerate(logits):
                padded[i, :len(rows)] = torch.tensor(rows)
            batch["teacher_logits"] = padded
        else:
            batch["teacher_logits"] = torch.tensor(logits)
        batch["has_label"] = has
        return batch


class PredictionDistillationTrainer(Trainer):
    """Trainer whose training loss is `prediction_loss`; evaluation batches (no teacher logits)
    fall back to the model's own loss."""

    def __init__(self, *args, temperature: float = 1.0, hard_weight: float = 0.0, regression_scale: float = 1.0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature, self.hard_weight, self.regression_scale = temperature, hard_weight, regression_scale

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "teacher_logits" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        teacher_logits, has_label, labels = (inputs.pop(k) for k in ("teacher_logits", "has_label", "labels"))
        out = model(**inputs)
        loss = prediction_loss(out.logits, teacher_logits, labels, has_label, self.temperature, self.hard_weight,
                               self.regression_scale)
        return (loss, out) if return_outputs else loss


class IntermediateDistillationModel(nn.Module):
    """What the Trainer trains in stage 1: the student's encoder (the task model's own module, so
    stage 2 continues from it) and, for a width mismatch, a projection used only here."""

    def __init__(self, encoder: nn.Module, layer_map, projection: nn.Module | None = None,
                 average_heads: bool = False):
        super().__init__()
        self.encoder, self.projection = encoder, projection
        self.layer_map, self.average_heads = list(layer_map), average_heads
        self.main_input_name = "input_ids"

    def forward(self, input_ids, attention_mask, teacher_hidden, teacher_attentions, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                           output_attentions=True, **extra)
        losses = intermediate_losses(out, teacher_hidden, teacher_attentions, attention_mask, self.layer_map,
                                     self.projection, self.average_heads)
        return {"loss": losses["attention"] + losses["hidden"], **{k: v.detach() for k, v in losses.items()}}


def intermediate_model(student_encoder, teacher_encoder, project_hidden: bool = False, average_heads: bool = False,
                       layer_map=None) -> IntermediateDistillationModel:
    """Stage-1 model with the uniform layer map (or `layer_map`), checked as general distillation
    checks it: a width mismatch needs `project_hidden` (a fresh linear map, TinyBERT's W_h), a
    head-count mismatch `average_heads`."""
    layer_map, projection = alignment_setup(student_encoder.config, teacher_encoder.config, hidden=True,
                                            attention=True, project_hidden=project_hidden,
                                            average_heads=average_heads, layer_map=layer_map)
    return IntermediateDistillationModel(student_encoder, layer_map, projection, average_heads)


class IntermediateDistillationTrainer(Trainer):
    """Runs the frozen teacher's encoder on each batch (both sentences of a bi-encoder pair, each
    alone, as the student sees them), then the stage-1 losses."""

    def __init__(self, *args, teacher_encoder: nn.Module, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_encoder = teacher_encoder.to(self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        sides = [""] + (["_b"] if "input_ids_b" in inputs else [])
        total = 0.0
        for side in sides:
            ids, mask = inputs[f"input_ids{side}"], inputs[f"attention_mask{side}"]
            types = inputs.get(f"token_type_ids{side}")
            extra = {"token_type_ids": types} if types is not None else {}
            with torch.no_grad():
                t = self.teacher_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                         output_attentions=True, **extra)
            out = model(ids, mask, t.hidden_states, t.attentions, types)
            total = total + out["loss"] / len(sides)
        return (total, out) if return_outputs else total


def run_task_distillation(opts, model, data, tokenizer, args, collator, run_dir: Path, pair_encoding: str,
                          teacher: CheckedTeacher, checkpoint_minutes: float = 0):
    """Stage 1 (when `opts.intermediate_epochs` > 0) then stage 2 on the labelled transfer set
    (`data.train`); returns the stage-2 trainer, which evaluates as a plain one does. `opts`: the
    TaskDistillationOptions (or the fine-tuning options that carry them); `teacher`: the teacher
    the plan checked. Each stage checkpoints every `checkpoint_minutes` into
    RUN/trainer-stage1 and RUN/trainer (the caller deletes them), and a rerun resumes: stage 1 also
    checkpoints its last step, so a run cut in stage 2 never repeats it."""
    args = dataclasses.replace(args, remove_unused_columns=False)  # teacher_logits/has_label reach the loss
    stage2_from = resume_point(run_dir / "trainer")
    stage1_seconds = 0.0
    if opts.intermediate_epochs and stage2_from is None:
        teacher, _ = load_task_teacher(teacher, data, attentions=True)
        stage1 = intermediate_model(model.base_model, teacher.base_model, opts.project_hidden, opts.average_heads)
        stage1_args = dataclasses.replace(args, output_dir=str(run_dir / "trainer-stage1"),
                                          learning_rate=opts.intermediate_lr, num_train_epochs=opts.intermediate_epochs,
                                          max_steps=-1)
        strip = ("labels", *TEACHER_FIELDS)
        trainer = IntermediateDistillationTrainer(
            model=stage1, args=stage1_args, train_dataset=data.train, teacher_encoder=teacher.base_model,
            data_collator=lambda rows: collator([{k: v for k, v in r.items() if k not in strip} for r in rows]),
            callbacks=[tensorboard_callback(run_dir / "tensorboard" / "stage1"),
                       *resumable_callbacks(checkpoint_minutes, save_last_step=True)])
        # loads the stage's weights into the student it shares with `model` (a finished stage 1 only that)
        trainer.train(resume_from_checkpoint=resume_point(run_dir / "trainer-stage1"))
        stage1_seconds = training_seconds(trainer)
        del teacher, trainer
    scale = getattr(model.config, "similarity_scale", 1.0) if pair_encoding == "bi" else 1.0
    # the run's clock counts both stages (a resumed stage 2 restores it from its checkpoint)
    callbacks = [tensorboard_callback(run_dir / "tensorboard"), *resumable_callbacks(checkpoint_minutes,
                                                                                      seconds=stage1_seconds)]
    trainer = ordered_evaluation(PredictionDistillationTrainer)(
        model=model, args=args, train_dataset=data.train, data_collator=TeacherFieldsCollator(collator),
        callbacks=callbacks, temperature=opts.temperature,
        hard_weight=opts.hard_weight, regression_scale=scale)
    trainer.train(resume_from_checkpoint=stage2_from)
    return trainer
