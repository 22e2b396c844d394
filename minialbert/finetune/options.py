"""The options of `minialbert finetune` (one field each, one flag each) and the runs they plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import MiniAlbertError, require
from ..options import DTYPE_HELP, DTYPES, POOLINGS, max_length, max_length_problem
from ..taskdistill.options import TaskDistillationOptions

if TYPE_CHECKING:  # torch: imported where the data is read
    from ..data.tasks import DataOptions

PAPER_LRS = (5e-5, 5e-4, 1e-3)
PAIR_ENCODINGS = ("cross", "bi")
# Fields that cannot change a run's numbers: where it is written and what it keeps.
NOT_IDENTITY = {"identity": False}
# Fields that plan the runs: each run's id names its own learning rate, batch, length and seed.
RUN_SPEC = {"identity": False, "run_spec": True}


@dataclass(kw_only=True)
class FinetuneOptions(TaskDistillationOptions):
    """fine-tuning"""
    model: str = field(metadata={"required": True, "help": (
        "the model to fine-tune: a MiniALBERT checkpoint folder (e.g. OUT/final of distill), the released student "
        "'minialbert-minilm', a packaged teacher ('minilm', 'mpnet'), or any Hugging Face encoder name or folder")})
    task: str = field(metadata={"required": True, "help": "cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, or ner"})
    out: str = field(metadata={**NOT_IDENTITY, "required": True, "help": "output folder (re-running it resumes; see run identity)"})
    data_dir: str | None = field(default=None, metadata={"help": "GLUE folder (official TSVs) or NER folder; "
                                                                 "default: the hub"})
    adapter_tuning: bool = field(default=False, metadata={"help": "train only adapters + head "
                                                                  "(docs/method.md section 4)"})
    learning_rates: list[float] | None = field(default=None, metadata={**RUN_SPEC, "flag": "--lr", "metavar": "LR",
                                                                       "help": "learning rate(s); default by grid"})
    batch_size: int | None = field(default=None, metadata={**RUN_SPEC, "help": "default: 32 large tasks, 16 small tasks"})
    epochs: float | None = field(default=None, metadata={**RUN_SPEC, "help": "default: 3 (grid paper: 3 large / 5 small)"})
    max_steps: int | None = field(default=None, metadata={**RUN_SPEC, "help": "optimiser steps (overrides --epochs)"})
    runs: int | None = field(default=None, metadata={**RUN_SPEC, "help": "seeds per configuration (grid paper: 1 large / "
                                                             "3 small)"})
    grid: str = field(default="none", metadata={**RUN_SPEC, "choices": ["paper", "none"], "help": "paper: lr {5e-5, 5e-4, "
                                                "1e-3} with the paper's batch/epochs/runs"})
    seed: int = field(default=42, metadata={"help": "the first run's seed (run k uses seed + k); also draws the "
                                                    "--max-train-samples subset and the augmented copies"})
    dtype: str = field(default="auto", metadata={"choices": list(DTYPES), "help": DTYPE_HELP})
    max_length: int = field(default=128, metadata={"type": max_length, "help": (
        "tokens per input; longer inputs are truncated (raise it for long documents, at a cost per step)")})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of the steps with a linear warm-up"})
    seeds_at_best: int | None = field(default=None, metadata={**RUN_SPEC,
        "help": "pick the best configuration with one seed each, then repeat it to N seeds (results.json reports "
                "its mean and standard deviation)"})
    exits: str = field(default="none", metadata={
        "help": "elastic depth (MiniALBERT): 'all' trains a classifier on every iteration's output (loss of exit i "
                "weighted by i), or a list such as 2,4; then predict/export/bench depth can stop after any K "
                "iterations"})
    pair_encoding: str = field(default="auto", metadata={"choices": ["auto", *PAIR_ENCODINGS], "help":
        "sentence pairs: 'cross' encodes [CLS] a [SEP] b together; 'bi' encodes each sentence alone with the same "
        "encoder (siamese, Sentence-BERT): STS-B regresses cos(u, v) to the score, classification tasks use a "
        "linear layer on (u, v, |u-v|, u*v); 'auto' picks per task what this project measured best (the choice "
        "is printed and recorded in results.json): bi for STS-B, and for MRPC with a MiniALBERT student; cross "
        "otherwise"})
    pooling: str = field(default="mean", metadata={"choices": list(POOLINGS), "help":
        "bi-encoder sentence embedding: mean of the token states (as the MiniLM teacher) or [CLS]"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch examples of similar length together (the Trainer's length-grouped sampler): much less "
                "padding; --no-group-by-length for plain random batches"})
    label_all_subtokens: bool = field(default=False, metadata={"help": "NER: label every sub-token, not only the "
                                                                       "first"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use a subset of the training set: "
                                                                          "N examples (NER: N sentences) drawn by "
                                                                          "--seed"})
    save_models: str = field(default="best", metadata={**NOT_IDENTITY, "choices": ["best", "all", "none"],
                                                       "help": "which runs keep their model or adapter files"})
    checkpoint_minutes: float = field(default=10, metadata={**NOT_IDENTITY, "help":
        "save a checkpoint of the run in training every N minutes (RUN/trainer, deleted when it ends); re-running "
        "the command resumes an interrupted run from it, on its own epoch's data order; 0: never"})

    def validate(self) -> "FinetuneOptions":
        """Cheap checks before the model or the data is loaded; each names its flag."""
        require(all(lr > 0 for lr in self.learning_rates or []),
                f"--lr must be positive (got {self.learning_rates}).")
        for name in ("batch_size", "runs", "seeds_at_best", "max_train_samples"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"--{name.replace('_', '-')} must be at least 1 (got {value}).")
        require(self.epochs is None or self.epochs > 0, f"--epochs must be positive (got {self.epochs}).")
        require(self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1 (got {self.max_steps}).")
        require(self.checkpoint_minutes >= 0, f"--checkpoint-minutes must be 0 or more (got {self.checkpoint_minutes}).")
        require(not max_length_problem(self.max_length), f"--max-length {max_length_problem(self.max_length)}.")
        require(0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio}).")
        require(self.weight_decay >= 0, f"--weight-decay must be 0 or more (got {self.weight_decay}).")
        require(self.pair_encoding in ("auto", *PAIR_ENCODINGS),
                f"--pair-encoding must be auto, {' or '.join(PAIR_ENCODINGS)} (got {self.pair_encoding!r}).")
        require(self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)} (got {self.pooling!r}).")
        self.validate_distillation()
        require(not (self.distilling and self.exits not in (None, "", "none")),
                "--exits is not available with task distillation (--teacher) yet; distil first, or train exits "
                "without a teacher.")
        return self

    def data_options(self) -> DataOptions:
        from ..data.tasks import DataOptions

        return DataOptions(self.task, self.data_dir, self.max_length, self.label_all_subtokens,
                           self.max_train_samples, self.seed, self.pair_encoding)


def auto_pair_encoding(task: str, model_type: str | None, pairs: bool) -> tuple[str, str]:
    """(encoding, reason) for `--pair-encoding auto`, from this project's measurements (docs/studies/
    pair-encoding.md and task-distillation.md; 2-3 seeds each): STS-B scores far higher with the siamese head for students and
    teachers alike (distilled student 85.9 vs 23.9, MiniLM teacher 89.3 vs 84.7); on MRPC the student
    keeps more with it (82.9 vs 79.8) while the teacher is better as a cross-encoder (87.1 vs 83.2);
    elsewhere the two are within the seed spread, or the task is not a sentence pair."""
    if task == "stsb":
        return "bi", "auto: STS-B scores highest with the siamese head for students and teachers alike"
    if task == "mrpc" and model_type == "minialbert":
        return "bi", "auto: on MRPC a distilled MiniALBERT student keeps more with the siamese head"
    if pairs:
        return "cross", "auto: cross-encoder (no measured advantage for the siamese head on this task and model)"
    return "cross", "auto: not a sentence-pair task"


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


def plan_seeds_at_best(opts: FinetuneOptions, best: dict, results: list[dict]) -> list[RunSpec]:
    """`--seeds-at-best N`: the best configuration at seeds seed..seed+N-1, less the seeds it already
    ran (a grid with several runs per configuration has run some), so no seed is counted twice."""
    ran = {r["seed"] for r in results if config_key(r["hyperparameters"]) == config_key(best)}
    return [RunSpec(best["learning_rate"], best["batch_size"], best["epochs"], best["max_steps"], seed)
            for seed in range(opts.seed, opts.seed + opts.seeds_at_best) if seed not in ran]


def config_key(config: dict) -> tuple:
    return config["learning_rate"], config["batch_size"], config["epochs"], config["max_steps"]


@dataclass
class BenchFinetuneOptions:
    """`minialbert bench finetune`: the fields are bench_finetune's parameters."""
    model: str = field(default="minialbert-768", metadata={"help": "preset (random weights) or checkpoint folder"})
    task_name: str = field(default="sst2", metadata={"flag": "--task", "help": "GLUE task"})
    data_dir: str | None = field(default=None, metadata={"help": "GLUE folder with the task's train.tsv"})
    steps: int = field(default=20, metadata={"help": "timed steps of each mode (full, adapters)"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    max_length: int = field(default=128, metadata={"type": max_length, "help": (
        "tokens per input; longer inputs are truncated (raise it for long documents, at a cost per step)")})
