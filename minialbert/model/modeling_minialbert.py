"""The MiniALBERT recursive student (docs/method.md section 1), as Hugging Face `PreTrainedModel`s.

Written by hand because no library has it: ONE post-LN transformer layer applied N times, with
per-iteration bottleneck adapters composed as the authors' reference implementation does,
    h_i = FFN( BA_i^f( MHA( BA_i^a(h_{i-1}) ) ) ),
an optional factorised embedding (E -> H projection), and the per-iteration outputs
(hidden states, post-softmax attention maps) that layer-to-layer distillation needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_minialbert import MiniAlbertConfig


class MiniAlbertEmbeddings(nn.Module):
    """Word + position + token-type tables of width E, LayerNorm and dropout."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        seq_len = input_ids.shape[1]
        positions = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        e = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(e))


class MiniAlbertAttention(nn.Module):
    """MHA(x) = LayerNorm(x + Dropout(W_o · MultiHeadSelfAttention(x))).

    Uses PyTorch's fused scaled-dot-product attention unless the attention maps are requested
    (distillation, plotting); then an explicit softmax returns the post-softmax maps.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = H // self.num_heads
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.attention_dropout_p = config.attention_probs_dropout_prob
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)

    def _split_heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, key_mask, output_attentions: bool = False):
        """key_mask: bool (B, 1, 1, T), True where a key may be attended to (or None)."""
        q = self._split_heads(self.query(hidden_states))
        k = self._split_heads(self.key(hidden_states))
        v = self._split_heads(self.value(hidden_states))
        dropout_p = self.attention_dropout_p if self.training else 0.0
        probs = None
        if output_attentions:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            context = F.dropout(probs, p=dropout_p, training=self.training) @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)
        B, _, T, _ = context.shape
        context = context.transpose(1, 2).reshape(B, T, -1)
        out = self.LayerNorm(hidden_states + self.output_dropout(self.dense(context)))
        return out, probs


class MiniAlbertFeedForward(nn.Module):
    """FFN(x) = LayerNorm(x + Dropout(W_2 · act(W_1 x)))."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(x + self.dropout(self.output(self.activation(self.intermediate(x)))))


class MiniAlbertLayer(nn.Module):
    """The one shared post-LN transformer layer (attention block, then feed-forward block)."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.attention = MiniAlbertAttention(config)
        self.ffn = MiniAlbertFeedForward(config)


class BottleneckAdapter(nn.Module):
    """BA(x) = LayerNorm(x + W_up · GELU(W_down x)), bottleneck width H / r (docs/method.md section 1)."""

    def __init__(self, hidden_size: int, reduction_factor: int, eps: float = 1e-12):
        super().__init__()
        self.down = nn.Linear(hidden_size, hidden_size // reduction_factor)
        self.up = nn.Linear(hidden_size // reduction_factor, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x):
        return self.LayerNorm(x + self.up(F.gelu(self.down(x))))


class MiniAlbertAdapters(nn.Module):
    """The parameter-efficient part: one (attention, ffn) adapter pair per iteration, not shared."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        make = lambda: BottleneckAdapter(config.hidden_size, config.adapter_reduction_factor,
                                         config.layer_norm_eps)
        self.attention = nn.ModuleList(make() for _ in range(config.num_hidden_layers))
        self.ffn = nn.ModuleList(make() for _ in range(config.num_hidden_layers))


