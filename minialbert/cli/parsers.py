"""The parsers of every `minialbert` command, built from the option dataclasses alone.

Nothing here (nor in what it imports) loads torch or transformers: `minialbert --help`,
`minialbert COMMAND --help` and an argument error are answered at once, and the documentation's
command-line reference is generated from `build_parser()` in any environment. The command bodies
(`args.func`) import what they need when they run."""

from __future__ import annotations

import argparse

DESCRIPTION = ("Distil a BERT-like teacher into a compact recursive MiniALBERT student, then fine-tune and "
               "evaluate it. Run `minialbert COMMAND --help` for details.")
DEFAULT_RECIPE = "cpu-demo"


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to a flag's help where the default says something: not for a default of None
    or a switch that is off, and never a second time when the help already names its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default" in text.lower() or not action.option_strings
                or default is None or default is argparse.SUPPRESS or default == []
                or (default is False and action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction))):
            return text
        if isinstance(default, bool):
            shown = ("--" if default else "--no-") + action.dest.replace("_", "-")
        elif isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default)
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def recipe_in(argv) -> str:
    """The `--recipe` given on a `distill` command line (so that `distill --recipe X --help` shows X's
    values), else the default recipe."""
    argv = list(argv or [])
    if not argv or argv[0] != "distill":  # another command's --recipe (ablate) is its own business
        return DEFAULT_RECIPE
    for i, arg in enumerate(argv):
        if arg == "--recipe" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--recipe="):
            return arg.split("=", 1)[1]
    return DEFAULT_RECIPE


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The full `minialbert` parser. `argv` only chooses the recipe whose values `distill --help` shows."""
    from .analysis_commands import register as register_analysis
    from .distill_commands import register as register_distill
    from .finetune_commands import register as register_finetune
    from .inference_commands import register as register_inference
    from .model_commands import register as register_model

    parser = argparse.ArgumentParser(prog="minialbert", description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_model(sub)
    bench_sub = register_distill(sub, recipe_in(argv))
    register_finetune(sub, bench_sub)
    register_analysis(sub)
    register_inference(sub, bench_sub)
    for p in subparsers(parser):
        p.formatter_class = HelpFormatter  # one way of showing defaults everywhere
    return parser


def subparsers(parser: argparse.ArgumentParser, prefix: str = "minialbert"):
    """Every parser below `parser` (depth first), each once; its `prog` names it ('minialbert bench embed')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):
                yield p
                yield from subparsers(p)
