"""Task distillation (docs/method.md section 7): a fine-tuned teacher teaches the student on task
inputs, in two stages on the Hugging Face Trainer (TinyBERT's task stage).

- stage 1, intermediate layers: the general-distillation attention KL and hidden cosine
  (`losses.attention_loss`, `losses.hidden_loss`, the very same functions) between the student's
  iterations and the teacher's mapped layers, the teacher run on the same inputs as the student;
- stage 2, prediction layer: soft cross-entropy with temperature against the teacher's logits
  (per labelled token for NER; MSE against the teacher's prediction for regression), optionally
  mixed with the hard-label loss.

The teacher's logits never change, so they are computed once over the whole transfer set
(`label_with_teacher`) and travel in the batch as `teacher_logits`; stage 1 needs the teacher's
per-layer states, which are too large to keep, so it runs the teacher beside the student.
Written by hand: transformers has no distiller, and TextBrewer's does not run on the Trainer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Trainer

from ..data.offline import resolve_model_name
from ..errors import MiniAlbertError
from .losses import attention_loss, check_layer_map, hidden_loss, uniform_layer_map

logger = logging.getLogger(__name__)
TEACHER_FIELDS = ("teacher_logits", "has_label")


# --- losses -----------------------------------------------------------------------------------------

def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    """T^2 * mean over rows of -sum_c softmax(z_t / T)_c * log softmax(z_s / T)_c. The T^2 keeps the
    gradient's size independent of T (Hinton et al. 2015); at T = 1 it is TinyBERT's loss."""
    T = temperature
    p_t = F.softmax(teacher_logits.float() / T, dim=-1)
    return -(p_t * F.log_softmax(student_logits.float() / T, dim=-1)).sum(-1).mean() * T * T


def prediction_loss(student_logits, teacher_logits, labels, has_label, temperature: float = 1.0,
                    hard_weight: float = 0.0, regression_scale: float = 1.0):
    """(1 - hard_weight) * soft + hard_weight * hard.

    - classification, logits (B, C): soft cross-entropy against the teacher; hard = cross-entropy
      on the rows with a gold label (`has_label`; teacher-labelled transfer rows have none);
    - regression, logits (B, 1): MSE against the teacher's prediction, both divided by
      `regression_scale` (the bi-encoder's similarity scale, as in its own hard loss); hard = MSE
      against the gold score;
    - token level, logits (B, T, C): the classification losses over positions whose label is not
      -100 (each word's first sub-token)."""
    has_label = has_label.bool()
    if student_logits.dim() == 3:  # tokens: keep labelled positions, rows flattened
        keep = labels != -100
        gold = keep & has_label[:, None]
        soft = soft_cross_entropy(student_logits[keep], teacher_logits[keep], temperature)
        hard_fn, prediction, target = F.cross_entropy, student_logits[gold].float(), labels[gold]
    elif student_logits.shape[-1] == 1:
        s = student_logits.float().view(-1) / regression_scale
        soft = F.mse_loss(s, teacher_logits.float().view(-1) / regression_scale)
        hard_fn, prediction, target = F.mse_loss, s[has_label], labels.float().view(-1)[has_label] / regression_scale
    else:
        soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
        hard_fn, prediction, target = F.cross_entropy, student_logits[has_label].float(), labels[has_label]
    if not hard_weight or target.numel() == 0:  # no gold row in the batch: the soft part alone
        return soft
    return (1 - hard_weight) * soft + hard_weight * hard_fn(prediction, target)


def intermediate_losses(student_out, teacher_hidden, teacher_attentions, attention_mask, layer_map,
                        projection=None, average_heads=False) -> dict:
    """Stage 1: {'attention', 'hidden'} of `losses.py` on the student's outputs (hidden states with
    the embedding output first, one attention map per iteration) and the teacher's."""
    return {"attention": attention_loss(student_out.attentions, teacher_attentions, attention_mask, layer_map,
                                        average_heads),
            "hidden": hidden_loss(student_out.hidden_states, teacher_hidden, attention_mask, layer_map, projection)}


# --- the teacher -------------------------------------------------------------------------------------

def resolve_teacher_folder(name: str) -> str:
    """A `finetune` output folder stands for its best run's saved model."""
    folder = Path(name)
    results = folder / "results.json"
    if results.is_file():
        best = json.loads(results.read_text())["best"]["best_run"]
        model = folder / "runs" / best / "model"
        if not model.is_dir():
            raise MiniAlbertError(f"--teacher {name}: the best run {best} kept no model (it was fine-tuned with "
                                  "--save-models none, or with --adapter-tuning). Fine-tune the teacher with "
                                  "--save-models best and full fine-tuning.")
        return str(model)
    return resolve_model_name(name)


def _generic(names) -> bool:
    return all(str(n).upper().startswith("LABEL_") for n in names)


def check_teacher(name: str, ner: bool, tokenizer):
    """The checks that need no task data (run before any is read): the teacher is a classifier of
    the right kind with the student's vocabulary. Returns (folder, config, is a bi-encoder)."""
    from transformers import AutoConfig, AutoTokenizer

    from ..model.modeling_bi_encoder import is_bi_encoder

    path = resolve_teacher_folder(name)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load the teacher {name!r}: {e}") from None
    want = "ForTokenClassification" if ner else "ForSequenceClassification"
    bi = is_bi_encoder(path)
    if bi and ner:
        raise MiniAlbertError(f"--teacher {name}: a bi-encoder cannot teach NER; give a token classifier.")
    if not bi and not any(a.endswith(want) for a in (config.architectures or [])):
        raise MiniAlbertError(
            f"--teacher {name} is not a fine-tuned {'token' if ner else 'sequence'} classifier (architectures: "
            f"{config.architectures}). Fine-tune the teacher first, e.g. `minialbert finetune --model minilm --task "
            f"... --save-models best --out T`, then pass --teacher T.")
    try:
        teacher_vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    except (OSError, ValueError):
        raise MiniAlbertError(f"--teacher {name} has no tokenizer, so its vocabulary cannot be checked against the "
                              "student's; save the tokenizer beside the teacher's weights.") from None
    if teacher_vocab != tokenizer.get_vocab():
        raise MiniAlbertError(f"--teacher {name} has another vocabulary than the student ({len(teacher_vocab):,} vs "
                              f"{len(tokenizer.get_vocab()):,} entries, or the same size with other ids): token-level "
                              "distillation needs the same tokenizer on both sides.")
    return path, config, bi


def load_task_teacher(name: str, data, tokenizer, attentions: bool = False):
    """The fine-tuned teacher (a `finetune` folder, a saved model, a bi-encoder or any Hugging Face
    sequence/token classifier), frozen, in eval mode. Returns (model, pair_encoding). A teacher with
    another label set, label order or vocabulary than the student's task is refused."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from ..hf_utils import quiet_transformers
    from ..model.modeling_bi_encoder import load_bi_encoder

    ner = data.kind == "ner"
    path, config, bi = check_teacher(name, ner, tokenizer)
    if config.num_labels != data.num_labels:
        raise MiniAlbertError(f"--teacher {name} has {config.num_labels} labels but the task has {data.num_labels} "
                              f"({data.label_names}); give a teacher fine-tuned on this task.")
    names = [config.id2label[i] for i in range(config.num_labels)]
    if data.num_labels > 1 and not _generic(names) and [str(n) for n in names] != [str(n) for n in data.label_names]:
        problem = "label order" if sorted(map(str, names)) == sorted(map(str, data.label_names)) else "label set"
        raise MiniAlbertError(f"--teacher {name}: its {problem} {names} differs from the task's {data.label_names}; "
                              "its logits would teach the wrong classes. Give a teacher fine-tuned on this task's "
                              "labels.")
    if data.num_labels > 1 and _generic(names):
        logger.warning("The teacher %s names its labels %s; assuming they follow the task's order %s.",
                       name, names, data.label_names)
    extra = {"attn_implementation": "eager"} if attentions else {}  # fused kernels return no maps
    with quiet_transformers():
        if bi:
            model = load_bi_encoder(path)
            if attentions:
                model.encoder.set_attn_implementation("eager")
        else:
            auto = AutoModelForTokenClassification if ner else AutoModelForSequenceClassification
            model = auto.from_pretrained(path, **extra)
    return model.eval().requires_grad_(False), "bi" if bi else "cross"


@torch.inference_mode()
def label_with_teacher(teacher, dataset, collator, batch_size: int = 64, device="cpu", desc="teacher labels"):
    """The teacher's logits for every row of `dataset` (in the teacher's own encoding): (C,) per
    pair/sentence, (T, C) per NER feature, rounded to fp32 lists."""
    from tqdm.auto import tqdm

    teacher.to(device)
    rows = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch"):
        part = dataset.select(range(start, min(start + batch_size, len(dataset))))
        features = [{k: v for k, v in r.items() if k not in ("labels", *TEACHER_FIELDS)} for r in part]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        logits = teacher(**batch).logits.float().cpu()
        if logits.dim() == 3:
            lengths = batch["attention_mask"].sum(1).tolist()
            rows += [logits[i, :n].tolist() for i, n in enumerate(lengths)]
        else:
            rows += logits.tolist()
    return rows


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


# --- stage 2: prediction layer ------------------------------------------------------------------

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


# --- stage 1: intermediate layers -----------------------------------------------------------------

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


def intermediate_model(student_encoder, teacher_encoder, average_heads: bool | None = None,
                       layer_map=None) -> IntermediateDistillationModel:
    """Stage-1 model with the uniform layer map (or `layer_map`); heads averaged when the head counts
    differ, a fresh linear projection when the widths differ (TinyBERT's W_h)."""
    s, t = student_encoder.config, teacher_encoder.config
    layer_map = check_layer_map(layer_map or uniform_layer_map(s.num_hidden_layers, t.num_hidden_layers),
                                s.num_hidden_layers, t.num_hidden_layers)
    projection = nn.Linear(s.hidden_size, t.hidden_size) if s.hidden_size != t.hidden_size else None
    if average_heads is None:
        average_heads = s.num_attention_heads != t.num_attention_heads
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
