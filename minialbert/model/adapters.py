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

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import MiniAlbertError

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
    return legacy.is_file() and "peft_type" not in json.loads(legacy.read_text())
_HEADS = {"sequence-classification": "AutoModelForSequenceClassification",
          "token-classification": "AutoModelForTokenClassification"}


def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().contiguous() for k, p in model.named_parameters() if p.requires_grad}


def save_adapter_task(model, out_dir, base_model: str, head: str, extra: dict | None = None) -> Path:
    """Write the trainable (adapter + head) tensors and the pointer to the base."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = trainable_state_dict(model)
    save_file(state, str(out / ADAPTER_WEIGHTS))
    cfg = {"format": "minialbert-adapter-task", "base_model": base_model, "head": head, "num_labels": model.config.num_labels,
           "id2label": {str(k): v for k, v in model.config.id2label.items()},
           "problem_type": model.config.problem_type, "adapter_reduction_factor": model.config.adapter_reduction_factor,
           "exit_iterations": model.config.exit_iterations,
           "tensors": len(state), "parameters": sum(t.numel() for t in state.values()), **(extra or {})}
    (out / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2))
    return out


def read_adapter_task(task_dir) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the tensors of an adapter-only task folder."""
    task_dir = Path(task_dir)
    if not is_adapter_task(task_dir):
        raise MiniAlbertError(f"{task_dir} has no {ADAPTER_CONFIG}; give a folder written by adapter tuning.")
    config, weights = (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if (task_dir / ADAPTER_CONFIG).is_file() else _LEGACY
    return json.loads((task_dir / config).read_text()), load_file(str(task_dir / weights))


def load_adapter_model(task_dir, base_model=None):
    """Rebuild a task model: the frozen base (from the pointer, or `base_model` to override it) with
    fresh adapters if it had none, then the saved adapter and head tensors."""
    import transformers

    from ..hf_utils import quiet_transformers

    cfg, state = read_adapter_task(task_dir)
    id2label = {int(k): v for k, v in cfg["id2label"].items()}
    labels = dict(num_labels=cfg["num_labels"], id2label=id2label, label2id={v: k for k, v in id2label.items()},
                  problem_type=cfg["problem_type"])
    if cfg["head"] == "bi-encoder":
        from ..checkpoints import resolve_model_name
        from ..model.modeling_bi_encoder import BiEncoderForSequenceClassification

        labels["pooling"] = cfg["pooling"]
        model = BiEncoderForSequenceClassification.from_encoder(resolve_model_name(base_model or cfg["base_model"]),
                                                                exit_iterations=cfg.get("exit_iterations"), **labels)
    else:
        auto = getattr(transformers, _HEADS[cfg["head"]])
        with quiet_transformers():
            model = auto.from_pretrained(base_model or cfg["base_model"], exit_iterations=cfg.get("exit_iterations"),
                                         **labels)
    model.prepare_adapter_tuning()
    missing = set(state) - set(dict(model.named_parameters()))
    if missing:
        raise MiniAlbertError(f"{task_dir}: tensors {sorted(missing)[:3]} do not fit the base model.")
    model.load_state_dict(state, strict=False)
    return model.eval()
