"""Identities of runs: a short hash of everything that changes a run's numbers, so that a rerun
with other inputs can never be answered with results computed from different ones.

Files and folders are identified by resolved path, size and modification time (the corpus cache
uses the same rule): cheap, and a re-distilled or re-copied model gets a new identity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def path_identity(name: str | None) -> str | None:
    """A local file or folder -> 'path:size:mtime' of it (a folder: of its files, one level deep);
    anything else (a hub name, None) passes through."""
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.exists():
        return name
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return f"{path.resolve()}|" + ",".join(parts)


def options_hash(options: dict, length: int = 10) -> str:
    """sha256 of the JSON of `options` (sorted keys), shortened."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fields_identity(options, resolvers: dict | None = None, keep=lambda f: f.metadata.get("identity", True)) -> dict:
    """{field: value} of a dataclass instance for every field `keep` accepts (default: every field
    not marked `identity: False` in its metadata), each value passed through `resolvers[name]` when
    there is one (e.g. a folder -> its path_identity). Deriving the identity from the fields means a
    new option is part of it unless someone marks it as unable to change the numbers."""
    import dataclasses

    resolvers = resolvers or {}
    return {f.name: resolvers.get(f.name, lambda v: v)(getattr(options, f.name))
            for f in dataclasses.fields(options) if keep(f)}
