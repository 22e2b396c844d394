"""One configuration mechanism for every command: a dataclass's fields become its flags.

Each field gives one flag `--field-name` (or `metadata["flag"]`), typed by its annotation: bools
become `--x/--no-x`, `list[float]` takes several values, `list[int]` a comma-separated list;
`metadata` may add "help", "choices", "metavar", "required", "positional" (an argument without a
flag), "nargs" (lists: "+" by default), "action" ("append": a list given one flag per value) and
"type" (a parser for the value). The parsed namespace turns back into the dataclass with
`from_args`, so a new option is one field in one place.

Why not transformers' `HfArgumentParser`, which does the same for flat dataclasses: it gives a
bool with a False default no `--no-x` flag (the recipes set `pack: true`, so `--no-pack` must
exist), has no comma-separated integer lists, and cannot leave every default unset, which is how
`distill` tells an explicit flag from a recipe's value (flag > preset > recipe > default)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

# Choices the options of several commands share (here, not beside the code that uses them, so that the
# command line can build its parsers without importing torch).
DTYPES = ("auto", "fp32", "bf16", "fp16")
DTYPE_HELP = ("auto: bf16 on a GPU that supports it; on a CPU whichever of fp32/bf16 a matmul probe finds faster "
              "(cached per CPU) | fp32 | bf16 | fp16 (GPU only)")
POOLINGS = ("mean", "cls")


def _field_type(cls, f):
    """The field's type, without Optional (`int | None` -> int; `list[float] | None` -> list[float])."""
    t = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _declaring_class(cls, name: str):
    """The class in `cls`'s MRO whose own annotations declare field `name`."""
    return next(c for c in cls.__mro__ if name in c.__dict__.get("__annotations__", {}))


def add_dataclass_flags(parser, cls, *, help: dict | None = None, defaults_none: bool = False,
                        skip: tuple[str, ...] = ()) -> None:
    """A flag per field of `cls`. `defaults_none`: every default is None, so that values from
    elsewhere (a recipe file) stand unless the flag is given; otherwise the field's default.
    Fields a dataclass inherits come after its own, in an argument group named by the first line
    of the base class's docstring (e.g. the task-distillation options of `finetune`)."""
    groups = {}
    ordered = sorted(dataclasses.fields(cls), key=lambda f: _declaring_class(cls, f.name) is not cls)
    for f in ordered:
        if f.name in skip:
            continue
        owner = _declaring_class(cls, f.name)
        target = parser
        if owner is not cls:
            if owner not in groups:
                groups[owner] = parser.add_argument_group((owner.__doc__ or owner.__name__).strip().splitlines()[0])
            target = groups[owner]
        meta = f.metadata
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        text = (help or {}).get(f.name, meta.get("help", f.name.replace("_", " ")))
        if defaults_none:
            default = None
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None if f.default is dataclasses.MISSING else f.default
        kw = dict(dest=f.name, default=default, help=text)
        if meta.get("required"):
            kw = dict(dest=f.name, required=True, help=text)
        if meta.get("positional"):  # named by the field, required unless it has a default
            flag, kw = f.name, dict(help=text, **({} if f.default is dataclasses.MISSING
                                                   and f.default_factory is dataclasses.MISSING else
                                                   {"default": default, "nargs": "?"}))
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        kind = _field_type(cls, f)
        origin = typing.get_origin(kind)
        if "type" in meta:
            target.add_argument(flag, type=meta["type"], **kw)
        elif kind is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif origin is list and meta.get("action") == "append":  # a flag given once per value
            target.add_argument(flag, action="append", type=typing.get_args(kind)[0], **kw)
        elif origin is list and typing.get_args(kind) == (int,):
            target.add_argument(flag, type=int_list, **kw)
        elif origin is list:
            target.add_argument(flag, type=typing.get_args(kind)[0], nargs=meta.get("nargs", "+"), **kw)
        else:
            target.add_argument(flag, type=kind, choices=meta.get("choices"), **kw)


MIN_MAX_LENGTH = 8


def max_length_problem(value: int) -> str | None:
    """The one check of every command's --max-length (and a recipe's max_length): what is wrong, or None."""
    if value is None or value >= MIN_MAX_LENGTH:
        return None
    return (f"must be at least {MIN_MAX_LENGTH} tokens (got {value}): an input needs [CLS], [SEP] and some text "
            "(128 or 256 are usual)")


def max_length(text: str) -> int:
    """argparse type of --max-length: an integer that passes max_length_problem."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got {text!r}") from None
    problem = max_length_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def from_args(cls, args, **extra):
    """The dataclass `cls` from a parsed namespace (its fields' values), plus `extra`."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}, **extra)


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def options_kwargs(cls, args) -> dict:
    """The keyword arguments of a function whose parameters are the fields of `cls`."""
    return dataclasses.asdict(from_args(cls, args))
