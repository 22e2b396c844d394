"""Task-agnostic distillation on the Hugging Face Trainer (docs/method.md sections 2-3).

The Trainer owns optimisation, schedules, accumulation, mixed precision, checkpoints, logging and
distribution (torchrun / accelerate / DeepSpeed). We add only what it cannot know: a frozen
teacher kept outside the trained module (so it is never wrapped for gradient sync nor saved in
checkpoints), the layer-to-layer losses, and their per-component logging.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer

from ..checkpoints import (check_max_length, checkpoint_step, latest_complete_checkpoint, read_config, resolve_model_name,
                           set_aside_incomplete)
from ..compat import cpu_has_native_bf16, tensorboard_callback
from ..errors import MiniAlbertError
from ..model import MiniAlbertForMaskedLM
from ..model_card import corpus_datasets, public_corpus, student_kind, student_tags, write_model_card
from ..records import recover_dir, replace_dir, write_json, write_text
from ..runtime import machine_description, resolve_dtype, training_arguments
from ..resumable import WallClockCallback, training_seconds
from .callbacks import COMPONENTS, JsonlLogCallback, ZeroShotCallback
from .losses import LossWeights, attention_loss, embedding_loss, hidden_loss, mlm_loss, output_loss, sentence_loss
from .masking import IndexedWindows, MaskingEpochCallback, SeededMaskingCollator
from .recipe import DistillRecipe, resolve_layer_choices, teacher_depth
from .run_folder import CODE_NUMBERS_FILE, check_resumable_with, claim_run_folder, code_and_versions, finished_summary
from .runlog import read_log
from .student import build_student, inherited_parameters, resolve_alignment, student_config, student_description
from .teacher import Teacher, load_teacher

logger = logging.getLogger(__name__)


class NonFiniteLossError(MiniAlbertError):
    pass


class DistillationModel(nn.Module):
    """What the Trainer trains: the student (and, for width mismatches, a hidden projection).
    Teacher outputs come in as arguments, so the teacher never becomes a submodule."""

    def __init__(self, student: MiniAlbertForMaskedLM, layer_map, weights: LossWeights, temperature=1.0,
                 average_heads=False, projection: nn.Module | None = None):
        super().__init__()
        self.student = student
        self.projection = projection
        self.layer_map = list(layer_map)
        self.weights = weights
        self.temperature = temperature
        self.average_heads = average_heads
        self.main_input_name = "input_ids"  # lets the Trainer count the tokens it feeds

    def forward(self, input_ids, attention_mask, labels, teacher_hidden, teacher_attentions=None,
                teacher_logits=None, token_type_ids=None):
        out, s_logits = self.student_outputs(input_ids, attention_mask, labels, token_type_ids)
        return self.losses(out, s_logits, attention_mask, labels, teacher_hidden, teacher_attentions, teacher_logits)

    def student_outputs(self, input_ids, attention_mask, labels, token_type_ids=None):
        """The student's hidden states (and maps, when a loss uses them) and its MLM logits at masked
        positions only: never the (B, T, V) tensor."""
        out = self.student.minialbert(input_ids, attention_mask, token_type_ids, output_hidden_states=True,
                                      output_attentions=self.weights.uses_attention)
        return out, self.student.lm_head(out.last_hidden_state[labels != -100])

    def losses(self, out, s_logits, attention_mask, labels, teacher_hidden, teacher_attentions=None,
               teacher_logits=None):
        w = self.weights
        losses = {"mlm": mlm_loss(s_logits, labels[labels != -100])}
        if w.uses_attention:
            losses["attention"] = attention_loss(out.attentions, teacher_attentions, attention_mask,
                                                 self.layer_map, self.average_heads)
        if w.uses_hidden:
            losses["hidden"] = hidden_loss(out.hidden_states, teacher_hidden, attention_mask, self.layer_map,
                                           self.projection)
        if w.output and teacher_logits is not None:
            losses["output"] = output_loss(s_logits, teacher_logits, self.temperature)
        if w.embedding:
            losses["embedding"] = embedding_loss(out.hidden_states, teacher_hidden, attention_mask,
                                                 self.projection)
        if w.sentence:
            losses["sentence"] = sentence_loss(out.hidden_states, teacher_hidden, attention_mask, self.projection)
        return {"loss": w.total(losses), **{k: v.detach() for k, v in losses.items()}}


class DistillationTrainer(Trainer):
    """`inherited_lr_scale`: the parameters copied from the teacher (`inherited`, names in the
    trained module) train at this fraction of the learning rate, the new parts (adapters, heads,
    projections) at the full rate, on one schedule."""

    def __init__(self, *args, teacher: Teacher, inherited: set[str] = frozenset(), inherited_lr_scale: float = 1.0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.inherited, self.inherited_lr_scale = set(inherited), inherited_lr_scale
        self.teacher = teacher
        self.teacher.model.to(self.args.device)
        self._sums: dict[str, float] = {}
        self._count = 0

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the inherited parameters in groups of their own at a lower rate
        (the scheduler scales every group's rate alike)."""
        if self.inherited_lr_scale == 1.0 or not self.inherited or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = {}
        for name, p in opt_model.named_parameters():
            if p.requires_grad:
                key = (name in self.inherited, name in decay)
                groups.setdefault(key, []).append(p)
        lr = self.args.learning_rate
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(
            [{"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0,
              "lr": lr * self.inherited_lr_scale if inherited else lr}
             for (inherited, decayed), params in groups.items()], **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inner = self.accelerator.unwrap_model(model)
        masked = inputs["labels"] != -100
        t_hidden = t_attn = t_logits = None
        if inner.weights.needs_teacher:  # MLM-only baselines pay for no teacher pass
            t_hidden, t_attn, t_logits = self.teacher.forward(
                inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"), masked,
                attentions=inner.weights.uses_attention)
        if not inner.weights.output:
            t_logits = None
        out = model(**inputs, teacher_hidden=t_hidden, teacher_attentions=t_attn, teacher_logits=t_logits)
        loss = out["loss"]
        if not torch.isfinite(loss):
            last = latest_complete_checkpoint(Path(self.args.output_dir))
            raise NonFiniteLossError(
                f"The distillation loss became {loss.item()} at step {self.state.global_step}; training "
                f"stopped. The last good checkpoint is {last or 'none yet'}. Lower --learning-rate, use "
                "--dtype fp32, or check the corpus; continue with --resume.")
        for k in COMPONENTS:
            if k in out:
                self._sums[k] = self._sums.get(k, 0.0) + out[k].float().item()
        mask = inputs["attention_mask"]
        self._sums["padding_fraction"] = self._sums.get("padding_fraction", 0.0) + 1 - mask.sum().item() / mask.numel()
        self._count += 1
        return (loss, out) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        if self._count and "loss" in logs:
            logs.update({k: round(v / self._count, 6) for k, v in self._sums.items()})
            self._sums, self._count = {}, 0
        super().log(logs, *args, **kwargs)


def _truncate_log(path: Path, step: int) -> None:
    if path.exists():
        rows = [row for row in read_log(path) if row["step"] <= step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def logging_interval(recipe: DistillRecipe) -> int:
    """--logging-steps, or, for a run no longer than it (which would log step 1 alone, and its summary
    compare step 1 with itself), about ten points: every step of a smoke run. An interval shorter
    than the run is kept as given."""
    if recipe.max_steps and recipe.logging_steps >= recipe.max_steps:
        return max(1, recipe.max_steps // 10)
    return recipe.logging_steps


def distillation_arguments(recipe: DistillRecipe, out: Path):
    """The Trainer's settings for `recipe` (TensorBoard logs come from compat.tensorboard_callback)."""
    dtype = resolve_dtype(recipe.dtype)
    if dtype == "bf16" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        logger.warning("This CPU has no native bfloat16 matrix instructions: bf16 will be much SLOWER than "
                       "fp32 here (see `minialbert bench distill`). Consider --dtype fp32.")
    if recipe.max_steps is None and recipe.streaming:
        raise MiniAlbertError("A streaming corpus has no length: give --max-steps.")
    return training_arguments(
        out / "checkpoints", dtype, recipe.seed,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate, weight_decay=recipe.weight_decay,
        lr_scheduler_type="linear", warmup_steps=recipe.warmup_steps,
        max_steps=recipe.max_steps if recipe.max_steps else -1, num_train_epochs=recipe.epochs,
        include_num_input_tokens_seen="non_padding",  # distilled tokens, counted over all processes
        save_strategy="steps", save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        logging_steps=logging_interval(recipe), logging_first_step=True,
        remove_unused_columns=False, dataloader_num_workers=recipe.dataloader_num_workers,
        ddp_find_unused_parameters=False, disable_tqdm=False,
        optim="adamw_torch_fused",  # one fused kernel: the optimiser step went from 9% of a CPU step to 1%
    )


def run_distillation(recipe: DistillRecipe, out_dir, resume: bool = False, sources: dict | None = None,
                     overwrite: bool = False) -> dict:
    """Distil a student per `recipe` into out_dir; returns the summary written to
    out_dir/final/distillation.json. `sources`: where each recipe field came from (flag, preset,
    recipe, default), stored with it. An out_dir that holds an earlier run is continued with
    `resume`, replaced with `overwrite`, and otherwise refused (see `claim_run_folder`)."""
    from transformers import AutoTokenizer

    from ..data.corpus import CorpusOptions, build_windows

    recipe.validate()
    # Layer choices relative to the teacher ('last', 0.5) become numbers before anything is stored or
    # compared: recipe.yaml, --resume's check and distillation.json all hold the resolved layers.
    recipe = resolve_layer_choices(recipe, lambda: teacher_depth(recipe.teacher))
    # Resolved once: the run, its recipe.yaml and a later --resume all see the precision that ran
    # (an `auto` resumed on another CPU could otherwise switch between fp32 and bf16 midway).
    recipe = dataclasses.replace(recipe, dtype=resolve_dtype(recipe.dtype))
    if recipe.adapted_stride() != recipe.stride:
        logger.warning("--stride %d does not fit windows of %d tokens; using %d.", recipe.stride, recipe.max_length,
                       recipe.adapted_stride())
        recipe = dataclasses.replace(recipe, stride=recipe.adapted_stride())
    from ..model.families import config_position_offset

    teacher_config = read_config(recipe.teacher, role="the teacher ")
    check_max_length(recipe.teacher, recipe.max_length, "the teacher ", config=teacher_config,
                     position_offset=config_position_offset(teacher_config))
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    recover_dir(out / "final")  # a publish cut by a kill between its renames: the earlier student back
    if resume:
        check_resumable_with(recipe, out)
        finished = finished_summary(recipe, out)
        if finished is not None:
            logger.warning("%s is already complete (%d of %d steps); nothing to do.", out, finished["steps"],
                           recipe.max_steps)
            return finished
    if not resume:
        claim_run_folder(out, overwrite)
    resume_from = latest_complete_checkpoint(ckpt_dir) if resume else None
    if resume and resume_from is None:
        logger.warning("--resume: no complete checkpoint in %s; starting from step 0.", ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ckpt_dir.exists():
        set_aside_incomplete(ckpt_dir, resume_from)
    args = distillation_arguments(recipe, out)
    _truncate_log(out / "log.jsonl", checkpoint_step(resume_from) if resume_from else 0)

    teacher = load_teacher(recipe.teacher, attentions=recipe.alignment in ("full", "attention"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(recipe.teacher))
    config = student_config(recipe, teacher.config, tokenizer)
    weights, projection, layer_map = resolve_alignment(recipe, teacher, config)
    student, init_info, inherited = build_student(recipe, teacher, tokenizer, config, layer_map)
    provenance_init = {"init": init_info.pop("init")}  # what each part of the student received
    shape = student_description(config, student)
    logger.info("Student: H %d, E %d, N %d iterations, adapters %s (r %d); %s parameters (base)", config.hidden_size,
                config.embedding_size, config.num_hidden_layers, "yes" if config.use_adapters else "no",
                config.adapter_reduction_factor, f"{shape['base_parameters']:,}")
    provenance = {"student": shape, "settings_sources": sources} if sources else {"student": shape}
    provenance.update(provenance_init)
    model = DistillationModel(student, layer_map, weights, recipe.temperature, recipe.average_heads, projection)
    if weights.uses_attention:  # only the mapped layers materialise attention maps
        teacher.maps_only_for(layer_map)

    if recipe.max_steps == 0:  # initialisation only: the 0-token point of a budget curve
        logger.warning("--max-steps 0: no training; saving the initialised student.")
        summary = {"teacher": recipe.teacher, "corpus": recipe.corpus, "recipe": recipe.to_dict(), **provenance,
                   "layer_map": layer_map, "initialisation": init_info, "steps": 0, "seed": recipe.seed,
                   "train_seconds_this_run": 0.0, "distilled_tokens": 0, "world_size": args.world_size,
                   "output_loss": bool(weights.output), "final_losses": {}, **code_and_versions()}
        if args.process_index == 0:
            _publish_final(out, student, tokenizer, summary)
        return summary

    opts = CorpusOptions(source=recipe.corpus, max_length=recipe.max_length, stride=recipe.stride,
                         windows_per_doc=recipe.windows_per_doc, seed=recipe.seed, text_field=recipe.text_field,
                         blank_line_docs=recipe.blank_line_docs, streaming=recipe.streaming,
                         num_proc=recipe.num_proc, max_docs=recipe.max_docs, pack=recipe.pack)
    with args.main_process_first(desc="corpus windows"):
        windows = build_windows(tokenizer, opts)
    collator = SeededMaskingCollator(tokenizer, recipe.mlm_probability, recipe.seed)
    write_text(out / "recipe.yaml", __import__("yaml").safe_dump(recipe.to_dict(), sort_keys=False))
    # Which code's numbers this run's checkpoints hold, before its first step: a later --resume under
    # another version is refused (check_same_code_numbers).
    write_json(out / CODE_NUMBERS_FILE, {"code_numbers": code_and_versions()["code_numbers"]})
    train_data = windows if recipe.streaming else IndexedWindows(windows)
    callbacks = [JsonlLogCallback(out / "log.jsonl"), MaskingEpochCallback(collator), WallClockCallback(),
                 tensorboard_callback(out / "tensorboard")]
    if recipe.zero_shot_every:
        callbacks.append(ZeroShotCallback(recipe.zero_shot_data, recipe.zero_shot_every, tokenizer, out / "log.jsonl",
                                          recipe.zero_shot_split, recipe.zero_shot_pairs))
    trainer = DistillationTrainer(model=model, args=args, train_dataset=train_data, data_collator=collator,
                                  teacher=teacher, callbacks=callbacks, inherited_lr_scale=recipe.inherited_lr_scale,
                                  inherited=inherited_parameters(student, inherited, prefix="student."))
    logger.info("Layer map %s; losses: %s", layer_map, ", ".join(weights.active_components()))
    start = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    elapsed = time.time() - start
    from accelerate.utils import gather_object

    first_windows = gather_object([collator.first_windows])  # one list per process: shards must differ

    summary = {
        "teacher": recipe.teacher, "corpus": recipe.corpus, "recipe": recipe.to_dict(), **provenance,
        "layer_map": layer_map, "initialisation": init_info, "steps": trainer.state.global_step,
        "seed": recipe.seed, "train_seconds_this_run": round(elapsed, 1),
        "train_seconds_total": round(training_seconds(trainer), 1), "machine": machine_description(),
        "distilled_tokens": trainer.state.num_input_tokens_seen, "world_size": args.world_size,
        "dtype": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "windows": len(windows) if hasattr(windows, "__len__") else None,
        "first_windows_per_process": first_windows,
        "output_loss": bool(weights.output), "resumed_from": str(resume_from) if resume_from else None,
        "final_losses": _last_logged(out / "log.jsonl"), "train_loss": result.training_loss, **code_and_versions(),
    }
    if trainer.is_world_process_zero():
        _publish_final(out, student, tokenizer, summary)
    return summary


def _publish_final(out: Path, student, tokenizer, summary: dict) -> None:
    """OUT/final: the student, its tokenizer and distillation.json, appearing whole or not at all."""
    final, tmp = out / "final", out / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # Whether the MLM head learnt anything (a masked-LM or output loss over some steps): loading an
    # untrained head warns (MiniAlbertForMaskedLM.from_pretrained) instead of answering random words.
    student.config.mlm_head_trained = bool(summary["steps"]) and (summary["recipe"]["mlm_weight"] > 0
                                                                  or summary["output_loss"])
    student.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "distillation.json", summary)
    _student_card(tmp, student, summary)
    replace_dir(tmp, final)  # the old final stays on disk until the new one is in


def _student_card(folder: Path, student, summary: dict) -> None:
    """README.md with the Hub's metadata (base model = the teacher) and how the student was made."""
    c = student.config
    losses = ", ".join(f"{k} {v:.4g}" for k, v in summary.get("final_losses", {}).items() if k in COMPONENTS)
    kind, layers = student_kind(c)
    how = (f"A {kind} ({layers}, hidden {c.hidden_size}, embedding {c.embedding_size}, "
           f"adapters {'yes' if c.use_adapters else 'no'}; "
           f"{sum(p.numel() for p in student.minialbert.parameters()):,} parameters without the MLM head), "
           f"distilled layer to layer by `minialbert distill` from `{summary['teacher']}` on "
           f"`{public_corpus(summary['corpus'])}`: {summary['steps']} steps, {summary.get('distilled_tokens') or 0:,} tokens, "
           f"seed {summary['seed']}. Last logged losses: {losses or 'none (not trained)'}. The full recipe is in "
           "distillation.json.\n\nLoad it after `import minialbert`: `AutoModelForMaskedLM.from_pretrained(folder)`.")
    write_model_card(folder, title="MiniALBERT student", base_model=summary["teacher"],
                     datasets=corpus_datasets(summary["corpus"]), tags=["distillation", *student_tags(c)],
                     pipeline_tag="fill-mask", how=how)


def _last_logged(path: Path) -> dict:
    rows = read_log(path, "loss")
    return rows[-1] if rows else {}


def loss_summary(path: Path) -> str:
    """First vs last logged value of each loss component (and the zero-shot score, when it was
    recorded), for the end-of-run printout."""
    rows = read_log(path, "loss")
    if not rows:
        return "(no logged steps)"
    first, last = rows[0], rows[-1]
    if len(rows) == 1:  # nothing to compare: say so rather than print a change of +0.0%
        values = ", ".join(f"{k} {first[k]:.4f}" for k in ("loss", *COMPONENTS) if isinstance(first.get(k), float))
        return f"Only step {first['step']} was logged ({values}); a lower --logging-steps logs more."
    lines = [f"{'component':<10} {'step ' + str(first['step']):>12} {'step ' + str(last['step']):>12}  change"]
    for k in ("loss", *COMPONENTS):
        if k in first and k in last and not (isinstance(first[k], float) and math.isnan(first[k])):
            lines.append(f"{k:<10} {first[k]:>12.4f} {last[k]:>12.4f}  {100 * (last[k] - first[k]) / max(abs(first[k]), 1e-12):+.1f}%")
    curve = read_log(path, "zero_shot_spearman")
    if curve:
        low = min(curve, key=lambda r: r["zero_shot_spearman"])
        lines.append(f"zero-shot STS-B Spearman: {curve[0]['zero_shot_spearman']:.2f} at step {curve[0]['step']}, "
                     f"{curve[-1]['zero_shot_spearman']:.2f} at step {curve[-1]['step']} (lowest {low['zero_shot_spearman']:.2f}"
                     f" at step {low['step']})")
    return "\n".join(lines)
