"""Siamese (bi-encoder) pair heads: the score and the features against hand computations from the
encoder's own states, padding invariance, save/reload, adapter tuning and `finetune --pair-encoding bi`."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from transformers import AutoTokenizer

from minialbert.cli import main
from minialbert.packaged import packaged_teacher_path
from minialbert import load_adapter_model
from minialbert.data.glue import get_task, glue_metrics
from minialbert.data.tasks import DataOptions, PairCollator, prepare_data
from minialbert.model import BiEncoderForSequenceClassification, load_bi_encoder

from helpers import save_tiny_student, shared_path


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("student"), hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)


PAIRS = [("A man is playing a guitar.", "Someone plays an instrument on a stage tonight."),
         ("The cat sleeps.", "A dog runs in the park.")]


def _alone(model, tok, text):
    """Mean of the encoder's final states over the tokens of `text`, encoded alone (no padding)."""
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        states = model.encoder(**enc).last_hidden_state[0]
    return states.mean(0)


def _batch(tok, pairs):
    a = tok([p[0] for p in pairs])
    b = tok([p[1] for p in pairs])
    rows = [{**{k: a[k][i] for k in a}, **{f"{k}_b": b[k][i] for k in b}} for i in range(len(pairs))]
    return PairCollator(tok)(rows)


@pytest.mark.parametrize("encoder", ["student", "teacher"])
def test_regression_score_is_the_cosine_of_each_sentence_encoded_alone(encoder, student_dir):
    path = student_dir if encoder == "student" else str(packaged_teacher_path())
    model = BiEncoderForSequenceClassification.from_encoder(path, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(path)
    batch = _batch(tok, PAIRS)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # the batch is padded
    with torch.no_grad():
        scores = model(**batch).logits.squeeze(-1)
    for i, (a, b) in enumerate(PAIRS):
        u, v = _alone(model, tok, a), _alone(model, tok, b)
        by_hand = 5.0 * torch.dot(u, v) / (u.norm() * v.norm())
        assert scores[i].item() == pytest.approx(by_hand.item(), abs=1e-4)
    labels = torch.tensor([4.0, 1.0])
    loss = model(**batch, labels=labels).loss
    assert loss.item() == pytest.approx(F.mse_loss(scores / 5.0, labels / 5.0).item(), abs=1e-5)


def test_classifier_reads_u_v_absdiff_product_of_the_sentences_alone(student_dir):
    model = BiEncoderForSequenceClassification.from_encoder(student_dir, num_labels=2).eval()
    tok = AutoTokenizer.from_pretrained(student_dir)
    batch = _batch(tok, PAIRS)
    with torch.no_grad():
        logits = model(**batch).logits
    W, bias = model.classifier.weight, model.classifier.bias
    assert W.shape == (2, 4 * 64)
    for i, (a, b) in enumerate(PAIRS):
        u, v = _alone(model, tok, a), _alone(model, tok, b)
        features = torch.cat([u, v, (u - v).abs(), u * v])
        torch.testing.assert_close(logits[i], W @ features + bias, atol=1e-4, rtol=1e-4)
    labels = torch.tensor([1, 0])
    assert model(**batch, labels=labels).loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-5)


def test_cls_pooling_reads_the_first_token(student_dir):
    model = BiEncoderForSequenceClassification.from_encoder(student_dir, num_labels=1, pooling="cls").eval()
    tok = AutoTokenizer.from_pretrained(student_dir)
    enc = tok(PAIRS[0][0], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model.encode(**enc)[0], model.encoder(**enc).last_hidden_state[0, 0])


