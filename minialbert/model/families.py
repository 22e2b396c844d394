"""Teacher families: where each encoder family keeps the parts a student is initialised from.

One small explicit table, read by every initialisation (embedding copy or SVD, the shared layer from
teacher layer k or the mean, relaxed deltas, plain-student layer copies), by the teacher's MLM head
and by `fit-head`. Written by hand because transformers names the same parts differently per family
(BERT's `attention.self.query` is DistilBERT's `attention.q_lin` and MPNet's `attention.attn.q`) and
offers no common accessor for them.

Paths of embeddings and layers are relative to the teacher's base model (`model.base_model`); head
paths are relative to the *ForMaskedLM model. None marks a part the family does not have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.activations import ACT2FN

from ..errors import MiniAlbertError

logger = logging.getLogger(__name__)


class UnknownFamilyError(MiniAlbertError):
    """A teacher whose model type the family table does not know."""


@dataclass(frozen=True)
class LayerLayout:
    """Where each of the student's shared-layer modules lives inside one teacher layer, keyed by the
    student's module path (MiniAlbertLayer): six linear maps and two LayerNorms."""
    query: str
    key: str
    value: str
    dense: str                 # attention output projection
    attention_norm: str        # LayerNorm after attention (post-LN)
    intermediate: str          # FFN in
    output: str                # FFN out
    output_norm: str           # LayerNorm after the FFN

    def by_student_path(self) -> dict[str, str]:
        return {"attention.query": self.query, "attention.key": self.key, "attention.value": self.value,
                "attention.dense": self.dense, "attention.LayerNorm": self.attention_norm,
                "ffn.intermediate": self.intermediate, "ffn.output": self.output, "ffn.LayerNorm": self.output_norm}


@dataclass(frozen=True)
class HeadLayout:
    """How a masked-LM head maps final hidden states to logits: decoder(norm(act(dense(h))))."""
    dense: str
    norm: str
    decoder: str
    activation: str | None = None  # a module path holding the activation; None: the config's hidden_act


@dataclass(frozen=True)
class TeacherFamily:
    name: str                                  # what log lines and records call it
    model_types: tuple[str, ...]               # transformers' config.model_type values
    word: str
    embedding_norm: str
    position: str | None = "embeddings.position_embeddings"
    token_type: str | None = "embeddings.token_type_embeddings"
    embedding_project: str | None = None       # E -> H linear map after the embedding LayerNorm (E < H)
    positions_from_padding: bool = False       # RoBERTa, MPNet: position ids start at pad_token_id + 1
    layers: str | None = "encoder.layer"       # the list of layers; None: they cannot become the student's
    relative_bias: str | None = None           # a relative position bias table shared by all layers (MPNet)
    layer: LayerLayout | None = None
    head: HeadLayout | None = None
    why_no_layer: str = ""
    config_names: dict = field(default_factory=dict)  # our name -> the family's config attribute

    def config_value(self, config, name: str, default=None):
        return getattr(config, self.config_names.get(name, name), default)


