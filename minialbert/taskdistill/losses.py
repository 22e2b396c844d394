"""The losses of task distillation (TinyBERT's task stage; docs/method.md section 7), written by
hand: transformers has no distiller, and TextBrewer's does not run on the Trainer.

- stage 1, intermediate layers: the general-distillation attention KL and hidden cosine (the very
  same functions of `distillation.losses`) between the student's iterations and the teacher's
  mapped layers;
- stage 2, prediction layer: soft cross-entropy with temperature against the teacher's logits (per
  labelled token for NER; MSE against the teacher's prediction for regression), optionally mixed
  with the hard-label loss.
"""

from __future__ import annotations

from torch.nn import functional as F

from ..distillation.losses import attention_loss, hidden_loss


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    """T^2 * mean over rows of -sum_c softmax(z_t / T)_c * log softmax(z_s / T)_c. The T^2 keeps the
    gradient's size independent of T (Hinton et al. 2015); at T = 1 it is TinyBERT's loss."""
    T = temperature
    p_t = F.softmax(teacher_logits.float() / T, dim=-1)
    return -(p_t * F.log_softmax(student_logits.float() / T, dim=-1)).sum(-1).mean() * T * T


def prediction_loss(student_logits, teacher_logits, labels, has_label, temperature: float = 1.0,
                    hard_weight: float = 0.0, regression_scale: float = 1.0):
    """(1 - hard_weight) * soft + hard_weight * hard.

    - classification, logits (B, C): soft cross-entropy against the teacher; hard = cross-entropy
      on the rows with a gold label (`has_label`; teacher-labelled transfer rows have none);
    - regression, logits (B, 1): MSE against the teacher's prediction, both divided by
      `regression_scale` (the bi-encoder's similarity scale, as in its own hard loss); hard = MSE
      against the gold score;
    - token level, logits (B, T, C): the classification losses over positions whose label is not
      -100 (each word's first sub-token)."""
    has_label = has_label.bool()
    if student_logits.dim() == 3:  # tokens: keep labelled positions, rows flattened
        keep = labels != -100
        gold = keep & has_label[:, None]
        soft = soft_cross_entropy(student_logits[keep], teacher_logits[keep], temperature)
        hard_fn, prediction, target = F.cross_entropy, student_logits[gold].float(), labels[gold]
    elif student_logits.shape[-1] == 1:
        s = student_logits.float().view(-1) / regression_scale
        soft = F.mse_loss(s, teacher_logits.float().view(-1) / regression_scale)
        hard_fn, prediction, target = F.mse_loss, s[has_label], labels.float().view(-1)[has_label] / regression_scale
    else:
        soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
        hard_fn, prediction, target = F.cross_entropy, student_logits[has_label].float(), labels[has_label]
    if not hard_weight or target.numel() == 0:  # no gold row in the batch: the soft part alone
        return soft
    return (1 - hard_weight) * soft + hard_weight * hard_fn(prediction, target)


def intermediate_losses(student_out, teacher_hidden, teacher_attentions, attention_mask, layer_map,
                        projection=None, average_heads=False) -> dict:
    """Stage 1: {'attention', 'hidden'} of `losses.py` on the student's outputs (hidden states with
    the embedding output first, one attention map per iteration) and the teacher's."""
    return {"attention": attention_loss(student_out.attentions, teacher_attentions, attention_mask, layer_map,
                                        average_heads),
            "hidden": hidden_loss(student_out.hidden_states, teacher_hidden, attention_mask, layer_map, projection)}
