"""The options of the inference benchmarks (`bench infer`, `bench onnx`, `bench depth`, `bench embed`),
apart from the code that runs them: the command line builds its parsers from these without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..options import POOLINGS, float_list, max_length

THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3)

@dataclass
class BenchInferOptions:
    """`minialbert bench infer`: the fields are bench_infer's parameters."""
    model: str = field(default="minialbert-768", metadata={"help": (
        "the model timed: a preset (random weights), a checkpoint folder or 'minialbert-minilm'")})
    compare: list[str] = field(default_factory=lambda: ["bert-base", "bert-6layer"], metadata={"nargs": "*",
        "help": "models timed in the same run: presets, bert-base / bert-6layer (random BERT shapes) or folders"})
    batch: int = field(default=8, metadata={"help": "sequences per timed batch"})
    seq: int = field(default=128, metadata={"help": "tokens per sequence"})
    reps: int = field(default=10, metadata={"help": "timed repetitions per model (the median is reported)"})
    compile_model: bool = field(default=False, metadata={"flag": "--compile",
                                                         "help": "torch.compile the models first"})
    iterations: int | None = field(default=None, metadata={"metavar": "K", "help": "MiniALBERT models run only "
                                                           "their first K iterations (elastic depth)"})

@dataclass
class BenchOnnxOptions:
    """`minialbert bench onnx`: the fields are bench_onnx's parameters."""
    model: str = field(default="minialbert-768", metadata={"help": (
        "the model exported and timed: a preset (random weights), a checkpoint folder or 'minialbert-minilm'")})
    compare: list[str] = field(default_factory=list, metadata={"nargs": "*",
        "help": "more models timed in the same run (e.g. bert-base bert-6layer)"})
    task: str | None = field(default=None, metadata={"help": "GLUE task for the accuracy check of --model"})
    data_dir: str | None = field(default=None, metadata={"help": "GLUE folder (official TSVs); default: the hub"})
    batch: int = field(default=8, metadata={"help": "sequences per timed batch"})
    seq: int = field(default=128, metadata={"help": "tokens per sequence"})
    reps: int = field(default=10, metadata={"help": "timed repetitions per session (the median is reported)"})
    iterations: int | None = field(default=None, metadata={"metavar": "K", "help": "MiniALBERT models run (and "
                                                           "are exported with) only their first K iterations"})

@dataclass
class BenchDepthOptions:
    """`minialbert bench depth`: the fields are bench_depth's parameters."""
    model: str = field(metadata={"required": True, "help": "fine-tuned checkpoint folder or adapter task folder"})
    task: str = field(metadata={"required": True, "help": "GLUE task name or ner"})
    data_dir: str = field(metadata={"required": True, "help": "GLUE folder or NER folder"})
    thresholds: list[float] = field(default_factory=lambda: list(THRESHOLDS), metadata={
        "type": float_list, "help": "comma-separated early-exit entropy thresholds"})
    batch_size: int = field(default=32, metadata={"help": "examples per timed batch"})
    max_length: int = field(default=128, metadata={"type": max_length, "help": (
        "tokens per input; longer inputs are truncated (raise it for long documents, at a cost per step)")})
    figure: str | None = field(default=None, metadata={"help": "write score vs latency as a PNG here"})

@dataclass
class BenchEmbedOptions:
    """`minialbert bench embed`: the fields are bench_embed's parameters."""
    model: str = field(metadata={"required": True,
                                 "help": (
        "the encoder scored: a student folder, a bi-encoder folder, the released student 'minialbert-minilm', a "
        "packaged teacher ('minilm', 'mpnet') or a hub encoder")})
    data_dir: str = field(metadata={"required": True, "help": "GLUE folder or its STS-B folder (official TSVs)"})
    pooling: str = field(default="mean", metadata={"choices": list(POOLINGS), "help": (
        "how token states become a sentence embedding: mean over real tokens (how MiniLM was trained) or the "
        "[CLS] state")})
    batch_size: int = field(default=64, metadata={"help": "sentences encoded per batch"})
    max_length: int = field(default=128, metadata={"type": max_length, "help": (
        "tokens per input; longer inputs are truncated (raise it for long documents, at a cost per step)")})
    depths: bool = field(default=False, metadata={
        "help": "MiniALBERT: also score and time the embeddings after each K = 1..N iterations"})
    device: str = field(default="cpu", metadata={"choices": ["cpu", "auto", "cuda"], "help": (
        "where the encoders run: cpu (the sentences/s this machine's users see), or auto/cuda (a GPU when one "
        "is visible: fast scoring, GPU speeds)")})
    split: str = field(default="dev", metadata={"choices": ["dev", "train"], "help": (
        "the STS-B pairs scored: dev (the reported score) or train (5,749 pairs, to choose between models "
        "without tuning to dev)")})
    max_pairs: int | None = field(default=None, metadata={"help": (
        "score an evenly spaced subset of this many pairs of the split (all when left out): a cheaper pick "
        "measure for slow encoders, e.g. 1000 of the 5,749 train pairs")})
    compare: list[str] = field(default_factory=list, metadata={"nargs": "*",
        "help": "more encoders scored and timed in the same run (e.g. minilm, the teacher), with the model's "
                "retention of their Spearman, speed-up and parameter ratio; model2vec:TEACHER:DIMS is a static "
                "model2vec distillation of TEACHER made in the run (PCA to DIMS), model2vec:FOLDER a saved one"})