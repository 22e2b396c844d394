"""The labelled transfer set of task distillation: the training split, its augmented copies and
unlabelled in-domain examples, each with the teacher's logits (docs/method.md section 7). Built
once per output folder and kept as Arrow (`OUT/transfer/<hash>/`), so every run of a grid, and a
resumed one, reads the very same rows."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..data.glue import GlueSplit, GlueTask
from ..data.ner import NerSplit
from ..data.tasks import DataOptions, data_identity, task_collator
from ..data.transfer import read_transfer_data, split_words
from ..errors import MiniAlbertError
from ..fingerprint import fields_identity, numbers_identity, options_hash, path_identity
from ..records import read_json, recover_dir, replace_dir, write_json
from ..runtime import resolve_device
from .augment import augment, load_mlm
from .options import TaskDistillationOptions
from .teacher import CheckedTeacher, label_with_teacher, load_task_teacher, teacher_identity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferSources:
    """What a transfer set is built from, resolved once by the caller (finetune's plan)."""
    task: GlueTask | None          # None for NER
    teacher_path: str              # the teacher's folder
    mlm_path: str | None = None    # the masked LM that augments (with --augment)
    checked: CheckedTeacher | None = None  # the teacher as the plan checked it (its config, bi-encoder or not)


# The fields a transfer set's key is made of: every field of DataOptions (the task data and its
# encoding) and the task-distillation fields marked `transfer`. scripts/studies/rekey.py reads them
# from here to recompute committed sets' keys from run identities.
TRANSFER_DATA_FIELDS = tuple(f.name for f in dataclasses.fields(DataOptions))
TRANSFER_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(TaskDistillationOptions) if f.metadata.get("transfer"))


def transfer_fields(data: dict, transfer: dict, vocab_size: int) -> dict:
    """The resolved fields a transfer set's key hashes (without the code's numbers version): `data`
    and `transfer` hold at least TRANSFER_DATA_FIELDS and TRANSFER_OPTION_FIELDS (a run identity and
    its `distillation` part do), folders already resolved to their identities."""
    return {**{k: data[k] for k in TRANSFER_DATA_FIELDS}, **{k: transfer[k] for k in TRANSFER_OPTION_FIELDS},
            "model_vocab": vocab_size}


def transfer_key(opts: TaskDistillationOptions, data_opts: DataOptions, sources: TransferSources,
                 vocab_size: int) -> str:
    """What the labelled transfer set depends on: the task data and its encoding (every field of
    DataOptions), the teacher, the fields marked `transfer` (augmentation, transfer data), the
    masked LM that augments, the student's vocabulary and the code's numbers version."""
    paths = {"teacher": lambda _: teacher_identity(sources.teacher_path), "transfer_data": path_identity,
             "augment_mlm": lambda _: path_identity(sources.mlm_path) if opts.augment else None}
    return options_hash(numbers_identity(transfer_fields(
        fields_identity(data_opts, {"data_dir": lambda d: data_identity(sources.task, d)}),
        fields_identity(opts, paths, keep=lambda f: f.metadata.get("transfer")), vocab_size)))


def _raw_rows(opts: TaskDistillationOptions, data_opts: DataOptions, sources: TransferSources, data, tokenizer,
              partial: Path):
    """(split of every row, per-row has_label, sizes): labelled rows first, then augmented copies,
    then transfer examples. NER rows are word lists with tags (all 'O' where no gold exists).
    `partial`: where the augmentation keeps its candidates while the set is being built."""
    ner = data.kind == "ner"
    raw = data.raw_train
    if ner:
        examples, golds = [(list(s),) for s in raw.sentences], [list(t) for t in raw.tags]
    else:
        examples, golds = [tuple(t.split() for t in texts) for texts in raw.texts], list(raw.labels)
    rows, labels = list(examples), list(golds)
    has = [1] * len(rows)
    sizes = {"labelled": len(rows), "augmented": 0, "transfer": 0}
    if opts.augment:
        mlm = load_mlm(sources.mlm_path, opts.augment_mlm or sources.mlm_path)
        copies = augment(examples, opts.augment, mlm, tokenizer, opts.augment_probability, data_opts.seed,
                         max_length=data_opts.max_length, device=resolve_device("auto"), cache=partial / "candidates")
        rows += [ex for ex, _ in copies]
        labels += [golds[i] for _, i in copies]  # kept only for shape: has_label = 0 hides them from the loss
        has += [0] * len(copies)
        sizes["augmented"] = len(copies)
    if opts.transfer_data:
        extra = read_transfer_data(opts.transfer_data, sources.task, opts.max_transfer_samples)
        if ner:
            extra = [(split_words(e[0]),) for e in extra]
            rows += [e for e in extra if e[0]]
            labels += [["O"] * len(e[0]) for e in extra if e[0]]
        else:
            rows += [tuple(t.split() for t in e) for e in extra]
            labels += [0.0 if data.num_labels == 1 else 0] * len(extra)
        has += [0] * (len(rows) - len(has))
        sizes["transfer"] = len(rows) - sizes["labelled"] - sizes["augmented"]
    if ner:
        return NerSplit([r[0] for r in rows], labels, "transfer set"), has, sizes
    return GlueSplit([tuple(" ".join(w) for w in r) for r in rows], labels, "transfer set"), has, sizes


