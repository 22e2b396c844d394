"""`minialbert finetune`: full fine-tuning or adapter tuning on GLUE and biomedical NER, on the
Hugging Face Trainer; single runs or the paper's grid; results as JSON; resumable grids."""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.offline import resolve_model_name
from ..compat import length_grouping, ordered_evaluation, tensorboard_callback, warmup_fraction
from ..errors import MiniAlbertError, require
from ..fingerprint import options_hash, path_identity
from ..hf_utils import quiet_transformers
from ..runtime import DTYPE_HELP, DTYPES, resolve_dtype
from ..model.modeling_bi_encoder import POOLINGS, BiEncoderForSequenceClassification
from .adapter_files import save_adapter_task
from .glue import STSB_RANGE, GlueSplit, get_task, glue_metrics, load_glue
from .ner import encode_ner, load_ner, ner_metrics, word_level_predictions

logger = logging.getLogger(__name__)
PAPER_LRS = (5e-5, 5e-4, 1e-3)
PAIR_ENCODINGS = ("cross", "bi")


@dataclass
class FinetuneOptions:
    model: str = field(metadata={"required": True, "help": "MiniALBERT checkpoint folder, any HF encoder, or 'minilm'"})
    task: str = field(metadata={"required": True, "help": "cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, or ner"})
    out: str = field(metadata={"required": True, "help": "output folder (re-running it resumes; see run identity)"})
    data_dir: str | None = field(default=None, metadata={"help": "GLUE folder (official TSVs) or NER folder; "
                                                                 "default: the hub"})
    adapter_tuning: bool = field(default=False, metadata={"help": "train only adapters + head "
                                                                  "(docs/method.md section 4)"})
    learning_rates: list[float] | None = field(default=None, metadata={"flag": "--lr", "metavar": "LR",
                                                                       "help": "learning rate(s); default by grid"})
    batch_size: int | None = field(default=None, metadata={"help": "default: 32 large tasks, 16 small tasks"})
    epochs: float | None = field(default=None, metadata={"help": "default: 3 (grid paper: 3 large / 5 small)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimiser steps (overrides --epochs)"})
    runs: int | None = field(default=None, metadata={"help": "seeds per configuration (grid paper: 1 large / "
                                                             "3 small)"})
    grid: str = field(default="none", metadata={"choices": ["paper", "none"], "help": "paper: lr {5e-5, 5e-4, "
                                                "1e-3} with the paper's batch/epochs/runs"})
    seed: int = 42
    dtype: str = field(default="auto", metadata={"choices": list(DTYPES), "help": DTYPE_HELP})
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of the steps with a linear warm-up"})
    seeds_at_best: int | None = field(default=None, metadata={
        "help": "pick the best configuration with one seed each, then repeat it to N seeds (results.json reports "
                "its mean and standard deviation)"})
    exits: str = field(default="none", metadata={
        "help": "elastic depth (MiniALBERT): 'all' trains a classifier on every iteration's output (loss of exit i "
                "weighted by i), or a list such as 2,4; then predict/export/bench depth can stop after any K "
                "iterations"})
    pair_encoding: str = field(default="cross", metadata={"choices": list(PAIR_ENCODINGS), "help":
        "sentence pairs: 'cross' encodes [CLS] a [SEP] b together; 'bi' encodes each sentence alone with the same "
        "encoder (siamese, Sentence-BERT): STS-B regresses cos(u, v) to the score, classification tasks use a "
        "linear layer on (u, v, |u-v|, u*v)"})
    pooling: str = field(default="mean", metadata={"choices": list(POOLINGS), "help":
        "bi-encoder sentence embedding: mean of the token states (as the MiniLM teacher) or [CLS]"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch examples of similar length together (the Trainer's length-grouped sampler): much less "
                "padding; --no-group-by-length for plain random batches"})
    label_all_subtokens: bool = field(default=False, metadata={"help": "NER: label every sub-token, not only the "
                                                                       "first"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use a subset of the training set"})
    save_models: str = field(default="best", metadata={"choices": ["best", "all", "none"],
                                                       "help": "which runs keep their model or adapter files"})
    # task distillation (docs/method.md section 7): on when --teacher is given
    teacher: str | None = field(default=None, metadata={"help": (
        "task distillation: the fine-tuned teacher (a `finetune --save-models best` output folder, its saved "
        "model, or any Hugging Face sequence/token classifier with the student's vocabulary and labels); the "
        "student then learns the teacher's predictions (stage 2) after optional layer alignment (stage 1)")})
    intermediate_epochs: float = field(default=0.0, metadata={"help": (
        "stage 1 epochs: attention KL + hidden cosine to the teacher's mapped layers on the transfer set (0: "
        "stage 2 only)")})
    intermediate_lr: float = field(default=1e-4, metadata={"help": "stage 1 learning rate"})
    temperature: float = field(default=1.0, metadata={"help": "stage 2 softmax temperature (loss scaled by T^2)"})
    hard_weight: float = field(default=0.0, metadata={"help": (
        "stage 2: weight of the hard-label loss on labelled rows; (1 - it) weighs the teacher's soft targets")})
    augment: int = field(default=0, metadata={"help": (
        "task distillation: N word-replacement copies of every training example, labelled by the teacher")})
    augment_probability: float = field(default=0.4, metadata={"help": "probability that an eligible word is replaced"})
    augment_mlm: str | None = field(default=None, metadata={"help": (
        "masked LM proposing replacements (default: --model when it has an MLM head, e.g. a distilled student)")})
    transfer_data: str | None = field(default=None, metadata={"help": (
        "task distillation: unlabelled in-domain examples labelled by the teacher: a GLUE task folder (its "
        "test.tsv), a TSV with the task's text columns, or a text file (one example per line, tab between the "
        "sentences of a pair; NER: one sentence per line)")})
    max_transfer_samples: int | None = field(default=None, metadata={"help": "use at most N --transfer-data examples"})

    def validate(self) -> "FinetuneOptions":
        """Cheap checks before the model or the data is loaded; each names its flag."""
        require(all(lr > 0 for lr in self.learning_rates or []),
                f"--lr must be positive (got {self.learning_rates}).")
        for name in ("batch_size", "runs", "seeds_at_best", "max_train_samples"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"--{name.replace('_', '-')} must be at least 1 (got {value}).")
        require(self.epochs is None or self.epochs > 0, f"--epochs must be positive (got {self.epochs}).")
        require(self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1 (got {self.max_steps}).")
        require(self.max_length >= 8, f"--max-length must be at least 8 (got {self.max_length}).")
        require(0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio}).")
        require(self.weight_decay >= 0, f"--weight-decay must be 0 or more (got {self.weight_decay}).")
        require(self.pair_encoding in PAIR_ENCODINGS,
                f"--pair-encoding must be one of {', '.join(PAIR_ENCODINGS)} (got {self.pair_encoding!r}).")
        require(self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)} (got {self.pooling!r}).")
        if self.pair_encoding == "bi":
            pairs = self.task.lower() != "ner" and len(get_task(self.task).text_columns) == 2
            require(pairs, f"--pair-encoding bi needs a sentence-pair task (mrpc, stsb, qqp, mnli, qnli, rte, wnli); "
                           f"{self.task!r} is not one. Use --pair-encoding cross.")
        distilling = self.teacher is not None
        for flag, on in (("--augment", self.augment), ("--transfer-data", self.transfer_data),
                         ("--intermediate-epochs", self.intermediate_epochs), ("--hard-weight", self.hard_weight)):
            require(distilling or not on, f"{flag} is part of task distillation and needs --teacher (a fine-tuned "
                                          "teacher folder).")
        require(self.augment >= 0, f"--augment must be 0 or more (got {self.augment}).")
        require(0 < self.augment_probability <= 1, f"--augment-probability must be in (0, 1] "
                                                   f"(got {self.augment_probability}).")
        require(self.temperature > 0, f"--temperature must be positive (got {self.temperature}).")
        require(0 <= self.hard_weight <= 1, f"--hard-weight must be in [0, 1] (got {self.hard_weight}).")
        require(self.intermediate_epochs >= 0 and self.intermediate_lr > 0,
                f"--intermediate-epochs must be 0 or more and --intermediate-lr positive (got "
                f"{self.intermediate_epochs}, {self.intermediate_lr}).")
        require(not (distilling and self.exits not in (None, "", "none")),
                "--exits is not available with task distillation (--teacher) yet; distil first, or train exits "
                "without a teacher.")
        return self

    def data_options(self) -> "DataOptions":
        return DataOptions(self.task, self.data_dir, self.max_length, self.label_all_subtokens,
                           self.max_train_samples, self.seed, self.pair_encoding)


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


@dataclass
class RunSpec:
    learning_rate: float
    batch_size: int
    epochs: float | None
    max_steps: int | None
    seed: int

    def run_id(self, task: str, adapter: bool, identity_hash: str) -> str:
        """Readable hyperparameters, then the hash of everything else that changes the numbers
        (`run_identity`): a rerun with another model, data or option is a new run, never a reuse."""
        length = f"steps{self.max_steps}" if self.max_steps else f"ep{self.epochs:g}"
        return (f"{task}-{'adapter' if adapter else 'full'}-lr{self.learning_rate:g}-bs{self.batch_size}-{length}"
                f"-seed{self.seed}-{identity_hash}")


def run_identity(opts: FinetuneOptions, dtype: str) -> dict:
    """Everything besides a RunSpec's own fields that changes a run's numbers. The model and data
    folders enter by path, size and modification time of their files, so a checkpoint distilled
    again into the same folder is a different model."""
    data = opts.data_dir
    if data and opts.task.lower() != "ner" and (Path(data) / get_task(opts.task).folder).is_dir():
        data = str(Path(data) / get_task(opts.task).folder)  # the GLUE root: the task's own files count
    return {"model": path_identity(resolve_model_name(opts.model)), "data_dir": path_identity(data),
            "task": opts.task.lower(), "adapter_tuning": opts.adapter_tuning, "dtype": dtype,
            "max_length": opts.max_length, "weight_decay": opts.weight_decay, "warmup_ratio": opts.warmup_ratio,
            "exits": opts.exits, "group_by_length": opts.group_by_length, "pair_encoding": opts.pair_encoding,
            "pooling": opts.pooling if opts.pair_encoding == "bi" else None,
            "label_all_subtokens": opts.label_all_subtokens, "max_train_samples": opts.max_train_samples,
            **distillation_identity(opts)}


def distillation_identity(opts: FinetuneOptions) -> dict:
    """The task-distillation part of a run's identity (absent without --teacher, so the run ids of
    plain fine-tuning stay what they were)."""
    if opts.teacher is None:
        return {}
    from ..distillation.task import resolve_teacher_folder

    return {"distillation": {
        "teacher": path_identity(resolve_teacher_folder(opts.teacher)), "intermediate_epochs": opts.intermediate_epochs,
        "intermediate_lr": opts.intermediate_lr if opts.intermediate_epochs else None,
        "temperature": opts.temperature, "hard_weight": opts.hard_weight, **transfer_identity(opts)}}


def transfer_identity(opts: FinetuneOptions) -> dict:
    """What the labelled transfer set depends on besides the task data and the teacher."""
    return {"augment": opts.augment, "augment_probability": opts.augment_probability if opts.augment else None,
            "augment_mlm": path_identity(resolve_model_name(opts.augment_mlm or opts.model)) if opts.augment else None,
            "transfer_data": path_identity(opts.transfer_data), "max_transfer_samples": opts.max_transfer_samples,
            "transfer_seed": opts.seed}


def plan_runs(opts: FinetuneOptions, large: bool) -> list[RunSpec]:
    """The paper's grid (docs/method.md section 4) or one configuration, each repeated over seeds."""
    if opts.grid == "paper":
        lrs, bs, epochs, runs = list(PAPER_LRS), 32 if large else 16, 3 if large else 5, 1 if large else 3
    elif opts.grid == "none":
        lrs = [5e-4 if opts.adapter_tuning else 5e-5]
        bs, epochs, runs = 32 if large else 16, 3, 1
    else:
        raise MiniAlbertError(f"--grid must be 'paper' or 'none' (got {opts.grid!r}).")
    lrs = opts.learning_rates or lrs
    bs, runs = opts.batch_size or bs, opts.runs or runs
    epochs = opts.epochs or epochs
    return [RunSpec(lr, bs, None if opts.max_steps else epochs, opts.max_steps, opts.seed + r)
            for lr in lrs for r in range(runs)]


# --- data -----------------------------------------------------------------------------------------

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
        encoded = {}
        for name, split in splits.items():
            feats, maps = encode_ner(split, tokenizer, label_list, opts.max_length, opts.label_all_subtokens)
            encoded[name] = (datasets.Dataset.from_list(feats), maps)
        train = encoded["train"][0]
        if opts.max_train_samples:
            train = train.select(range(min(opts.max_train_samples, len(train))))

        raw = splits["train"]
        if opts.max_train_samples:  # the sentences of the kept features
            kept = sorted({s for s, _ in encoded["train"][1][:opts.max_train_samples]})
            raw = type(raw)([raw.sentences[i] for i in kept], [raw.tags[i] for i in kept], raw.file)

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


# --- model ------------------------------------------------------------------------------------------

def parse_exits(spec: str, num_iterations: int) -> list[int] | None:
    """'none' -> None; 'all' -> 1..N; '1,3' -> [1, 3] (the last iteration always has its head)."""
    if spec in (None, "", "none"):
        return None
    if spec == "all":
        return list(range(1, num_iterations + 1))
    try:
        exits = sorted({int(x) for x in spec.split(",")} | {num_iterations})
    except ValueError:
        exits = []
    if not exits or not all(1 <= i <= num_iterations for i in exits):
        raise MiniAlbertError(f"--exits {spec!r}: give 'all', 'none' or iterations in 1..{num_iterations}, e.g. 2,4.")
    return exits


def load_task_model(model_name: str, data: TaskData, exits: str = "none", pair_encoding: str = "cross",
                    pooling: str = "mean"):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    path = resolve_model_name(model_name)
    id2label = dict(enumerate(data.label_names))
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load the model {model_name!r}: {e}") from None
    extra = {}
    if exits not in (None, "", "none"):
        if config.model_type != "minialbert":
            raise MiniAlbertError(f"--exits needs a MiniALBERT model (one shared layer, any depth); {model_name!r} "
                                  f"is {config.model_type!r}.")
        extra["exit_iterations"] = parse_exits(exits, config.num_hidden_layers)
    if pair_encoding == "bi":
        return BiEncoderForSequenceClassification.from_encoder(
            path, data.num_labels, pooling, id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type=data.problem_type, similarity_scale=STSB_RANGE[1], **extra)
    head_suffix = "ForTokenClassification" if data.kind == "ner" else "ForSequenceClassification"
    if any(a.endswith(head_suffix) for a in (config.architectures or [])) and config.num_labels != data.num_labels:
        raise MiniAlbertError(
            f"{model_name!r} is a classifier with {config.num_labels} labels but task {data.kind}/{len(data.label_names)} "
            f"needs {data.num_labels}; start from its base (distilled) checkpoint instead of a fine-tuned one.")
    auto = AutoModelForTokenClassification if data.kind == "ner" else AutoModelForSequenceClassification
    with quiet_transformers():  # the new task head is expected to be missing
        return auto.from_pretrained(path, num_labels=data.num_labels, id2label=id2label,
                                    label2id={v: k for k, v in id2label.items()}, problem_type=data.problem_type,
                                    **extra)


def evaluate(trainer, data: TaskData, opts: FinetuneOptions) -> dict:
    """Dev/test metrics; `trainer` reads evaluation data in order (compat.ordered_evaluation)."""
    metrics = {}
    for name, (dataset, maps) in data.evals.items():
        logits = trainer.predict(dataset).predictions
        if data.kind == "ner":
            split = data.ner_splits[name]
            pred = word_level_predictions(maps, logits, split, data.label_names)
            metrics[name] = ner_metrics(split.tags, pred)
        else:
            task = get_task(opts.task)
            pred = logits.squeeze(-1) if task.labels is None else logits.argmax(-1)
            metrics[name] = glue_metrics(task, np.asarray(pred), np.asarray(dataset["labels"]))
    first = next(iter(metrics))
    # selection uses the first dev set (GLUE dev / MNLI matched / NER devel)
    return {"splits": metrics, "score": metrics[first]["score"]}


def run_one(opts: FinetuneOptions, spec: RunSpec, data: TaskData, tokenizer, run_dir: Path, dtype: str) -> dict:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(spec.seed)
    model = load_task_model(opts.model, data, opts.exits, opts.pair_encoding, opts.pooling)
    total = sum(p.numel() for p in model.parameters())
    if opts.adapter_tuning:
        if not hasattr(model, "prepare_adapter_tuning"):
            raise MiniAlbertError(f"--adapter-tuning needs a MiniALBERT model; {opts.model!r} is "
                                  f"{type(model).__name__}.")
        trainable = model.prepare_adapter_tuning()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(run_dir / "trainer"), per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=64, learning_rate=spec.learning_rate, weight_decay=opts.weight_decay,
        lr_scheduler_type="linear", **warmup_fraction(opts.warmup_ratio),
        num_train_epochs=spec.epochs or 1, max_steps=spec.max_steps or -1,
        seed=spec.seed, data_seed=spec.seed, save_strategy="no", logging_steps=50, report_to="none",
        bf16=dtype == "bf16", fp16=dtype == "fp16", use_cpu=not cuda, disable_tqdm=False, optim="adamw_torch_fused",
        **length_grouping(opts.group_by_length))
    collator = task_collator(data.kind, opts.pair_encoding, tokenizer)
    start = time.time()
    if opts.teacher:
        trainer = _task_distillation(opts, model, data, tokenizer, args, collator, run_dir)
    else:
        trainer = ordered_evaluation(Trainer)(model=model, args=args, train_dataset=data.train,
                                              data_collator=collator,
                                              callbacks=[tensorboard_callback(run_dir / "tensorboard")])
        trainer.train()
    seconds = time.time() - start
    result = evaluate(trainer, data, opts)
    shutil.rmtree(run_dir / "trainer", ignore_errors=True)
    if opts.save_models != "none":
        folder = run_dir / ("adapter" if opts.adapter_tuning else "model")
        if opts.adapter_tuning:
            local = Path(resolve_model_name(opts.model))
            base_pointer = str(local.resolve()) if local.exists() else opts.model  # a folder, or a hub name
            head = ("token-classification" if data.kind == "ner" else "bi-encoder" if opts.pair_encoding == "bi"
                    else "sequence-classification")
            save_adapter_task(model, run_dir / "adapter", base_pointer, head,
                              {"task": opts.task, "pooling": getattr(model.config, "pooling", None)})
        else:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        _model_card(folder, opts, spec, data, result)
    return {"task": opts.task, "model": opts.model, "adapter_tuning": opts.adapter_tuning,
            "hyperparameters": {"learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
                                "epochs": spec.epochs, "max_steps": spec.max_steps,
                                "weight_decay": opts.weight_decay, "warmup_ratio": opts.warmup_ratio,
                                "max_length": opts.max_length, "dtype": dtype,
                                "exits": getattr(model.config, "exit_iterations", None),
                                "group_by_length": opts.group_by_length, "pair_encoding": opts.pair_encoding,
                                "pooling": opts.pooling if opts.pair_encoding == "bi" else None,
                                **distillation_hyperparameters(opts)},
            "seed": spec.seed, "metrics": result["splits"], "score": result["score"],
            "train_seconds": round(seconds, 2), "train_steps": trainer.state.global_step,
            "trainable_parameters": trainable, "total_parameters": total,
            "base_parameters": sum(p.numel() for p in model.base_model.parameters())}


def distillation_hyperparameters(opts: FinetuneOptions) -> dict:
    if not opts.teacher:
        return {}
    return {"task_distillation": {"teacher": opts.teacher, "intermediate_epochs": opts.intermediate_epochs,
                                  "intermediate_lr": opts.intermediate_lr, "temperature": opts.temperature,
                                  "hard_weight": opts.hard_weight, "augment": opts.augment,
                                  "augment_probability": opts.augment_probability,
                                  "transfer_data": opts.transfer_data}}


def _task_distillation(opts: FinetuneOptions, model, data: TaskData, tokenizer, args, collator, run_dir: Path):
    """Stage 1 (when --intermediate-epochs > 0) then stage 2 on the labelled transfer set
    (data.train); returns the stage-2 trainer, which evaluates as the plain one does."""
    import dataclasses

    from ..distillation.task import (TEACHER_FIELDS, IntermediateDistillationTrainer, PredictionDistillationTrainer,
                                     TeacherFieldsCollator, intermediate_model, load_task_teacher)

    args = dataclasses.replace(args, remove_unused_columns=False)  # teacher_logits/has_label reach the loss
    if opts.intermediate_epochs:
        teacher, _ = load_task_teacher(opts.teacher, data, tokenizer, attentions=True)
        stage1 = intermediate_model(model.base_model, teacher.base_model)
        stage1_args = dataclasses.replace(args, output_dir=str(run_dir / "trainer-stage1"),
                                          learning_rate=opts.intermediate_lr, num_train_epochs=opts.intermediate_epochs,
                                          max_steps=-1)
        strip = ("labels", *TEACHER_FIELDS)
        IntermediateDistillationTrainer(
            model=stage1, args=stage1_args, train_dataset=data.train, teacher_encoder=teacher.base_model,
            data_collator=lambda rows: collator([{k: v for k, v in r.items() if k not in strip} for r in rows]),
            callbacks=[tensorboard_callback(run_dir / "tensorboard" / "stage1")]).train()
        shutil.rmtree(run_dir / "trainer-stage1", ignore_errors=True)
        del teacher
    scale = getattr(model.config, "similarity_scale", 1.0) if opts.pair_encoding == "bi" else 1.0
    trainer = ordered_evaluation(PredictionDistillationTrainer)(
        model=model, args=args, train_dataset=data.train, data_collator=TeacherFieldsCollator(collator),
        callbacks=[tensorboard_callback(run_dir / "tensorboard")], temperature=opts.temperature,
        hard_weight=opts.hard_weight, regression_scale=scale)
    trainer.train()
    return trainer


def _model_card(folder: Path, opts: FinetuneOptions, spec: RunSpec, data: TaskData, result: dict) -> None:
    """README.md with the Hub's metadata: the base model's teacher, the task, the dev/test scores."""
    from ..model_card import write_model_card

    ner = data.kind == "ner"
    split = "test" if ner else next(iter(result["splits"]))
    dataset = Path(opts.data_dir).name if ner and opts.data_dir else f"glue/{opts.task.lower()}"
    scores = result["splits"][split]
    results = [{"task_type": "token-classification" if ner else "text-classification", "dataset_type": dataset,
                "dataset_name": dataset, "dataset_split": split, "metric_type": name, "metric_value": round(v, 4)}
               for name, v in scores.items() if name != "score"]
    mode = "adapter tuning" if opts.adapter_tuning else "full fine-tuning"
    length = f"{spec.max_steps} steps" if spec.max_steps else f"{spec.epochs:g} epochs"
    how = (f"Fine-tuned by `minialbert finetune` ({mode}, {opts.pair_encoding}-encoder pairs) from `{opts.model}` "
           f"on {dataset}: lr {spec.learning_rate:g}, batch {spec.batch_size}, {length}, seed {spec.seed}; "
           f"{split} scores: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()) + ".")
    write_model_card(folder, title=f"MiniALBERT {opts.task.lower()}", base_model=opts.model, datasets=[dataset],
                     results=results, how=how, pipeline_tag="token-classification" if ner else "text-classification")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False))  # never a bare NaN: results stay valid JSON
    os.replace(tmp, path)  # atomic: a crash never leaves half a results file


