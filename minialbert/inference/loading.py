"""Loading models for inference, export and the benchmarks: checkpoints, adapter task folders,
presets and random-weight BERT shapes; elastic depth; example inputs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoints import MODEL_ADVICE, loading_problem, resolve_model_name
from ..errors import MiniAlbertError
from ..hf_utils import quiet_transformers
from ..model import PRESETS, MiniAlbertModel, preset_config

# Randomly initialised reference shapes (no download): the teacher, and a BERT of equal depth.
BERT_SHAPES = {"bert-base": {}, "bert-6layer": {"num_hidden_layers": 6}}


def build_model(name: str):
    from transformers import AutoModel, BertConfig, BertModel

    if name in PRESETS:
        return MiniAlbertModel(preset_config(name))
    if name in BERT_SHAPES:
        return BertModel(BertConfig(**BERT_SHAPES[name]), add_pooling_layer=False)

    with quiet_transformers():
        return AutoModel.from_pretrained(resolve_model_name(name))


def load_model(name: str) -> nn.Module:
    """A checkpoint folder (any architecture in its config.json: base, masked-LM or task head), an
    adapter-only task folder (base + adapters + head), a preset or a BERT shape of `bench infer`
    (random weights), or a hub name."""
    if name in PRESETS or name in BERT_SHAPES:
        return build_model(name)
    path = Path(resolve_model_name(name))
    from ..model.adapters import is_adapter_task, load_adapter_model

    if is_adapter_task(path):
        return load_adapter_model(path)
    from ..model.modeling_bi_encoder import is_bi_encoder, load_bi_encoder

    if is_bi_encoder(path):
        with quiet_transformers():
            return load_bi_encoder(path)
    import transformers
    from transformers import AutoConfig, AutoModel

    from .. import model as minialbert_models

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not read the configuration of {name!r}: {loading_problem(e)}. {MODEL_ADVICE}") from None
    arch = (config.architectures or [""])[0]
    cls = getattr(minialbert_models, arch, None) or getattr(transformers, arch, None)
    with quiet_transformers():
        return (cls or AutoModel).from_pretrained(path)


def set_depth(model, iterations: int | None, *, required: bool = False) -> int | None:
    """Elastic depth: a MiniALBERT model runs (and exports) only its first K iterations and answers
    with exit K; other architectures run whole, or are refused with `required`. The one place that
    sets `config.inference_iterations`. Returns the depth the model will run (None: not MiniALBERT)."""
    config = model.config
    N = getattr(config, "num_hidden_layers", None)
    if getattr(config, "model_type", None) != "minialbert":
        if required and iterations is not None:
            raise MiniAlbertError(f"--iterations {iterations}: needs a MiniALBERT model (one shared layer, any "
                                  f"depth); this is {type(model).__name__}.")
        return None
    if iterations is not None:
        if not 1 <= iterations <= N:
            raise MiniAlbertError(f"--iterations {iterations} must lie in 1..{N}.")
        config.inference_iterations = iterations
    return config.inference_iterations or N


def example_inputs(batch: int, seq: int, vocab_size: int, seed: int = 0, pad_last: int = 0,
                   pair: bool = False) -> dict:
    """Random token ids; the first sequence padded at its last `pad_last` positions. With `pair`
    (a bi-encoder), a second sentence batch `*_b`, 5 tokens longer than the first."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, vocab_size // 2), min(vocab_size, 20000), (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    if pad_last:
        mask[0, -pad_last:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if pair:
        second = example_inputs(batch, seq + 5, vocab_size, seed + 1, pad_last)
        inputs.update({f"{k}_b": v for k, v in second.items()})
    return inputs


def is_pair_model(model) -> bool:
    """A bi-encoder: two sentence inputs (`*_b` for the second)."""
    return getattr(model.config, "pair_encoding", None) == "bi"
