"""python -m scripts.studies STUDY COMMAND [options]: see scripts/studies/__init__.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minialbert.errors import MiniAlbertError

from . import (budget_curve, distillation_start, docs, embedding_curve, frontier, pair_encoding, paper_geometry,
               retention, task_distillation)
from .common import BIOMED, GLUE_DIR, NER_DIR

STUDIES = {"budget-curve": budget_curve, "pair-encoding": pair_encoding, "embedding-curve": embedding_curve,
           "task-distillation": task_distillation, "distillation-start": distillation_start, "retention": retention, "frontier": frontier,
           "paper-geometry": paper_geometry, "docs": docs}


def data_defaults(parser, work: str | None = None) -> None:
    """The options every study command that reads data shares (paths resolved after parsing)."""
    if work:
        parser.add_argument("--work", default=work, help="work folder (models, logs; never committed)")
    parser.add_argument("--glue-dir", default=str(GLUE_DIR))
    parser.add_argument("--ner-dir", default=str(NER_DIR))
    parser.add_argument("--biomed", default=str(BIOMED))


def main(argv=None) -> int:
    from . import __doc__ as overview

    p = argparse.ArgumentParser(prog="python -m scripts.studies", description=overview.split("\n\n")[0])
    studies = p.add_subparsers(dest="study", required=True)
    for name, module in STUDIES.items():
        s = studies.add_parser(name, help=(module.__doc__ or "").split("\n")[0])
        module.add_commands(s.add_subparsers(dest="command", required=True), data_defaults)
    args = p.parse_args(argv)
    for name in ("glue_dir", "ner_dir", "biomed"):
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    try:
        return args.func(args)
    except MiniAlbertError as e:  # a study's bad input or inconsistent rows: one paragraph, no traceback
        print(f"python -m scripts.studies {args.study} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
