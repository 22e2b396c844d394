"""Parameter accounting used by `minialbert info` and the tests (docs/method.md parameter table)."""

from __future__ import annotations

from .configuration_minialbert import MiniAlbertConfig


def _count(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def adapter_parameter_count(config: MiniAlbertConfig) -> int:
    """Parameters of the 2N adapters a model has, or would get from prepare_adapter_tuning()."""
    H, b = config.hidden_size, config.hidden_size // config.adapter_reduction_factor
    one = (H * b + b) + (b * H + H) + 2 * H  # down, up, LayerNorm
    return 2 * config.num_hidden_layers * one


def parameter_breakdown(model) -> dict[str, int]:
    """Counts for a MiniALBERT model (base or with a head). `base` excludes any task head;
    `embeddings` includes the E->H projection when there is one."""
    base = model.base_model
    embeddings = _count(base.embeddings) + _count(base.projection)
    counts = {
        "base": _count(base),
        "embeddings": embeddings,
        "shared_layer": _count(base.encoder.layer),  # every layer group's, for g > 1
        "relaxation_deltas": _count(base.encoder.deltas),
        "adapters": _count(base.encoder.adapters),
        "adapter_tuning_trainable_without_head": adapter_parameter_count(base.config),
        "total_with_head": _count(model),
    }
    counts["task_head"] = counts["total_with_head"] - counts["base"]
    return counts
