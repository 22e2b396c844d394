"""`minialbert` command line: one sub-command per job (see `minialbert --help`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import MiniAlbertError


def build_parser() -> argparse.ArgumentParser:
    from . import analysis_commands, distill_commands, finetune_commands, inference_commands, model_commands

    parser = argparse.ArgumentParser(
        prog="minialbert",
        description="Distil a BERT-like teacher into a compact recursive MiniALBERT student, "
                    "then fine-tune and evaluate it. Run `minialbert COMMAND --help` for details.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    model_commands.register(sub)
    bench_sub = distill_commands.register(sub)
    finetune_commands.register(sub, bench_sub)
    analysis_commands.register(sub)
    inference_commands.register(sub, bench_sub)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except MiniAlbertError as e:
        print(f"minialbert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or model that cannot be found or read (transformers says which)
        print(f"minialbert {args.command}: error: {e}\nCheck the path or model name; hub names need a network.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minialbert {args.command}: interrupted; checkpoints already written are kept.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