class MiniAlbertEncoder(nn.Module):
    """Applies the shared layer N times; adapters, when present, wrap each block's input.

    `adapters` are the checkpoint's own. More adapter sets can live beside them by name
    (`named_adapters`, PEFT-style: e.g. one per task over one frozen base); a call picks one with
    `adapter=NAME`, or `active_adapter` names the default. Choosing per call, instead of swapping a
    module attribute, keeps concurrent requests for different tasks apart."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.config = config
        self.layer = MiniAlbertLayer(config)
        self.adapters = MiniAlbertAdapters(config) if config.use_adapters else None
        self.named_adapters = nn.ModuleDict()
        self.active_adapter: str | None = None  # None: the checkpoint's own adapters

    def adapter_set(self, name: str | None = None) -> MiniAlbertAdapters | None:
        """The adapters a call uses: `name`, else the active one, else the checkpoint's own."""
        name = self.active_adapter if name is None else name
        if name is None:
            return self.adapters
        if name not in self.named_adapters:
            raise KeyError(f"no adapter named {name!r}; added: {', '.join(self.named_adapters) or 'none'}")
        return self.named_adapters[name]

    def step(self, i: int, hidden_states, key_mask, output_attentions=False, adapters=None):
        """Iteration i (0-based): the shared layer with iteration i's adapters (`adapters`, or the
        checkpoint's own)."""
        adapters = self.adapters if adapters is None else adapters
        if adapters is not None:
            hidden_states = adapters.attention[i](hidden_states)
        hidden_states, probs = self.layer.attention(hidden_states, key_mask, output_attentions)
        if adapters is not None:
            hidden_states = adapters.ffn[i](hidden_states)
        return self.layer.ffn(hidden_states), probs

    def forward(self, hidden_states, key_mask, output_attentions=False, output_hidden_states=False,
                num_iterations: int | None = None, adapter: str | None = None):
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        adapters = self.adapter_set(adapter)
        for i in range(num_iterations or self.config.num_hidden_layers):
            hidden_states, probs = self.step(i, hidden_states, key_mask, output_attentions, adapters)
            if output_hidden_states:
                all_hidden.append(hidden_states)
            if output_attentions:
                all_attn.append(probs)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )


class MiniAlbertPreTrainedModel(PreTrainedModel):
    config_class = MiniAlbertConfig
    base_model_prefix = "minialbert"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        """BERT-style init: normal(0, initializer_range) weights, zero biases, unit LayerNorm."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def prepare_adapter_tuning(self) -> int:
        """Adapter tuning (docs/method.md section 4): add fresh adapters if there are none, freeze the
        embeddings, the projection and the shared layer; adapters and any task head stay
        trainable. Returns the number of trainable parameters."""
        base: MiniAlbertModel = self.base_model
        if base.encoder.adapters is None:
            base.add_adapters()
        for p in self.parameters():
            p.requires_grad = False
        for p in base.encoder.adapters.parameters():
            p.requires_grad = True
        for name, child in self.named_children():
            if child is not base:  # the task head
                for p in child.parameters():
                    p.requires_grad = True
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _key_mask(attention_mask):
    """(B, T) 0/1 padding mask -> bool (B, 1, 1, T) key mask (None stays None).

    An all-ones mask is kept rather than dropped: checking it would be a data-dependent branch that
    breaks torch.export/torch.compile graphs, and CPU SDPA measured the same speed either way."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


class MiniAlbertModel(MiniAlbertPreTrainedModel):
    """Embeddings (+ optional E->H projection) and the recursive encoder. No pooler: the paper's
    parameter counts leave it out and the heads read the first token's state directly."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.embeddings = MiniAlbertEmbeddings(config)
        self.projection = (nn.Linear(config.embedding_size, config.hidden_size)
                           if config.factorized_embeddings else None)
        self.encoder = MiniAlbertEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def add_adapters(self) -> None:
        """Attach freshly initialised adapters (the paper's '*' case: distilled without them)."""
        self.config.use_adapters = True
        adapters = MiniAlbertAdapters(self.config).to(self.embeddings.word_embeddings.weight.device)
        adapters.apply(self._init_weights)
        self.encoder.adapters = adapters

    def add_adapter(self, name: str, adapters: MiniAlbertAdapters | None = None) -> MiniAlbertAdapters:
        """Keep an adapter set under `name` (fresh ones if none are given), beside the checkpoint's
        own; select it per call with `adapter=name` or by default with `set_adapter(name)`. Meant
        for serving a frozen base; each task's adapters are saved in their own task file."""
        if adapters is None:
            config = self.config.__class__(**{**self.config.to_dict(), "use_adapters": True})
            adapters = MiniAlbertAdapters(config)
            adapters.apply(self._init_weights)
        device = self.embeddings.word_embeddings.weight.device
        self.encoder.named_adapters[name] = adapters.to(device).train(self.training)
        return adapters

    def set_adapter(self, name: str | None) -> None:
        """The adapter set plain calls use (None: the checkpoint's own)."""
        if name is not None and name not in self.encoder.named_adapters:
            raise KeyError(f"no adapter named {name!r}; added: {', '.join(self.encoder.named_adapters) or 'none'}")
        self.encoder.active_adapter = name

    def embed(self, input_ids, token_type_ids=None):
        """Embeddings, projected to H when E < H: the state before the first iteration."""
        h = self.embeddings(input_ids, token_type_ids)
        return self.projection(h) if self.projection is not None else h

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, num_iterations=None,
                adapter: str | None = None, **kwargs):
        if input_ids is None:
            raise ValueError("MiniAlbertModel needs input_ids.")
        return self.encoder(self.embed(input_ids, token_type_ids), _key_mask(attention_mask),
                            bool(output_attentions), bool(output_hidden_states),
                            num_iterations or self.config.inference_iterations, adapter)


