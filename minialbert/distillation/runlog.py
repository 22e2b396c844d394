"""Reading a run's log.jsonl (kept apart from the Trainer code so plotting stays light)."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    """The rows of a run's log.jsonl (empty when there is none yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
