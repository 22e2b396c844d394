"""The one configuration mechanism: dataclass fields -> flags -> the same dataclass back."""

import argparse
from dataclasses import dataclass, field

import pytest

from minialbert.options import add_dataclass_flags, float_list, from_args


@dataclass
class Example:
    name: str = field(metadata={"required": True, "help": "a name"})
    rates: list[float] | None = field(default=None, metadata={"flag": "--lr"})
    layers: list[int] | None = None
    models: list[str] = field(default_factory=lambda: ["a", "b"])
    cuts: list[float] = field(default_factory=lambda: [0.1], metadata={"type": float_list})
    fast: bool = True
    mode: str = field(default="x", metadata={"choices": ["x", "y"]})
    steps: int | None = None


def parse(argv, **kw):
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, Example, **kw)
    return from_args(Example, p.parse_args(argv))


def test_flags_round_trip_to_the_dataclass():
    assert parse(["--name", "n"]) == Example(name="n")  # every default as the field declares it
    got = parse(["--name", "n", "--lr", "1e-3", "5e-4", "--layers", "2,4,6", "--models", "m", "--cuts", "0.2,0.3",
                 "--no-fast", "--mode", "y", "--steps", "7"])
    assert got == Example("n", [1e-3, 5e-4], [2, 4, 6], ["m"], [0.2, 0.3], False, "y", 7)


def test_required_choices_and_defaults_none():
    with pytest.raises(SystemExit):
        parse([])  # --name is required
    with pytest.raises(SystemExit):
        parse(["--name", "n", "--mode", "z"])
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, Example, defaults_none=True, skip=("name",))
    args = p.parse_args([])
    assert args.fast is None and args.models is None and not hasattr(args, "name")  # a recipe's values stand
