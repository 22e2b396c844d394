"""Unlabelled in-domain examples for task distillation's transfer set (docs/method.md section 7),
which the teacher then labels: a GLUE task folder (its test.tsv), a TSV with the task's text
columns, or a text file (one example per line, a tab between the sentences of a pair; for NER one
sentence per line, split into words and punctuation)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import MiniAlbertError

WORD = re.compile(r"\w+|[^\w\s]")


def read_transfer_data(path: str, task=None, limit: int | None = None) -> list[tuple[str, ...]]:
    """Unlabelled examples as text tuples (one string per sentence) for GLUE `task`, or, with
    `task=None` (NER), sentences as single-string tuples."""
    p = Path(path)
    width = len(task.text_columns) if task else 1
    if p.is_dir():
        candidates = [p / "test.tsv", p / task.folder / "test.tsv"] if task else []
        p = next((c for c in candidates if c.is_file()), None)
        if p is None:
            raise MiniAlbertError(f"--transfer-data {path}: a folder must hold the task's test.tsv (a GLUE task folder "
                                  "or the GLUE root); or give a .tsv/.txt file.")
    if not p.is_file():
        raise MiniAlbertError(f"--transfer-data {path}: no such file or folder.")
    with p.open(encoding="utf-8-sig", newline="") as f:
        if p.suffix == ".tsv" and task is not None:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            header = rows[0] if rows else []
            names = [list(task.text_columns), list(task.hub_text), ["sentence"] if width == 1 else []]
            columns = next((c for c in names if c and all(x in header for x in c)), None)
            if columns is None:
                raise MiniAlbertError(f"--transfer-data {p}: header {header} lacks the task's text columns "
                                      f"({list(task.text_columns)} or {list(task.hub_text)}).")
            idx = [header.index(c) for c in columns]
            examples = [tuple(row[i] for i in idx) for row in rows[1:] if len(row) > max(idx)]
        else:
            examples = [tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()]
            bad = next((n for n, ex in enumerate(examples, 1) if len(ex) != width), None)
            if bad is not None:
                raise MiniAlbertError(f"--transfer-data {p}, example {bad}: {len(examples[bad - 1])} tab-separated "
                                      f"field(s) where the task needs {width} (one line per example"
                                      f"{', a tab between the two sentences' if width == 2 else ''}).")
    if not examples:
        raise MiniAlbertError(f"--transfer-data {p} holds no examples.")
    return examples[:limit] if limit else examples


def split_words(text: str) -> list[str]:
    """Words and punctuation, as BIO corpora tokenise them."""
    return WORD.findall(text)
