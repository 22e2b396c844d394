"""The options of `minialbert plot-losses` and `minialbert plot-attention`, apart from the plotting code
(which imports torch): the command line builds its parsers from these alone."""

from __future__ import annotations

from dataclasses import dataclass, field

@dataclass
class PlotLossesOptions:
    """`minialbert plot-losses`."""
    run_dir: list[str] = field(metadata={"positional": True, "help": (
        "the --out folder(s) of `minialbert distill` (several: overlaid)")})
    out: str = field(metadata={"required": True, "help": "PNG file"})

@dataclass
class PlotAttentionOptions:
    """`minialbert plot-attention`."""
    teacher: str = field(metadata={"required": True, "help": "teacher name/folder ('minilm' = packaged)"})
    student: str = field(metadata={"required": True, "help": "student folder (e.g. OUT/final)"})
    text: str = field(metadata={"required": True, "help": "the sentence whose attention maps are drawn"})
    out: str = field(metadata={"required": True, "help": "PNG file"})
    layer_map: list[int] | None = field(default=None, metadata={
        "help": "teacher layer per iteration; default: the student's distillation.json, else uniform"})
    iterations: list[int] | None = field(default=None, metadata={
        "help": "student iterations to show (default first, middle, last)"})
    max_heads: int = field(default=12, metadata={"help": "heads drawn per layer (the first ones)"})