"""`minialbert` command line: one sub-command per job (see `minialbert --help`)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from pathlib import Path

from ..allocator import keep_freed_memory
from ..errors import MiniAlbertError
from .parsers import build_parser  # no torch: --help and argument errors answer at once


FILESYSTEM_ERRNOS = {errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOSPC,
                     errno.EPERM}


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()  # large per-step buffers are reused instead of mapped again (allocator.py)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
    except MiniAlbertError as e:  # e.g. `distill --recipe MISSING --help`
        print(f"minialbert: error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out) if isinstance(getattr(args, "out", None), str) else None
    out_existed = out is not None and out.exists()
    try:
        if out is not None and out.exists() and not out.is_dir():
            raise MiniAlbertError(f"--out {out} is a file; give a folder (it is created if missing).")
        return int(args.func(args) or 0)
    except MiniAlbertError as e:
        print(f"minialbert {args.command}: error: {e}", file=sys.stderr)
    except OSError as e:
        if e.errno in FILESYSTEM_ERRNOS:  # writing failed: not a model-name problem
            hint = "Check that the output path is a folder you can write to and that the disk has room."
        else:  # a file or model that cannot be found or read (transformers says which)
            hint = "Check the path or model name; hub names need a network."
        print(f"minialbert {args.command}: error: {e}\n{hint}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"minialbert {args.command}: interrupted; checkpoints already written are kept.",
              file=sys.stderr)
        return 130
    finally:
        if out is not None and not out_existed:
            _remove_if_empty(out)
    return 2


def _remove_if_empty(folder: Path) -> None:
    """A run that failed before writing anything leaves no empty output folder behind."""
    if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
