"""Reading a run's log.jsonl (kept apart from the Trainer code so plotting stays light)."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: Path, key: str | None = None) -> list[dict]:
    """The rows of a run's log.jsonl (empty when there is none yet); with `key`, only the rows that
    hold it ("loss": the training rows; "zero_shot_spearman": the zero-shot curve)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows if key is None else [r for r in rows if key in r]
