"""The MiniALBERT recursive student (docs/method.md section 1), as Hugging Face `PreTrainedModel`s.

Written by hand because no library has it: ONE post-LN transformer layer applied N times, with
per-iteration bottleneck adapters composed as the authors' reference implementation does,
    h_i = FFN( BA_i^f( MHA( BA_i^a(h_{i-1}) ) ) ),
an optional factorised embedding (E -> H projection), and the per-iteration outputs
(hidden states, post-softmax attention maps) that layer-to-layer distillation needs.

Two relaxations of the strict sharing, each off by default (docs/method.md, "Student kinds"):
`num_hidden_groups` g > 1 gives g layers, iteration i running layer floor(i g / N), as ALBERT's
`num_hidden_groups` (g = N: a plain student of N unique layers); `relaxation_rank` r > 0 adds to
every linear map of the shared layer a per-iteration low-rank delta B_i A_i (LoRA-style, as the
Relaxed Recursive Transformers of Bae et al., 2025), W_i = W + B_i A_i.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
from transformers.utils import can_return_tuple, logging
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_minialbert import MiniAlbertConfig

logger = logging.get_logger(__name__)


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

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        """`inputs_embeds` (B, T, E) stand for the word embeddings of `input_ids`; positions default to
        0..T-1 and token types to 0."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        B, T = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(T, device=inputs_embeds.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros((B, T), dtype=torch.long, device=inputs_embeds.device)
        e = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(e))


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, position_bias=None,
                            **kwargs):
    """Explicit softmax attention, as transformers' own models write it, returning the maps. The
    mask is either additive (what transformers builds for "eager") or boolean, True where a key may
    be attended to (what it builds for "sdpa": maps are asked for on any model). `position_bias`
    (1|B, heads, T, T): the relative position bias, added to the scores as MPNet does."""
    scores = (query @ key.transpose(2, 3)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = (scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
                  if attention_mask.dtype == torch.bool else scores + attention_mask)
    probs = scores.softmax(dim=-1)
    context = F.dropout(probs, p=dropout, training=module.training) @ value
    return context.transpose(1, 2).contiguous(), probs


def _linear(linear: nn.Linear, x, delta, name: str):
    """linear(x), plus the iteration's low-rank delta of that map when the student is relaxed."""
    return linear(x) if delta is None else linear(x) + delta(name, x)


def mask_with_position_bias(attention_mask, position_bias):
    """One float additive mask holding the padding mask (boolean, additive or None) and the relative
    position bias (1, heads, T, T), for kernels that take no bias of their own (sdpa and the like)."""
    if attention_mask is None:
        return position_bias
    if attention_mask.dtype == torch.bool:
        return torch.where(attention_mask, position_bias, torch.finfo(position_bias.dtype).min)
    return attention_mask + position_bias


class MiniAlbertAttention(nn.Module):
    """MHA(x) = LayerNorm(x + Dropout(W_o · MultiHeadSelfAttention(x))).

    The kernel follows transformers' attention interface: `config._attn_implementation` ("sdpa" by
    default, "eager", "flex_attention", or any kernel registered with `AttentionInterface`) picks
    the function from `ALL_ATTENTION_FUNCTIONS`, and the mask comes from transformers' mask builder
    in the form that kernel wants. Requested attention maps (distillation, plotting) always come
    from the explicit softmax, as transformers does (fused kernels return none), with eager's mask.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.config = config
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = H // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = False  # read by the attention interface's kernels
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

    def forward(self, hidden_states, attention_mask, output_attentions: bool = False, delta=None, position_bias=None):
        """attention_mask: what `MiniAlbertModel.attention_mask_for` built (or a boolean (B, 1, 1|T, T)
        key mask, or None); `delta`: the iteration's low-rank deltas (relaxed students) or None;
        `position_bias`: the encoder's relative position bias (1, heads, T, T) or None."""
        q = self._split_heads(_linear(self.query, hidden_states, delta, "query"))
        k = self._split_heads(_linear(self.key, hidden_states, delta, "key"))
        v = self._split_heads(_linear(self.value, hidden_states, delta, "value"))
        attend = eager_attention_forward if output_attentions else ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward)
        extra = {}
        if position_bias is not None:
            position_bias = position_bias.to(q.dtype)
            if attend is eager_attention_forward:
                extra["position_bias"] = position_bias
            elif self.config._attn_implementation == "flex_attention":  # transformers' score_mod adds it per head
                extra["position_bias"] = position_bias.expand(q.shape[0], -1, -1, -1)
            else:  # sdpa (and other kernels without a bias argument): inside a float mask
                attention_mask = mask_with_position_bias(attention_mask, position_bias)
        context, probs = attend(self, q, k, v, attention_mask, scaling=self.scaling,
                                dropout=self.attention_dropout_p if self.training else 0.0, **extra)
        context = context.reshape(*hidden_states.shape[:-1], -1)
        out = self.LayerNorm(hidden_states + self.output_dropout(_linear(self.dense, context, delta, "dense")))
        return out, probs if output_attentions else None