def test_finetune_bi_encoder_saves_reloads_and_scores_as_recomputed(student_dir, tmp_path, capsys):
    glue = str(shared_path("data", "glue"))
    out = tmp_path / "stsb"
    assert main(["finetune", "--model", student_dir, "--task", "stsb", "--data-dir", glue, "--pair-encoding", "bi",
                 "--max-steps", "4", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32", "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["pair_encoding"] == "bi"
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["model"] == f"{student_dir} [bi-encoder]"
    run = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert run["hyperparameters"]["pair_encoding"] == "bi" and run["hyperparameters"]["pooling"] == "mean"
    model = load_bi_encoder(next((out / "runs").glob("*/model"))).eval()
    assert isinstance(model, BiEncoderForSequenceClassification) and model.classifier is None
    tok = AutoTokenizer.from_pretrained(student_dir)
    dev, _ = prepare_data(DataOptions(task="stsb", data_dir=glue, max_length=32, pair_encoding="bi"), tok).evals["dev"]
    preds = []
    with torch.no_grad():
        for i in range(0, len(dev), 256):
            rows = [{k: v for k, v in r.items() if k != "labels"} for r in dev.select(range(i, min(i + 256, len(dev))))]
            preds.append(model(**PairCollator(tok)(rows)).logits.squeeze(-1).numpy())
    metrics = glue_metrics(get_task("stsb"), np.concatenate(preds), np.array(dev["labels"]))
    assert metrics["pearson"] == pytest.approx(run["metrics"]["dev"]["pearson"], abs=1e-5)


def test_adapter_tuned_bi_encoder_reloads_to_the_same_predictions(student_dir, tmp_path):
    glue = str(shared_path("data", "glue"))
    out = tmp_path / "mrpc"
    assert main(["finetune", "--model", student_dir, "--task", "mrpc", "--data-dir", glue, "--pair-encoding", "bi",
                 "--adapter-tuning", "--max-steps", "3", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32", "--out", str(out)]) == 0
    run = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert run["trainable_parameters"] < run["total_parameters"] / 5
    task = next((out / "runs").glob("*/adapter"))
    assert json.loads((task / "minialbert_adapter.json").read_text())["head"] == "bi-encoder"
    model = load_adapter_model(task)
    assert isinstance(model, BiEncoderForSequenceClassification)
    tok = AutoTokenizer.from_pretrained(student_dir)
    dev, _ = prepare_data(DataOptions(task="mrpc", data_dir=glue, max_length=32, pair_encoding="bi"), tok).evals["dev"]
    rows = [{k: v for k, v in r.items() if k != "labels"} for r in dev]
    with torch.no_grad():
        pred = model(**PairCollator(tok)(rows)).logits.argmax(-1).numpy()
    metrics = glue_metrics(get_task("mrpc"), pred, np.array(dev["labels"]))
    assert metrics["f1"] == pytest.approx(run["metrics"]["dev"]["f1"], abs=1e-6)
    # served from one base with the other tasks: each sentence encoded alone with the task's adapters
    from minialbert.inference import MultiTaskModel

    server = MultiTaskModel(student_dir)
    server.add_task("mrpc", task)
    a, b = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    with torch.no_grad():
        torch.testing.assert_close(server.logits("mrpc", a, b), model(**_batch(tok, PAIRS)).logits, atol=1e-5, rtol=1e-5)
    assert set(server.predict("mrpc", a, b)) <= {"not_equivalent", "equivalent"}  # named, as the glue dataset names them


def test_bi_encoding_of_a_single_sentence_task_is_refused(student_dir, tmp_path, capsys):
    assert main(["finetune", "--model", student_dir, "--task", "sst2", "--pair-encoding", "bi",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--pair-encoding bi needs a sentence-pair task" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bi_encoder_exits_answer_at_every_depth_and_train_depth_weighted(student_dir, tmp_path):
    """--exits all: exit K's pair classifier on the states pooled after K iterations; the training
    loss is the depth-weighted mean of the exits' losses."""
    glue = str(shared_path("data", "glue"))
    out = tmp_path / "mrpc"
    assert main(["finetune", "--model", student_dir, "--task", "mrpc", "--data-dir", glue, "--pair-encoding", "bi",
                 "--exits", "all", "--max-steps", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32",
                 "--out", str(out)]) == 0
    model = load_bi_encoder(next((out / "runs").glob("*/model"))).eval()
    N = model.config.num_hidden_layers
    assert model.config.exit_iterations == list(range(1, N + 1)) and set(model.exit_classifiers) == {"1"}
    tok = AutoTokenizer.from_pretrained(student_dir)
    batch = _batch(tok, PAIRS)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        a = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=True).hidden_states
        b = model.encoder(input_ids=batch["input_ids_b"], attention_mask=batch["attention_mask_b"],
                          output_hidden_states=True).hidden_states
        losses = {}
        for K in range(1, N + 1):
            u, v = (s[K].masked_fill(m[..., None] == 0, 0).sum(1) / m.sum(1, keepdim=True)
                    for s, m in ((a, batch["attention_mask"]), (b, batch["attention_mask_b"])))
            head = model.exit_classifiers[str(K)] if K < N else model.classifier
            want = head(torch.cat([u, v, (u - v).abs(), u * v], -1))
            torch.testing.assert_close(model(**batch, num_iterations=K).logits, want, atol=1e-5, rtol=1e-5)
            losses[K] = F.cross_entropy(want, labels)
        expected = sum(K * losses[K] for K in losses) / sum(losses)
        assert model(**batch, labels=labels).loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bi_encoder_exports_to_onnx_with_both_sentences_dynamic(student_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from minialbert.inference.export import export_onnx, onnx_session, run_onnx

    glue = str(shared_path("data", "glue"))
    out = tmp_path / "stsb"
    assert main(["finetune", "--model", student_dir, "--task", "stsb", "--data-dir", glue, "--pair-encoding", "bi",
                 "--max-steps", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32", "--out", str(out)]) == 0
    folder = next((out / "runs").glob("*/model"))
    report = export_onnx(str(folder), tmp_path / "bi.onnx")
    assert report["class"] == "BiEncoderForSequenceClassification" and report["fp32_max_abs_diff"] <= 1e-4
    session = onnx_session(tmp_path / "bi.onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids", "input_ids_b",
                                                      "attention_mask_b", "token_type_ids_b"]
    tok = AutoTokenizer.from_pretrained(student_dir)
    batch = _batch(tok, PAIRS)
    batch.update({k: torch.zeros_like(batch[k.replace("token_type_ids", "input_ids")])
                  for k in ("token_type_ids", "token_type_ids_b")})
    model = load_bi_encoder(folder).eval()
    with torch.no_grad():
        want = model(**batch).logits.numpy()
    np.testing.assert_allclose(run_onnx(session, batch)[0], want, atol=1e-4)
