"""The command-line reference page (docs/reference/cli.md), written from the argparse parsers
themselves so that it cannot drift from `minialbert COMMAND --help`:

    python -m scripts.cli_reference           # rewrite docs/reference/cli.md
    python -m scripts.cli_reference --check   # exit 1 when the committed page is stale

tests/test_cli_reference.py runs the check. The parsers come from ONE function, `build_parser`
below: where the parsers move, only that function changes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "cli.md"
# argparse wraps help to the terminal's width; a fixed width makes the page the same on every machine.
WIDTH = "80"

HEADER = """# Command-line reference

Every command and option of `minialbert`, exactly as `minialbert COMMAND --help` prints it.
This page is generated from the argparse parsers by `python -m scripts.cli_reference` (a test
fails when it is stale); do not edit it by hand.
"""


def build_parser() -> argparse.ArgumentParser:
    """The `minialbert` parser (the one place this script knows where the parsers live)."""
    from minialbert.cli import build_parser as build

    return build()


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) for the parser and every sub-command below it, depth first, in declared order."""
    yield path, parser
    for action in parser._actions:  # argparse has no public walk over sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, path + (name,))


def render() -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parts = [HEADER]
        for path, sub in subcommands(parser):
            title = " ".join(("minialbert",) + path)
            sub.prog = title  # the same prog whatever the script was started as
            parts.append(f"\n## `{title}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
        return "".join(parts)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.cli_reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/reference/cli.md is stale; write nothing")
    args = ap.parse_args(argv)
    text = render()
    current = PAGE.read_text() if PAGE.is_file() else ""
    if args.check:
        if current != text:
            print(f"stale: {_shown(PAGE)}; run `python -m scripts.cli_reference`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        from minialbert.records import write_text

        write_text(PAGE, text)
        print(f"updated {_shown(PAGE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