def run_finetune(opts: FinetuneOptions) -> dict:
    from transformers import AutoTokenizer

    opts.validate()
    out = Path(opts.out)
    path = resolve_model_name(opts.model)
    if opts.task.lower() != "ner":
        get_task(opts.task)  # unknown task: fail before any work
    _check_max_length(opts, path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"No tokenizer found for {opts.model!r} ({e}); a distilled student keeps its "
                              "teacher's tokenizer in OUT/final.") from None
    if opts.teacher:  # a wrong teacher fails before any data is read
        from ..distillation.task import check_teacher

        check_teacher(opts.teacher, opts.task.lower() == "ner", tokenizer)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    data = prepare_data(opts.data_options(), tokenizer)
    dtype = resolve_dtype(opts.dtype)
    specs = plan_runs(opts, data.large)
    identity = run_identity(opts, dtype)
    transfer = None
    if opts.teacher:  # task distillation: train on the teacher-labelled transfer set
        from .transfer_set import build_transfer_set

        data.train, transfer = build_transfer_set(opts, data, tokenizer, out, identity)
    run = dict(data=data, tokenizer=tokenizer, out=out, dtype=dtype, identity=identity)
    results = [_run_or_reuse(opts, spec, **run, label=f"{i}/{len(specs)}") for i, spec in enumerate(specs, 1)]
    chosen = None
    if opts.seeds_at_best and opts.seeds_at_best > 1:
        # Pick the configuration on dev with one seed per configuration, then repeat only it; the
        # reported score is its mean over seeds (a lucky single-seed configuration cannot take over).
        best = summarise(opts, results)["best"]
        chosen = config_key(best)
        results += [_run_or_reuse(opts, RunSpec(best["learning_rate"], best["batch_size"], best["epochs"],
                                                best["max_steps"], opts.seed + k),
                                  **run, label=f"seed {opts.seed + k}")
                    for k in range(1, opts.seeds_at_best)]
    summary = summarise(opts, results, chosen)
    if transfer:
        summary["transfer_set"] = {k: v for k, v in transfer.items() if k != "examples"}
    if opts.save_models == "best":
        for r in results:
            if r["run_id"] != summary["best"]["best_run"]:
                for sub in ("model", "adapter"):
                    shutil.rmtree(out / "runs" / r["run_id"] / sub, ignore_errors=True)
    _write_json(out / "results.json", summary)
    return summary