class MiniAlbertFeedForward(nn.Module):
    """FFN(x) = LayerNorm(x + Dropout(W_2 · act(W_1 x)))."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, delta=None):
        inner = self.activation(_linear(self.intermediate, x, delta, "intermediate"))
        return self.LayerNorm(x + self.dropout(_linear(self.output, inner, delta, "output")))


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


# The shared layer's linear maps, by the name a relaxed student's deltas use: (module path, in, out).
def relaxed_maps(config: MiniAlbertConfig) -> dict[str, tuple[str, int, int]]:
    H, inner = config.hidden_size, config.intermediate_size
    return {"query": ("attention.query", H, H), "key": ("attention.key", H, H), "value": ("attention.value", H, H),
            "dense": ("attention.dense", H, H), "intermediate": ("ffn.intermediate", H, inner),
            "output": ("ffn.output", inner, H)}


class LowRankDelta(nn.Module):
    """delta(x) = up(down(x)), rank r: B A in LoRA's notation, without its scaling. A delta starts from the
    truncated SVD of (its mapped teacher layer - the shared layer), or as LoRA's (down random, up zero)
    where the two are the same layer (docs/method.md, "Student kinds")."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.empty(out_features, rank))

    def forward(self, x):
        return F.linear(F.linear(x, self.down), self.up)


