"""Reference-checkpoint import (checked against transformers' own ALBERT pieces) and the
initialisation helpers."""

import json

import pytest
import torch
from torch import nn
from transformers import AlbertConfig, AlbertModel, AutoModelForMaskedLM, BertConfig, BertModel

import minialbert  # noqa: F401  (registers the model type)
from minialbert.cli import main
from minialbert.model.initialization import (InitializationError, init_embeddings_from_module,
                                             init_embeddings_from_teacher, init_shared_layer_from_teacher)

from helpers import batch, tiny_config


class RefAdapter(nn.Module):
    """The reference implementation's adapter layout: block = (Linear, GELU, Linear), norm."""

    def __init__(self, dim, r):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(dim, dim // r), nn.GELU(), nn.Linear(dim // r, dim))
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x):
        return self.norm(self.block(x) + x)


def build_reference(tmp_path, use_adapter=True, E=16, H=32, N=3, V=120):
    """Write a checkpoint in the authors' layout and return an independent forward function."""
    cfg = AlbertConfig(vocab_size=V, embedding_size=E, hidden_size=H, num_hidden_layers=N,
                       num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       max_position_embeddings=64)
    cfg._attn_implementation = "eager"
    albert = AlbertModel(cfg).eval()
    for p in albert.parameters():  # non-trivial LayerNorm/bias values so a swapped key would show
        nn.init.normal_(p, std=0.1) if p.dim() == 1 else None
    att = nn.ModuleList(RefAdapter(H, 4) for _ in range(N))
    mlp = nn.ModuleList(RefAdapter(H, 4) for _ in range(N))
    projector = nn.Linear(E, H)
    vocab_transform, vocab_layer_norm, vocab_projector = nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12), nn.Linear(H, V)

    state = {f"albert.albert.{k}": v for k, v in albert.state_dict().items()}
    state.update({f"albert.projector.{k}": v for k, v in projector.state_dict().items()})
    if use_adapter:
        state.update({f"albert.att_adapters.{k}": v for k, v in att.state_dict().items()})
        state.update({f"albert.mlp_adapters.{k}": v for k, v in mlp.state_dict().items()})
    for name, mod in (("vocab_transform", vocab_transform), ("vocab_layer_norm", vocab_layer_norm),
                      ("vocab_projector", vocab_projector)):
        state.update({f"{name}.{k}": v for k, v in mod.state_dict().items()})
    torch.save(state, tmp_path / "pytorch_model.bin")
    ref_cfg = cfg.to_dict()
    ref_cfg.update(model_type="albert", use_adapter=use_adapter, reduction_factor=4, embedding_size=E)
    (tmp_path / "config.json").write_text(json.dumps(ref_cfg))

    layer = albert.encoder.albert_layer_groups[0].albert_layers[0]

    @torch.no_grad()
    def forward(ids, mask):
        h = projector(albert.embeddings(input_ids=ids))
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden, maps = [h], []
        for i in range(N):
            x = att[i](h) if use_adapter else h
            x, probs = layer.attention(x, ext)
            x = mlp[i](x) if use_adapter else x
            h = layer.full_layer_layer_norm(layer.ffn_output(layer.activation(layer.ffn(x))) + x)
            hidden.append(h)
            maps.append(probs)
        logits = vocab_projector(vocab_layer_norm(nn.functional.gelu(vocab_transform(h))))
        return hidden, maps, logits

    return forward


@pytest.mark.parametrize("use_adapter", [True, False])
def test_import_reference_matches_the_reference_forward(tmp_path, use_adapter, capsys):
    src, out = tmp_path / "ref", tmp_path / "out"
    src.mkdir()
    reference_forward = build_reference(src, use_adapter)
    assert main(["import-reference", str(src), str(out)]) == 0
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert model.config.use_adapters == use_adapter
    ids, mask = batch()
    hidden, maps, logits = reference_forward(ids, mask)
    with torch.no_grad():
        got = model(ids, mask, output_hidden_states=True, output_attentions=True)
    for a, b in zip(got.hidden_states, hidden, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(got.attentions, maps, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.logits, logits, atol=1e-4, rtol=1e-4)


def test_import_reference_rejects_foreign_checkpoints(tmp_path, capsys):
    assert main(["import-reference", str(tmp_path), str(tmp_path / "o")]) == 2
    assert "no config.json" in capsys.readouterr().err
    build_reference(tmp_path)
    state = torch.load(tmp_path / "pytorch_model.bin")
    state["something.else.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert main(["import-reference", str(tmp_path), str(tmp_path / "o")]) == 2
    assert "not in the reference MiniALBERT layout" in capsys.readouterr().err


def _bert(H=32, V=120):
    return BertModel(BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=4, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=64,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()


def test_embeddings_copied_from_teacher_when_E_equals_H():
    teacher, student = _bert(), minialbert.MiniAlbertModel(tiny_config(embedding_size=32)).eval()
    assert init_embeddings_from_teacher(student, teacher) == "copy"
    ids, _ = batch()
    torch.testing.assert_close(student.embeddings(ids), teacher.embeddings(input_ids=ids))


def test_svd_embedding_init_is_the_best_rank_E_factorisation():
    teacher, student = _bert(), minialbert.MiniAlbertModel(tiny_config(embedding_size=8))
    assert init_embeddings_from_teacher(student, teacher) == "svd"
    W = teacher.embeddings.word_embeddings.weight
    approx = student.embeddings.word_embeddings.weight @ student.projection.weight.T
    S = torch.linalg.svdvals(W)
    err = torch.linalg.matrix_norm(W - approx)  # Eckart-Young: the optimum is the tail energy
    torch.testing.assert_close(err, S[8:].pow(2).sum().sqrt(), atol=1e-4, rtol=1e-4)
    P = teacher.embeddings.position_embeddings.weight
    Pp = student.embeddings.position_embeddings.weight @ student.projection.weight.T
    assert torch.linalg.matrix_norm(P - Pp) < torch.linalg.matrix_norm(P)


def test_embedding_module_copy_and_vocabulary_mismatch():
    small = _bert(H=16)
    student = minialbert.MiniAlbertModel(tiny_config(embedding_size=16))
    init_embeddings_from_module(student, small)
    assert torch.equal(student.embeddings.word_embeddings.weight, small.embeddings.word_embeddings.weight)
    with pytest.raises(InitializationError, match="Vocabulary mismatch"):
        init_embeddings_from_module(student, _bert(H=16, V=99))
    with pytest.raises(InitializationError, match="width mismatch"):
        init_embeddings_from_module(student, _bert(H=32))


def test_shared_layer_from_teacher_layer_reproduces_that_layer():
    teacher = _bert()
    student = minialbert.MiniAlbertModel(tiny_config(use_adapters=False, num_hidden_layers=1)).eval()
    init_shared_layer_from_teacher(student, teacher, layer=3)
    x = torch.randn(2, 5, 32)
    expected = teacher.encoder.layer[2](x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    layer = student.encoder.layer
    got = layer.ffn(layer.attention(x, None)[0])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(InitializationError, match="out of range"):
        init_shared_layer_from_teacher(student, teacher, layer=9)