BERT_LAYER = LayerLayout("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                         "output.dense", "output.LayerNorm")
BERT_HEAD = HeadLayout("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                       "cls.predictions.decoder", "cls.predictions.transform.transform_act_fn")
ROBERTA_HEAD = HeadLayout("lm_head.dense", "lm_head.layer_norm", "lm_head.decoder")  # gelu, hard-coded

FAMILIES: tuple[TeacherFamily, ...] = (
    # BERT, BioBERT, PubMedBERT, the packaged MiniLM (a BERT encoder without a head)
    TeacherFamily("BERT", ("bert",), "embeddings.word_embeddings", "embeddings.LayerNorm",
                  layer=BERT_LAYER, head=BERT_HEAD),
    TeacherFamily("RoBERTa", ("roberta", "xlm-roberta", "camembert"), "embeddings.word_embeddings",
                  "embeddings.LayerNorm", positions_from_padding=True, layer=BERT_LAYER, head=ROBERTA_HEAD),
    TeacherFamily("MPNet", ("mpnet",), "embeddings.word_embeddings", "embeddings.LayerNorm", token_type=None,
                  positions_from_padding=True, relative_bias="encoder.relative_attention_bias",
                  layer=LayerLayout("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                                    "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"),
                  head=ROBERTA_HEAD),
    TeacherFamily("DistilBERT", ("distilbert",), "embeddings.word_embeddings", "embeddings.LayerNorm",
                  token_type=None, layers="transformer.layer",
                  layer=LayerLayout("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                                    "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"),
                  head=HeadLayout("vocab_transform", "vocab_layer_norm", "vocab_projector", "activation"),
                  config_names={"intermediate_size": "hidden_dim", "hidden_act": "activation"}),
    # ELECTRA's generator (ElectraForMaskedLM): E may be narrower than H, with embeddings_project; its
    # head maps H -> E (dense, act, LayerNorm) and E -> V.
    TeacherFamily("ELECTRA", ("electra",), "embeddings.word_embeddings", "embeddings.LayerNorm",
                  embedding_project="embeddings_project", layer=BERT_LAYER,
                  head=HeadLayout("generator_predictions.dense", "generator_predictions.LayerNorm",
                                  "generator_lm_head", "generator_predictions.activation")),
    TeacherFamily("DeBERTa-v2/v3", ("deberta-v2", "deberta"), "embeddings.word_embeddings", "embeddings.LayerNorm",
                  embedding_project="embeddings.embed_proj", layers=None, head=BERT_HEAD,
                  why_no_layer="its disentangled (content-to-position) attention has no counterpart in the "
                               "student's layer"),
    TeacherFamily("ModernBERT", ("modernbert",), "embeddings.tok_embeddings", "embeddings.norm", position=None,
                  token_type=None, layers=None, head=HeadLayout("head.dense", "head.norm", "decoder", "head.act"),
                  why_no_layer="its gated feed-forward and rotary attention have no counterpart in the student's layer",
                  config_names={"hidden_act": "hidden_activation", "layer_norm_eps": "norm_eps"}),
)


def known_model_types() -> list[str]:
    return sorted(t for f in FAMILIES for t in f.model_types)


def family_for(config_or_model) -> TeacherFamily:
    """The family of a teacher (its config or the model), by transformers' `model_type`."""
    config = getattr(config_or_model, "config", config_or_model)
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnknownFamilyError(
        f"The teacher's model type {model_type!r} is not in minialbert's table of teacher families (known: "
        f"{', '.join(known_model_types())}). Use a teacher of a known family, or add its layout to "
        "minialbert/model/families.py (where its embeddings, layers and MLM head live).")


def position_offset(family: TeacherFamily, config) -> int:
    """The first position id the teacher uses for a real token (RoBERTa and MPNet: pad + 1)."""
    return (getattr(config, "pad_token_id", 0) or 0) + 1 if family.positions_from_padding else 0


def config_position_offset(config) -> int:
    """position_offset for a config of any family (0 for a model type the table does not know)."""
    family = next((f for f in FAMILIES if getattr(config, "model_type", None) in f.model_types), None)
    return position_offset(family, config) if family is not None else 0


def _base(model) -> nn.Module:
    return getattr(model, "base_model", model)


def _part(module, path: str | None):
    return None if path is None else _find(module, path)


def _find(module, path: str):
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


@dataclass
class TeacherEmbeddings:
    """The teacher's embedding parts (None where the family, or this checkpoint, has none)."""
    word: nn.Embedding
    position: nn.Embedding | None
    token_type: nn.Embedding | None
    norm: nn.Module | None
    project: nn.Linear | None
    position_offset: int

    @property
    def width(self) -> int:
        return self.word.weight.shape[1]


def teacher_embeddings(model, family: TeacherFamily | None = None) -> TeacherEmbeddings:
    family = family or family_for(model)
    base = _base(model)
    word = _part(base, family.word)
    if word is None:
        raise MiniAlbertError(f"The {family.name} teacher {type(model).__name__} has no word embeddings at "
                              f"{family.word}; its layout differs from minialbert/model/families.py.")
    token_type = _part(base, family.token_type)
    if token_type is not None and token_type.weight.shape[0] == 0:
        token_type = None
    return TeacherEmbeddings(word, _part(base, family.position), token_type, _part(base, family.embedding_norm),
                             _part(base, family.embedding_project), position_offset(family, model.config))


def teacher_layers(model, family: TeacherFamily | None = None):
    """The teacher's list of layers, or None when they cannot become the student's."""
    family = family or family_for(model)
    return None if family.layers is None else _part(_base(model), family.layers)


def layer_part(layer: nn.Module, family: TeacherFamily, student_path: str) -> nn.Module:
    """The module of one teacher layer that the student's module `student_path` starts from."""
    return layer.get_submodule(family.layer.by_student_path()[student_path])


class TeacherMLMHead(nn.Module):
    """A family's masked-LM head as one module: logits = decoder(norm(act(dense(h)))). It refers to
    the teacher's own modules (registered here, so `.to()` and `requires_grad_` reach them)."""

    def __init__(self, dense: nn.Module, activation, norm: nn.Module, decoder: nn.Module):
        super().__init__()
        self.dense, self.norm, self.decoder = dense, norm, decoder
        self.activation = activation

    def forward(self, hidden_states):
        return self.decoder(self.norm(self.activation(self.dense(hidden_states))))


def teacher_mlm_head(model, family: TeacherFamily | None = None) -> TeacherMLMHead | None:
    """The *ForMaskedLM model's head per the table; None where the family or the checkpoint has none."""
    family = family or family_for(model)
    layout = family.head
    if layout is None:
        return None
    parts = [_find(model, p) for p in (layout.dense, layout.norm, layout.decoder)]
    if any(p is None for p in parts):
        return None
    act = _find(model, layout.activation) if layout.activation else None
    if act is None:
        name = family.config_value(model.config, "hidden_act", "gelu")
        act = ACT2FN[name] if isinstance(name, str) else name
    return TeacherMLMHead(parts[0], act, parts[1], parts[2])


def head_module_names(model, family: TeacherFamily | None = None) -> set[str]:
    """The top-level children of the *ForMaskedLM model that hold its head (what fit-head trains)."""
    family = family or family_for(model)
    if family.head is None:
        return set()
    return {p.split(".")[0] for p in (family.head.dense, family.head.norm, family.head.decoder)}


def teacher_geometry(config) -> dict:
    """What the student takes from its teacher's configuration, in the student's names."""
    family = family_for(config)
    offset = position_offset(family, config)
    H = config.hidden_size
    types = family.config_value(config, "type_vocab_size", 0) if family.token_type else 0
    eps = family.config_value(config, "layer_norm_eps", None)
    return {
        "family": family.name, "hidden_size": H, "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "intermediate_size": family.config_value(config, "intermediate_size", 4 * H),
        "hidden_act": family.config_value(config, "hidden_act", "gelu") or "gelu",
        "layer_norm_eps": 1e-12 if eps is None else eps,
        "max_position_embeddings": config.max_position_embeddings - offset, "position_offset": offset,
        "type_vocab_size": types or 0,
        "embedding_size": getattr(config, "embedding_size", None) or H,
        "pad_token_id": getattr(config, "pad_token_id", None),
        "bos_token_id": getattr(config, "bos_token_id", None),
        "eos_token_id": getattr(config, "eos_token_id", None),
    }


def copy_rows(dst: torch.Tensor, src: torch.Tensor, offset: int = 0) -> int:
    """dst[:n] <- src[offset:offset + n] (as many rows as both have); returns n."""
    n = min(dst.shape[0], src.shape[0] - offset)
    dst[:n].copy_(src[offset:offset + n])
    return n
