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


def student_config(recipe: DistillRecipe, teacher_config, tokenizer=None) -> MiniAlbertConfig:
    """Teacher geometry (H, heads, FFN, V, positions, special tokens; its family's names, see
    model/families.py) + preset or explicit student choices. The teacher's special tokens (pad,
    bos/eos, or the `tokenizer`'s where given) carry into the student's config, so it pads as its
    teacher does; a teacher that counts positions from pad + 1 (RoBERTa, MPNet) gives the student
    its table from that offset on (positions 0.. of the student), and one without token types a
    one-row token-type table."""
    from ..model.families import teacher_geometry

    base = dict(preset_config(recipe.preset).to_dict()) if recipe.preset else {}
    t = teacher_geometry(teacher_config)
    H = recipe.hidden_size or t["hidden_size"]
    special = {k: t[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    if tokenizer is not None:  # the tokenizer the student is saved with decides (a config may name ids it lacks)
        special.update({k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id")})
        if tokenizer.pad_token_id is not None:
            special["pad_token_id"] = tokenizer.pad_token_id
    kw = dict(
        vocab_size=teacher_config.vocab_size, hidden_size=H,
        num_attention_heads=recipe.num_attention_heads or t["num_attention_heads"],
        intermediate_size=t["intermediate_size"] if H == t["hidden_size"] else 4 * H,
        max_position_embeddings=t["max_position_embeddings"],
        type_vocab_size=max(1, t["type_vocab_size"]),
        hidden_act=t["hidden_act"], layer_norm_eps=t["layer_norm_eps"],
        pad_token_id=special["pad_token_id"] or 0,
        bos_token_id=special["bos_token_id"], eos_token_id=special["eos_token_id"],
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
    """The student, initialised per the recipe from the teacher's parts (found through its family's
    entry in model/families.py). Returns (student, the run's `initialisation` record, the inherited
    modules); `info["init"]` says what each part received."""
    from ..model.initialization import (init_embeddings_from_module, init_embeddings_from_outputs,
                                        init_embeddings_from_teacher, init_layer_groups_from_teacher,
                                        init_relative_bias_from_teacher, init_relaxation_from_teacher,
                                        init_shared_layer_from_teacher, parse_shared_layer_init)

    torch.manual_seed(recipe.seed)
    student = MiniAlbertForMaskedLM(config)
    family = teacher.family
    info = {"embedding_init": recipe.embedding_init}
    parts = {"family": family.name, "embeddings": "random", "positions": "random", "token_types": "random"}
    inherited = []  # the modules initialised from the teacher (or another pretrained model)
    if recipe.embedding_init == "teacher" and config.hidden_size != teacher.config.hidden_size:
        logger.warning("Student width %d differs from the teacher's %d: embeddings start random.",
                       config.hidden_size, teacher.config.hidden_size)
        info["embedding_init"] = "random"
    elif recipe.embedding_init == "teacher":
        info["embedding_init"] = "teacher-" + init_embeddings_from_teacher(student, teacher.model, parts)
        inherited += ["minialbert.embeddings", "minialbert.projection"]
    elif recipe.embedding_init == "model2vec":
        outputs, coordinates = teacher_token_vectors(teacher.model, tokenizer, config.embedding_size)
        info["embedding_init"] = init_embeddings_from_outputs(student, outputs, coordinates)
        parts.update(embeddings="model2vec", positions="zero (model2vec)", token_types="zero (model2vec)",
                     projection="least squares (model2vec)")
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
        init_embeddings_from_module(student, source, parts)
        parts["embeddings"] = f"copy of {recipe.embedding_init}"
        inherited.append("minialbert.embeddings")
    layers_copyable = family.layers is not None
    if (recipe.shared_layer_from_teacher or config.relaxation_rank) and not layers_copyable:
        logger.warning("The %s teacher's layers cannot become the student's (%s): the student's layer starts "
                       "random%s.", family.name, family.why_no_layer,
                       ", its embeddings from the teacher" if "minialbert.embeddings" in inherited else "")
    reason = f"random: the {family.name} teacher's layers cannot become the student's ({family.why_no_layer})"
    if recipe.shared_layer_from_teacher and layers_copyable:
        if config.num_hidden_groups > 1:  # each group from the teacher layers its iterations imitate
            info["layer_groups_init"] = init_layer_groups_from_teacher(student, teacher.model, layer_map)
            parts["shared_layer"] = [_layers_text(g) for g in info["layer_groups_init"]]
        else:
            layers = parse_shared_layer_init(recipe.shared_layer_init, teacher.num_layers, layer_map)
            init_shared_layer_from_teacher(student, teacher.model, layers)
            info["shared_layer_init"] = layers if len(layers) > 1 else layers[0]
            parts["shared_layer"] = _layers_text(layers)
        inherited.append("minialbert.encoder.layer")
    else:
        parts["shared_layer"] = reason if recipe.shared_layer_from_teacher else "random: --shared-layer-init 0"
    if config.relaxation_rank and layers_copyable:
        info["relaxation_energy_kept"], starts = init_relaxation_from_teacher(student, teacher.model, layer_map)
        info["relaxation_start"] = starts
        parts["deltas"] = (f"rank-{config.relaxation_rank}: SVD of (mapped teacher layer - shared layer) where they "
                           "differ, LoRA's start (down random, up zero) where they do not; per iteration: "
                           + ", ".join(s if isinstance(s, str) else "mixed" for s in starts))
        # only the SVD-started deltas came from the teacher; LoRA-started ones are new and train at the full rate
        for i, start in enumerate(starts):
            if start == "svd":
                inherited.append(f"minialbert.encoder.deltas.{i}")
            elif isinstance(start, dict):
                inherited += [f"minialbert.encoder.deltas.{i}.maps.{name}" for name, s in start.items() if s == "svd"]
    elif config.relaxation_rank:
        parts["deltas"] = reason
    if family.relative_bias and not getattr(config, "relative_attention_num_buckets", 0):
        parts["relative_bias"] = "none: this student has no relative position bias; the teacher's is left out"
    if config.use_adapters:
        parts["adapters"] = "random (new)"
    parts["head"] = ("random (new); the output loss reads the teacher's head" if teacher.head is not None
                     else "random (new); the teacher has no MLM head")
    if init_relative_bias_from_teacher(student, teacher.model):  # MPNet: its shared relative position bias
        info["relative_bias_init"] = "teacher"
        parts["relative_bias"] = "the teacher's (one bucketed table shared by every layer)"
        inherited.append("minialbert.encoder.relative_attention_bias")
    info["init"] = parts
    present = dict(student.named_modules())
    return student, info, [m for m in inherited if m in present]  # E == H: no projection


def _layers_text(layers: list[int]) -> str:
    return f"teacher layer {layers[0]}" if len(layers) == 1 else f"mean of teacher layers {layers}"


def inherited_parameters(model, inherited: list[str], prefix: str = "") -> set[str]:
    """The names (with `prefix`, e.g. "student." in the trained wrapper) of `model`'s parameters
    inside the `inherited` modules that `build_student` returns."""
    return {prefix + n for n, _ in model.named_parameters() if any(n.startswith(m + ".") for m in inherited)}


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
