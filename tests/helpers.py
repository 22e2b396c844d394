import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"




def shared_path(*parts) -> Path:
    """A path under ../shared/. Absent: the test is skipped with a clear reason on a bare clone, but
    fails under CI (CI is set), which always has ../shared, so CI can never pass by skipping."""
    path = SHARED.joinpath(*parts)
    require(path.exists(), f"{path} is not present (the shared data folder sits beside the repository)")
    return path


def require(present: bool, reason: str) -> None:
    """What a test needs from the machine (shared data, an optional package that `make setup`
    installs): absent, the test is skipped with `reason` on a bare clone but fails under CI (CI is
    set), so CI can never pass by skipping."""
    if not present:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason}; under CI it must be there")
        pytest.skip(reason)


def tiny_config(**overrides):
    from minialbert import MiniAlbertConfig

    kw = dict(vocab_size=120, embedding_size=16, hidden_size=32, num_hidden_layers=3,
              num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
              adapter_reduction_factor=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kw.update(overrides)
    return MiniAlbertConfig(**kw)


def batch(vocab=120, B=3, T=12, pad_from=(None, 7, 4)):
    ids = torch.randint(1, vocab, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    for b, start in enumerate(pad_from[:B]):
        if start is not None:
            mask[b, start:] = 0
            ids[b, start:] = 0
    return ids, mask


def save_tiny_student(path, tokenizer: bool = True, **overrides) -> str:
    """A small MiniALBERT masked LM (H=64, bert-base-uncased vocabulary), saved with the packaged
    teacher's tokenizer unless `tokenizer=False`; returns the folder."""
    from transformers import AutoTokenizer

    from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM
    from minialbert.packaged import packaged_teacher_path

    kw = dict(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
              adapter_reduction_factor=16)
    kw.update(overrides)
    torch.manual_seed(0)
    MiniAlbertForMaskedLM(MiniAlbertConfig(**kw)).save_pretrained(path)
    if tokenizer:
        AutoTokenizer.from_pretrained(packaged_teacher_path()).save_pretrained(path)
    return str(path)
