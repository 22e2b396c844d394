"""The fine-tuned teacher of task distillation: finding it (a `finetune` output folder stands for
its best run's model), checking that it fits the student's task and vocabulary, loading it frozen,
and computing its logits over a whole transfer set once (they never change, so they travel in the
batches as `teacher_logits`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import resolve_model_name
from ..errors import MiniAlbertError
from ..fingerprint import options_hash, path_identity
from ..records import CHUNK_BATCHES, read_json, resumable_chunks

logger = logging.getLogger(__name__)
TEACHER_FIELDS = ("teacher_logits", "has_label")


def resolve_teacher_folder(name: str) -> str:
    """A `finetune` output folder stands for its best run's saved model."""
    folder = Path(name)
    results = folder / "results.json"
    if results.is_file():
        best = read_json(results, {"best.best_run": str}, f"--teacher {name}: fine-tune the teacher again into "
                         "this folder (finished runs are reused), or give its model folder itself.")["best"]["best_run"]
        model = folder / "runs" / best / "model"
        if not model.is_dir():
            raise MiniAlbertError(f"--teacher {name}: the best run {best} kept no model (it was fine-tuned with "
                                  "--save-models none, or with --adapter-tuning). Fine-tune the teacher with "
                                  "--save-models best and full fine-tuning.")
        return str(model)
    return resolve_model_name(name)


def teacher_identity(path: str | None) -> str | None:
    """What a teacher's numbers are, for run identities: a model that a `finetune` run kept
    (OUT/runs/RUN_ID/model beside its record OUT/runs/RUN_ID.json) is that run, whose id holds the
    hash of everything its numbers depend on (its inputs' content, its options), so a teacher rebuilt
    by the same run on another machine is the same teacher (on CPUs, the same dev scores up to
    floating-point differences in the sixth digit); its folder's bytes are not: they also hold library
    bookkeeping (config.json's transformers_version, tokenizer files) and those last bits. Any other
    teacher: the hash of its content."""
    if path is not None:
        model = Path(path)
        record = model.parent.with_name(model.parent.name + ".json")
        if model.name == "model" and record.is_file():
            try:
                run = json.loads(record.read_text())
            except (OSError, ValueError):
                run = {}
            if isinstance(run, dict) and run.get("run_id") == model.parent.name and isinstance(run.get("identity"), dict):
                return f"finetune-run:{run['run_id']}"
    return path_identity(path)


def _generic(names) -> bool:
    return all(str(n).upper().startswith("LABEL_") for n in names)


@dataclass(frozen=True)
class CheckedTeacher:
    """A teacher that passed `check_teacher`, with what the check read: the plan checks it once and
    hands this down, so no run reads its configuration again."""
    path: str      # the resolved folder
    name: str      # as the user gave it, for messages
    config: Any    # its configuration
    bi: bool       # a bi-encoder


def check_teacher(path: str, ner: bool, tokenizer, name: str | None = None) -> CheckedTeacher:
    """The checks that need no task data (run before any is read, once, by finetune's plan): the
    teacher at `path` (its resolved folder; `name`: as the user gave it, for messages) is a classifier
    of the right kind with the student's vocabulary."""
    from transformers import AutoConfig, AutoTokenizer

    from ..model.modeling_bi_encoder import is_bi_encoder

    name = name or path
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
    return CheckedTeacher(path, name, config, bi)


def load_task_teacher(teacher: CheckedTeacher, data, attentions: bool = False):
    """The fine-tuned teacher that `check_teacher` passed (a saved model, a bi-encoder or any Hugging
    Face sequence/token classifier), frozen, in eval mode. Returns (model, pair_encoding). A teacher
    with another label set or label order than the student's task is refused (its vocabulary was
    checked by the plan)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from ..hf_utils import quiet_transformers
    from ..model.modeling_bi_encoder import load_bi_encoder

    ner = data.kind == "ner"
    path, name, config, bi = teacher.path, teacher.name, teacher.config, teacher.bi
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


def label_with_teacher(teacher, dataset, collator, batch_size: int = 64, device="cpu", desc="teacher labels",
                       cache: Path | None = None):
    """The teacher's logits for every row of `dataset` (in the teacher's own encoding): (C,) per
    pair/sentence, (T, C) per NER feature, rounded to fp32 lists. `cache`: a folder for this teacher
    and these rows only, where the logits are kept chunk by chunk, so that a cut run resumes."""
    from tqdm.auto import tqdm

    teacher.to(device)

    @torch.inference_mode()
    def label(start: int, end: int) -> list:
        rows = []
        for first in range(start, end, batch_size):
            part = dataset.select(range(first, min(first + batch_size, end)))
            features = [{k: v for k, v in r.items() if k not in ("labels", *TEACHER_FIELDS)} for r in part]
            batch = {k: v.to(device) for k, v in collator(features).items()}
            logits = teacher(**batch).logits.float().cpu()
            if logits.dim() == 3:
                lengths = batch["attention_mask"].sum(1).tolist()
                rows += [logits[i, :n].tolist() for i, n in enumerate(lengths)]
            else:
                rows += logits.tolist()
            bar.update(len(part))
        return rows

    # Chunks of whole batches: the batches are those of one uninterrupted pass, resumed or not.
    key = options_hash({"rows": len(dataset), "batch_size": batch_size})
    with tqdm(total=len(dataset), desc=desc, unit="row") as bar:
        return resumable_chunks(len(dataset), batch_size * CHUNK_BATCHES, label, cache, key, bar)