class MiniAlbertMLMHead(nn.Module):
    """dense H->H, GELU, LayerNorm, decoder H->V (not tied to the inputs, as in the reference)."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states):
        return self.decoder(self.LayerNorm(F.gelu(self.dense(hidden_states))))


class MiniAlbertForMaskedLM(MiniAlbertPreTrainedModel):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.minialbert = MiniAlbertModel(config)
        self.lm_head = MiniAlbertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.minialbert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                              attentions=out.attentions)


def _classifier_dropout(config):
    p = config.classifier_dropout
    return nn.Dropout(config.hidden_dropout_prob if p is None else p)


class MultiExitClassifierMixin:
    """The classification heads' shared body (a subclass gives `token_level`, `output_class` and
    `loss_fn(labels)`), and their elastic depth. Every iteration runs the same layer and was
    distilled to imitate a teacher layer, so one checkpoint can answer after any K iterations:
    `config.exit_iterations` adds a classifier per exit (trained together, the loss of exit i
    weighted by i, as in DeeBERT/PABEE-style training), `num_iterations=K` (or
    `config.inference_iterations`) runs K iterations and answers with exit K's head, and
    `early_exit(threshold)` stops each example at the first exit whose normalised prediction
    entropy is below the threshold. Without exits the model is the usual one-head model."""

    def __init__(self, config):
        """The base model, dropout, the final classifier and one per extra exit."""
        super().__init__(config)
        self.num_labels = config.num_labels
        self.minialbert = MiniAlbertModel(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._init_exits(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, num_iterations=None,
                **kwargs):
        """Logits after K iterations; with labels the head's `loss_fn` (at every exit, depth-weighted,
        when the model has exits)."""
        out, logits, train_exits = self._forward_to_exit(input_ids, attention_mask, token_type_ids, labels,
                                                         output_attentions, output_hidden_states, num_iterations)
        loss = None
        if labels is not None:
            loss_fn = self.loss_fn(labels)
            loss = self._exit_loss(out.hidden_states, loss_fn) if train_exits else loss_fn(logits)
        return self.output_class(loss=loss, logits=logits,
                                 hidden_states=out.hidden_states if output_hidden_states else None,
                                 attentions=out.attentions)

    def _init_exits(self, config):
        N = config.num_hidden_layers
        self.exit_classifiers = nn.ModuleDict({str(i): nn.Linear(config.hidden_size, config.num_labels)
                                               for i in config.exit_iterations or [] if i != N})

    def exit_head(self, iteration: int) -> nn.Linear:
        """Exit `iteration`'s classifier; the final one where no exit was trained there."""
        return self.exit_classifiers[str(iteration)] if str(iteration) in self.exit_classifiers else self.classifier

    def _pool(self, hidden):
        return hidden if self.token_level else hidden[:, 0]

    def _forward_to_exit(self, input_ids, attention_mask, token_type_ids, labels, output_attentions,
                         output_hidden_states, num_iterations):
        """K iterations (the argument, the config's inference depth, or all N) and exit K's logits;
        with exits and labels every iteration's state is kept for the joint loss.
        Returns (encoder output, logits, whether the exit loss applies)."""
        K = num_iterations or self.config.inference_iterations or self.config.num_hidden_layers
        train_exits = bool(self.config.exit_iterations) and labels is not None
        out = self.minialbert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states or train_exits, num_iterations=K)
        return out, self.exit_head(K)(self.dropout(self._pool(out.last_hidden_state))), train_exits

    def _exit_loss(self, hidden_states, loss_fn):
        """Weighted mean of the exits' losses (weight = depth), on the states of every iteration."""
        exits = [i for i in self.config.exit_iterations if i < len(hidden_states)]
        total = sum(i * loss_fn(self.exit_head(i)(self.dropout(self._pool(hidden_states[i])))) for i in exits)
        return total / sum(exits)

    def early_exit(self, input_ids, attention_mask=None, token_type_ids=None, threshold: float = 0.2):
        """Per example, the logits of the first exit whose normalised entropy is at most
        `threshold`, or of the last iteration; returns (logits, iterations used per example)."""
        if self.config.num_labels < 2:
            raise ValueError("early exit needs class probabilities; regression heads have none "
                             "(use a fixed depth, num_iterations=K).")
        return early_exit_logits(self.base_model, self.exit_head, self.config.exit_iterations, self.token_level,
                                 input_ids, attention_mask, token_type_ids, threshold)


