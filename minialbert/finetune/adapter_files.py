"""Adapter-only task files: the adapters and the task head (a few MB) plus a pointer to the frozen
base checkpoint, so many tasks can share one base.

    model = minialbert.load_adapter_model("OUT/runs/<run>/adapter")
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import MiniAlbertError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
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
    cfg = {"base_model": base_model, "head": head, "num_labels": model.config.num_labels,
           "id2label": {str(k): v for k, v in model.config.id2label.items()},
           "problem_type": model.config.problem_type, "adapter_reduction_factor": model.config.adapter_reduction_factor,
           "exit_iterations": model.config.exit_iterations,
           "tensors": len(state), "parameters": sum(t.numel() for t in state.values()), **(extra or {})}
    (out / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2))
    return out


def read_adapter_task(task_dir) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and the tensors of an adapter-only task folder."""
    task_dir = Path(task_dir)
    if not (task_dir / ADAPTER_CONFIG).is_file():
        raise MiniAlbertError(f"{task_dir} has no {ADAPTER_CONFIG}; give a folder written by adapter tuning.")
    cfg = json.loads((task_dir / ADAPTER_CONFIG).read_text())
    return cfg, load_file(str(task_dir / ADAPTER_WEIGHTS))


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
        from ..data.offline import resolve_model_name
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
