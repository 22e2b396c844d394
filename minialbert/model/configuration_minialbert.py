"""MiniALBERT configuration and the paper's presets (docs/method.md section 1)."""

from __future__ import annotations

from transformers import PretrainedConfig

try:  # inside minialbert: a user-input error that the command line reports in one paragraph
    from minialbert.errors import MiniAlbertError as _InputError
except ImportError:  # this file saved beside the weights, loaded with trust_remote_code: a ValueError
    _InputError = ValueError


class MiniAlbertConfigError(_InputError):
    """A configuration value is out of range; the message says which field and how to fix it."""


class MiniAlbertConfig(PretrainedConfig):
    r"""Configuration of a recursive MiniALBERT student.

    Args:
        vocab_size: tokens in the vocabulary (V).
        embedding_size: width of the embedding tables (E). With E < H a linear E->H projection
            follows the embeddings (embedding factorisation); with E == H there is none.
        hidden_size: width of the shared transformer layer (H), equal to the teacher's.
        num_hidden_layers: recursion steps N: how many times the ONE shared layer is applied.
        num_attention_heads: attention heads (A); must divide H.
        intermediate_size: FFN inner width (I).
        use_adapters: one pair of bottleneck adapters per iteration (not shared).
        adapter_reduction_factor: r; the adapter bottleneck is H / r wide.
        num_hidden_groups: g distinct layers (ALBERT's meaning): iteration i runs layer floor(i g / N).
            1 = the recursive student (one shared layer); N = a plain student of N unique layers.
        relaxation_rank: r > 0 adds, per iteration, a rank-r delta to each linear map of the shared
            layer (relaxed recursion, LoRA-style); 0 = strict sharing.
        exit_iterations: iterations (1-based) with a trained classifier of their own (elastic
            depth: `finetune --exits all`); None = one head, on the last iteration.
        inference_iterations: run only the first K iterations (and their exit head); None = all N.
        relative_attention_num_buckets: > 0 adds to every iteration's attention scores a learned
            bias per head for the bucketed distance between query and key, one table shared by all
            iterations, as MPNet's (carried from an MPNet teacher); 0 = none.
        relative_attention_max_distance: distances beyond this share the last bucket (MPNet: 128).

    A saved masked LM's config also holds `mlm_head_trained` (passed through `**kwargs`): whether its
    MLM head was trained (`minialbert distill` with an MLM or output loss); False makes
    MiniAlbertForMaskedLM.from_pretrained warn. Absent: unknown (older checkpoints).
    """

    model_type = "minialbert"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 768,
        hidden_size: int = 768,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        classifier_dropout: float | None = None,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        use_adapters: bool = True,
        adapter_reduction_factor: int = 16,
        num_hidden_groups: int = 1,
        relaxation_rank: int = 0,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = False,
        exit_iterations: list[int] | None = None,
        inference_iterations: int | None = None,
        relative_attention_num_buckets: int = 0,
        relative_attention_max_distance: int = 128,
        **kwargs,
    ):
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.classifier_dropout = classifier_dropout
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.use_adapters = use_adapters
        self.adapter_reduction_factor = adapter_reduction_factor
        self.num_hidden_groups = num_hidden_groups
        self.relaxation_rank = relaxation_rank
        self.exit_iterations = sorted(set(exit_iterations)) if exit_iterations else None
        self.inference_iterations = inference_iterations
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.validate_geometry()

    def validate_geometry(self) -> None:
        """Raise MiniAlbertConfigError naming the offending field when the shapes cannot work."""
        H, A, E, N, r = (self.hidden_size, self.num_attention_heads, self.embedding_size,
                         self.num_hidden_layers, self.adapter_reduction_factor)
        problems = []
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "adapter_reduction_factor"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer (got {getattr(self, name)!r})")
        if problems:
            raise MiniAlbertConfigError("; ".join(problems) + ".")
        if not isinstance(N, int) or N < 1:
            problems.append(f"num_hidden_layers (recursion steps N) must be >= 1 (got {N!r})")
        if H % A:
            problems.append(f"hidden_size {H} is not divisible by num_attention_heads {A}; "
                            f"pick a head count that divides {H}")
        if E > H:
            problems.append(f"embedding_size {E} is larger than hidden_size {H}; "
                            f"factorisation needs E <= H (use E == H for no projection)")
        if H % r:
            problems.append(f"adapter_reduction_factor {r} does not divide hidden_size {H}; "
                            f"the adapter bottleneck H/r must be a whole number")
        g, rank = self.num_hidden_groups, self.relaxation_rank
        if isinstance(N, int) and (not isinstance(g, int) or not 1 <= g <= N):
            problems.append(f"num_hidden_groups {g!r} must lie in 1..{N} (1: one shared layer; N: a plain student)")
        if not isinstance(rank, int) or not 0 <= rank <= min(H, self.intermediate_size):
            problems.append(f"relaxation_rank {rank!r} must be 0 (strict sharing) or a rank up to "
                            f"{min(H, self.intermediate_size)}")
        if isinstance(N, int) and any(not isinstance(i, int) or not 1 <= i <= N for i in self.exit_iterations or []):
            problems.append(f"exit_iterations {self.exit_iterations} must lie in 1..{N}")
        K = self.inference_iterations
        if K is not None and isinstance(N, int) and (not isinstance(K, int) or not 1 <= K <= N):
            problems.append(f"inference_iterations (--iterations) {K!r} must lie in 1..{N}")
        buckets, distance = self.relative_attention_num_buckets, self.relative_attention_max_distance
        if not isinstance(buckets, int) or buckets < 0 or buckets % 4:
            # MPNet's bucketing halves the table by direction, then half of each half is exact distances
            problems.append(f"relative_attention_num_buckets {buckets!r} must be 0 (no relative bias) or a "
                            "multiple of 4 (MPNet: 32)")
        elif buckets and (not isinstance(distance, int) or distance <= buckets // 4):
            # the distances up to buckets / 4 have a bucket each; max_distance must lie beyond them
            problems.append(f"relative_attention_max_distance {distance!r} must be an integer above "
                            f"{buckets // 4} (relative_attention_num_buckets / 4; MPNet: 128)")
        if problems:
            raise MiniAlbertConfigError("Invalid MiniALBERT configuration: " + "; ".join(problems) + ".")

    @property
    def factorized_embeddings(self) -> bool:
        return self.embedding_size != self.hidden_size


# The paper's students: H=768, 12 heads, FFN 3072, N=6, V=30522, r=16 (docs/method.md parameter table).
_PAPER_GEOMETRY = dict(vocab_size=30522, hidden_size=768, num_attention_heads=12,
                       intermediate_size=3072, num_hidden_layers=6, adapter_reduction_factor=16)

PRESETS: dict[str, dict] = {}
for _E in (768, 312, 128):
    PRESETS[f"minialbert-{_E}"] = dict(_PAPER_GEOMETRY, embedding_size=_E, use_adapters=True)
    PRESETS[f"minialbert-{_E}-noadapters"] = dict(_PAPER_GEOMETRY, embedding_size=_E, use_adapters=False)


def preset_config(name: str, **overrides) -> MiniAlbertConfig:
    """Build the config of a named preset, optionally overriding fields."""
    if name not in PRESETS:
        raise MiniAlbertConfigError(
            f"Unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}.")
    return MiniAlbertConfig(**{**PRESETS[name], **overrides})


# Saved folders load where this package is not installed, by transformers' convention for custom
# architectures: `save_pretrained` copies this file (and modeling_minialbert.py) beside the weights
# and config.json's `auto_map` names the classes; `trust_remote_code=True` then loads them.
MiniAlbertConfig.register_for_auto_class()
