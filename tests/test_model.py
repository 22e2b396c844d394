import copy
import json

import pytest
import torch
from safetensors import safe_open
from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForQuestionAnswering,
                          AutoModelForSequenceClassification, AutoModelForTokenClassification)

import minialbert
from minialbert import MiniAlbertConfigError, MiniAlbertForMaskedLM, MiniAlbertModel
from minialbert.cli import main
from minialbert.model.summary import parameter_breakdown

from helpers import batch, tiny_config

EXPECTED = {  # docs/method.md parameter table: base model without pooler
    "minialbert-768-noadapters": 30_925_056, "minialbert-312-noadapters": 17_012_112,
    "minialbert-768": 31_838_016, "minialbert-312": 17_925_072, "minialbert-128": 12_072_768,
}


@pytest.mark.parametrize("preset", sorted(EXPECTED) + ["minialbert-128-noadapters"])
def test_info_json_gives_the_papers_exact_counts(preset, capsys):
    assert main(["info", preset, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    p = info["parameters"]
    if preset in EXPECTED:
        assert p["base"] == EXPECTED[preset]
    assert p["adapter_tuning_trainable_without_head"] == 912_960
    assert p["adapters"] == (912_960 if not preset.endswith("noadapters") else 0)
    assert p["base"] == p["embeddings"] + p["shared_layer"] + p["adapters"]
    assert info["config"]["hidden_size"] == 768 and info["config"]["num_hidden_layers"] == 6


def test_info_on_a_checkpoint_folder(tmp_path, capsys):
    model = MiniAlbertForMaskedLM(tiny_config())
    model.save_pretrained(tmp_path)
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["base"] == sum(p.numel() for p in model.minialbert.parameters())
    assert info["config"]["embedding_size"] == 16


def test_info_counts_match_a_real_model():
    model = MiniAlbertModel(minialbert.preset_config("minialbert-128"))
    assert sum(p.numel() for p in model.parameters()) == 12_072_768


@pytest.mark.parametrize("kw,needle", [
    (dict(hidden_size=30, num_attention_heads=4), "divisible by num_attention_heads"),
    (dict(embedding_size=64), "larger than hidden_size"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(adapter_reduction_factor=5), "does not divide hidden_size"),
])
def test_bad_configs_raise_clear_errors(kw, needle):
    with pytest.raises(MiniAlbertConfigError, match=needle):
        tiny_config(**kw)


def test_cli_errors_have_no_traceback(capsys, tmp_path):
    assert main(["info", "minialbert-999"]) == 2
    err = capsys.readouterr().err
    assert "neither a preset" in err and "Traceback" not in err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "minialbert", "hidden_size": 30,
                                                      "num_attention_heads": 4}))
    assert main(["info", str(tmp_path)]) == 2
    assert "divisible" in capsys.readouterr().err


@pytest.mark.parametrize("adapters", [True, False])
def test_outputs_shapes_and_sdpa_equals_explicit_attention(adapters):
    model = MiniAlbertForMaskedLM(tiny_config(use_adapters=adapters)).eval()
    ids, mask = batch()
    with torch.no_grad():
        explicit = model(ids, mask, output_attentions=True, output_hidden_states=True)
        fused = model(ids, mask)
    assert len(explicit.hidden_states) == 4 and len(explicit.attentions) == 3
    assert explicit.hidden_states[0].shape == (3, 12, 32)  # projected embeddings
    assert explicit.attentions[0].shape == (3, 4, 12, 12)
    torch.testing.assert_close(explicit.attentions[1].sum(-1), torch.ones(3, 4, 12))
    assert explicit.attentions[0][1, :, :, 7:].abs().max() == 0  # padded keys get no weight
    torch.testing.assert_close(explicit.logits, fused.logits, atol=1e-5, rtol=1e-5)
    assert fused.attentions is None and fused.hidden_states is None


def test_first_hidden_state_is_the_projected_embedding():
    model = MiniAlbertModel(tiny_config()).eval()
    ids, mask = batch()
    out = model(ids, mask, output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[0], model.projection(model.embeddings(ids)))


HEADS = [(AutoModel, {}), (AutoModelForMaskedLM, {}), (AutoModelForSequenceClassification, {"num_labels": 3}),
         (AutoModelForSequenceClassification, {"num_labels": 1}), (AutoModelForTokenClassification, {"num_labels": 5}),
         (AutoModelForQuestionAnswering, {})]


