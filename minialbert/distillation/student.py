"""The student of general distillation: its shape (the teacher's geometry with the recipe's E, N
and adapters), its initialisation from the teacher, and how its outputs are aligned with the
teacher's (loss weights, layer map, projections for mismatched widths)."""

from __future__ import annotations

import logging

import torch

from ..checkpoints import resolve_model_name
from ..errors import MiniAlbertError
from ..model import MiniAlbertConfig, MiniAlbertForMaskedLM, preset_config
from .losses import LossWeights, alignment_setup
from .recipe import DistillRecipe
from .teacher import Teacher

logger = logging.getLogger(__name__)


def student_config(recipe: DistillRecipe, teacher_config) -> MiniAlbertConfig:
    """Teacher geometry (H, heads, FFN, V, positions) + preset or explicit student choices."""
    base = dict(preset_config(recipe.preset).to_dict()) if recipe.preset else {}
    H = recipe.hidden_size or teacher_config.hidden_size
    kw = dict(
        vocab_size=teacher_config.vocab_size, hidden_size=H,
        num_attention_heads=recipe.num_attention_heads or teacher_config.num_attention_heads,
        intermediate_size=teacher_config.intermediate_size if H == teacher_config.hidden_size else 4 * H,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=getattr(teacher_config, "type_vocab_size", 2),
        hidden_act=getattr(teacher_config, "hidden_act", "gelu"),
        layer_norm_eps=getattr(teacher_config, "layer_norm_eps", 1e-12),
        pad_token_id=getattr(teacher_config, "pad_token_id", 0) or 0,
        num_hidden_layers=recipe.iterations or base.get("num_hidden_layers", 6),
        embedding_size=recipe.embedding_size or base.get("embedding_size", H),
        use_adapters=recipe.adapters if recipe.adapters is not None else base.get("use_adapters", True),
        adapter_reduction_factor=recipe.adapter_reduction_factor or base.get("adapter_reduction_factor", 16),
        num_hidden_groups=recipe.layer_groups or 1, relaxation_rank=recipe.relaxation_rank,
        **teacher_relative_bias(teacher_config, recipe.num_attention_heads),
    )
    return MiniAlbertConfig(**kw)


def teacher_relative_bias(teacher_config, heads: int | None = None) -> dict:
    """MPNet's relative position bias (one table shared by all its layers, worth about 10 zero-shot
    STS-B points to all-mpnet-base-v2) carried into the student's config; none for other teachers, or
    when the student's head count differs from the teacher's (the table is per head)."""
    if teacher_config.model_type != "mpnet" or (heads and heads != teacher_config.num_attention_heads):
        return {}
    # MPNet's bucketing uses 32 buckets and distance 128 whatever its config says (compute_position_bias)
    return dict(relative_attention_num_buckets=32, relative_attention_max_distance=128)


