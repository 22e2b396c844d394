"""The options of `minialbert fit-head` and `minialbert bench distill`, apart from the code that runs
them: the command line builds its parsers from these without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..options import DTYPE_HELP, DTYPES, max_length

TEACHER_SHAPES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}

@dataclass
class FitHeadOptions:
    """`minialbert fit-head`: the fields are fit_mlm_head's parameters. Its defaults are a head's, not
    a student's: a few hundred steps of a high learning rate train one small module."""
    out: str = field(metadata={"required": True, "help": "where to save the completed masked-LM checkpoint"})
    teacher: str = field(default="minilm", metadata={"help": "encoder to complete ('minilm' = packaged; 'mpnet' once installed)"})
    corpus: str = field(default="wiki-offline", metadata={"help": "corpus, as for distill"})
    max_steps: int = field(default=300, metadata={"help": "optimiser steps of the head (the encoder stays frozen)"})
    batch_size: int = field(default=32, metadata={"help": "corpus windows per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate of the head (high: one small "
                                                                 "module trains)"})
    max_length: int = field(default=128, metadata={"type": max_length, "help": (
        "tokens per input; longer inputs are truncated (raise it for long documents, at a cost per step)")})
    max_docs: int | None = field(default=None, metadata={"help": "use only the first N documents of the corpus "
                                                                 "(default: all)"})
    eval_windows: int = field(default=256, metadata={"help": "held-out windows for the accuracy check"})
    eval_every: int = field(default=0, metadata={
        "help": "also measure held-out accuracy every N steps (the curve goes into fit_head.json)"})
    dtype: str = field(default="auto", metadata={"choices": list(DTYPES), "help": DTYPE_HELP})
    seed: int = field(default=42, metadata={"help": "random seed of initialisation, masking and data order"})

@dataclass
class DistillBenchOptions:
    teacher_config: str = field(default="bert-base", metadata={
        "choices": list(TEACHER_SHAPES), "help": "teacher shape: bert-base (12x768) or minilm (6x384)"})
    student: str = field(default="minialbert-312", metadata={"help": "student preset (H/heads/FFN follow the teacher)"})
    batch: int = field(default=4, metadata={"help": "sequences per step"})
    seq: int = field(default=256, metadata={"help": "tokens per sequence"})
    steps: int = field(default=3, metadata={"help": "timed steps (after one warm-up step); the median is reported"})
    dtype: str = field(default="auto", metadata={"choices": list(DTYPES), "help": DTYPE_HELP})
    device: str = field(default="auto", metadata={"choices": ["auto", "cpu", "cuda"], "help":
        "where the models, batches and the matmul peak run (auto: a GPU when one is visible; cuda without a GPU is "
        "an error)"})
    fused_unmapped_attention: bool = field(default=True, metadata={"help": (
        "teacher layers whose maps no loss reads run fused scaled-dot-product attention, as in training; "
        "--no-fused-unmapped-attention times the all-eager teacher")})
    profile: bool = field(default=False, metadata={"help": "split the step into data, teacher forward, student "
                                                           "forward, losses, backward, optimizer (seconds, share, "
                                                           "GFLOP/s)"})
