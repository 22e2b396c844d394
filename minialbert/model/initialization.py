"""Student initialisation helpers (docs/method.md section 3, plus an SVD option beyond the paper).
Where each part lives in a teacher of any family is read from the family table (families.py)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import MiniAlbertError
from .families import (BERT_LAYER, TeacherEmbeddings, copy_rows, family_for, layer_part, teacher_embeddings,
                       teacher_layers)


class InitializationError(MiniAlbertError):
    """The source model cannot initialise this student; the message says why and what to do."""


def _source_embeddings(source) -> TeacherEmbeddings:
    """The embedding parts of a model of a known family, or of a bare BERT-style embedding module."""
    if getattr(getattr(source, "config", None), "model_type", None) is not None:
        return teacher_embeddings(source, family_for(source))
    for candidate in (source, getattr(source, "embeddings", None)):
        if candidate is not None and hasattr(candidate, "word_embeddings"):
            return TeacherEmbeddings(candidate.word_embeddings, getattr(candidate, "position_embeddings", None),
                                     getattr(candidate, "token_type_embeddings", None),
                                     getattr(candidate, "LayerNorm", None), None, 0)
    raise InitializationError(
        f"{type(source).__name__} has no embeddings module minialbert knows (word, position and token-type "
        "tables and a LayerNorm); pass a model of a family in minialbert/model/families.py.")


@torch.no_grad()
def _copy_norm(dst: nn.LayerNorm, src) -> None:
    dst.weight.copy_(src.weight)
    if getattr(src, "bias", None) is not None:
        dst.bias.copy_(src.bias)
    else:  # ModernBERT's LayerNorm has no bias
        dst.bias.zero_()


@torch.no_grad()
def _side_tables(dst, src: TeacherEmbeddings, transform, how: str, parts: dict) -> None:
    """Positions and token types: the teacher's (through `transform`, its offset applied), zero where
    it has no token types (a zero table adds nothing: the teacher's sum without it), and the
    student's random start where it has no position table (rotary positions)."""
    if src.position is not None:
        n = copy_rows(dst.position_embeddings.weight, transform(src.position.weight.float()), src.position_offset)
        parts["positions"] = f"{how} (teacher positions {src.position_offset}..{src.position_offset + n - 1})"
    else:
        parts["positions"] = "random: the teacher has no position table"
    if src.token_type is not None:
        copy_rows(dst.token_type_embeddings.weight, transform(src.token_type.weight.float()))
        parts["token_types"] = how
    else:
        dst.token_type_embeddings.weight.zero_()
        parts["token_types"] = "zero: the teacher has no token types"


@torch.no_grad()
def init_embeddings_from_module(student, source, parts: dict | None = None) -> None:
    """Copy a pretrained embedding module of width E into the student (the paper initialises its
    E=312 students from TinyBERT-4L-312D). Vocabulary and width must match exactly. Where the
    source projects its embeddings to H (ELECTRA), that projection becomes the student's."""
    parts = {} if parts is None else parts
    dst, src = student.base_model.embeddings, _source_embeddings(source)
    V_s, E_s = src.word.weight.shape
    V_d, E_d = dst.word_embeddings.weight.shape
    if V_s != V_d:
        raise InitializationError(
            f"Vocabulary mismatch: the embedding source has {V_s} tokens but the student (its "
            f"teacher's tokenizer) has {V_d}. Both must use the same tokenizer; choose an "
            "embedding-init model trained with the teacher's vocabulary.")
    if E_s != E_d:
        raise InitializationError(
            f"Embedding width mismatch: the source has E={E_s}, the student E={E_d}. Set the "
            f"student's embedding size to {E_s}, or initialise from the teacher (SVD) instead.")
    dst.word_embeddings.weight.copy_(src.word.weight)
    parts["embeddings"] = "copy"
    _side_tables(dst, src, lambda w: w, "copy", parts)
    if src.norm is not None:
        _copy_norm(dst.LayerNorm, src.norm)
    projection = student.base_model.projection
    if src.project is not None and projection is not None and projection.weight.shape == src.project.weight.shape:
        projection.load_state_dict(src.project.state_dict())
        parts["projection"] = "copy"


@torch.no_grad()
def init_embeddings_from_teacher(student, teacher, parts: dict | None = None) -> str:
    """E == the teacher's embedding width: copy the teacher's embeddings (and its E -> H projection,
    ELECTRA). E smaller (beyond the paper): truncated SVD of the teacher's word table W = U S V^T, so
    word table = U_E S_E and projection = (the teacher's projection, or I) V_E^T; position and
    token-type tables are projected onto the same E directions. The student's LayerNorm then acts
    in E dimensions, so the result is an approximation of the teacher's embedding output, a
    starting point, not an exact copy. Returns which method was used; `parts` receives what each
    table got."""
    parts = {} if parts is None else parts
    base = student.base_model
    E, H = base.config.embedding_size, base.config.hidden_size
    src = _source_embeddings(teacher)
    E_t = src.width
    out_width = src.project.weight.shape[0] if src.project is not None else E_t
    if out_width != H:
        raise InitializationError(
            f"The teacher's embeddings are {out_width} wide but the student's hidden size is {H}; they must be "
            "equal to initialise from the teacher.")
    if E == E_t:
        init_embeddings_from_module(student, teacher, parts)
        return "copy"
    if E > E_t:
        raise InitializationError(
            f"The student's embedding size {E} is wider than the teacher's embeddings ({E_t}); give "
            f"--embedding-size {E_t} or less to start from the teacher's, or --embedding-init random.")
    W = src.word.weight.float()
    if W.shape[0] != base.embeddings.word_embeddings.weight.shape[0]:
        raise InitializationError(
            f"Vocabulary mismatch: teacher has {W.shape[0]} tokens, student "
            f"{base.embeddings.word_embeddings.weight.shape[0]}.")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    basis = Vh[:E]                                     # (E, E_t): top right-singular vectors
    dst = base.embeddings
    dst.word_embeddings.weight.copy_(U[:, :E] * S[:E])
    parts["embeddings"] = "svd"
    _side_tables(dst, src, lambda w: w @ basis.T, "svd", parts)
    if src.project is None:
        base.projection.weight.copy_(basis.T)          # (H, E): e -> e V_E^T
        base.projection.bias.zero_()
    else:                                              # ELECTRA: e -> P (e V_E^T) + b
        base.projection.weight.copy_(src.project.weight.float() @ basis.T)
        base.projection.bias.copy_(src.project.bias)
    parts["projection"] = "svd"
    return "svd"


# Where each shared-layer tensor lives in a BERT-style teacher layer (BertLayer and relatives); every
# family's own layout is in families.py.
_BERT_LAYER_MAP = BERT_LAYER.by_student_path()


LAYER_CHOICE_HELP = ("a teacher layer is a number (1-based), 'last', or a fraction of the teacher's depth written "
                     "with a decimal point (0.5 = the middle layer, rounded up; 1.0 = the last)")


def teacher_layer_number(choice, teacher_layers: int, what: str = "--shared-layer-init") -> int:
    """One layer choice relative to the teacher: 6 -> 6; 'last' -> L; a fraction written with a decimal
    point (0.5, '1.0') -> ceil(f L), at least 1. A whole number outside 1..L is refused."""
    text = str(choice).strip().lower()
    if text == "last":
        return teacher_layers
    if isinstance(choice, bool):
        text = "?"
    try:
        value = int(text) if "." not in text else float(text)
    except ValueError:
        raise InitializationError(f"{what}: {choice!r} is not a teacher layer; {LAYER_CHOICE_HELP}.") from None
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise InitializationError(f"{what}: the fraction {choice!r} of the teacher's depth must lie in (0, 1] "
                                      "(1.0 = the last layer).")
        value = max(1, math.ceil(round(value * teacher_layers, 6)))
    if not 1 <= value <= teacher_layers:
        raise InitializationError(f"{what}: teacher layer {value} is out of range 1..{teacher_layers}.")
    return value


def parse_shared_layer_init(spec, teacher_layers: int, layer_map=None) -> list[int]:
    """'6' or 6 -> [6]; 'last' / '1.0' -> [L]; 'average' -> the mapped teacher layers (all layers
    without a map); 'average:2,4,last' -> [2, 4, L]. 1-based, checked against the teacher's depth."""
    text = str(spec).strip().lower()
    if text == "average":
        return sorted(set(layer_map)) if layer_map else list(range(1, teacher_layers + 1))
    if text.startswith("average:"):
        items = [x for x in text[len("average:"):].split(",") if x.strip()]
        if not items:
            raise InitializationError(f"--shared-layer-init {spec!r}: give teacher layers after 'average:', "
                                      "e.g. average:2,4,6 or average:0.5,last.")
        return [teacher_layer_number(x, teacher_layers) for x in items]
    return [teacher_layer_number(spec, teacher_layers)]


def _teacher_layers(teacher):
    """The teacher's layer list, per its family; an error naming the family where they cannot be copied."""
    family = family_for(teacher)
    layers = teacher_layers(teacher, family)
    if layers is None:
        raise InitializationError(f"The {family.name} teacher's layers cannot become the student's layer: "
                                  f"{family.why_no_layer or 'its layout differs'}.")
    return layers


@torch.no_grad()
def _load_layer(dst, teacher, layers, chosen: list[int]) -> None:
    """Student layer `dst` <- the element-wise mean of teacher layers `chosen` (1-based)."""
    family = family_for(teacher)
    for index in chosen:
        if not 1 <= index <= len(layers):
            raise InitializationError(f"Teacher layer {index} is out of range 1..{len(layers)}.")
    for dst_name in family.layer.by_student_path():
        d = dst.get_submodule(dst_name)
        sources = [layer_part(layers[i - 1], family, dst_name) for i in chosen]
        if d.weight.shape != sources[0].weight.shape:
            raise InitializationError(
                f"Shape mismatch for {dst_name}: student {tuple(d.weight.shape)} vs teacher "
                f"{tuple(sources[0].weight.shape)}; the student's H and FFN size must equal the teacher's.")
        d.load_state_dict({k: torch.stack([src.state_dict()[k].float() for src in sources]).mean(0)
                           for k in sources[0].state_dict()})


@torch.no_grad()
def init_shared_layer_from_teacher(student, teacher, layer) -> None:
    """Load the student's shared layer from teacher layer `layer` (1-based), or from the element-wise
    mean of several teacher layers (a list): attention, FFN and LayerNorm weights alike. Averaging
    starts the shared layer between the layers it must imitate, as Relaxed Recursive Transformers
    initialise a shared block from several pretrained layers."""
    _load_layer(student.base_model.encoder.layer, teacher, _teacher_layers(teacher),
                [layer] if isinstance(layer, int) else list(layer))


@torch.no_grad()
def init_layer_groups_from_teacher(student, teacher, layer_map: list[int]) -> list[list[int]]:
    """A student of g > 1 layer groups (a plain student when g = N): each group's layer starts as
    the mean of the teacher layers its iterations are mapped to (one layer each for a plain
    student: layer dropping, as DistilBERT and sentence-transformers do). Returns the teacher
    layers of each group."""
    encoder, layers = student.base_model.encoder, _teacher_layers(teacher)
    groups = [sorted({layer_map[i] for i in range(len(layer_map)) if encoder.layer_at(i) is group})
              for group in encoder.layer]
    for group, chosen in zip(encoder.layer, groups):
        _load_layer(group, teacher, layers, chosen)
    return groups


# A teacher-minus-shared difference below this share of the teacher weight's norm (float32 rounding)
# holds nothing to start from: that delta starts as LoRA's.
_NEGLIGIBLE_RESIDUAL = 1e-6


@torch.no_grad()
def init_relaxation_from_teacher(student, teacher, layer_map: list[int]) -> tuple[list[float], list]:
    """Relaxed recursion's start (Bae et al., 2025): iteration i's rank-r delta of each linear map is
    the truncated SVD of (teacher layer layer_map[i]'s weight - the shared weight), split evenly
    between its two factors, so W + B_i A_i is the best rank-r step from the shared layer towards the
    layer that iteration imitates. Where that difference is negligible (the shared layer is that
    layer) the split would give two zero factors whose gradients stay zero forever, so such a delta
    starts as LoRA's does instead: `down` (A) kaiming-uniform as PEFT's lora_A, `up` (B) zero, a zero
    delta that trains. Biases and LayerNorms stay shared. Returns, per iteration, the share of the
    SVD-started differences' energy the deltas keep (1.0 where there is none), and the start of its
    deltas: "svd", "lora", or {map: start} where they differ."""
    from .modeling_minialbert import relaxed_maps

    encoder, layers = student.base_model.encoder, _teacher_layers(teacher)
    rank, kept, starts = student.config.relaxation_rank, [], []
    for i, deltas in enumerate(encoder.deltas):
        energy = total = 0.0
        start = {}
        for name, (path, _, _) in relaxed_maps(student.config).items():
            shared = encoder.layer_at(i).get_submodule(path).weight.float()
            target = layer_part(layers[layer_map[i] - 1], family_for(teacher), path).weight.float()
            delta = deltas.maps[name]
            if torch.linalg.norm(target - shared) <= _NEGLIGIBLE_RESIDUAL * torch.linalg.norm(target):
                nn.init.kaiming_uniform_(delta.down, a=math.sqrt(5))
                nn.init.zeros_(delta.up)
                start[name] = "lora"
                continue
            U, S, Vh = torch.linalg.svd(target - shared, full_matrices=False)
            root = S[:rank].sqrt()
            delta.up.copy_(U[:, :rank] * root)
            delta.down.copy_(root[:, None] * Vh[:rank])
            energy, total = energy + float((S[:rank] ** 2).sum()), total + float((S ** 2).sum())
            start[name] = "svd"
        kept.append(round(energy / total, 4) if total > 0 else 1.0)
        starts.append(next(iter(start.values())) if len(set(start.values())) == 1 else start)
    return kept, starts


@torch.no_grad()
def init_embeddings_from_outputs(student, token_outputs, token_coordinates) -> str:
    """E < H, beyond the paper: the embedding starts from the teacher's own per-token *outputs*
    (model2vec's recipe: each vocabulary entry encoded alone by the teacher and mean-pooled,
    `token_outputs` (V, H), then PCA to E dimensions, `token_coordinates` (V, E)) instead of the SVD
    of the teacher's input table. The word table holds the coordinates (normalised, so the student's
    E-wide LayerNorm leaves them as they are), and the projection (E -> H) is fitted by least squares
    to give back the outputs, so the embedding layer alone is already a static sentence encoder.
    Positions and token types start at zero (a static vector has none). Returns the method used."""
    base = student.base_model
    E = base.config.embedding_size
    V = base.embeddings.word_embeddings.weight.shape[0]
    coordinates = torch.as_tensor(token_coordinates, dtype=torch.float32)
    outputs = torch.as_tensor(token_outputs, dtype=torch.float32)
    if coordinates.shape != (V, E) or outputs.shape[0] != V or outputs.shape[1] != base.config.hidden_size:
        raise InitializationError(f"Static vectors of shape {tuple(coordinates.shape)} / {tuple(outputs.shape)} do not "
                                  f"fit a student with vocabulary {V}, E={E}, H={base.config.hidden_size}.")
    dst = base.embeddings
    words = torch.nn.functional.layer_norm(coordinates, (E,), eps=dst.LayerNorm.eps)
    dst.word_embeddings.weight.copy_(words)
    dst.position_embeddings.weight.zero_()
    dst.token_type_embeddings.weight.zero_()
    solution = torch.linalg.lstsq(torch.cat([words, torch.ones(V, 1)], 1), outputs).solution  # (E + 1, H)
    base.projection.weight.copy_(solution[:E].T)
    base.projection.bias.copy_(solution[E])
    return "model2vec"


@torch.no_grad()
def init_relative_bias_from_teacher(student, teacher) -> bool:
    """Copy the teacher's relative position bias (MPNet: `encoder.relative_attention_bias`, one
    buckets x heads table shared by all its layers) into the student's, which every iteration adds as
    the teacher's layers do. Returns whether there was one to copy (False: the student has no table,
    or the teacher none)."""
    table = getattr(student.base_model.encoder, "relative_attention_bias", None)
    source = getattr(getattr(teacher.base_model, "encoder", None), "relative_attention_bias", None)
    if table is None or source is None:
        return False
    (rows, heads), (teacher_rows, teacher_heads) = table.weight.shape, source.weight.shape
    # MPNet reads only the first 32 rows of its table, whatever relative_attention_num_buckets says
    if heads != teacher_heads or rows > teacher_rows:
        raise InitializationError(
            f"The teacher's relative position bias is {teacher_rows} x {teacher_heads} (buckets x heads) but the "
            f"student's is {rows} x {heads}; give the student the teacher's head count.")
    table.weight.copy_(source.weight[:rows])
    return True
