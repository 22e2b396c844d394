"""Task data for fine-tuning and task distillation: a GLUE task or a BIO NER folder read, tokenised
(pairs together, `[CLS] a [SEP] b`, or each sentence alone for a bi-encoder) and padded per batch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MiniAlbertError
from ..fingerprint import path_identity
from .glue import GlueSplit, GlueTask, get_task, load_glue
from .ner import encode_ner, load_ner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataOptions:
    """What `prepare_data` reads and how it encodes it."""
    task: str
    data_dir: str | None = None
    max_length: int = 128
    label_all_subtokens: bool = False
    max_train_samples: int | None = None
    seed: int = 42
    pair_encoding: str = "cross"


def task_name(task: str, data_dir: str | None) -> str:
    """A task's name as tables and served task files show it: the GLUE task ('rte'), NER with its data
    folder ('ner:NCBI-disease')."""
    task = task.lower()
    return f"ner:{Path(data_dir).name}" if task == "ner" and data_dir else task


def data_identity(task: GlueTask | None, data_dir: str | None) -> str | None:
    """The data folder's identity (fingerprint.path_identity); for a GLUE root, its task's own folder
    (the other tasks' files do not count). `task`: None for NER."""
    if data_dir and task is not None and (Path(data_dir) / task.folder).is_dir():
        data_dir = str(Path(data_dir) / task.folder)
    return path_identity(data_dir)


@dataclass
class TaskData:
    kind: str  # "glue" | "ner"
    num_labels: int
    label_names: list[str]
    train: object
    evals: dict  # name -> (dataset, extra) for prediction
    large: bool = False
    problem_type: str | None = None
    ner_splits: dict = field(default_factory=dict)
    raw_train: object = None  # the training split before tokenisation (GlueSplit / NerSplit), subset applied
    encode: object = None  # (split, pair_encoding) -> tokenised Dataset with labels


def subset_indices(n: int, k: int, seed: int) -> list[int]:
    """The rows `Dataset.shuffle(seed).select(range(k))` keeps, for raw splits."""
    import datasets

    return datasets.Dataset.from_dict({"i": list(range(n))}).shuffle(seed=seed).select(range(min(k, n)))["i"]


def prepare_data(opts: DataOptions, tokenizer) -> TaskData:
    """Read and tokenise a task. Pairs are encoded together (`[CLS] a [SEP] b`) or, for a
    bi-encoder, each sentence alone: columns input_ids/attention_mask for the first sentence and
    input_ids_b/attention_mask_b for the second."""
    import datasets

    if opts.task.lower() == "ner":
        if not opts.data_dir:
            raise MiniAlbertError("--task ner needs --data-dir with train.tsv, devel.tsv and test.tsv (BIO format).")
        splits, label_list = load_ner(opts.data_dir)
        raw = splits["train"]
        if opts.max_train_samples:  # k sentences drawn by the seed, as GLUE draws k examples
            keep = subset_indices(len(raw.sentences), opts.max_train_samples, opts.seed)
            raw = type(raw)([raw.sentences[i] for i in keep], [raw.tags[i] for i in keep], raw.file)
        encoded = {}
        for name, split in {**splits, "train": raw}.items():
            feats, maps = encode_ner(split, tokenizer, label_list, opts.max_length, opts.label_all_subtokens)
            encoded[name] = (datasets.Dataset.from_list(feats), maps)
        train = encoded["train"][0]

        def encode_words(split, pair_encoding=None):
            """Features with the index of the sentence each comes from (long sentences give several)."""
            feats, maps = encode_ner(split, tokenizer, label_list, opts.max_length, opts.label_all_subtokens)
            return datasets.Dataset.from_list([{**f, "sentence": m[0]} for f, m in zip(feats, maps)])

        return TaskData("ner", len(label_list), label_list, train,
                        {k: encoded[k] for k in ("devel", "test")}, ner_splits=splits, raw_train=raw,
                        encode=encode_words)

    task = get_task(opts.task)
    splits = load_glue(task, opts.data_dir)
    for name, split in splits.items():
        if split.skipped:
            logger.warning("%s: skipped %d malformed rows.", split.file, split.skipped)

    def to_dataset(split, pair_encoding=opts.pair_encoding):
        columns = list(zip(*split.texts))
        if pair_encoding == "bi":
            enc = dict(tokenizer(list(columns[0]), truncation=True, max_length=opts.max_length))
            enc.update({f"{k}_b": v for k, v in tokenizer(list(columns[1]), truncation=True,
                                                          max_length=opts.max_length).items()})
        else:
            enc = dict(tokenizer(*columns, truncation=True, max_length=opts.max_length))
        enc["labels"] = split.labels
        return datasets.Dataset.from_dict(enc)

    train, raw = to_dataset(splits["train"]), splits["train"]
    if opts.max_train_samples:
        train = train.shuffle(seed=opts.seed).select(range(min(opts.max_train_samples, len(train))))
        keep = subset_indices(len(raw.labels), opts.max_train_samples, opts.seed)
        raw = GlueSplit([raw.texts[i] for i in keep], [raw.labels[i] for i in keep], raw.file)
    evals = {name: (to_dataset(s), None) for name, s in splits.items() if name != "train"}
    labels = list(task.labels) if task.labels else ["score"]
    return TaskData("glue", task.num_labels, labels, train, evals, large=task.large,
                    problem_type="regression" if task.labels is None else "single_label_classification",
                    raw_train=raw, encode=to_dataset)


class PairCollator:
    """Dynamic padding of both sentences of a bi-encoder batch, each to its own longest."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, examples: list[dict]) -> dict:
        second = [{k[:-2]: v for k, v in e.items() if k.endswith("_b")} for e in examples]
        first = [{k: v for k, v in e.items() if not k.endswith("_b") and k != "labels"} for e in examples]
        batch = dict(self.tokenizer.pad(first, return_tensors="pt"))
        batch.update({f"{k}_b": v for k, v in self.tokenizer.pad(second, return_tensors="pt").items()})
        if "labels" in examples[0]:
            batch["labels"] = torch.tensor([e["labels"] for e in examples])
        return batch


def task_collator(kind: str, pair_encoding: str, tokenizer):
    """Dynamic padding for a task's batches: token labels (NER), both sentences of a bi-encoder pair,
    or one sequence."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if kind == "ner":
        return DataCollatorForTokenClassification(tokenizer)
    return PairCollator(tokenizer) if pair_encoding == "bi" else DataCollatorWithPadding(tokenizer)


def majority_baseline(data: TaskData, task: str) -> dict[str, float]:
    """What predicting the majority class scores on each evaluation split, in the task's own metric
    (the `score` field of the metrics): the most frequent training label for every example (STS-B:
    a constant, which scores 0; NER: every word 'O', F1 0). The floor a model must beat."""
    import warnings

    import numpy as np

    from .glue import glue_metrics
    from .glue import logger as glue_logger
    from .ner import ner_metrics

    with warnings.catch_warnings():  # no entity predicted, constant predictions: expected here
        warnings.simplefilter("ignore")
        if data.kind == "ner":
            return {name: ner_metrics(split.tags, [["O"] * len(t) for t in split.tags])["score"]
                    for name, split in data.ner_splits.items() if name != "train"}
        glue = get_task(task)
        labels = list(data.raw_train.labels)
        constant = float(np.mean(labels)) if glue.labels is None else max(set(labels), key=labels.count)
        level = glue_logger.level
        glue_logger.setLevel(logging.ERROR)
        try:
            return {name: glue_metrics(glue, np.full(len(dataset["labels"]), constant),
                                       np.asarray(dataset["labels"]))["score"]
                    for name, (dataset, _) in data.evals.items()}
        finally:
            glue_logger.setLevel(level)
