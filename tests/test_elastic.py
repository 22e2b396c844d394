"""Elastic depth: a shared layer from several teacher layers, exits at every iteration,
fixed depth and early exit in the model, serving, export and the depth benchmark."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

import minialbert  # noqa: F401
from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM
from minialbert.cli import main
from minialbert.packaged import packaged_teacher_path
from minialbert.errors import MiniAlbertError
from minialbert.model import MiniAlbertForSequenceClassification, MiniAlbertForTokenClassification
from minialbert.model.initialization import init_shared_layer_from_teacher, parse_shared_layer_init

from helpers import shared_path


def small(**kw):
    base = dict(vocab_size=120, embedding_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=64, adapter_reduction_factor=4, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, num_labels=3)
    return MiniAlbertConfig(**{**base, **kw})


def by_hand(model, ids, mask, K):
    """Embeddings, then K iterations written out: the reference for any fixed depth."""
    base = model.base_model
    h = base.projection(base.embeddings(ids))
    key_mask = mask.bool()[:, None, None, :]
    for i in range(K):
        h = base.encoder.adapters.attention[i](h)
        h, _ = base.encoder.layer.attention(h, key_mask)
        h = base.encoder.layer.ffn(base.encoder.adapters.ffn[i](h))
    return h


@pytest.mark.parametrize("cls", [MiniAlbertForSequenceClassification, MiniAlbertForTokenClassification])
def test_exit_k_gives_the_logits_of_k_iterations_by_hand(cls):
    torch.manual_seed(0)
    model = cls(small(exit_iterations=[1, 2, 3, 4])).eval()
    ids, mask = torch.randint(1, 120, (3, 9)), torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        for K in range(1, 5):
            h = by_hand(model, ids, mask, K)
            head = model.exit_classifiers[str(K)] if K < 4 else model.classifier
            expected = head(h if cls is MiniAlbertForTokenClassification else h[:, 0])
            torch.testing.assert_close(model(ids, mask, num_iterations=K).logits, expected)
        assert len(model.exit_classifiers) == 3  # exits 1-3; the last iteration keeps `classifier`


def test_without_exits_the_model_has_one_head_and_a_fixed_depth_still_works():
    torch.manual_seed(0)
    model = MiniAlbertForSequenceClassification(small()).eval()
    assert len(model.exit_classifiers) == 0
    ids = torch.randint(1, 120, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, num_iterations=2).logits,
                                   model.classifier(by_hand(model, ids, torch.ones_like(ids), 2)[:, 0]))


def test_exit_losses_are_weighted_by_depth():
    torch.manual_seed(0)
    model = MiniAlbertForSequenceClassification(small(exit_iterations=[2, 4])).eval()
    ids, labels = torch.randint(1, 120, (4, 8)), torch.tensor([0, 1, 2, 1])
    out = model(ids, labels=labels, output_hidden_states=True)
    ce = [torch.nn.functional.cross_entropy(model.exit_head(i)(out.hidden_states[i][:, 0]), labels) for i in (2, 4)]
    torch.testing.assert_close(out.loss, (2 * ce[0] + 4 * ce[1]) / 6)


def test_early_exit_per_example_matches_fixed_depths():
    torch.manual_seed(0)
    model = MiniAlbertForSequenceClassification(small(exit_iterations=[1, 2, 3, 4])).eval()
    ids = torch.randint(1, 120, (6, 8))
    logits, used = model.early_exit(ids, threshold=0.0)  # nobody is ever certain enough: full depth
    assert used.tolist() == [4] * 6
    torch.testing.assert_close(logits, model(ids).logits)
    logits, used = model.early_exit(ids, threshold=1.0)  # everybody leaves at the first exit
    assert used.tolist() == [1] * 6
    torch.testing.assert_close(logits, model(ids, num_iterations=1).logits)
    probs = model(ids, num_iterations=1).logits.softmax(-1)
    entropy = -(probs * probs.log()).sum(-1) / np.log(3)
    threshold = float(entropy.detach().median())
    logits, used = model.early_exit(ids, threshold=threshold)
    for b in range(6):  # each example answers with the logits of the depth it stopped at
        torch.testing.assert_close(logits[b], model(ids[b:b + 1], num_iterations=int(used[b])).logits[0])
    assert (used[entropy <= threshold] == 1).all()


def test_shared_layer_average_is_the_mean_of_the_named_teacher_layers():
    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                   intermediate_size=64))
    student = MiniAlbertForMaskedLM(small(num_hidden_layers=3))
    layers = parse_shared_layer_init("average:2,4,6", 6)
    assert layers == [2, 4, 6] and parse_shared_layer_init("average", 6, [2, 4, 6, 6]) == [2, 4, 6]
    init_shared_layer_from_teacher(student, teacher, layers)
    shared = student.minialbert.encoder.layer
    pairs = [("attention.query.weight", "attention.self.query.weight"),
             ("ffn.output.bias", "output.dense.bias"), ("ffn.LayerNorm.weight", "output.LayerNorm.weight")]
    for dst, src in pairs:
        mean = torch.stack([teacher.encoder.layer[i - 1].get_parameter(src) for i in layers]).mean(0)
        torch.testing.assert_close(shared.get_parameter(dst), mean)
    with pytest.raises(MiniAlbertError, match="out of range"):
        parse_shared_layer_init("average:2,9", 6)
    wide = MiniAlbertForMaskedLM(small(hidden_size=64, intermediate_size=128, num_hidden_layers=3))
    with pytest.raises(MiniAlbertError, match="Shape mismatch"):
        init_shared_layer_from_teacher(wide, teacher, layers)


@pytest.fixture(scope="module")
def elastic_sst2(tmp_path_factory):
    """A tiny student fine-tuned on SST-2 with --exits all, full and adapter-tuned."""
    d = tmp_path_factory.mktemp("elastic")
    torch.manual_seed(0)
    MiniAlbertForMaskedLM(MiniAlbertConfig(embedding_size=32, hidden_size=64, num_hidden_layers=3,
                                           num_attention_heads=4, intermediate_size=128,
                                           adapter_reduction_factor=16)).save_pretrained(d / "base")
    AutoTokenizer.from_pretrained(packaged_teacher_path()).save_pretrained(d / "base")
    glue = shared_path("data", "glue")
    for extra, out in (([], "full"), (["--adapter-tuning"], "adapter")):
        assert main(["finetune", "--model", str(d / "base"), "--task", "sst2", "--data-dir", str(glue), "--exits",
                     "all", "--max-steps", "30", "--max-length", "32", "--max-train-samples", "512",
                     "--dtype", "fp32", "--save-models", "best", "--out", str(d / out), *extra]) == 0
    return d, glue


def test_finetune_records_exits_and_predict_serves_any_depth(elastic_sst2, tmp_path, capsys):
    d, _ = elastic_sst2
    model_dir = next((d / "full" / "runs").glob("*/model"))
    assert json.loads((model_dir / "config.json").read_text())["exit_iterations"] == [1, 2, 3]
    task = next((d / "adapter" / "runs").glob("*/adapter"))
    assert json.loads((task / "minialbert_adapter.json").read_text())["exit_iterations"] == [1, 2, 3]
    requests = tmp_path / "in.jsonl"
    requests.write_text('{"text": "a wonderful film"}\n{"text": "dull and slow"}\n')
    assert main(["predict", "--base", str(d / "base"), "--task-file", f"sst2={task}", "--input", str(requests),
                 "--iterations", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["iterations"] for r in rows] == [2, 2]
    assert main(["predict", "--base", str(d / "base"), "--task-file", f"sst2={task}", "--input", str(requests),
                 "--early-exit", "1.0"]) == 0
    assert [json.loads(line)["iterations"] for line in capsys.readouterr().out.splitlines()] == [1, 1]
    from minialbert import load_adapter_model
    from minialbert.inference import MultiTaskModel

    server = MultiTaskModel(str(d / "base"))
    server.add_task("sst2", task)
    reference = load_adapter_model(task)
    enc = server.tokenizer(["a wonderful film"], return_tensors="pt")
    with torch.no_grad():
        for K in (1, 2, 3):
            torch.testing.assert_close(server.logits("sst2", ["a wonderful film"], iterations=K),
                                       reference(**enc, num_iterations=K).logits)


def test_export_a_k_iteration_graph(elastic_sst2, tmp_path, capsys):
    d, _ = elastic_sst2
    model_dir = next((d / "full" / "runs").glob("*/model"))
    assert main(["export", str(model_dir), "--onnx", str(tmp_path / "k1.onnx"), "--iterations", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["iterations"] == 1 and report["fp32_max_abs_diff"] <= 1e-4
    from minialbert.inference.export import onnx_session, run_onnx
    from minialbert.inference.loading import example_inputs

    model = MiniAlbertForSequenceClassification.from_pretrained(model_dir).eval()
    inputs = example_inputs(2, 11, model.config.vocab_size, seed=3)
    with torch.no_grad():
        expected = model(**inputs, num_iterations=1).logits.numpy()
    assert np.abs(run_onnx(onnx_session(tmp_path / "k1.onnx"), inputs)[0] - expected).max() <= 1e-4


def test_bench_depth_prints_the_curve(elastic_sst2, tmp_path, capsys):
    d, glue = elastic_sst2
    model_dir = next((d / "full" / "runs").glob("*/model"))
    png = tmp_path / "depth.png"
    assert main(["bench", "depth", "--model", str(model_dir), "--task", "sst2", "--data-dir", str(glue),
                 "--thresholds", "0.0,1.0", "--batch-size", "64", "--figure", str(png), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["iterations"] for r in result["depths"]] == [1, 2, 3]
    assert all({"score", "latency_ms_median"} <= set(r) for r in result["depths"])
    never, always = result["early_exit"]
    assert never["mean_iterations"] == 3 and always["mean_iterations"] == 1
    assert never["score"] == result["depths"][-1]["score"] and always["score"] == result["depths"][0]["score"]
    assert png.stat().st_size > 10_000


def test_bench_infer_runs_the_student_at_a_fixed_depth(capsys):
    assert main(["bench", "infer", "--model", "minialbert-128", "--compare", "bert-6layer", "--batch", "1", "--seq",
                 "8", "--reps", "1", "--iterations", "2", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models["minialbert-128"]["iterations"] == 2 and models["bert-6layer"]["iterations"] is None
    assert main(["bench", "infer", "--model", "minialbert-128", "--compare", "--iterations", "7"]) == 2
    assert "--iterations 7 must lie in 1..6" in capsys.readouterr().err
