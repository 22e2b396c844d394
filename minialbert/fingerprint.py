"""Identities of runs: a short hash of everything that changes a run's numbers, so that a rerun
with other inputs can never be answered with results computed from different ones.

Files and folders are identified by their content (sha256, folders recursively), never by where
they lie or when they were written: a study resumed on another machine, or beside a new copy of
the data, reuses what it finished, and a file edited in place is a new input. Hashes are cached
per (path, size, modification time, inode), so an unchanged file is read once per machine."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .records import write_json

# Not inputs of any run: model cards are rewritten by export and fine-tuning, hidden files are tools'.
_NOT_CONTENT = {"README.md"}
_memo: dict[tuple, str] = {}


def cache_root() -> Path:
    """Where derived files are cached (corpus windows keyed by these identities, content hashes, the
    dtype probe): $MINIALBERT_CACHE or ~/.cache/minialbert."""
    return Path(os.environ.get("MINIALBERT_CACHE", Path.home() / ".cache" / "minialbert"))


def _hash_cache() -> Path:
    return cache_root() / "content-hashes.json"


def _load_cache() -> dict:
    try:
        return json.loads(_hash_cache().read_text())
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached by (resolved path, size, mtime, inode)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    if key in _memo:
        return _memo[key]
    cache = _load_cache()
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        cache[key] = h.hexdigest()
        try:  # best effort: a lost update only costs a re-hash
            write_json(_hash_cache(), cache, indent=None)
        except OSError:
            pass
    _memo[key] = cache[key]
    return cache[key]


def content_files(path: Path) -> list[Path]:
    """The files whose bytes make a file or folder what it is (folders recursively, sorted; model
    cards and hidden files left out)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_CONTENT
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def content_hash(path) -> str:
    """sha256 over a file's bytes, or over a folder's (relative name, file hash) pairs."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in content_files(path):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def path_identity(name: str | None) -> str | None:
    """A local file or folder -> 'sha256:<hash of its content>'; anything else (a hub name, None)
    passes through as it is."""
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.exists():
        return name
    return "sha256:" + content_hash(path)


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
