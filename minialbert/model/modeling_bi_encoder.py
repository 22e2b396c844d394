"""Siamese (bi-encoder) pair heads, for any Hugging Face encoder: each sentence of a pair is encoded
alone by the same encoder and pooled (Sentence-BERT, Reimers & Gurevych 2019).

Why: a student distilled layer to layer keeps its teacher's per-sentence representations, and a
cross-encoder head (`[CLS] a [SEP] b`) trained on a few thousand pairs throws them away; the
siamese head uses them as they are (docs/method.md section 5). Written here because transformers
has no pair head of this kind and sentence-transformers' training loop is not the Trainer's.

- regression (STS-B): the prediction is `scale * cos(u, v)`; the loss is MSE between `cos(u, v)` and
  `label / scale` (SBERT's cosine-similarity objective; scale 5 = the STS-B range).
- classification (MRPC, RTE, QQP, QNLI, MNLI, WNLI): softmax over a linear layer on
  `(u, v, |u - v|, u * v)`.

The model's config is the encoder's own config with `pair_encoding = "bi"`, `pooling` and
`similarity_scale` added, so a saved folder holds one config.json and one model.safetensors
(`encoder.*`, `classifier.*`) and reloads with `load_bi_encoder(folder)`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .pooling import POOLINGS, pool

def pair_logits(u: torch.Tensor, v: torch.Tensor, classifier: nn.Module | None, scale: float) -> torch.Tensor:
    """The pair head on two pooled embeddings: `scale * cos(u, v)` (regression, shape (B, 1)) or
    `classifier([u; v; |u - v|; u * v])`. Shared by the model and the multi-task server."""
    if classifier is None:
        return (scale * F.cosine_similarity(u.float(), v.float(), dim=-1)).unsqueeze(-1)
    return classifier(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))


class BiEncoderForSequenceClassification(PreTrainedModel):
    config_class = PreTrainedConfig
    base_model_prefix = "encoder"

    def __init__(self, config: PreTrainedConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        config.pair_encoding = "bi"
        config.pooling = getattr(config, "pooling", "mean")
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} (got {config.pooling!r}).")
        config.similarity_scale = float(getattr(config, "similarity_scale", 5.0))
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config)
        self.num_labels = config.num_labels
        H = config.hidden_size
        p = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)
        # regression needs no parameters: the score is the cosine similarity itself
        self.classifier = nn.Linear(4 * H, config.num_labels) if config.num_labels > 1 else None
        # elastic depth (MiniALBERT encoders): a pair classifier per extra exit, as the cross-encoder
        # heads have; a regression exit needs none (its score is the cosine at that depth)
        exits = getattr(config, "exit_iterations", None) or []
        N = getattr(config, "num_hidden_layers", None)
        self.exit_classifiers = nn.ModuleDict({str(i): nn.Linear(4 * H, config.num_labels) for i in exits
                                               if i != N and self.classifier is not None})
        for head in [self.classifier, *self.exit_classifiers.values()]:
            if head is not None:
                nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
                nn.init.zeros_(head.bias)
        self.post_init()

    def _init_weights(self, module):  # only modules missing from a checkpoint get here
        if isinstance(module, nn.Linear) and (module is self.classifier or any(
                module is m for m in getattr(self, "exit_classifiers", {}).values())):
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)

    def exit_head(self, iteration: int | None) -> nn.Module | None:
        """Exit `iteration`'s pair classifier (the final one where none was trained; None for regression)."""
        return self.exit_classifiers[str(iteration)] if str(iteration) in self.exit_classifiers else self.classifier

    @classmethod
    def from_encoder(cls, path: str, num_labels: int, pooling: str = "mean", **config_fields):
        """A new pair model on the encoder saved at `path` (a base model, a masked-LM checkpoint such
        as a distilled student, or any Hugging Face encoder); the head starts fresh."""
        from ..hf_utils import quiet_transformers

        config = AutoConfig.from_pretrained(path)
        config.num_labels, config.pooling = num_labels, pooling
        for k, v in config_fields.items():
            setattr(config, k, v)
        with quiet_transformers():  # a masked-LM checkpoint has an unused head: expected
            encoder = AutoModel.from_pretrained(path, config=config)
        return cls(config, encoder=encoder)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, num_iterations=None):
        """Pooled sentence embeddings (B, H); `num_iterations` for MiniALBERT's elastic depth."""
        extra = {"num_iterations": num_iterations} if num_iterations else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           **extra)
        return pool(out.last_hidden_state, attention_mask, self.config.pooling)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, input_ids_b=None,
                attention_mask_b=None, token_type_ids_b=None, labels=None, num_iterations=None, **kwargs):
        if input_ids_b is None:
            raise ValueError("A bi-encoder needs both sentences: input_ids (first) and input_ids_b (second).")
        exits = getattr(self.config, "exit_iterations", None)
        if exits and labels is not None:  # every exit trains: loss of exit i weighted by i
            return self._exit_forward(input_ids, attention_mask, token_type_ids, input_ids_b, attention_mask_b,
                                      token_type_ids_b, labels, exits)
        K = num_iterations or getattr(self.config, "inference_iterations", None)
        u = self.encode(input_ids, attention_mask, token_type_ids, K)
        v = self.encode(input_ids_b, attention_mask_b, token_type_ids_b, K)
        logits = self._head(u, v, K)
        return SequenceClassifierOutput(loss=None if labels is None else self._loss(logits, labels), logits=logits)

    def _head(self, u, v, iteration=None):
        head = self.exit_head(iteration)
        return pair_logits(u, v, None if head is None else nn.Sequential(self.dropout, head),
                           self.config.similarity_scale)

    def _loss(self, logits, labels):
        scale = self.config.similarity_scale
        if self.classifier is None:
            return F.mse_loss(logits.squeeze(-1) / scale, labels.float().view(-1) / scale)
        return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))

    def _exit_forward(self, ids, mask, types, ids_b, mask_b, types_b, labels, exits):
        """All iterations once per sentence; each exit's pair head on the pooled states at its depth."""
        def states(i, m, t):
            return self.encoder(input_ids=i, attention_mask=m, token_type_ids=t, output_hidden_states=True).hidden_states

        a, b = states(ids, mask, types), states(ids_b, mask_b, types_b)
        pooling = self.config.pooling
        logits = {i: self._head(pool(a[i], mask, pooling), pool(b[i], mask_b, pooling), i) for i in exits}
        loss = sum(i * self._loss(logits[i], labels) for i in exits) / sum(exits)
        return SequenceClassifierOutput(loss=loss, logits=logits[max(exits)])

    def prepare_adapter_tuning(self, adapter: str = "default") -> int:
        """Adapter tuning of a MiniALBERT encoder (as MiniAlbertPreTrainedModel.prepare_adapter_tuning):
        the adapter set `adapter` (fresh if absent) and the pair head train. Returns the trainable count."""
        if not hasattr(self.encoder, "add_adapter"):
            raise ValueError(f"adapter tuning needs a MiniALBERT encoder; this one is {type(self.encoder).__name__}.")
        if adapter not in self.encoder.encoder.adapter_names():
            self.encoder.add_adapter(adapter)
        self.encoder.set_adapter(adapter)
        for p in self.parameters():
            p.requires_grad = False
        trainable = [self.encoder.encoder.adapter_set(adapter), self.exit_classifiers] + (
            [self.classifier] if self.classifier is not None else [])
        for module in trainable:
            for p in module.parameters():
                p.requires_grad = True
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def is_bi_encoder(path) -> bool:
    """Whether the checkpoint folder at `path` holds a saved bi-encoder."""
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("pair_encoding") == "bi"


def load_bi_encoder(path) -> BiEncoderForSequenceClassification:
    """Reload a saved bi-encoder (its config.json is the encoder's, with the pair fields)."""
    return BiEncoderForSequenceClassification.from_pretrained(path, config=AutoConfig.from_pretrained(path))
