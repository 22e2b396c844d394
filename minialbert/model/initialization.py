"""Student initialisation helpers (docs/method.md section 3, plus an SVD option beyond the paper)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MiniAlbertError


class InitializationError(MiniAlbertError):
    """The source model cannot initialise this student; the message says why and what to do."""


def _embedding_module(model) -> nn.Module:
    """The word/position/token-type embedding module of a BERT-like model or a bare module."""
    for candidate in (model, getattr(model, "base_model", None),
                      getattr(getattr(model, "base_model", None), "embeddings", None)):
        if candidate is not None and hasattr(candidate, "word_embeddings"):
            return candidate
    raise InitializationError(
        f"{type(model).__name__} has no BERT-style embeddings module (word_embeddings, "
        "position_embeddings, token_type_embeddings, LayerNorm); pass a BERT-like model.")


@torch.no_grad()
def init_embeddings_from_module(student, source) -> None:
    """Copy a pretrained embedding module of width E into the student (the paper initialises its
    E=312 students from TinyBERT-4L-312D). Vocabulary and width must match exactly."""
    dst, src = student.base_model.embeddings, _embedding_module(source)
    V_s, E_s = src.word_embeddings.weight.shape
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
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        s, d = getattr(src, name).weight, getattr(dst, name).weight
        n = min(s.shape[0], d.shape[0])
        d[:n].copy_(s[:n])
    dst.LayerNorm.load_state_dict(src.LayerNorm.state_dict())


@torch.no_grad()
def init_embeddings_from_teacher(student, teacher) -> str:
    """E == H: copy the teacher's embeddings. E < H (beyond the paper): truncated SVD of the
    teacher's word table W = U S V^T, so word table = U_E S_E and projection = V_E^T; position
    and token-type tables are projected onto the same E directions. The student's LayerNorm then
    acts in E dimensions, so the result is an approximation of the teacher's embedding output,
    a starting point, not an exact copy. Returns which method was used."""
    base = student.base_model
    E, H = base.config.embedding_size, base.config.hidden_size
    src = _embedding_module(teacher)
    if src.word_embeddings.weight.shape[1] != H:
        raise InitializationError(
            f"The teacher's embeddings are {src.word_embeddings.weight.shape[1]} wide but the "
            f"student's hidden size is {H}; they must be equal to initialise from the teacher.")
    if E == H:
        init_embeddings_from_module(student, src)
        return "copy"
    W = src.word_embeddings.weight.float()
    if W.shape[0] != base.embeddings.word_embeddings.weight.shape[0]:
        raise InitializationError(
            f"Vocabulary mismatch: teacher has {W.shape[0]} tokens, student "
            f"{base.embeddings.word_embeddings.weight.shape[0]}.")
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    basis = Vh[:E]                                     # (E, H): top right-singular vectors
    dst = base.embeddings
    dst.word_embeddings.weight.copy_(U[:, :E] * S[:E])
    n = min(dst.position_embeddings.weight.shape[0], src.position_embeddings.weight.shape[0])
    dst.position_embeddings.weight[:n].copy_(src.position_embeddings.weight[:n].float() @ basis.T)
    dst.token_type_embeddings.weight.copy_(src.token_type_embeddings.weight.float() @ basis.T)
    base.projection.weight.copy_(basis.T)              # (H, E): e -> e V_E^T
    base.projection.bias.zero_()
    return "svd"


# Where each shared-layer tensor lives in a BERT-style teacher layer (BertLayer and relatives).
_BERT_LAYER_MAP = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.dense": "attention.output.dense",
    "attention.LayerNorm": "attention.output.LayerNorm",
    "ffn.intermediate": "intermediate.dense",
    "ffn.output": "output.dense",
    "ffn.LayerNorm": "output.LayerNorm",
}


def parse_shared_layer_init(spec, teacher_layers: int, layer_map=None) -> list[int]:
    """'6' or 6 -> [6]; 'average' -> the mapped teacher layers (all layers without a map);
    'average:2,4,6' -> [2, 4, 6]. 1-based, checked against the teacher's depth."""
    text = str(spec).strip().lower()
    if text == "average":
        layers = sorted(set(layer_map)) if layer_map else list(range(1, teacher_layers + 1))
    elif text.startswith("average:"):
        try:
            layers = [int(x) for x in text[len("average:"):].split(",") if x.strip()]
        except ValueError:
            layers = []
        if not layers:
            raise InitializationError(f"--shared-layer-init {spec!r}: give teacher layers after 'average:', "
                                      "e.g. average:2,4,6.")
    else:
        try:
            layers = [int(text)]
        except ValueError:
            raise InitializationError(f"--shared-layer-init {spec!r}: give a teacher layer (1-based), 'average' "
                                      "(the mapped teacher layers) or 'average:2,4,6'.") from None
    bad = [x for x in layers if not 1 <= x <= teacher_layers]
    if bad:
        raise InitializationError(f"--shared-layer-init: teacher layers {bad} are out of range 1..{teacher_layers}.")
    return layers


def _teacher_layers(teacher):
    layers = getattr(getattr(teacher.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise InitializationError(f"{type(teacher).__name__} has no encoder.layer list (BERT-style).")
    return layers


@torch.no_grad()
def _load_layer(dst, layers, chosen: list[int]) -> None:
    """Student layer `dst` <- the element-wise mean of teacher layers `chosen` (1-based)."""
    for index in chosen:
        if not 1 <= index <= len(layers):
            raise InitializationError(f"Teacher layer {index} is out of range 1..{len(layers)}.")
    for dst_name, src_name in _BERT_LAYER_MAP.items():
        d = dst.get_submodule(dst_name)
        sources = [layers[i - 1].get_submodule(src_name) for i in chosen]
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
    _load_layer(student.base_model.encoder.layer, _teacher_layers(teacher), [layer] if isinstance(layer, int) else list(layer))


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
        _load_layer(group, layers, chosen)
    return groups


@torch.no_grad()
def init_relaxation_from_teacher(student, teacher, layer_map: list[int]) -> list[float]:
    """Relaxed recursion's start (Bae et al., 2025): iteration i's rank-r delta of each linear map is
    the truncated SVD of (teacher layer layer_map[i]'s weight - the shared weight), split evenly
    between its two factors, so W + B_i A_i is the best rank-r step from the shared layer towards the
    layer that iteration imitates (zero where the shared layer is that layer). Biases and LayerNorms
    stay shared. Returns, per iteration, the share of that difference's energy the deltas keep."""
    from .modeling_minialbert import relaxed_maps

    encoder, layers = student.base_model.encoder, _teacher_layers(teacher)
    rank, kept = student.config.relaxation_rank, []
    for i, deltas in enumerate(encoder.deltas):
        energy = total = 0.0
        for name, (path, _, _) in relaxed_maps(student.config).items():
            shared = encoder.layer_at(i).get_submodule(path).weight.float()
            target = layers[layer_map[i] - 1].get_submodule(_BERT_LAYER_MAP[path]).weight.float()
            U, S, Vh = torch.linalg.svd(target - shared, full_matrices=False)
            root = S[:rank].sqrt()
            deltas.maps[name].up.copy_(U[:, :rank] * root)
            deltas.maps[name].down.copy_(root[:, None] * Vh[:rank])
            energy, total = energy + float((S[:rank] ** 2).sum()), total + float((S ** 2).sum())
        kept.append(round(energy / total, 4) if total > 0 else 1.0)
    return kept


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
