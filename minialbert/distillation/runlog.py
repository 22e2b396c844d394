"""Reading a run's log.jsonl (kept apart from the Trainer code so plotting stays light)."""

from __future__ import annotations

from pathlib import Path

from ..records import read_jsonl


def read_log(path: Path, key: str | None = None) -> list[dict]:
    """The rows of a run's log.jsonl (empty when there is none yet); with `key`, only the rows that
    hold it ("loss": the training rows; "zero_shot_spearman": the zero-shot curve)."""
    if not path.exists():
        return []
    rows = read_jsonl(path, "Delete the damaged line (or the file: only the curve is lost), then run again.")
    return rows if key is None else [r for r in rows if key in r]
