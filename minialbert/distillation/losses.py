"""Layer-to-layer distillation losses (docs/method.md section 2), written by hand because no library
has MiniALBERT's exact reductions (they follow the authors' reference implementation).

Each component is a small function on already-selected tensors, so the training path (logits
computed only at masked positions) and `distillation_losses` (full (B, T, V) tensors) share the
very same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..errors import MiniAlbertError
from ..model.pooling import pool

ALIGNMENT_MODES = ("full", "hidden", "attention", "none")


def uniform_layer_map(student_iterations: int, teacher_layers: int) -> list[int]:
    """g(i) = i * L_t / N (1-based); for L_t=12, N=6: [2, 4, 6, 8, 10, 12]."""
    return [max(1, round(i * teacher_layers / student_iterations)) for i in range(1, student_iterations + 1)]


def check_layer_map(layer_map, student_iterations: int, teacher_layers: int) -> list[int]:
    layer_map = [int(x) for x in layer_map]
    if len(layer_map) != student_iterations:
        raise MiniAlbertError(
            f"--layer-map has {len(layer_map)} entries but the student has {student_iterations} "
            f"iterations; give one teacher layer (1..{teacher_layers}) per iteration.")
    bad = [x for x in layer_map if not 1 <= x <= teacher_layers]
    if bad:
        raise MiniAlbertError(f"--layer-map entries {bad} are out of range: the teacher has layers "
                              f"1..{teacher_layers}.")
    return layer_map


def alignment_setup(student_config, teacher_config, *, hidden: bool, attention: bool, project_hidden: bool = False,
                    average_heads: bool = False, layer_map=None):
    """What aligning a student with a teacher needs, checked the same way for general distillation
    and for task distillation's stage 1: the layer map (uniform unless given), a fresh linear
    projection when the widths differ and a hidden-state loss is used (only with `project_hidden`),
    and whether heads are averaged (a head-count mismatch with attention maps needs
    `average_heads`). Returns (layer_map, projection or None). A mismatch without its flag is a
    clear error, never a silent choice."""
    from torch import nn

    s_width, t_width = student_config.hidden_size, teacher_config.hidden_size
    projection = None
    if s_width != t_width and hidden:
        if not project_hidden:
            raise MiniAlbertError(
                f"Hidden-size mismatch: the student is {s_width} wide, the teacher {t_width}; the cosine hidden "
                "loss needs equal widths. Pass --project-hidden to learn a linear map (TinyBERT style), or "
                "--alignment attention.")
        projection = nn.Linear(s_width, t_width)
    if student_config.num_attention_heads != teacher_config.num_attention_heads and attention and not average_heads:
        raise MiniAlbertError(
            f"Head-count mismatch: the student has {student_config.num_attention_heads} heads, the teacher "
            f"{teacher_config.num_attention_heads}; per-head attention maps cannot be compared. Pass "
            "--average-heads to compare head-averaged maps, or --alignment hidden.")
    n, layers = student_config.num_hidden_layers, teacher_config.num_hidden_layers
    return check_layer_map(layer_map or uniform_layer_map(n, layers), n, layers), projection


def mlm_loss(student_logits_masked, labels_masked):
    """Cross-entropy over the masked positions (rows already selected)."""
    return F.cross_entropy(student_logits_masked.float(), labels_masked)


def output_loss(student_logits_masked, teacher_logits_masked, temperature: float = 1.0):
    """T^2 * mean over masked tokens of KL(softmax(z_t/T) || softmax(z_s/T)) (KLDiv 'batchmean')."""
    T = temperature
    log_p_s = F.log_softmax(student_logits_masked.float() / T, dim=-1)
    p_t = F.softmax(teacher_logits_masked.float() / T, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * T * T


def attention_loss(student_maps, teacher_maps, attention_mask, layer_map, average_heads=False):
    """Sum over iterations of KLDivLoss('mean') between log(a_s + 1e-12) and a_t + 1e-12, over the
    query rows at non-padding positions (every head, every key: the reference reduction)."""
    rows = attention_mask.bool()
    query_rows = rows[:, None, :, None]  # (B, 1, T, 1): padded query rows weigh 0
    total = 0.0
    for i, t_layer in enumerate(layer_map):
        s, t = student_maps[i].float(), teacher_maps[t_layer - 1].float()
        if average_heads:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        count = rows.sum() * s.shape[1] * s.shape[-1]  # selected elements: rows x heads x keys
        # KLDivLoss(reduction="mean") over the selected elements, written as
        # (sum t' log t' - sum t' log s') / count with t' = (t + eps) on selected rows, 0 elsewhere:
        # the teacher's part needs no gradient, and no row-gathered copy of either map is made.
        with torch.no_grad():
            target = (t + 1e-12) * query_rows
            entropy_part = torch.xlogy(target, target).sum()
        cross_part = torch.dot(target.reshape(-1), torch.log(s + 1e-12).reshape(-1))
        total = total + (entropy_part - cross_part) / count
    return total


def cosine_loss(student_states, teacher_states, attention_mask):
    """mean over non-padding tokens of (1 - cos(h_s, h_t))."""
    rows = attention_mask.bool()
    return (1 - F.cosine_similarity(student_states[rows].float(), teacher_states[rows].float(), dim=-1)).mean()


def hidden_loss(student_states, teacher_states, attention_mask, layer_map, projection=None):
    """Sum over iterations of the cosine loss between h^s_i and h^t_{g(i)} (hidden_states[0] is
    the embedding output on both sides). `projection` maps student width to teacher width."""
    total = 0.0
    for i, t_layer in enumerate(layer_map):
        s = student_states[i + 1]
        if projection is not None:
            s = projection(s)
        total = total + cosine_loss(s, teacher_states[t_layer], attention_mask)
    return total


def embedding_loss(student_states, teacher_states, attention_mask, projection=None):
    s = student_states[0] if projection is None else projection(student_states[0])
    return cosine_loss(s, teacher_states[0], attention_mask)


def sentence_loss(student_states, teacher_states, attention_mask, projection=None):
    """Sentence-embedding objective (beyond the paper, docs/method.md section 6): mean over the batch
    of 1 - cos between the student's and the teacher's mean-pooled final states. The cosine makes it
    the same as matching the teacher's normalised embedding."""
    s = student_states[-1] if projection is None else projection(student_states[-1])
    u, v = pool(s.float(), attention_mask, "mean"), pool(teacher_states[-1].float(), attention_mask, "mean")
    return (1 - F.cosine_similarity(u, v, dim=-1)).mean()