def _check_max_length(opts: FinetuneOptions, path: str) -> None:
    """Inputs longer than the model's position table would crash mid-run: refuse them up front."""
    from transformers import AutoConfig

    try:
        positions = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load the model {opts.model!r}: {e}") from None
    if positions and opts.max_length > positions:
        raise MiniAlbertError(f"--max-length {opts.max_length} exceeds the {positions} positions of {opts.model!r}; "
                              f"use --max-length {positions} or less.")


def _run_or_reuse(opts: FinetuneOptions, spec: RunSpec, *, data: TaskData, tokenizer, out: Path, dtype: str,
                  identity: dict, label: str) -> dict:
    run_id = spec.run_id(opts.task.lower(), opts.adapter_tuning, options_hash(identity))
    record = out / "runs" / f"{run_id}.json"
    if record.exists():  # interrupted grids resume without redoing finished runs
        done = json.loads(record.read_text())
        if done.get("identity") != identity:  # only a hash collision or a hand-edited file gets here
            raise MiniAlbertError(f"{record} was computed with other options than this run's; move it away or "
                                  "choose another --out.")
        logger.info("[%s] %s: already done with identical options, reusing it", label, run_id)
        return done
    logger.info("[%s] %s", label, run_id)
    result = run_one(opts, spec, data, tokenizer, out / "runs" / run_id, dtype)
    result["run_id"], result["identity"] = run_id, identity
    _write_json(record, result)
    return result


