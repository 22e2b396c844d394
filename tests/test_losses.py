"""The five loss components against an independent, element-by-element implementation of
docs/method.md's formulas, on random tensors with padding and masking."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from minialbert import MiniAlbertForMaskedLM
from minialbert.distillation import LossWeights, distillation_losses, uniform_layer_map
from minialbert.distillation.losses import check_layer_map
from minialbert.distillation.teacher import Teacher
from minialbert.distillation.trainer import DistillationModel
from minialbert.errors import MiniAlbertError

from helpers import tiny_config

B, T, V, H, A, N, LT = 2, 6, 11, 8, 2, 2, 4
EPS = 1e-12


def random_outputs(seed, layers):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        logits=torch.randn(B, T, V, generator=g) * 2,
        hidden_states=tuple(torch.randn(B, T, H, generator=g) for _ in range(layers + 1)),
        attentions=tuple(torch.randn(B, A, T, T, generator=g).softmax(-1) for _ in range(layers)),
    )


def reference_losses(s, t, labels, mask, layer_map, temp):
    """Loops over scalars, straight from docs/method.md section 2."""
    def log_softmax(z):
        m = max(z)
        lse = m + math.log(sum(math.exp(x - m) for x in z))
        return [x - lse for x in z]

    masked = [(b, i) for b in range(B) for i in range(T) if labels[b][i] != -100]
    valid = [(b, i) for b in range(B) for i in range(T) if mask[b][i]]
    mlm = sum(-log_softmax(s.logits[b, i].tolist())[labels[b][i]] for b, i in masked) / len(masked)
    out = 0.0
    for b, i in masked:
        ls = log_softmax((s.logits[b, i] / temp).tolist())
        lt = log_softmax((t.logits[b, i] / temp).tolist())
        out += sum(math.exp(q) * (q - p) for p, q in zip(ls, lt))
    out = temp ** 2 * out / len(masked)
    att = 0.0
    for it, g in enumerate(layer_map):
        acc, count = 0.0, 0
        for b, q in valid:
            for h in range(A):
                for k in range(T):
                    a_t = t.attentions[g - 1][b, h, q, k].item() + EPS
                    a_s = s.attentions[it][b, h, q, k].item() + EPS
                    acc += a_t * (math.log(a_t) - math.log(a_s))
                    count += 1
        att += acc / count

    def cos_loss(x, y):
        return sum(1 - torch.dot(x[b, i], y[b, i]).item() / (x[b, i].norm().item() * y[b, i].norm().item())
                   for b, i in valid) / len(valid)

    hid = sum(cos_loss(s.hidden_states[it + 1], t.hidden_states[g]) for it, g in enumerate(layer_map))
    emb = cos_loss(s.hidden_states[0], t.hidden_states[0])

    def pooled(x, b):  # the mean of row b's real-token states, one token at a time
        rows = [x[b, i] for i in range(T) if mask[b][i]]
        return sum(rows) / len(rows)

    sent = sum(1 - torch.dot(pooled(s.hidden_states[-1], b), pooled(t.hidden_states[-1], b)).item()
               / (pooled(s.hidden_states[-1], b).norm().item() * pooled(t.hidden_states[-1], b).norm().item())
               for b in range(B)) / B
    return {"mlm": mlm, "output": out, "attention": att, "hidden": hid, "embedding": emb, "sentence": sent}


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_components_equal_independent_implementation(temp):
    s, t = random_outputs(1, N), random_outputs(2, LT)
    mask = torch.tensor([[1] * T, [1] * 4 + [0] * 2])
    labels = torch.full((B, T), -100)
    labels[0, 1], labels[0, 4], labels[1, 2] = 3, 7, 10
    layer_map = [2, 4]
    got = distillation_losses(s, t, labels, mask, layer_map, temperature=temp)
    want = reference_losses(s, t, labels.tolist(), mask.tolist(), layer_map, temp)
    assert set(got) == {"mlm", "attention", "hidden", "output", "embedding", "sentence"}
    for k in want:
        assert got[k].item() == pytest.approx(want[k], rel=1e-5, abs=1e-6), k


def test_padding_rows_do_not_count():
    s, t = random_outputs(3, N), random_outputs(4, LT)
    mask = torch.tensor([[1] * T, [1] * 3 + [0] * 3])
    labels = torch.full((B, T), -100)
    labels[0, 0] = 1
    base = distillation_losses(s, t, labels, mask, [2, 4])
    for x in (s.hidden_states[1], s.attentions[0]):
        x[1, ..., 4, :] = 0.5  # change a padded query row / token only
    again = distillation_losses(s, t, labels, mask, [2, 4])
    assert again["hidden"] == base["hidden"] and again["attention"] == base["attention"]


def test_layer_maps():
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert uniform_layer_map(3, 6) == [2, 4, 6]
    assert uniform_layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(MiniAlbertError, match="has 2 entries but the student has 3"):
        check_layer_map([1, 2], 3, 6)
    with pytest.raises(MiniAlbertError, match=r"out of range: the teacher has layers 1..6"):
        check_layer_map([1, 2, 7], 3, 6)


def test_weighted_total_and_alignment_switches():
    losses = {k: torch.tensor(v) for k, v in dict(mlm=1.0, attention=2.0, hidden=3.0, output=4.0, embedding=5.0,
                                                  sentence=6.0).items()}
    assert LossWeights().total(losses).item() == pytest.approx(1 + 3 * (2 + 3) + 5 * 4)
    assert LossWeights(alignment_mode="hidden").total(losses).item() == pytest.approx(1 + 3 * 3 + 20)
    assert LossWeights(alignment_mode="attention").total(losses).item() == pytest.approx(1 + 3 * 2 + 20)
    assert LossWeights(alignment_mode="none").total(losses).item() == pytest.approx(21)
    assert LossWeights(embedding=3.0).total(losses).item() == pytest.approx(36 + 15)
    assert LossWeights(sentence=2.0).total(losses).item() == pytest.approx(36 + 12)
    assert LossWeights(alignment_mode="none", output=0.0, sentence=1.0).needs_teacher  # the target is the teacher's
    with pytest.raises(MiniAlbertError, match="alignment must be one of"):
        LossWeights(alignment_mode="most")


def test_masked_only_training_path_equals_full_tensor_function():
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=64, attn_implementation="eager")
    bert = BertForMaskedLM(cfg).eval()
    teacher = Teacher("tiny", bert, bert.bert, bert.cls)
    student = MiniAlbertForMaskedLM(tiny_config(num_hidden_layers=2)).eval()
    model = DistillationModel(student, [2, 4], LossWeights(embedding=1.0, sentence=2.0), temperature=2.0)
    ids = torch.randint(1, 120, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[2, 6:] = 0
    labels = torch.where(torch.rand(3, 10) < 0.3, ids, -100)
    labels[0, 0] = ids[0, 0]
    masked = labels != -100
    t_hidden, t_attn, t_logits = teacher.forward(ids, mask, None, masked)
    fast = model(ids, mask, labels, t_hidden, t_attn, t_logits)
    with torch.no_grad():
        full = distillation_losses(student(ids, mask, output_hidden_states=True, output_attentions=True),
                                   bert(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True),
                                   labels, mask, [2, 4], temperature=2.0)
    for k in full:
        torch.testing.assert_close(fast[k], full[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast["loss"], LossWeights(embedding=1.0, sentence=2.0).total(full), rtol=1e-5, atol=1e-6)
