"""The frozen teacher: loading a masked-LM of any family in minialbert/model/families.py, and its
forward pass for distillation."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoints import MODEL_ADVICE, loading_problem, resolve_model_name
from ..errors import MiniAlbertError
from ..hf_utils import quiet_transformers
from ..model.families import TeacherFamily, family_for, teacher_mlm_head

logger = logging.getLogger(__name__)


@dataclass
class Teacher:
    """A frozen teacher. `head` maps final hidden states to vocabulary logits; it is None when the
    checkpoint carries no trained MLM head (then the output loss is off)."""

    name: str
    model: nn.Module
    encoder: nn.Module
    head: nn.Module | None
    map_layers: tuple[int, ...] | None = None  # 1-based layers that return maps; None: every layer
    family: TeacherFamily | None = None        # where its parts live (None: found from its config)

    def __post_init__(self):
        if self.family is None:
            self.family = family_for(self.encoder.config)

    @property
    def config(self):
        return self.encoder.config

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    def maps_only_for(self, layers) -> bool:
        """Run the layers whose attention maps no loss reads through fused scaled-dot-product
        attention (no (B, heads, T, T) tensor; the same numbers up to fp32 rounding); `forward`
        then returns None for their maps. Needs BERT-style `encoder.layer[i].attention.self`
        modules (BERT's own attention code: BERT, RoBERTa, ELECTRA); returns False (nothing changed)
        for other families, whose layers may ignore the per-layer choice and return every map."""
        if self.family.name not in ("BERT", "RoBERTa", "ELECTRA"):
            return False
        blocks = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        if blocks is None or not all(hasattr(getattr(b, "attention", None), "self") for b in blocks):
            return False
        keep = sorted({int(x) for x in layers})
        for i, block in enumerate(blocks, start=1):
            attention = block.attention.self
            config = copy.copy(attention.config)  # per-layer choice: this layer's own config object
            config._attn_implementation = "eager" if i in keep else "sdpa"
            attention.config = config
        self.map_layers = tuple(keep)
        return True

    @torch.no_grad()  # not inference_mode: its tensors may not be saved for the student's backward
    def forward(self, input_ids, attention_mask, token_type_ids=None, masked=None, attentions=True):
        """Hidden states (embedding output first), attention maps (None for layers outside
        `map_layers`), and MLM logits at `masked` positions only (never the full (B, T, V) tensor)."""
        # families without token types (MPNet, DistilBERT, ...) take no token_type_ids argument
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None and self.family.token_type else {}
        with quiet_transformers():  # fused layers warn that they return no maps: intended
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                               output_attentions=attentions, **kwargs)
        logits = None
        if self.head is not None and masked is not None:
            logits = self.head(out.hidden_states[-1][masked])
        maps = out.attentions if attentions else None
        if maps is not None and self.map_layers is not None:  # transformers drops the fused layers' None
            full = [None] * self.num_layers
            for layer, m in zip(self.map_layers, maps):
                full[layer - 1] = m
            maps = tuple(full)
        return out.hidden_states, maps, logits


def mlm_head_module(model) -> nn.Module | None:
    """The one child of a *ForMaskedLM model that is not its base encoder (BERT's `cls`,
    RoBERTa's `lm_head`), or None when the head is spread over several modules."""
    others = [m for name, m in model.named_children() if m is not model.base_model]
    return others[0] if len(others) == 1 else None


def missing_head_keys(model, loading_info: dict) -> list[str]:
    """The weights outside the base encoder that a checkpoint lacked: a masked LM loaded from an
    encoder-only checkpoint (e.g. the packaged MiniLM) has an untrained head."""
    prefix = model.base_model_prefix + "."
    return sorted(k for k in loading_info.get("missing_keys", []) if not k.startswith(prefix))


def load_teacher(name: str, dtype=torch.float32, device="cpu", attentions=True) -> Teacher:
    """Load `name` (hub name, local path, or 'minilm' for the packaged offline teacher) as a frozen
    masked-LM teacher in eval mode. Its family (minialbert/model/families.py) says where its MLM head
    is; a model type the table does not know is refused in one paragraph."""
    from transformers import AutoModelForMaskedLM

    path = resolve_model_name(name)
    kwargs = dict(dtype=dtype, output_loading_info=True)
    if attentions:
        kwargs["attn_implementation"] = "eager"  # fused kernels do not return attention maps
    try:
        with quiet_transformers():  # we report a missing head ourselves, in one line
            model, info = AutoModelForMaskedLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise MiniAlbertError(f"Could not load the teacher {name!r} as a masked-LM model: {loading_problem(e)}. "
                              f"{MODEL_ADVICE}") from None
    model.eval().requires_grad_(False).to(device)
    family = family_for(model)
    missing_head = missing_head_keys(model, info)
    head = None
    if missing_head:
        logger.warning(
            "The teacher %s has no trained MLM head (missing %s); the output-distillation loss is "
            "turned off. Run `minialbert fit-head --teacher %s ...` to add a head and use it.",
            name, ", ".join(missing_head[:3]), name)
    else:
        head = teacher_mlm_head(model, family)
        if head is None:
            logger.warning("The %s teacher %s has no MLM head where minialbert/model/families.py expects it; the "
                           "output-distillation loss is turned off.", family.name, name)
    return Teacher(name=name, model=model, encoder=model.base_model, head=head, family=family)
