"""Import checkpoints saved by the authors' reference implementation (nlpie/miniALBERT-*).

Their layout wraps transformers' AlbertModel: an `albert`-type config.json with extra fields
`use_adapter`, `reduction_factor`, `embedding_size`, and keys such as
`albert.albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight`,
`albert.att_adapters.3.block.0.weight` (block = Linear, GELU, Linear), `albert.projector.weight`
and a DistilBERT-style MLM head `vocab_transform`, `vocab_layer_norm`, `vocab_projector`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import MiniAlbertError
from .configuration_minialbert import MiniAlbertConfig
from .modeling_minialbert import MiniAlbertForMaskedLM


class ReferenceImportError(MiniAlbertError):
    pass


_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0."
_RULES = [  # (reference key pattern after the outer prefix, MiniALBERT key)
    (r"albert\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings|LayerNorm)\.(.+)",
     r"minialbert.embeddings.\1.\2"),
    (re.escape(_LAYER) + r"attention\.(query|key|value|dense|LayerNorm)\.(.+)",
     r"minialbert.encoder.layer.attention.\1.\2"),
    (re.escape(_LAYER) + r"ffn\.(weight|bias)", r"minialbert.encoder.layer.ffn.intermediate.\1"),
    (re.escape(_LAYER) + r"ffn_output\.(weight|bias)", r"minialbert.encoder.layer.ffn.output.\1"),
    (re.escape(_LAYER) + r"full_layer_layer_norm\.(weight|bias)", r"minialbert.encoder.layer.ffn.LayerNorm.\1"),
    (r"att_adapters\.(\d+)\.block\.0\.(.+)", r"minialbert.encoder.adapters.attention.\1.down.\2"),
    (r"att_adapters\.(\d+)\.block\.2\.(.+)", r"minialbert.encoder.adapters.attention.\1.up.\2"),
    (r"att_adapters\.(\d+)\.norm\.(.+)", r"minialbert.encoder.adapters.attention.\1.LayerNorm.\2"),
    (r"mlp_adapters\.(\d+)\.block\.0\.(.+)", r"minialbert.encoder.adapters.ffn.\1.down.\2"),
    (r"mlp_adapters\.(\d+)\.block\.2\.(.+)", r"minialbert.encoder.adapters.ffn.\1.up.\2"),
    (r"mlp_adapters\.(\d+)\.norm\.(.+)", r"minialbert.encoder.adapters.ffn.\1.LayerNorm.\2"),
    (r"projector\.(weight|bias)", r"minialbert.projection.\1"),
]
_HEAD_RULES = [
    (r"vocab_transform\.(.+)", r"lm_head.dense.\1"),
    (r"vocab_layer_norm\.(.+)", r"lm_head.LayerNorm.\1"),
    (r"vocab_projector\.(.+)", r"lm_head.decoder.\1"),
]
_IGNORED = re.compile(r"(albert\.pooler\.|embeddings\.position_ids|embedding_hidden_mapping_in)")


def config_from_reference(ref: dict) -> MiniAlbertConfig:
    """Translate the reference's ALBERT config (+ use_adapter, reduction_factor) to ours."""
    try:
        return MiniAlbertConfig(
            vocab_size=ref["vocab_size"], embedding_size=ref["embedding_size"],
            hidden_size=ref["hidden_size"], num_hidden_layers=ref["num_hidden_layers"],
            num_attention_heads=ref["num_attention_heads"], intermediate_size=ref["intermediate_size"],
            hidden_act=ref.get("hidden_act", "gelu"),
            hidden_dropout_prob=ref.get("hidden_dropout_prob", 0.1),
            attention_probs_dropout_prob=ref.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=ref.get("max_position_embeddings", 512),
            type_vocab_size=ref.get("type_vocab_size", 2), layer_norm_eps=ref.get("layer_norm_eps", 1e-12),
            initializer_range=ref.get("initializer_range", 0.02),
            use_adapters=bool(ref.get("use_adapter", False)),
            adapter_reduction_factor=ref.get("reduction_factor", 16),
            pad_token_id=ref.get("pad_token_id", 0) or 0,
        )
    except KeyError as e:
        raise ReferenceImportError(f"config.json lacks the field {e.args[0]!r} that a reference "
                                   "MiniALBERT config always has.") from None


def convert_state_dict(ref_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename reference keys to MiniALBERT keys. Both MaskedLM (`albert.albert.*`) and base
    (`albert.*`) checkpoints are accepted."""
    outer = "albert." if any(k.startswith("albert.albert.") for k in ref_state) else ""
    out, unknown = {}, []
    for key, tensor in ref_state.items():
        if _IGNORED.search(key):
            continue
        inner = key[len(outer):] if key.startswith(outer) else key
        for pattern, repl in _RULES + _HEAD_RULES:
            if re.fullmatch(pattern, inner):
                out[re.sub(pattern, repl, inner)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ReferenceImportError(
            f"{len(unknown)} tensors are not in the reference MiniALBERT layout, e.g. {unknown[:3]}.")
    return out


def _load_reference_state(src: Path) -> dict[str, torch.Tensor]:
    if (src / "model.safetensors").exists():
        from safetensors.torch import load_file
        return load_file(str(src / "model.safetensors"))
    if (src / "pytorch_model.bin").exists():
        return torch.load(src / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ReferenceImportError(f"{src} has neither model.safetensors nor pytorch_model.bin.")


def import_reference_checkpoint(src_dir, out_dir=None) -> MiniAlbertForMaskedLM:
    """Load a reference checkpoint directory into MiniAlbertForMaskedLM (saving it when out_dir is
    given, with any tokenizer files found beside it)."""
    src = Path(src_dir)
    if not (src / "config.json").is_file():
        raise ReferenceImportError(f"{src} has no config.json; give the folder of a reference checkpoint.")
    ref_cfg = json.loads((src / "config.json").read_text())
    config = config_from_reference(ref_cfg)
    state = convert_state_dict(_load_reference_state(src))
    has_head = any(k.startswith("lm_head.") for k in state)
    model = MiniAlbertForMaskedLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if has_head or not k.startswith("lm_head.")]
    if missing or unexpected:
        raise ReferenceImportError(f"Checkpoint does not fit the config: missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}.")
    if out_dir is not None:
        model.save_pretrained(out_dir)
        try:
            from transformers import AutoTokenizer
            AutoTokenizer.from_pretrained(str(src)).save_pretrained(out_dir)
        except Exception:  # a reference folder without tokenizer files is still importable
            pass
    return model