def distillation_losses(student_out, teacher_out, labels, attention_mask, layer_map, temperature=1.0,
                        average_heads=False, projection=None):
    """All six unweighted components on full tensors (logits of shape (B, T, V)).

    `labels` uses -100 for unmasked positions; `layer_map[i]` is the 1-based teacher layer that
    student iteration i+1 is aligned with. Returns {'mlm', 'attention', 'hidden', 'output',
    'embedding', 'sentence'}."""
    masked = labels != -100
    s_logits, t_logits = student_out.logits[masked], teacher_out.logits[masked]
    return {
        "mlm": mlm_loss(s_logits, labels[masked]),
        "attention": attention_loss(student_out.attentions, teacher_out.attentions, attention_mask,
                                    layer_map, average_heads),
        "hidden": hidden_loss(student_out.hidden_states, teacher_out.hidden_states, attention_mask,
                              layer_map, projection),
        "output": output_loss(s_logits, t_logits, temperature),
        "embedding": embedding_loss(student_out.hidden_states, teacher_out.hidden_states, attention_mask,
                                    projection),
        "sentence": sentence_loss(student_out.hidden_states, teacher_out.hidden_states, attention_mask, projection),
    }


@dataclass
class LossWeights:
    """L = mlm * L_mlm + alignment * (L_att + L_hid) + output * L_out + embedding * L_emb
    + sentence * L_sent.

    Defaults are the paper's (1, 3, 5, 0) and no sentence loss. The embedding loss is the Table 4
    ablation; the paper weights it like the alignment losses, i.e. embedding = 3. The sentence loss
    (pooled final states) is for embedding students."""

    mlm: float = 1.0
    alignment: float = 3.0
    output: float = 5.0
    embedding: float = 0.0
    alignment_mode: str = "full"
    sentence: float = 0.0

    def __post_init__(self):
        if self.alignment_mode not in ALIGNMENT_MODES:
            raise MiniAlbertError(f"alignment must be one of {', '.join(ALIGNMENT_MODES)} "
                                  f"(got {self.alignment_mode!r}).")

    @property
    def uses_attention(self) -> bool:
        return self.alignment > 0 and self.alignment_mode in ("full", "attention")

    @property
    def uses_hidden(self) -> bool:
        return self.alignment > 0 and self.alignment_mode in ("full", "hidden")

    @property
    def needs_teacher(self) -> bool:
        """False for MLM-only training: then the teacher's forward pass is skipped."""
        return (self.uses_attention or self.uses_hidden or bool(self.output) or bool(self.embedding)
                or bool(self.sentence))

    def active_components(self) -> list[str]:
        switches = {"attention": self.uses_attention, "hidden": self.uses_hidden, "output": bool(self.output),
                    "embedding": bool(self.embedding), "sentence": bool(self.sentence)}
        return ["mlm"] + [k for k, on in switches.items() if on]

    def total(self, losses: dict) -> torch.Tensor:
        total = self.mlm * losses["mlm"]
        if self.uses_attention:
            total = total + self.alignment * losses["attention"]
        if self.uses_hidden:
            total = total + self.alignment * losses["hidden"]
        if self.output and "output" in losses:
            total = total + self.output * losses["output"]
        if self.embedding and "embedding" in losses:
            total = total + self.embedding * losses["embedding"]
        if self.sentence and "sentence" in losses:
            total = total + self.sentence * losses["sentence"]
        return total
