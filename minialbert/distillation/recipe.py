"""Distillation recipes: one dataclass of every setting, YAML files that fill it, a preset that sets
the student's shape, CLI flags that override both (defaults < recipe < preset < flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import yaml

from ..errors import MiniAlbertError, require
from ..options import max_length, max_length_problem

RECIPE_DIR = Path(__file__).with_name("recipes")
# A field a resumed run may change (the run's length and bookkeeping); any other difference would
# mix two configurations in one student, so `--resume` refuses it.
RESUMABLE = {"resumable": True}


@dataclass
class DistillRecipe:
    # teacher and student
    teacher: str = "minilm"
    preset: str | None = None             # supplies E, N, adapters, r; H/heads/FFN/V come from the teacher
    iterations: int | None = None         # N (default: preset's, else 6)
    embedding_size: int | None = None     # E (default: preset's, else H)
    adapters: bool | None = None          # default: preset's, else True
    adapter_reduction_factor: int | None = None  # adapter bottleneck H / r (default: preset's, else 16)
    layer_groups: int | None = None       # distinct layers g (ALBERT's num_hidden_groups); = iterations: a plain student
    relaxation_rank: int = 0              # per-iteration low-rank deltas on the shared layer (0: strict sharing)
    hidden_size: int | None = None        # only to force a width different from the teacher's
    num_attention_heads: int | None = None
    embedding_init: str = "teacher"       # teacher (copy or SVD) | random | a model name/path of width E
    # Layer choices: a teacher layer (1-based), 'last', or a fraction of the depth with a decimal point
    # (0.5, 1.0); resolved to numbers against the teacher before a run stores anything.
    shared_layer_init: str | None = None  # a layer choice, 'average' or 'average:2,4,last'; 0/None: random
    layer_map: list[int] | None = field(default=None, metadata={"type": lambda text: layer_choice_list(text)})
    # ^ a layer choice per iteration; default uniform
    project_hidden: bool = False          # learn a linear map when student and teacher widths differ
    average_heads: bool = False           # compare head-averaged maps when head counts differ
    # losses
    alignment: str = "full"               # full | hidden | attention | none
    mlm_weight: float = 1.0
    alignment_weight: float = 3.0
    output_weight: float = 5.0
    embedding_weight: float = 0.0
    sentence_weight: float = 0.0          # teacher's mean-pooled sentence embedding as a target (embedding students)
    temperature: float = 1.0
    # corpus
    corpus: str = "wiki-offline"
    max_length: int = field(default=256, metadata={"type": max_length})
    stride: int = 128
    windows_per_doc: int = 10
    text_field: str = "text"
    blank_line_docs: bool = False
    streaming: bool = False
    max_docs: int | None = None
    num_proc: int | None = field(default=None, metadata=RESUMABLE)
    mlm_probability: float = 0.15
    pack: bool = False                    # pack consecutive documents into full windows (no padding)
    # optimisation
    batch_size: int = 8                   # per device
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-4
    inherited_lr_scale: float = 1.0       # the teacher-initialised parts (distill --help lists them) train at this x lr
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    max_steps: int | None = field(default=None, metadata=RESUMABLE)
    epochs: float = field(default=1.0, metadata=RESUMABLE)
    dtype: str = "auto"                   # auto | fp32 | bf16 | fp16
    seed: int = 42
    save_steps: float = field(default=500, metadata=RESUMABLE)  # every N steps; below 1, a fraction of max_steps
    save_total_limit: int = field(default=3, metadata=RESUMABLE)
    logging_steps: int = field(default=10, metadata=RESUMABLE)
    dataloader_num_workers: int = field(default=0, metadata=RESUMABLE)
    zero_shot_every: int = field(default=0, metadata=RESUMABLE)  # zero-shot STS-B score every N steps (0: off)
    zero_shot_data: str | None = field(default=None, metadata=RESUMABLE)  # GLUE (or STS-B) folder it reads
    zero_shot_split: str = field(default="dev", metadata=RESUMABLE)  # dev (to report) | train (to pick on)
    zero_shot_pairs: int | None = field(default=None, metadata=RESUMABLE)  # an evenly spaced subset of the pairs
    notes: str = field(default="", metadata=RESUMABLE)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def resumable_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.metadata.get("resumable")]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def shared_layer_from_teacher(self) -> bool:
        """Whether the shared layer (or each layer group) starts from teacher layers (0/None: random)."""
        return self.shared_layer_init not in (None, 0, "0", "")

    def validate(self) -> "DistillRecipe":
        """Cheap checks before anything is loaded; each names its flag and how to fix it."""
        positive_ints = {"batch_size": "examples per device per step", "gradient_accumulation_steps": "",
                         "windows_per_doc": "",
                         "logging_steps": "", "save_total_limit": ""}
        for name, what in positive_ints.items():
            value = getattr(self, name)
            require(value is None or value >= 1, f"--{_flag(name)} must be at least 1 (got {value}){': ' + what if what else ''}.")
        require(self.relaxation_rank >= 0, f"--relaxation-rank must be 0 (strict sharing) or more (got "
                                           f"{self.relaxation_rank}).")
        require(not self.relaxation_rank or self.shared_layer_from_teacher,
                "--relaxation-rank starts each iteration's deltas from (its teacher layer - the shared layer); "
                "give --shared-layer-init (a teacher layer or 'average'), not a random shared layer.")
        for name in ("iterations", "embedding_size", "hidden_size", "num_attention_heads", "layer_groups",
                     "adapter_reduction_factor"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"--{_flag(name)} must be at least 1 (got {value}); leave it out to "
                                                 "take the preset's or the teacher's value.")
        require(not max_length_problem(self.max_length), f"--max-length {max_length_problem(self.max_length)}.")
        require(self.stride >= 0, f"--stride must be 0 or more (got {self.stride}): the tokens two windows "
                                  "of one document share.")
        require(self.save_steps > 0, f"--save-steps must be positive (got {self.save_steps}): a step count, or a "
                                     "fraction of --max-steps below 1.")
        require(self.zero_shot_every >= 0, f"--zero-shot-every must be 0 (off) or more (got {self.zero_shot_every}).")
        require(not self.zero_shot_every or self.zero_shot_data,
                "--zero-shot-every needs --zero-shot-data: the GLUE folder (or its STS-B folder) whose dev pairs "
                "are scored.")
        require(0 <= self.inherited_lr_scale <= 1, f"--inherited-lr-scale must be in [0, 1] (got "
                                                   f"{self.inherited_lr_scale}): 0 freezes the teacher-initialised "
                                                   "parts, 1 trains them at --learning-rate.")
        require(self.zero_shot_split in ("dev", "train"), f"--zero-shot-split must be dev or train (got "
                                                          f"{self.zero_shot_split!r}).")
        require(self.zero_shot_pairs is None or self.zero_shot_pairs >= 2,
                f"--zero-shot-pairs must be 2 or more (got {self.zero_shot_pairs}); leave it out to score every pair.")
        require(self.learning_rate > 0, f"--learning-rate must be positive (got {self.learning_rate}).")
        require(0 < self.mlm_probability < 1, f"--mlm-probability must be between 0 and 1 (got "
                                              f"{self.mlm_probability}); BERT uses 0.15.")
        require(self.max_steps is None or self.max_steps >= 0,
                f"--max-steps must be 0 (save the initialised student) or more (got {self.max_steps}).")
        require(self.epochs > 0, f"--epochs must be positive (got {self.epochs}).")
        require(self.warmup_steps >= 0, f"--warmup-steps must be 0 or more (got {self.warmup_steps}).")
        require(self.weight_decay >= 0, f"--weight-decay must be 0 or more (got {self.weight_decay}).")
        require(self.temperature > 0, f"--temperature must be positive (got {self.temperature}).")
        for name in ("mlm_weight", "alignment_weight", "output_weight", "embedding_weight", "sentence_weight"):
            require(getattr(self, name) >= 0, f"--{_flag(name)} must be 0 or more (got {getattr(self, name)}).")
        require(self.max_docs is None or self.max_docs >= 1, f"--max-docs must be at least 1 (got {self.max_docs}).")
        require(self.alignment in ("full", "hidden", "attention", "none"),
                f"--alignment must be full, hidden, attention or none (got {self.alignment!r}).")
        return self

    def adapted_stride(self, special_tokens: int = 2) -> int:
        """The overlap, shrunk to fit a short window (the tokenizer needs stride < max_length - specials)."""
        room = self.max_length - special_tokens
        return self.stride if self.stride < room else max(0, room // 2)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _recipe_file(name_or_path: str) -> tuple[Path, dict]:
    """(path, field: value) of a shipped recipe by name or a YAML file; unknown fields are an error."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise MiniAlbertError(f"Unknown recipe {name_or_path!r}. Shipped recipes: "
                                  f"{', '.join(available_recipes())}; or give a path to a .yaml file.")
    elif not path.exists():
        raise MiniAlbertError(f"Recipe file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise MiniAlbertError(f"Recipe {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise MiniAlbertError(f"Recipe {path} must be a mapping of field: value.")
    unknown = sorted(set(data) - set(DistillRecipe.names()))
    if unknown:
        raise MiniAlbertError(f"Recipe {path} has unknown fields {unknown}; known fields: "
                              f"{', '.join(DistillRecipe.names())}.")
    return path, data


def recipe_fields(name_or_path: str) -> set[str]:
    """The fields a recipe file sets itself (the others take the defaults)."""
    return set(_recipe_file(name_or_path)[1])


# What each shipped recipe is for, in a few words (`distill --help` lists them).
RECIPE_PURPOSES = {
    "cpu-demo": "offline demo, about 10 minutes on a laptop CPU",
    "cpu-2h": "the released student's recipe, about 1-2 CPU hours; needs a network once, for PubMed "
              "abstracts from the hub",
    "paper-general": "the paper's general-domain run; needs a network and GPUs",
    "paper-bio": "the paper's biomedical run; needs a network and GPUs",
    "paper-mpnet-128": "the paper's MiniALBERT-128 shape (H 768, E 128, 12 iterations, adapters) from the mpnet "
                       "teacher; docs/studies/paper-geometry.md",
    "retention-student": "the student of the budget-curve study (docs/studies/budget-curve.md), whose script adds "
                         "the teacher, corpus and budget",
}


def recipe_listing() -> str:
    """The shipped recipes, each with what it is for."""
    return "; ".join(f"{n}: {RECIPE_PURPOSES[n]}" if n in RECIPE_PURPOSES else n for n in available_recipes())


def load_recipe(name_or_path: str | None) -> DistillRecipe:
    """A shipped recipe by name, or a YAML file, as written (no preset or flags applied)."""
    return DistillRecipe() if name_or_path is None else DistillRecipe(**_recipe_file(name_or_path)[1])


# The student fields a preset supplies, and their names in the preset's configuration.
PRESET_FIELDS = {"iterations": "num_hidden_layers", "embedding_size": "embedding_size", "adapters": "use_adapters"}


@dataclass
class ResolvedRecipe:
    """A recipe with the source of every field ('flag', 'preset NAME', 'recipe NAME', 'default') and
    the recipe values an explicit preset overrode (one line each)."""
    recipe: DistillRecipe
    sources: dict
    overridden: list

    def report(self) -> str:
        """Which fields came from where, in a few lines (defaults left out)."""
        by_source: dict = {}
        for name, source in self.sources.items():
            if source != "default":
                by_source.setdefault(source, []).append(name)
        order = sorted(by_source, key=lambda s: ("flag", "preset", "recipe").index(s.split()[0]))
        return "\n".join(f"  from {s}: {', '.join(by_source[s])}" for s in order)


def resolve_recipe(name_or_path: str | None, flags: dict) -> ResolvedRecipe:
    """Field by field, an explicit flag wins, then the preset (its E, N and adapters), then the recipe
    file, then the defaults. `flags`: field -> value, None for a flag not given."""
    from ..model import PRESETS, preset_config

    values, sources = DistillRecipe().to_dict(), dict.fromkeys(DistillRecipe.names(), "default")
    if name_or_path is not None:
        path, data = _recipe_file(name_or_path)
        label = f"recipe {name_or_path if not Path(name_or_path).suffix else path.name}"
        values.update(data)
        sources.update(dict.fromkeys(data, label))
    given = {k: v for k, v in flags.items() if v is not None}
    preset = given.get("preset", values.get("preset"))
    overridden = []
    if preset:
        if preset not in PRESETS:
            preset_config(preset)  # the error naming the known presets
        for name, key in PRESET_FIELDS.items():
            if name in given:
                continue
            if sources[name].startswith("recipe") and values[name] not in (None, PRESETS[preset][key]):
                overridden.append(f"--preset {preset} sets {name} = {PRESETS[preset][key]}, not the "
                                  f"{sources[name]}'s {values[name]}")
            values[name], sources[name] = PRESETS[preset][key], f"preset {preset}"
    values.update(given)
    sources.update(dict.fromkeys(given, "flag"))
    return ResolvedRecipe(DistillRecipe(**values), sources, overridden)


def _is_relative(choice) -> bool:
    """'last' or a fraction ('0.5', 1.0): a choice that depends on the teacher's depth. A whole number
    stays as it was given (its stored form, "6" or 6, is part of earlier runs' identity)."""
    return isinstance(choice, float) or (isinstance(choice, str) and
                                         (choice.strip().lower() == "last" or "." in choice))


def layer_choice_list(text: str) -> list:
    """--layer-map's value: comma-separated layer choices; whole numbers become ints."""
    import argparse

    items = [x for x in text.replace(" ", "").split(",") if x]
    if not items or any(not (x.isdigit() or x.lower() == "last" or x.replace(".", "", 1).isdigit()) for x in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated teacher layers (numbers, 'last' or fractions "
                                         f"such as 0.5), got {text!r}")
    return [int(x) if x.isdigit() else x for x in items]


def teacher_depth(name: str) -> int:
    from ..checkpoints import read_config

    return read_config(name, role="the teacher ").num_hidden_layers


def resolve_layer_choices(recipe: DistillRecipe, depth: int | Callable[[], int]) -> DistillRecipe:
    """The recipe with 'last' and fractions of the teacher's depth (`depth`, or a function giving
    it, called only when needed) turned into layer numbers: what the run stores and is identified by.
    A recipe without such choices comes back unchanged."""
    from ..model.initialization import teacher_layer_number

    shared, layer_map = recipe.shared_layer_init, recipe.layer_map
    text = str(shared).strip().lower() if shared is not None else ""
    shared_items = text[len("average:"):].split(",") if text.startswith("average:") else [shared]
    relative = [x for x in shared_items if _is_relative(x)] + [x for x in layer_map or [] if _is_relative(x)]
    if not relative:
        return recipe
    L = depth() if callable(depth) else depth
    if any(_is_relative(x) for x in shared_items):
        numbers = [teacher_layer_number(x, L) if _is_relative(x) else x.strip() if isinstance(x, str) else x
                   for x in shared_items]
        shared = f"average:{','.join(str(n) for n in numbers)}" if text.startswith("average:") else numbers[0]
    if layer_map:
        layer_map = [teacher_layer_number(x, L, "--layer-map") if _is_relative(x) else x for x in layer_map]
    return dataclasses.replace(recipe, shared_layer_init=shared, layer_map=layer_map)


def apply_overrides(recipe: DistillRecipe, overrides: dict) -> DistillRecipe:
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
