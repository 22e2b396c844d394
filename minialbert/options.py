"""One configuration mechanism: a dataclass's fields become command-line flags.

Each field gives one flag `--field-name` (or `metadata["flag"]`), typed by its annotation: bools
become `--x/--no-x`, `list[float]` takes several values, `list[int]` a comma-separated list;
`metadata` may add "help", "choices", "metavar", "required", "nargs" (lists: "+" by default) and "type" (a parser for the value). The parsed namespace turns back into the
dataclass with `from_args`. Used for the distillation recipe, the fine-tuning options and the
benchmarks, so a new option is one field in one place."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


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


def add_dataclass_flags(parser, cls, *, help: dict | None = None, defaults_none: bool = False,
                        skip: tuple[str, ...] = ()) -> None:
    """A flag per field of `cls`. `defaults_none`: every default is None, so that values from
    elsewhere (a recipe file) stand unless the flag is given; otherwise the field's default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
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
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        kind = _field_type(cls, f)
        origin = typing.get_origin(kind)
        if "type" in meta:
            parser.add_argument(flag, type=meta["type"], **kw)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif origin is list and typing.get_args(kind) == (int,):
            parser.add_argument(flag, type=int_list, **kw)
        elif origin is list:
            parser.add_argument(flag, type=typing.get_args(kind)[0], nargs=meta.get("nargs", "+"), **kw)
        else:
            parser.add_argument(flag, type=kind, choices=meta.get("choices"), **kw)


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