def config_key(config: dict) -> tuple:
    return config["learning_rate"], config["batch_size"], config["epochs"], config["max_steps"]


def summarise(opts: FinetuneOptions, results: list[dict], chosen: tuple | None = None) -> dict:
    """Mean over seeds per configuration; the best configuration by dev score (or `chosen`)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        hp = r["hyperparameters"]
        groups.setdefault((hp["learning_rate"], hp["batch_size"], hp["epochs"], hp["max_steps"]), []).append(r)
    configs = []
    for (lr, bs, ep, steps), runs in groups.items():
        scores = [r["score"] for r in runs]
        configs.append({"learning_rate": lr, "batch_size": bs, "epochs": ep, "max_steps": steps,
                        "runs": len(runs), "mean_score": statistics.fmean(scores),
                        "std_score": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                        "metrics_mean": _mean_metrics([r["metrics"] for r in runs]),
                        "metrics_std": _mean_metrics([r["metrics"] for r in runs], statistics.stdev),
                        "run_ids": [r["run_id"] for r in runs],
                        "best_run": max(runs, key=lambda r: r["score"])["run_id"],
                        "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in runs)})
    best = max(configs, key=lambda c: (chosen is None or config_key(c) == chosen, c["mean_score"]))
    first = results[0]
    return {"task": opts.task.lower(), "model": opts.model, "adapter_tuning": opts.adapter_tuning,
            "pair_encoding": opts.pair_encoding, "pipeline": pipeline_name(opts), "data_name": Path(opts.data_dir).name if opts.data_dir else None,
            "grid": opts.grid, "score": best["mean_score"], "best": best, "configs": configs,
            "trainable_parameters": first["trainable_parameters"], "base_parameters": first["base_parameters"],
            "total_parameters": first["total_parameters"]}


def pipeline_name(opts: FinetuneOptions) -> str:
    """How the run used its student: 'finetune', 'bi-encoder' or 'task-distillation' (with its stages
    and transfer set, e.g. 'task-distillation[1+2,augment 4]')."""
    if not opts.teacher:
        return "bi-encoder" if opts.pair_encoding == "bi" else "finetune"
    parts = ["1+2" if opts.intermediate_epochs else "2"]
    parts += [f"augment {opts.augment}"] if opts.augment else []
    parts += ["transfer data"] if opts.transfer_data else []
    return f"task-distillation[{','.join(parts)}]" + (" bi-encoder" if opts.pair_encoding == "bi" else "")


def _mean_metrics(items: list[dict], reduce=statistics.fmean) -> dict:
    """Per split and metric, `reduce` over runs (the sample standard deviation is 0 for one run)."""
    if reduce is statistics.stdev and len(items) < 2:
        return {split: {k: 0.0 for k in items[0][split]} for split in items[0]}
    return {split: {k: reduce([m[split][k] for m in items]) for k in items[0][split]} for split in items[0]}
