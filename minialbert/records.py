"""Reading and writing the JSON files that runs write (results.json, per-run records,
distillation.json, log.jsonl). Reading: damage (a truncated copy, a missing field, a wrong type)
becomes one paragraph naming the file and the field, never a traceback deep inside whoever reads it
next. Writing: whole or not at all (a kill never leaves half a file).

Written by hand rather than with a schema library: the schemas are a few dotted field names with
Python types, and the message must say how to fix this project's files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .errors import MiniAlbertError

NUMBER = (int, float)

# What readers rely on in `finetune`'s files (the rest is informative).
RESULTS_FIELDS = {"task": str, "model": str, "adapter_tuning": bool, "score": NUMBER, "best": dict,
                  "base_parameters": int, "trainable_parameters": int}
RUN_RECORD_FIELDS = {"run_id": str, "task": str, "seed": int, "score": NUMBER, "metrics": dict,
                     "hyperparameters": dict, "hyperparameters.learning_rate": NUMBER,
                     "hyperparameters.batch_size": int, "identity": dict, "train_seconds": NUMBER,
                     "trainable_parameters": int, "total_parameters": int, "base_parameters": int}
DISTILLATION_FIELDS = {"steps": int, "recipe": dict, "teacher": str}


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true/false",
                        dict: "an object", list: "a list"}[t] for t in types)


def check_fields(data, fields: dict, where, hint: str = "") -> dict:
    """`data` must be an object holding every dotted field of `fields` with its type."""
    if not isinstance(data, dict):
        raise MiniAlbertError(f"{where}: expected a JSON object, found {type(data).__name__}. {hint}".strip())
    for name, types in fields.items():
        value = data
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                raise MiniAlbertError(f"{where}: the field {name!r} is missing. {hint}".strip())
            value = value[part]
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (bool not in wanted and isinstance(value, bool)):
            raise MiniAlbertError(f"{where}: the field {name!r} should be {_type_name(types)}, found "
                                  f"{json.dumps(value)[:60]}. {hint}".strip())
    return data


def read_json(path, fields: dict | None = None, hint: str = ""):
    """The JSON value in `path`, checked against `fields` (dotted name -> type) when given."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MiniAlbertError(f"{path} does not exist. {hint}".strip()) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MiniAlbertError(f"{path} is damaged: not readable JSON ({e}); it may have been cut short while "
                              f"being copied. {hint}".strip()) from None
    return check_fields(data, fields, path, hint) if fields else data


