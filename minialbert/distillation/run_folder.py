"""A distillation run's folder: whether a new run may start in it, and whether an earlier run there
may be resumed or reused (the same settings, the same code-numbers version), apart from the Trainer
code that fills it."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from ..errors import MiniAlbertError
from ..records import DISTILLATION_FIELDS, read_json
from ..runtime import resolve_dtype
from .recipe import DistillRecipe

logger = logging.getLogger(__name__)


# What a distillation run writes into its folder; any of them present means an earlier run lives there.
CODE_NUMBERS_FILE = "code_numbers.json"
RUN_FILES = ("final", "checkpoints", "log.jsonl", "recipe.yaml", CODE_NUMBERS_FILE, "tensorboard", "final.tmp")


def claim_run_folder(out: Path, overwrite: bool) -> None:
    """The run folder's contract: a new run starts only in a folder that holds no earlier run. A
    finished student, its log or its checkpoints are never replaced unless the user says so
    (`--overwrite`, which removes exactly the files a run writes); `--resume` continues instead."""
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if not earlier:
        return
    if not overwrite:
        raise MiniAlbertError(
            f"{out} already holds a distillation run ({', '.join(earlier)}). Nothing was changed. Pass --resume "
            "to continue it (a finished run is left as it is), --overwrite to delete it and start afresh, or "
            "choose another --out.")
    logger.warning("--overwrite: deleting the earlier run in %s (%s).", out, ", ".join(earlier))
    for name in earlier:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def recipe_differences(before: dict, now: DistillRecipe, ignore=()) -> list[str]:
    """'field: before -> now' for every field of `now` (its dtype resolved, as runs store it) that
    differs from the stored recipe `before`, except those in `ignore`. A stored dtype 'auto' (folders
    of earlier versions, which stored it unresolved) is what 'auto' resolves to here, so a resume with
    another explicit --dtype is refused."""
    now = dataclasses.replace(now, dtype=resolve_dtype(now.dtype)).to_dict()
    before = dict(before, dtype=resolve_dtype("auto")) if before.get("dtype") == "auto" else before
    return [f"{k}: {before.get(k, now[k])!r} -> {now[k]!r}" for k in sorted(now)
            if k not in ignore and before.get(k, now[k]) != now[k]]


def recorded_code_numbers(out: Path) -> dict:
    """{file: code-numbers version} of what an earlier run in `out` recorded: OUT/code_numbers.json
    (written as a run starts) and final/distillation.json. A file without the field (folders made
    before the version was recorded, the released student's included) counts as version 1: the
    numbers of that code are version 1 (fingerprint.CODE_NUMBERS_VERSION's first value)."""
    found = {}
    for path in (out / CODE_NUMBERS_FILE, out / "final" / "distillation.json"):
        if path.exists():
            found[path] = read_json(path, hint=f"Delete {path} only if you know which code made the run.").get(
                "code_numbers", 1)
    return found


def check_same_code_numbers(out: Path) -> None:
    """An earlier run in `out` made by code whose numbers differ is neither reused nor continued."""
    from ..fingerprint import CODE_NUMBERS_VERSION

    other = {str(path): v for path, v in recorded_code_numbers(out).items() if v != CODE_NUMBERS_VERSION}
    if other:
        raise MiniAlbertError(
            f"--resume: {out} was distilled by code whose numbers are version "
            f"{', '.join(sorted({str(v) for v in other.values()}))} ({', '.join(other)}); this code computes version "
            f"{CODE_NUMBERS_VERSION} (minialbert.fingerprint.CODE_NUMBERS_VERSION), so its student or checkpoints "
            "would mix two codes' numbers. Distil into another --out, or pass --overwrite instead of --resume "
            "to start it afresh.")


def check_resumable_with(recipe: DistillRecipe, out: Path) -> None:
    check_same_code_numbers(out)
    saved = out / "recipe.yaml"
    if not saved.exists():
        return
    import yaml

    changed = recipe_differences(yaml.safe_load(saved.read_text()) or {}, recipe, DistillRecipe.resumable_names())
    if changed:
        raise MiniAlbertError(f"--resume: {out} was distilled with other settings ({', '.join(changed)}); resume "
                              f"with the settings in {saved} (--dtype included: it is stored resolved, so a run "
                              "never switches precision midway), or distil into another --out.")


def code_and_versions() -> dict:
    """The code's numbers version and the library versions, recorded in distillation.json."""
    from ..fingerprint import CODE_NUMBERS_VERSION, library_versions

    return {"code_numbers": CODE_NUMBERS_VERSION, "versions": library_versions()}


def finished_summary(recipe: DistillRecipe, out: Path) -> dict | None:
    """The summary of a run in `out` that already reached `recipe.max_steps`, else None."""
    info = out / "final" / "distillation.json"
    if recipe.max_steps is None or not info.exists():
        return None
    summary = read_json(info, DISTILLATION_FIELDS, f"Delete {out / 'final'} to rebuild it from the last checkpoint.")
    check_same_code_numbers(out)  # a student of other code's numbers is never taken for this one
    return summary if summary["steps"] >= recipe.max_steps else None