@torch.no_grad()
def early_exit_logits(base, exit_head, exits, token_level: bool, input_ids, attention_mask=None,
                      token_type_ids=None, threshold: float = 0.2, adapter: str | None = None):
    """Run the iterations one at a time; after each exit, examples whose normalised prediction
    entropy (0 = certain, 1 = uniform; averaged over real tokens for token classification) is at
    most `threshold` stop there and leave the batch, so easy batches cost fewer iterations. The
    last iteration answers for the rest. Returns (logits, iterations used per example)."""
    N = base.config.num_hidden_layers
    exits = set(exits or []) | {N}
    h = base.embed(input_ids, token_type_ids)
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    active = torch.arange(input_ids.shape[0], device=input_ids.device)
    logits_out, used = [None] * input_ids.shape[0], torch.full((input_ids.shape[0],), N)
    adapters = base.encoder.adapter_set(adapter)
    for i in range(1, N + 1):
        h, _ = base.encoder.step(i - 1, h, _key_mask(mask[active]), adapters=adapters)
        if i not in exits:
            continue
        logits = exit_head(i)(h if token_level else h[:, 0])
        probs = logits.float().softmax(-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(probs.shape[-1])
        if token_level:
            m = mask[active].to(entropy.dtype)
            entropy = (entropy * m).sum(-1) / m.sum(-1).clamp_min(1)
        done = entropy <= threshold if i < N else torch.ones_like(entropy, dtype=torch.bool)
        for j in done.nonzero().flatten().tolist():
            logits_out[int(active[j])] = logits[j]
            used[int(active[j])] = i
        active, h = active[~done], h[~done]
        if not len(active):
            break
    return torch.stack(logits_out), used


class MiniAlbertForSequenceClassification(MultiExitClassifierMixin, MiniAlbertPreTrainedModel):
    """Dropout + linear on the first token's final state (no pooler); regression if num_labels == 1."""

    token_level = False
    output_class = SequenceClassifierOutput

    def loss_fn(self, labels):
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return lambda z: F.mse_loss(z.squeeze(-1), labels.to(z.dtype).view(-1))
        if self.config.problem_type == "single_label_classification":
            return lambda z: F.cross_entropy(z.view(-1, self.num_labels), labels.view(-1))
        return lambda z: F.binary_cross_entropy_with_logits(z, labels.to(z.dtype))


class MiniAlbertForTokenClassification(MultiExitClassifierMixin, MiniAlbertPreTrainedModel):
    """Dropout + linear at every position (BIO tagging); labels -100 are ignored."""

    token_level = True
    output_class = TokenClassifierOutput

    def loss_fn(self, labels):
        return lambda z: F.cross_entropy(z.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)


class MiniAlbertForQuestionAnswering(MiniAlbertPreTrainedModel):
    """Extractive QA: start/end logits from a linear layer on every position."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.minialbert = MiniAlbertModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                **kwargs):
        out = self.minialbert(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1), end_logits.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            T = start_logits.size(1)
            start = start_positions.clamp(0, T).view(-1)
            end = end_positions.clamp(0, T).view(-1)
            loss = (F.cross_entropy(start_logits, start, ignore_index=T)
                    + F.cross_entropy(end_logits, end, ignore_index=T)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=out.hidden_states, attentions=out.attentions)
