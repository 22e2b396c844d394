"""Adapter-only task files: the adapters and the task head (a few MB) plus a pointer to the frozen
base checkpoint, so many tasks can share one base, used by fine-tuning (which writes them) and by
serving and export (which read them).

    model = minialbert.load_adapter_model("OUT/runs/<run>/adapter")

The files have names of their own (`minialbert_adapter.json`, `minialbert_adapter.safetensors`).
They are not PEFT's `adapter_config.json` / `adapter_model.safetensors`: PEFT has no bottleneck
adapter on a block's input (docs/method.md section 1). AdapterHub's `adapters` has bottleneck
adapters (`BnConfig`), but places them after the attention and feed-forward outputs
(`mh_adapter`, `output_adapter`), where MiniALBERT has them on each block's input with a
LayerNorm of their own, and attaches one adapter per layer module, where MiniALBERT's one shared
layer needs a different adapter pair at each of its N iterations; so neither library can load
these weights, and a PEFT name would make the Hub and every PEFT-aware tool misread them. Folders
written under those names by earlier versions still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import MiniAlbertError
from ..records import read_json, write_json

ADAPTER_WEIGHTS = "minialbert_adapter.safetensors"
ADAPTER_CONFIG = "minialbert_adapter.json"
# earlier versions' names (PEFT's, without being PEFT files): read, never written
_LEGACY = ("adapter_config.json", "adapter_model.safetensors")


def is_adapter_task(folder) -> bool:
    """Whether `folder` holds an adapter-only task file (this version's names or the legacy ones)."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return True
    legacy = folder / _LEGACY[0]
    try:
        return legacy.is_file() and "peft_type" not in json.loads(legacy.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


_HEADS = {"sequence-classification": "AutoModelForSequenceClassification",
          "token-classification": "AutoModelForTokenClassification"}
HEADS = (*_HEADS, "bi-encoder")
FORMAT = "minialbert-adapter-task"


REWRITE_HINT = "Write the task file again with `minialbert finetune --adapter-tuning`, or fix the field by hand."


def _bad(folder, message: str) -> MiniAlbertError:
    return MiniAlbertError(f"{Path(folder) / ADAPTER_CONFIG}: {message} {REWRITE_HINT}")


@dataclass
class AdapterTaskConfig:
    """What an adapter-only task file says about itself, modelled on PEFT's `PeftConfig` (a dataclass
    with `from_pretrained` / `save_pretrained`, validated on load) but not one: PEFT's file name would
    make PEFT-aware tools misread these weights (see the module's docstring). Written as
    `minialbert_adapter.json`; folders of earlier versions (no version, no base hash, PEFT's file
    name) still load."""

    base_model: str                       # the frozen base: a folder (absolute path) or a hub name
    head: str                             # sequence-classification | token-classification | bi-encoder
    num_labels: int
    id2label: dict
    problem_type: str | None = None
    adapter_reduction_factor: int = 16
    task: str | None = None               # the task's name: "rte", "ner:NCBI-disease"; serving names the task so
    base_model_sha256: str | None = None  # content hash of the base's weight files: the base it was tuned on
    exit_iterations: list | None = None
    pooling: str | None = None            # bi-encoder tasks
    tensors: int = 0
    parameters: int = 0
    format: str = FORMAT
    format_version: int = 2               # 1: no version field, no base hash

    def validate(self, folder) -> "AdapterTaskConfig":
        """Each field's type and range; the error names the file and the field."""
        checks = [("base_model", isinstance(self.base_model, str) and self.base_model, "a folder or hub name"),
                  ("head", self.head in HEADS, f"one of {', '.join(HEADS)}"),
                  ("num_labels", isinstance(self.num_labels, int) and self.num_labels >= 1, "a positive integer"),
                  ("id2label", isinstance(self.id2label, dict) and len(self.id2label) == self.num_labels,
                   "a mapping with one name per label"),
                  ("task", self.task is None or isinstance(self.task, str), "a task name"),
                  ("base_model_sha256", self.base_model_sha256 is None or isinstance(self.base_model_sha256, str),
                   "a sha256 hex digest"),
                  ("exit_iterations", self.exit_iterations is None or isinstance(self.exit_iterations, list),
                   "a list of iterations"),
                  ("format_version", isinstance(self.format_version, int) and self.format_version <= 2,
                   "1 or 2 (a newer file needs a newer minialbert)")]
        for name, ok, what in checks:
            if not ok:
                raise _bad(folder, f"field {name!r} must be {what} (got {getattr(self, name)!r}).")
        return self

    @classmethod
    def from_pretrained(cls, folder) -> "AdapterTaskConfig":
        folder = Path(folder)
        if not is_adapter_task(folder):
            raise MiniAlbertError(f"{folder} has no {ADAPTER_CONFIG}; give a folder written by adapter tuning.")
        path = folder / ADAPTER_CONFIG if (folder / ADAPTER_CONFIG).is_file() else folder / _LEGACY[0]
        data = read_json(path, hint=REWRITE_HINT)
        if not isinstance(data, dict):
            raise _bad(folder, "not a JSON object.")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise _bad(folder, f"required field(s) {', '.join(missing)} missing.")
        data.setdefault("format_version", 1)
        return cls(**{k: v for k, v in data.items() if k in known}).validate(folder)

    def save_pretrained(self, folder) -> None:
        write_json(Path(folder) / ADAPTER_CONFIG, asdict(self))

    @property
    def labels(self) -> dict:
        id2label = {int(k): v for k, v in self.id2label.items()}
        return dict(num_labels=self.num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                    problem_type=self.problem_type)


def base_weights_sha256(base) -> str | None:
    """The content hash of a base model's weight files (what the adapters were tuned on; tokenizer
    files and cards do not count), or None for a hub name that is not on disk."""
    from ..checkpoints import resolve_model_name
    from ..fingerprint import content_hash

    folder = Path(resolve_model_name(base))
    if not folder.is_dir():
        return None
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not weights:
        return None
    return hashlib.sha256("".join(f"{p.name}:{content_hash(p)}\n" for p in weights).encode()).hexdigest()


def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().contiguous() for k, p in model.named_parameters() if p.requires_grad}


def save_adapter_task(model, out_dir, base_model: str, head: str, task: str | None = None,
                      pooling: str | None = None) -> Path:
    """Write the trainable (adapter + head) tensors, and the config with the pointer to the base and
    the hash of its weights."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = trainable_state_dict(model)
    save_file(state, str(out / ADAPTER_WEIGHTS))
    AdapterTaskConfig(
        base_model=base_model, head=head, num_labels=model.config.num_labels,
        id2label={str(k): v for k, v in model.config.id2label.items()}, problem_type=model.config.problem_type,
        adapter_reduction_factor=model.config.adapter_reduction_factor, task=task,
        base_model_sha256=base_weights_sha256(base_model), exit_iterations=model.config.exit_iterations,
        pooling=pooling, tensors=len(state), parameters=sum(t.numel() for t in state.values())).save_pretrained(out)
    return out


def read_adapter_task(task_dir) -> tuple[AdapterTaskConfig, dict[str, torch.Tensor]]:
    """The config and the tensors of an adapter-only task folder."""
    task_dir = Path(task_dir)
    config = AdapterTaskConfig.from_pretrained(task_dir)
    weights = task_dir / (ADAPTER_WEIGHTS if (task_dir / ADAPTER_CONFIG).is_file() else _LEGACY[1])
    try:
        return config, load_file(str(weights))
    except (OSError, ValueError, RuntimeError) as e:  # missing or damaged (e.g. a truncated copy)
        raise MiniAlbertError(f"{weights}: the adapter weights cannot be read ({e}); copy the task folder again, "
                              "or write it again with `minialbert finetune --adapter-tuning`.") from None


def check_base(config: AdapterTaskConfig, task_dir, base) -> None:
    """Refuse a base other than the one the adapters were tuned on (by the hash of its weights), as
    PEFT records `base_model_name_or_path` and its revision: adapters on another base of the same
    shape answer without error, and wrongly. Files of earlier versions carry no hash: not checked."""
    if config.base_model_sha256 is None:
        return
    found = base_weights_sha256(base)
    if found is not None and found != config.base_model_sha256:
        raise MiniAlbertError(
            f"{task_dir} was tuned on the base {config.base_model} (weights sha256 {config.base_model_sha256[:12]}…), "
            f"not on {base} (weights sha256 {found[:12]}…): the same shape, other weights, so its answers would be "
            f"wrong without any error. Give the base it was tuned on ({config.base_model}), or tune the task again "
            "on this base.")


def load_adapter_model(task_dir, base_model=None):
    """Rebuild a task model: the frozen base (from the pointer, or `base_model` to override it, which
    must hold the same weights) with fresh adapters if it had none, then the saved adapter and head
    tensors."""
    import transformers

    from ..checkpoints import resolve_model_name
    from ..hf_utils import quiet_transformers

    cfg, state = read_adapter_task(task_dir)
    base = base_model or cfg.base_model
    check_base(cfg, task_dir, base)
    labels = cfg.labels
    if cfg.head == "bi-encoder":
        from ..model.modeling_bi_encoder import BiEncoderForSequenceClassification

        labels["pooling"] = cfg.pooling
        model = BiEncoderForSequenceClassification.from_encoder(resolve_model_name(base),
                                                                exit_iterations=cfg.exit_iterations, **labels)
    else:
        auto = getattr(transformers, _HEADS[cfg.head])
        with quiet_transformers():
            model = auto.from_pretrained(resolve_model_name(base), exit_iterations=cfg.exit_iterations, **labels)
    model.prepare_adapter_tuning()
    missing = set(state) - set(dict(model.named_parameters()))
    if missing:
        raise MiniAlbertError(f"{task_dir}: tensors {sorted(missing)[:3]} do not fit the base model.")
    model.load_state_dict(state, strict=False)
    return model.eval()
