"""Sentence embeddings from token states: the one pooling function of the project (bi-encoder heads,
`bench embed`, the sentence-embedding loss of distillation, serving)."""

from __future__ import annotations

import torch

from ..options import POOLINGS  # noqa: F401  (with the option definitions, light for the CLI)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str = "mean") -> torch.Tensor:
    """(B, T, H) states -> (B, H): the mean over real tokens (padding excluded; how the MiniLM teacher
    pools a sentence) or the first token. Computed in the states' dtype."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(1)
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # a row has at least one real token
