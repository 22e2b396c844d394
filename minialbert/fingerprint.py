"""Identities of runs: a short hash of everything that changes a run's numbers, so that a rerun
with other inputs can never be answered with results computed from different ones.

A run's identity is made of three things and nothing else (docs/method.md, "Run identity"):
- the bytes that reach the numbers: the files of its model, tokenizer, config and data, by content
  (sha256, folders recursively), never by where they lie or when they were written. Which files of a
  folder count is decided here only (`is_content`);
- its resolved options (`fields_identity`: every option field unless marked `identity: False`);
- `CODE_NUMBERS_VERSION`, the version of the code's numbers.
The library versions (torch, transformers) are recorded beside each result (`library_versions`),
not hashed: an upgrade that moves the sixth digit should not throw a study away.

File hashes are cached per machine, keyed by what a user cannot keep while changing the bytes (the
inode's change time, which every write and every `touch`/`utime` moves and nothing can set back),
and an entry is trusted only when the file had settled before it was hashed (git's "racily clean"
rule), so the cache can never answer with the hash of bytes that are no longer there."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path, PurePosixPath

from .records import write_json

# The version of the numbers this code computes. Bump it by hand (1 -> 2) in the commit that changes
# a number a run produces from the same inputs and options: what is read or selected from the data
# (e.g. which sentences --max-train-samples keeps), tokenisation or encoding, initialisation, losses,
# training order, metrics. Do not bump for refactors, messages, docs or speed. A bump gives every run a
# new identity: finished runs are rerun rather than reused (committed records can be carried over
# with scripts/studies/rekey.py only when their numbers still hold).
CODE_NUMBERS_VERSION = 1

# What a folder holds that is not an input of any run:
_NOT_CONTENT_NAMES = {
    "README.md",          # model cards, rewritten by export and fine-tuning
    "distillation.json",  # records our own commands write beside the weights (distill, fit-head): read
    "fit_head.json",      # only for model cards and reports, never for a number
    "log.jsonl",
}
_NOT_CONTENT_DIRS = {"__pycache__"}  # bytecode caches: a wheel install has them, a clone may not
_NOT_CONTENT_SUFFIXES = (".pyc", ".pyo")
# The code copy saved beside a MiniALBERT model's weights (for users without this package, who load it
# with trust_remote_code): every run of this project imports minialbert, whose own classes load the
# model, so the copy never runs and a docstring edit in it changes no number. Only MiniALBERT's own
# copies: another remote-code model's modeling_*.py is what builds that model, so it is content.
_GENERATED_CODE = frozenset({"modeling_minialbert.py", "configuration_minialbert.py"})

MAX_CACHED_HASHES = 20_000  # entries of the hash cache (the oldest go first)
# A file whose timestamps are not older than this before its hash was taken may still change within
# the same timestamp tick (coarse file-system clocks): its hash is used but not cached.
RACY_NS = 2_000_000_000


def cache_root() -> Path:
    """Where derived files are cached (corpus windows keyed by these identities, content hashes, the
    dtype probe): $MINIALBERT_CACHE or ~/.cache/minialbert."""
    return Path(os.environ.get("MINIALBERT_CACHE", Path.home() / ".cache" / "minialbert"))


def library_versions() -> dict:
    """The versions recorded beside every result (not part of any identity)."""
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def numbers_identity(fields: dict) -> dict:
    """`fields` (what a result depends on) with the code's numbers version: the one place it enters."""
    return {**fields, "code_numbers": CODE_NUMBERS_VERSION}


# --- which files are content ------------------------------------------------------------------------

def is_content(relative, folder: Path) -> bool:
    """Whether the file `folder/relative` is part of the folder's content: not hidden (tools' files,
    caches), not bytecode, not a model card or one of our records, not MiniALBERT's generated code
    copy beside a model's config.json (another model's remote code is content)."""
    parts = PurePosixPath(Path(relative).as_posix()).parts
    name = parts[-1]
    if any(p.startswith(".") or p in _NOT_CONTENT_DIRS for p in parts):
        return False
    if name in _NOT_CONTENT_NAMES or name.endswith(_NOT_CONTENT_SUFFIXES):
        return False
    return not (name in _GENERATED_CODE and (folder / relative).with_name("config.json").is_file())


def content_files(path: Path) -> list[Path]:
    """The files whose bytes make a file or folder what it is (folders recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and is_content(p.relative_to(path), path))


# --- the hash cache ---------------------------------------------------------------------------------

_cache: dict | None = None  # key -> [sha256, time_ns the hash was taken]; loaded once per process
_new: dict = {}  # entries added since the cache file was last written


def _hash_cache() -> Path:
    return cache_root() / "content-hashes.json"


def _read_cache_file() -> dict:
    try:
        entries = json.loads(_hash_cache().read_text()).get("entries", {})
    except (OSError, ValueError, AttributeError):  # none yet, damaged, or an older format
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, list) and len(v) == 2} if isinstance(entries, dict) else {}


def _entries() -> dict:
    global _cache
    if _cache is None:
        _cache = _read_cache_file()
    return _cache


def _key(path: Path, st: os.stat_result) -> str:
    # st_ctime_ns: set by the kernel on every change of bytes or timestamps; no call sets it back.
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}|{st.st_dev}"


def _settled(st: os.stat_result, at_ns: int) -> bool:
    """The file's last change lies clearly before `at_ns` (racily clean otherwise)."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < at_ns - RACY_NS


def _sha256_of_file(path: Path) -> str:
    h = hashlib.sha256()  # hashlib.file_digest needs Python 3.11; the project supports 3.10
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, from the cache when the file provably did not change since."""
    path = Path(path)
    st = path.stat()
    key = _key(path, st)
    entry = _entries().get(key)
    if entry is not None and _settled(st, entry[1]):
        return entry[0]
    started = time.time_ns()
    sha = _sha256_of_file(path)
    if _key(path, path.stat()) == key and _settled(st, started):  # unchanged while read, and settled before
        _entries()[key] = _new[key] = [sha, started]
    return sha


def save_hash_cache() -> None:
    """Write the entries added since the last write, merged with what other processes wrote, the
    newest MAX_CACHED_HASHES kept, atomically (records.write_json). Called once per content_hash."""
    global _cache
    if not _new:
        return
    merged = {**_read_cache_file(), **_new}
    if len(merged) > MAX_CACHED_HASHES:
        merged = dict(sorted(merged.items(), key=lambda kv: kv[1][1])[-MAX_CACHED_HASHES:])
    try:  # best effort: a lost write only costs a re-hash
        write_json(_hash_cache(), {"entries": merged}, indent=None)
    except OSError:
        pass
    _new.clear()
    _cache = merged


# --- identities -------------------------------------------------------------------------------------

def content_hash(path) -> str:
    """sha256 over a file's bytes, or over a folder's (relative name, file hash) pairs of its content."""
    path = Path(path)
    try:
        if path.is_file():
            return file_sha256(path)
        h = hashlib.sha256()
        for p in content_files(path):
            h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
        return h.hexdigest()
    finally:
        save_hash_cache()


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