def read_jsonl(path, hint: str = "") -> list[dict]:
    """The objects of a JSON-lines file (blank lines skipped); a damaged line is named."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise MiniAlbertError(f"{path}, line {n} is damaged ({e}). {hint}".strip()) from None
        if not isinstance(row, dict):
            raise MiniAlbertError(f"{path}, line {n}: expected a JSON object. {hint}".strip())
        rows.append(row)
    return rows


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically: into a temporary file beside it, then renamed over it (a
    rename within one folder is atomic), so a kill leaves the old file or the new one, never half.
    The temporary name carries the process id: two processes writing one cache file never mix.
    (By hand: the standard library has no atomic write, and the one package for it is unmaintained.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    """`text` (UTF-8) in `path`, atomically (`write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int | None = 2, allow_nan: bool = True) -> None:
    """`obj` as JSON in `path`, atomically (`write_text`); allow_nan=False refuses a bare NaN, which
    is not valid JSON for other readers."""
    write_text(path, json.dumps(obj, indent=indent, allow_nan=allow_nan) + "\n")


def file_digest(path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file: what a copy must match to count as done."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Path(path).stat().st_size, digest.hexdigest()


def same_file(a, b) -> bool:
    """Whether `b` exists and holds the bytes of `a` (sizes first: the cheap test)."""
    a, b = Path(a), Path(b)
    if not b.is_file() or a.stat().st_size != b.stat().st_size:
        return False
    return file_digest(a) == file_digest(b)


def copy_file(source, target) -> bool:
    """Copy `source` to `target` atomically and verified: into a temporary name beside `target`,
    checked against the source (size and sha256), then renamed over it, so a copy cut by a kill is
    never taken for a finished one, and a damaged one already there (cut by an earlier kill) is
    repaired. Returns False when `target` already held the same bytes (nothing written)."""
    source, target = Path(source), Path(target)
    if same_file(source, target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        if file_digest(tmp) != file_digest(source):
            raise MiniAlbertError(f"Copying {source} to {target}: the copy differs from the source (size or "
                                  "sha256); the disk or the source changed while copying. Run the command again.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _files(folder: Path, ignore=()) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not set(p.relative_to(folder).parts) & set(ignore))


def same_tree(a, b, ignore=()) -> bool:
    """Whether folder `b` holds exactly the files of `a` (names, sizes and sha256), `ignore` aside."""
    a, b = Path(a), Path(b)
    if not b.is_dir() or _files(a, ignore) != _files(b, ignore):
        return False
    return all(same_file(a / f, b / f) for f in _files(a, ignore))


def copy_tree(source, target, ignore=()) -> bool:
    """Copy folder `source` to `target` whole or not at all: file by file (verified, `copy_file`)
    into a temporary folder beside it, then swapped in (`replace_dir`). A target that already holds
    the same files is left alone (returns False); a half copy left by a kill is replaced."""
    source, target = Path(source), Path(target)
    recover_dir(target)
    if same_tree(source, target, ignore):
        return False
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for f in _files(source, ignore):
            copy_file(source / f, tmp / f)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def aside_dir(target) -> Path:
    """Where `replace_dir` sets a folder's old version aside while the new one is renamed in: a name
    fixed by the target alone (no process id), so that whoever comes next finds what a kill left."""
    target = Path(target)
    return target.with_name(f".{target.name}.old")


def recover_dir(target) -> None:
    """Finish a `replace_dir` of `target` cut by a kill: killed between its two renames (the target
    missing, its old version aside), the old version is put back; killed after them (both there),
    the old version set aside is deleted. Called by replace_dir itself and by readers that need the
    target (a finished student, a transfer set) before they look."""
    target, aside = Path(target), aside_dir(target)
    if not aside.exists():
        return
    if target.exists():
        shutil.rmtree(aside, ignore_errors=True)
        return
    try:
        os.replace(aside, target)
    except FileNotFoundError:  # every process of a multi-process run recovers at start: one of them won
        if not target.exists():
            raise


def replace_dir(new, target) -> None:
    """Put folder `new` at `target` with no moment where neither exists on disk: the old folder is
    renamed aside (`aside_dir`), the new one renamed in, and only then the old one deleted (a folder
    cannot be renamed over a non-empty one). Should the second rename fail, the old folder is put
    back; should a kill cut it, the next replace_dir or reader of `target` repairs it (`recover_dir`)."""
    new, target = Path(new), Path(target)
    recover_dir(target)
    aside = aside_dir(target)
    had = target.exists()
    if had:
        os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        if had:
            os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


CHUNK_BATCHES = 64  # batches per kept chunk of resumable_chunks: a few minutes of work on one CPU thread


def resumable_chunks(n: int, size: int, compute, folder: Path | None, key: str, progress=None) -> list:
    """compute(start, end) over fixed chunks of `size` items of `n` ([0, size), [size, 2 size), ...),
    concatenated. With a `folder`, each chunk's result is written there as it ends (atomically,
    tagged with `key`, which names everything the results depend on) and read back by a rerun with
    the same key, so a run cut by a kill or a session's end loses at most one chunk; the boundaries
    do not depend on where a run starts, so a resumed result is the uncut one. compute returns a
    JSON-able list (exact for Python floats); `progress` (a tqdm bar counting items, which compute
    advances as it goes) is advanced here over the chunks read back."""
    out = []
    for c, start in enumerate(range(0, n, size)):
        path = folder / f"chunk-{c:05d}.json" if folder is not None else None
        kept = None
        if path is not None and path.is_file():
            try:
                found = json.loads(path.read_text())
                kept = found["items"] if found.get("key") == key else None
            except (OSError, ValueError, KeyError, TypeError):  # damaged: computed again
                kept = None
        if kept is not None and progress is not None:
            progress.update(min(start + size, n) - start)
        if kept is None:
            kept = compute(start, min(start + size, n))
            if path is not None:
                write_json(path, {"key": key, "items": kept}, indent=None)
        out.extend(kept)
    return out