@pytest.mark.parametrize("auto,kw", HEADS)
def test_auto_classes_round_trip_exactly(auto, kw, tmp_path):
    config = tiny_config(**kw)
    model = auto.from_config(config).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "minialbert"
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys()
    assert all(torch.equal(saved[k], reloaded[k]) for k in saved)  # bit-exact weights
    ids, mask = batch()
    with torch.no_grad():
        a, b = model(ids, mask), loaded(ids, mask)
    for key in a.keys():  # outputs equal up to BLAS kernel choice for differently aligned memory
        if a[key] is not None:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0), key
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        query_keys = [k for k in f.keys() if k.endswith("attention.query.weight")]
    assert len(query_keys) == 1  # the shared layer is stored once, not N times


def test_heads_compute_losses():
    """Each head's loss equals the textbook formula on its own logits (so a wrong reduction, a
    missed ignore index or a swapped argument fails here)."""
    from torch.nn import functional as F

    ids, mask = batch()
    reg = AutoModelForSequenceClassification.from_config(tiny_config(num_labels=1))
    y = torch.tensor([0.5, 1.0, 2.0])
    out = reg(ids, mask, labels=y)
    assert reg.config.problem_type == "regression"
    assert out.loss.item() == pytest.approx(((out.logits.squeeze(-1) - y) ** 2).mean().item(), rel=1e-6)
    cls = AutoModelForSequenceClassification.from_config(tiny_config(num_labels=2))
    y = torch.tensor([0, 1, 1])
    out = cls(ids, mask, labels=y)
    log_p = out.logits.log_softmax(-1)
    assert out.loss.item() == pytest.approx(-log_p[torch.arange(3), y].mean().item(), rel=1e-6)
    tok = AutoModelForTokenClassification.from_config(tiny_config(num_labels=4))
    labels = torch.randint(0, 4, ids.shape).masked_fill(mask == 0, -100)
    out = tok(ids, mask, labels=labels)
    assert out.logits.shape == (3, 12, 4)
    keep = labels != -100
    log_p = out.logits.log_softmax(-1)[keep]
    assert out.loss.item() == pytest.approx(-log_p[torch.arange(len(log_p)), labels[keep]].mean().item(), rel=1e-6)
    qa = AutoModelForQuestionAnswering.from_config(tiny_config())
    start, end = torch.tensor([1, 2, 3]), torch.tensor([2, 3, 3])
    out = qa(ids, mask, start_positions=start, end_positions=end)
    assert out.start_logits.shape == (3, 12)
    expected = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradients_reach_every_parameter_and_shared_layer_sums_n_contributions():
    """Unroll the recursion into N independent copies of the shared layer: the shared layer's
    gradient must equal the sum of the copies' gradients (one contribution per iteration)."""
    config = tiny_config(use_adapters=True)
    model = MiniAlbertModel(config).train()
    ids, mask = batch()
    out = model(ids, mask)
    out.last_hidden_state.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    copies = [copy.deepcopy(model.encoder.layer) for _ in range(config.num_hidden_layers)]
    h = model.projection(model.embeddings(ids))
    key_mask = mask.bool()[:, None, None, :]
    for i, layer in enumerate(copies):
        h = model.encoder.adapters.attention[i](h)
        h, _ = layer.attention(h, key_mask)
        h = layer.ffn(model.encoder.adapters.ffn[i](h))
    for layer in copies:
        layer.zero_grad()
    h.pow(2).mean().backward()
    for name, p in model.encoder.layer.named_parameters():
        summed = sum(dict(c.named_parameters())[name].grad for c in copies)
        torch.testing.assert_close(p.grad, summed, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("adapters", [True, False])
def test_adapter_tuning_trains_exactly_adapters_and_head(adapters):
    model = AutoModelForSequenceClassification.from_config(tiny_config(use_adapters=adapters, num_labels=2))
    n = model.prepare_adapter_tuning()
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(("minialbert.encoder.adapters.", "classifier.")) for k in trainable)
    assert any(k.startswith("classifier.") for k in trainable)
    breakdown = parameter_breakdown(model)
    assert n == breakdown["adapters"] + breakdown["task_head"]
    assert breakdown["adapters"] == breakdown["adapter_tuning_trainable_without_head"]


def test_adapter_tuning_on_paper_preset_counts_912960_plus_head():
    config = minialbert.preset_config("minialbert-768-noadapters", num_labels=2)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    assert model.prepare_adapter_tuning() == 912_960 + 768 * 2 + 2