def build_transfer_set(opts: TaskDistillationOptions, data_opts: DataOptions, sources: TransferSources, data,
                       tokenizer, out: Path):
    """The training Dataset of task distillation (student encoding, `teacher_logits`, `has_label`)
    and a description of it; read from OUT/transfer/<key> when an identical one was built before."""
    import datasets

    folder = out / "transfer" / transfer_key(opts, data_opts, sources, len(tokenizer))
    recover_dir(folder)  # a swap cut by a kill: the finished set comes back from aside
    kept = _complete_set(folder)
    if kept is not None:
        logger.info("Transfer set: reusing %s", folder)
        return kept
    # The slow steps (augmentation candidates, teacher logits: hours on SST-2) keep their work here
    # chunk by chunk, under the set's own key (every input of it), so a cut build resumes.
    partial = folder.with_name(folder.name + ".partial")
    split, has, sizes = _raw_rows(opts, data_opts, sources, data, tokenizer, partial)
    pair_encoding = data_opts.pair_encoding
    student = data.encode(split, pair_encoding)
    teacher, teacher_encoding = load_task_teacher(sources.checked, data)
    for_teacher = student if teacher_encoding == pair_encoding else data.encode(split, teacher_encoding)
    if data.kind == "ner":
        has = [has[s] for s in student["sentence"]]  # a long sentence becomes several features
        student, for_teacher = student.remove_columns("sentence"), for_teacher.remove_columns("sentence")
    logits = label_with_teacher(teacher, for_teacher, task_collator(data.kind, teacher_encoding, tokenizer),
                                device=resolve_device("auto"), desc=f"teacher labels ({len(for_teacher):,} rows)",
                                cache=partial / "teacher-logits")
    labelled = student.add_column("teacher_logits", logits).add_column("has_label", has)
    info = {"rows": len(labelled), **sizes, "teacher": opts.teacher, "teacher_pair_encoding": teacher_encoding,
            "augment": opts.augment, "augment_probability": opts.augment_probability if opts.augment else None,
            "augment_mlm": (opts.augment_mlm or sources.mlm_path) if opts.augment else None,
            "transfer_data": opts.transfer_data, "examples": _examples(split, sizes)}
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    labelled.save_to_disk(str(tmp / "data"))
    write_json(tmp / "transfer.json", info)
    replace_dir(tmp, folder)  # atomic: a half-built set is never taken for a finished one, nor a set lost
    shutil.rmtree(partial, ignore_errors=True)
    return datasets.load_from_disk(str(folder / "data")), info


def _complete_set(folder: Path):
    """(Dataset, description) of a finished set in `folder`, or None: a description alone, data that
    does not load, or fewer rows than the description counts (a set half copied by hand or by an
    older study script) is built again rather than trained on."""
    import datasets

    if not ((folder / "transfer.json").is_file() and (folder / "data").is_dir()):
        return None
    try:
        info = read_json(folder / "transfer.json")
        data = datasets.load_from_disk(str(folder / "data"))
    except (MiniAlbertError, OSError, ValueError, FileNotFoundError) as e:
        logger.warning("Transfer set %s is damaged (%s); building it again.", folder, e)
        return None
    if not isinstance(info, dict) or len(data) != info.get("rows"):
        logger.warning("Transfer set %s holds %d rows where its description counts %s; building it again.",
                       folder, len(data), info.get("rows") if isinstance(info, dict) else "none")
        return None
    return data, info


def _examples(split, sizes: dict, n: int = 3) -> list:
    """A few augmented rows beside their sources, so the transfer set can be looked at."""
    if not sizes["augmented"]:
        return []
    texts = split.sentences if isinstance(split, NerSplit) else split.texts
    first = sizes["labelled"]
    per = sizes["augmented"] // max(1, sizes["labelled"])
    return [{"source": _text(texts[i]), "augmented": _text(texts[first + i * per])} for i in range(min(n, first))]


def _text(row) -> str | list:
    return " ".join(row) if isinstance(row, list) else list(row)