def build_student(recipe: DistillRecipe, teacher: Teacher, tokenizer, config: MiniAlbertConfig,
                  layer_map=None) -> tuple[MiniAlbertForMaskedLM, dict, list[str]]:
    from ..model.initialization import (init_embeddings_from_module, init_embeddings_from_outputs,
                                        init_embeddings_from_teacher, init_layer_groups_from_teacher,
                                        init_relative_bias_from_teacher, init_relaxation_from_teacher,
                                        init_shared_layer_from_teacher, parse_shared_layer_init)

    torch.manual_seed(recipe.seed)
    student = MiniAlbertForMaskedLM(config)
    info = {"embedding_init": recipe.embedding_init}
    inherited = []  # the modules initialised from the teacher (or another pretrained model)
    if recipe.embedding_init == "teacher" and config.hidden_size != teacher.config.hidden_size:
        logger.warning("Student width %d differs from the teacher's %d: embeddings start random.",
                       config.hidden_size, teacher.config.hidden_size)
        info["embedding_init"] = "random"
    elif recipe.embedding_init == "teacher":
        info["embedding_init"] = "teacher-" + init_embeddings_from_teacher(student, teacher.model)
        inherited += ["minialbert.embeddings", "minialbert.projection"]
    elif recipe.embedding_init == "model2vec":
        outputs, coordinates = teacher_token_vectors(teacher.model, tokenizer, config.embedding_size)
        info["embedding_init"] = init_embeddings_from_outputs(student, outputs, coordinates)
        inherited += ["minialbert.embeddings", "minialbert.projection"]
    elif recipe.embedding_init != "random":
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_name(recipe.embedding_init)
        try:
            source = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise MiniAlbertError(f"Could not load the embedding-init model {recipe.embedding_init!r}: {e}") from None
        try:
            other_vocab = AutoTokenizer.from_pretrained(path).get_vocab()
        except (OSError, ValueError):
            other_vocab = None
        if other_vocab is not None and other_vocab != tokenizer.get_vocab():
            raise MiniAlbertError(
                f"Tokenizer mismatch: the embedding-init model {recipe.embedding_init!r} uses a different "
                f"vocabulary from the teacher {teacher.name!r}; its embeddings would index the wrong tokens. "
                "Use a model trained with the teacher's tokenizer, or --embedding-init teacher.")
        init_embeddings_from_module(student, source)
        inherited.append("minialbert.embeddings")
    if recipe.shared_layer_from_teacher:
        if config.num_hidden_groups > 1:  # each group from the teacher layers its iterations imitate
            info["layer_groups_init"] = init_layer_groups_from_teacher(student, teacher.model, layer_map)
        else:
            layers = parse_shared_layer_init(recipe.shared_layer_init, teacher.num_layers, layer_map)
            init_shared_layer_from_teacher(student, teacher.model, layers)
            info["shared_layer_init"] = layers if len(layers) > 1 else layers[0]
        inherited.append("minialbert.encoder.layer")
    if config.relaxation_rank:
        info["relaxation_energy_kept"] = init_relaxation_from_teacher(student, teacher.model, layer_map)
        inherited.append("minialbert.encoder.deltas")
    if init_relative_bias_from_teacher(student, teacher.model):  # MPNet: its shared relative position bias
        info["relative_bias_init"] = "teacher"
        inherited.append("minialbert.encoder.relative_attention_bias")
    present = dict(student.named_modules())
    return student, info, [m for m in inherited if m in present]  # E == H: no projection


def teacher_token_vectors(teacher_model, tokenizer, dims: int):
    """model2vec's recipe on the loaded teacher: every vocabulary entry encoded alone (`[CLS] token
    [SEP]`) and mean-pooled, then PCA to `dims`, with model2vec's own functions. Returns (outputs
    (V, H), coordinates (V, dims)), in the tokenizer's id order."""
    import numpy as np
    from model2vec.distill.inference import apply_pca, create_embeddings

    ids = [[tokenizer.cls_token_id, i, tokenizer.sep_token_id] for i in range(teacher_model.config.vocab_size)]
    outputs = create_embeddings(teacher_model.base_model, ids, "cpu", tokenizer.pad_token_id)
    return outputs, np.asarray(apply_pca(outputs.copy(), dims))


def resolve_alignment(recipe: DistillRecipe, teacher: Teacher, config: MiniAlbertConfig):
    weights = LossWeights(recipe.mlm_weight, recipe.alignment_weight, recipe.output_weight,
                          recipe.embedding_weight, recipe.alignment, recipe.sentence_weight)
    if teacher.head is None:
        weights.output = 0.0
    layer_map, projection = alignment_setup(
        config, teacher.config, hidden=weights.uses_hidden or bool(weights.embedding) or bool(weights.sentence),
        attention=weights.uses_attention, project_hidden=recipe.project_hidden, average_heads=recipe.average_heads,
        layer_map=recipe.layer_map)
    return weights, projection, layer_map


def student_description(config: MiniAlbertConfig, student=None) -> dict:
    """The resolved student shape (and its base parameter count), as printed and stored."""
    info = {"hidden_size": config.hidden_size, "embedding_size": config.embedding_size,
            "iterations": config.num_hidden_layers, "layer_groups": config.num_hidden_groups,
            "relaxation_rank": config.relaxation_rank, "adapters": config.use_adapters,
            "adapter_reduction_factor": config.adapter_reduction_factor,
            "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size}
    if student is not None:
        info["base_parameters"] = sum(p.numel() for p in student.base_model.parameters())
        info["fp16_megabytes"] = round(2 * info["base_parameters"] / 1e6, 2)
    return info