class IterationDeltas(nn.Module):
    """One iteration's low-rank deltas, one per linear map of the shared layer (a relaxed student)."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.maps = nn.ModuleDict({name: LowRankDelta(fan_in, fan_out, config.relaxation_rank)
                                   for name, (_, fan_in, fan_out) in relaxed_maps(config).items()})

    def forward(self, name: str, x):
        return self.maps[name](x)


DEFAULT_ADAPTER = "default"


class MiniAlbertEncoder(nn.Module):
    """Applies the shared layer N times; adapters, when present, wrap each block's input.

    Adapter sets are named, PEFT-style. "default" is the checkpoint's own set (kept in `adapters`,
    the key every saved checkpoint uses); more sets live beside it in `named_adapters`, e.g. one
    per task over one frozen base. A call picks one with `adapter=NAME`, else `active_adapter`
    ("default" unless `set_adapter` chose another). Choosing per call, instead of swapping a module
    attribute, keeps concurrent requests for different tasks apart."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.config = config
        # One shared layer (`layer`); with g > 1 groups, a list of g layers named as BERT's are.
        g = config.num_hidden_groups
        self.layer = MiniAlbertLayer(config) if g == 1 else nn.ModuleList(MiniAlbertLayer(config) for _ in range(g))
        self.adapters = MiniAlbertAdapters(config) if config.use_adapters else None
        self.named_adapters = nn.ModuleDict()
        self.active_adapter = DEFAULT_ADAPTER
        # registered last: a strict student's parameters draw the same random numbers as before
        self.deltas = (nn.ModuleList(IterationDeltas(config) for _ in range(config.num_hidden_layers))
                       if config.relaxation_rank else None)
        # MPNet's relative position bias: one (buckets x heads) table, shared by every iteration as
        # MPNet shares it by all its layers (named as MPNet names it, so a teacher's copies over).
        self.relative_attention_bias = (nn.Embedding(config.relative_attention_num_buckets, config.num_attention_heads)
                                        if config.relative_attention_num_buckets else None)

    def position_bias(self, hidden_states):
        """The relative position bias (1, heads, T, T) that every iteration adds to its attention
        scores, computed once per forward with MPNet's own bucketing; None without a bias table."""
        if self.relative_attention_bias is None:
            return None
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        buckets = MPNetEncoder.relative_position_bucket(
            positions[None, :] - positions[:, None], num_buckets=self.config.relative_attention_num_buckets,
            max_distance=self.config.relative_attention_max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def adapter_names(self) -> list[str]:
        return ([DEFAULT_ADAPTER] if self.adapters is not None else []) + list(self.named_adapters)

    def adapter_set(self, name: str | None = None) -> MiniAlbertAdapters | None:
        """The adapters a call uses: `name`, else the active set ("default": the checkpoint's own,
        None when it has none)."""
        name = name or self.active_adapter
        if name == DEFAULT_ADAPTER:
            return self.adapters
        if name not in self.named_adapters:
            raise KeyError(f"no adapter named {name!r}; adapters: {', '.join(self.adapter_names()) or 'none'}")
        return self.named_adapters[name]

    def layer_at(self, i: int) -> MiniAlbertLayer:
        """The layer iteration i (0-based) runs: the shared one, or its group's (ALBERT's rule)."""
        if isinstance(self.layer, MiniAlbertLayer):
            return self.layer
        return self.layer[i * self.config.num_hidden_groups // self.config.num_hidden_layers]

    def step(self, i: int, hidden_states, attention_mask, output_attentions=False, adapters=None, position_bias=None):
        """Iteration i (0-based): its layer, with iteration i's deltas (relaxed students) and
        adapters (`adapters`, or the checkpoint's own), and the relative position bias when there is one
        (`position_bias(hidden_states)`, computed once for all iterations)."""
        adapters = self.adapters if adapters is None else adapters
        layer, delta = self.layer_at(i), self.deltas[i] if self.deltas is not None else None
        if adapters is not None:
            hidden_states = adapters.attention[i](hidden_states)
        hidden_states, probs = layer.attention(hidden_states, attention_mask, output_attentions, delta, position_bias)
        if adapters is not None:
            hidden_states = adapters.ffn[i](hidden_states)
        return layer.ffn(hidden_states, delta), probs

    def forward(self, hidden_states, attention_mask, output_attentions=False, output_hidden_states=False,
                num_iterations: int | None = None, adapter: str | None = None):
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        adapters = self.adapter_set(adapter)
        position_bias = self.position_bias(hidden_states)
        for i in range(num_iterations or self.config.num_hidden_layers):
            hidden_states, probs = self.step(i, hidden_states, attention_mask, output_attentions, adapters, position_bias)
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
    # transformers' attention interface (MiniAlbertAttention): sdpa (the default), eager and flex
    # attention are checked against each other on padded batches (tests/test_conventions.py).
    # Flash attention is not declared: it has not been run on a GPU against eager here yet.
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = False
    _supports_attention_backend = True

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save, with every MiniALBERT class in config.json's `auto_map` (transformers
        adds only the saved class), so that any Auto class loads the folder with
        `trust_remote_code=True` where this package is not installed."""
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

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
        elif isinstance(module, LowRankDelta):  # LoRA's start: a zero delta (students from a teacher set their own)
            nn.init.normal_(module.down, mean=0.0, std=std)
            nn.init.zeros_(module.up)

    def prepare_adapter_tuning(self, adapter: str = DEFAULT_ADAPTER) -> int:
        """Adapter tuning (docs/method.md section 4) of the adapter set `adapter` (fresh adapters if
        there is no such set yet: the checkpoint's own by default), which becomes the active set:
        the embeddings, the projection, the shared layer and every other set are frozen; that set
        and any task head train. Returns the number of trainable parameters."""
        base: MiniAlbertModel = self.base_model
        if adapter not in base.encoder.adapter_names():
            base.add_adapter(adapter)
        base.set_adapter(adapter)
        for p in self.parameters():
            p.requires_grad = False
        for p in base.encoder.adapter_set(adapter).parameters():
            p.requires_grad = True
        for name, child in self.named_children():
            if child is not base:  # the task head
                for p in child.parameters():
                    p.requires_grad = True
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


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

    def add_adapter(self, name: str = DEFAULT_ADAPTER, adapters: MiniAlbertAdapters | None = None) -> MiniAlbertAdapters:
        """Keep an adapter set under `name` (fresh ones if none are given). "default" is the
        checkpoint's own set (the paper's '*' case: a student distilled without adapters gets fresh
        ones); other names live beside it, e.g. one per task over a frozen base (each task's
        adapters are saved in a task file of their own). Select one per call with `adapter=name`
        or for every call with `set_adapter(name)`."""
        if adapters is None:
            config = self.config.__class__(**{**self.config.to_dict(), "use_adapters": True})
            adapters = MiniAlbertAdapters(config)
            adapters.apply(self._init_weights)
        adapters = adapters.to(self.embeddings.word_embeddings.weight.device).train(self.training)
        if name == DEFAULT_ADAPTER:
            self.config.use_adapters = True
            self.encoder.adapters = adapters
        else:
            self.encoder.named_adapters[name] = adapters
        return adapters

    def set_adapter(self, name: str | None) -> None:
        """The adapter set plain calls use ("default" or None: the checkpoint's own)."""
        name = name or DEFAULT_ADAPTER
        if name != DEFAULT_ADAPTER and name not in self.encoder.named_adapters:
            raise KeyError(f"no adapter named {name!r}; adapters: {', '.join(self.encoder.adapter_names()) or 'none'}")
        self.encoder.active_adapter = name

    def attention_mask_for(self, hidden_states, attention_mask, output_attentions: bool = False):
        """The (B, T) 0/1 padding mask in the form the configured attention kernel wants
        (transformers' mask builder: boolean 4-D for sdpa, additive for eager, a block mask for flex,
        2-D for flash attention; None where nothing is masked), built once for all iterations. When
        maps are asked for, every kernel runs the explicit softmax, so the mask is eager's (a flex
        block mask, or no mask for a kernel without a mask builder, would be wrong there)."""
        config = self.config
        if output_attentions and config._attn_implementation != "eager":
            config = copy.copy(config)
            config._attn_implementation = "eager"
        return create_bidirectional_mask(config=config, inputs_embeds=hidden_states, attention_mask=attention_mask)

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        """Embeddings, projected to H when E < H: the state before the first iteration."""
        h = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        return self.projection(h) if self.projection is not None else h

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, num_iterations=None,
                adapter: str | None = None) -> BaseModelOutput:
        """transformers' encoder contract (`return_dict=False` gives a tuple), plus MiniALBERT's
        `num_iterations` (run the first K iterations) and `adapter` (the adapter set to use)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids and inputs_embeds.")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (self.config.output_hidden_states if output_hidden_states is None
                                else output_hidden_states)
        hidden_states = self.embed(input_ids, token_type_ids, position_ids, inputs_embeds)
        return self.encoder(hidden_states, self.attention_mask_for(hidden_states, attention_mask, bool(output_attentions)),
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

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As PreTrainedModel's, and a warning when the MLM head is untrained: its config says so
        (`mlm_head_trained: false`) or the checkpoint has no head (an encoder, such as a release), so
        a fill-mask pipeline does not answer random words in silence."""
        wanted_info = kwargs.get("output_loading_info", False)
        model, info = super().from_pretrained(*args, **{**kwargs, "output_loading_info": True})
        missing_head = any(k.startswith("lm_head.") for k in info.get("missing_keys", ()))
        if missing_head or getattr(model.config, "mlm_head_trained", None) is False:
            logger.warning(
                "%s: the masked-LM head of this checkpoint was never trained (%s), so its fill-mask predictions "
                "are random words. Use the encoder (AutoModel), or train the head: `minialbert distill` with "
                "an MLM or output loss, or `minialbert fit-head`.", args[0] if args else "the checkpoint",
                "it holds no head" if missing_head else "mlm_head_trained is false in its config.json")
        return (model, info) if wanted_info else model

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, output_attentions=None, output_hidden_states=None) -> MaskedLMOutput:
        out = self.minialbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                              return_dict=True)
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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, output_attentions=None, output_hidden_states=None, num_iterations=None):
        """Logits after K iterations; with labels the head's `loss_fn` (at every exit, depth-weighted,
        when the model has exits)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        out, logits, train_exits = self._forward_to_exit(input_ids, attention_mask, token_type_ids, labels,
                                                         output_attentions, output_hidden_states, num_iterations,
                                                         position_ids, inputs_embeds)
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
                         output_hidden_states, num_iterations, position_ids=None, inputs_embeds=None):
        """K iterations (the argument, the config's inference depth, or all N) and exit K's logits;
        with exits and labels every iteration's state is kept for the joint loss.
        Returns (encoder output, logits, whether the exit loss applies)."""
        K = num_iterations or self.config.inference_iterations or self.config.num_hidden_layers
        train_exits = bool(self.config.exit_iterations) and labels is not None
        out = self.minialbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states or train_exits, num_iterations=K,
                              return_dict=True)
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
    adapters, position_bias = base.encoder.adapter_set(adapter), base.encoder.position_bias(h)
    for i in range(1, N + 1):
        h, _ = base.encoder.step(i - 1, h, base.attention_mask_for(h, mask[active]), adapters=adapters,
                                 position_bias=position_bias)
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

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None) -> QuestionAnsweringModelOutput:
        out = self.minialbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                              return_dict=True)
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


# Where this package is not installed, a saved folder loads with `trust_remote_code=True`:
# `save_pretrained` copies this file and configuration_minialbert.py beside the weights
# (transformers' custom-code convention) and `auto_map` names the class for each Auto class.
AUTO_CLASSES = {"AutoModel": MiniAlbertModel, "AutoModelForMaskedLM": MiniAlbertForMaskedLM,
                "AutoModelForSequenceClassification": MiniAlbertForSequenceClassification,
                "AutoModelForTokenClassification": MiniAlbertForTokenClassification,
                "AutoModelForQuestionAnswering": MiniAlbertForQuestionAnswering}
AUTO_MAP = {"AutoConfig": "configuration_minialbert.MiniAlbertConfig",
            **{auto: f"modeling_minialbert.{cls.__name__}" for auto, cls in AUTO_CLASSES.items()}}
for _auto, _cls in AUTO_CLASSES.items():
    _cls.register_for_auto_class(_auto)
