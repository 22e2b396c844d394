"""Model folders and training checkpoints: resolving a model name to a folder, checking that a
saved folder is whole before it is loaded, and finding the checkpoint a run resumes from (a
checkpoint cut short by a crash or kill -9 is skipped and set aside, never deleted)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .errors import MiniAlbertError
from .packaged import (PACKAGED_TEACHER_ALIASES, packaged_teacher_path, released_student, split_zip_teacher,
                       split_zip_teacher_path)

logger = logging.getLogger(__name__)


MODEL_ADVICE = ("Give a local checkpoint folder, 'minilm' for the packaged teacher, 'minialbert-minilm' for the "
                "released student, or a hub name (which needs a network).")


def resolve_model_name(name: str) -> str:
    """Map the packaged-teacher aliases ('minilm'; 'mpnet' when its optional packages are installed,
    else a message naming the install command) and the names of released students to their folders;
    anything else passes through unchanged (a local path, or a hub name for users with a network).
    A hub name that is neither cached nor reachable fails here, at once, instead of after the hub
    client's retries (about 30 s)."""
    if name.lower() in PACKAGED_TEACHER_ALIASES:
        return str(packaged_teacher_path())
    if (optional := split_zip_teacher(name)) is not None and not Path(name).exists():
        return str(split_zip_teacher_path(optional))
    if not Path(name).exists() and (released := released_student(name)) is not None:
        return str(released)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise MiniAlbertError(f"The model folder {name} does not exist. {MODEL_ADVICE}")
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_folder(path)
    elif not path.exists():
        _require_hub_or_cache(name)
    return str(path) if name.startswith("~") else name


def _require_hub_or_cache(name: str) -> None:
    """`name` is no local path, so it is a hub name: it must be in the local hub cache, or the hub reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id (HFValidationError) either: transformers names the problem
        return
    if cached:
        return
    why = hub_unreachable(constants.ENDPOINT, constants.HF_HUB_OFFLINE)
    if why:
        raise MiniAlbertError(f"{name!r} is not a local folder, nor in the local Hugging Face cache, and the hub "
                              f"cannot be reached ({why}). {MODEL_ADVICE}")


_HUB_CHECKED: dict = {}


def hub_unreachable(endpoint: str, offline: bool, timeout: float = 3.0) -> str | None:
    """Why the hub at `endpoint` cannot be used (offline mode, or no TCP connection within `timeout`
    seconds), else None; asked once per process. A plain connect, not a request: the answer must come
    in seconds, where the hub client retries with back-off. Behind a proxy (HTTPS_PROXY/HTTP_PROXY, not
    bypassed by NO_PROXY) a direct connect says nothing about the hub, so there is no pre-check: the hub
    client, which uses the proxy, tries."""
    import urllib.request
    from urllib.parse import urlparse

    if offline:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(endpoint)
    proxies = urllib.request.getproxies()
    if (proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(url.hostname or ""):
        return None
    if endpoint not in _HUB_CHECKED:
        import socket

        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _HUB_CHECKED[endpoint] = None
        except OSError as e:
            _HUB_CHECKED[endpoint] = f"no connection to {endpoint}: {e.strerror or e}"
    return _HUB_CHECKED[endpoint]


def loading_problem(error: Exception) -> str:
    """The first line of a loading error, without transformers' own advice and trailing full stops
    (our message adds the advice that fits)."""
    text = str(error).strip().split("\n")[0].strip()
    return text.rstrip(".") or type(error).__name__


def read_config(name: str, path=None, role: str = ""):
    """The configuration of model `name` (at `path`, resolved from the name when not given), or one
    paragraph saying why it cannot be read. `role` names the model (e.g. "the teacher ")."""
    from transformers import AutoConfig

    path = path or resolve_model_name(name)  # a missing folder, damaged weights or no hub: said there
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not read the configuration of {role}{name!r}: {loading_problem(e)}. "
                              f"{MODEL_ADVICE}") from None


def check_max_length(name: str, max_length: int, role: str = "", config=None, position_offset: int = 0) -> None:
    """Inputs longer than the model's position table would crash mid-run: refuse them up front.
    `config`: the model's configuration when the caller has read it already; `position_offset`: the
    rows its position table spends before the first real position (RoBERTa and MPNet: pad + 1; the
    caller finds it in model/families.py, a layer above this one)."""
    config = config if config is not None else read_config(name, role=role)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        positions -= position_offset
    if positions and max_length > positions:
        raise MiniAlbertError(f"--max-length {max_length} exceeds the {positions} positions of {role}{name!r}; use "
                              f"--max-length {positions} or less.")


def check_model_folder(folder: Path) -> None:
    """A local checkpoint whose config.json does not parse or whose safetensors file is cut short
    (a copy or download that stopped) is named here, instead of failing deep inside loading."""
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


# --- training checkpoints (checkpoint-N folders written by the Trainer) ----------------------------

def checkpoint_step(path: Path) -> int | None:
    """N for a folder named checkpoint-N, None for anything else (e.g. a set-aside checkpoint-N.incomplete)."""
    prefix, _, step = path.name.partition("-")
    return int(step) if prefix == "checkpoint" and step.isdigit() else None


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why `ckpt` cannot be resumed from, or None. The Trainer writes trainer_state.json last, so a
    kill leaves it missing; a full disk or a copy cut short can still leave truncated weights."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    weights = sorted(ckpt.glob("*.safetensors"))
    if not weights:
        return "no model weights"
    for f in weights:
        problem = safetensors_problem(f)
        if problem:
            return f"{f.name} is damaged ({problem})"
    for name in ("optimizer.pt", "scheduler.pt"):
        if (ckpt / name).exists() and (ckpt / name).stat().st_size == 0:
            return f"{name} is empty"
    return None


def latest_complete_checkpoint(folder: Path) -> Path | None:
    """Newest checkpoint-N that is whole (see checkpoint_problem). A checkpoint cut short by a
    crash or kill -9, or damaged later, is skipped with a warning naming it, never resumed from."""
    if not folder.is_dir():
        return None
    numbered = sorted((s, c) for c in folder.iterdir() if (s := checkpoint_step(c)) is not None)
    for _, ckpt in reversed(numbered):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        logger.warning("Skipping %s: %s.", ckpt, problem)
    return None


def set_aside_incomplete(folder: Path, keep: Path | None) -> None:
    """Rename checkpoints newer than the resume point to checkpoint-N.incomplete[.K] (never
    deleted: a person may still want to look at them)."""
    keep_step = checkpoint_step(keep) if keep else -1
    for ckpt in list(folder.iterdir()):
        step = checkpoint_step(ckpt)
        if step is not None and step > keep_step:
            target, k = ckpt.with_name(ckpt.name + ".incomplete"), 1
            while target.exists():
                target, k = ckpt.with_name(f"{ckpt.name}.incomplete.{k}"), k + 1
            ckpt.rename(target)
            logger.warning("Set aside %s as %s (incomplete, damaged or newer than the resume point).",
                           ckpt, target.name)
