"""Sentence embeddings: `bench embed` against a hand computation, elastic depth, and the
sentence-transformers export giving the embeddings `bench embed` scores."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from transformers import AutoModel, AutoTokenizer

from minialbert.cli import main
from minialbert.data.glue import get_task, load_glue

from helpers import save_tiny_student, shared_path


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("student"), num_hidden_layers=3)


def test_bench_embed_equals_a_hand_computed_zero_shot_score(student_dir, capsys):
    glue = shared_path("data", "glue")
    assert main(["bench", "embed", "--model", student_dir, "--data-dir", str(glue / "STS-B"), "--depths", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"model", "pooling", "spearman", "pearson", "embedding_layer_spearman", "sentences_per_s"} <= set(result)
    dev = load_glue(get_task("stsb"), str(glue))["dev"]
    model = AutoModel.from_pretrained(student_dir).eval()
    tok = AutoTokenizer.from_pretrained(student_dir)
    sample = list(range(0, len(dev.texts), 50))  # 30 pairs by hand, one sentence at a time, no padding

    def mean_state(text):
        with torch.no_grad():
            return model(**tok(text, return_tensors="pt", truncation=True, max_length=128)).last_hidden_state[0].mean(0)

    cos = [torch.nn.functional.cosine_similarity(mean_state(dev.texts[i][0]), mean_state(dev.texts[i][1]), dim=0).item()
           for i in sample]
    from minialbert.inference.embeddings import _cosines, embed

    sentences = sorted({s for i in sample for s in dev.texts[i]})
    ours = _cosines(embed(model, tok, sentences), {s: k for k, s in enumerate(sentences)}, [dev.texts[i] for i in sample])
    np.testing.assert_allclose(ours, cos, atol=1e-5)  # batched and padded = each sentence alone
    assert result["depths"][str(3)]["spearman"] == result["spearman"]  # K = N is the full model
    assert set(result["depths"]) == {"1", "2", "3"}
    assert -100 <= result["spearman"] <= 100 and result["pooling"] == "mean"
    gold = np.array(dev.labels)[sample]
    assert spearmanr(ours, gold)[0] == pytest.approx(spearmanr(cos, gold)[0], abs=1e-6)
    assert pearsonr(ours, gold)[0] == pytest.approx(pearsonr(cos, gold)[0], abs=1e-5)


def test_sentence_transformers_export_embeds_as_bench_embed(student_dir, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    from minialbert.inference.embeddings import embed, load_encoder

    out = tmp_path / "st"
    assert main(["export", student_dir, "--sentence-transformers", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["dimension"] == 64
    st = SentenceTransformer(str(out), device="cpu")
    texts = ["A man is playing a guitar.", "The cat sleeps on the warm mat in the afternoon sun.", "Hi."]
    encoder, tok = load_encoder(student_dir)
    np.testing.assert_allclose(st.encode(texts), embed(encoder, tok, texts), atol=1e-5)
    card = (out / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "minialbert export" in card
    assert main(["export", student_dir, "--sentence-transformers", str(out)]) == 2  # never overwrites
    assert "not empty" in capsys.readouterr().err


def test_depths_need_a_minialbert_model(capsys):
    glue = shared_path("data", "glue")
    assert main(["bench", "embed", "--model", "minilm", "--data-dir", str(glue), "--depths"]) == 2
    err = capsys.readouterr().err
    assert "--depths needs a MiniALBERT model" in err and "Traceback" not in err


def test_the_sentence_transformers_folder_exports_to_onnx_with_the_same_embeddings(student_dir, tmp_path, capsys):
    from minialbert.inference.embeddings import embed, load_encoder
    from minialbert.inference.export import onnx_session, run_onnx

    st = tmp_path / "st"
    assert main(["export", student_dir, "--sentence-transformers", str(st)]) == 0
    assert main(["export", str(st), "--onnx", str(tmp_path / "emb.onnx")]) == 0  # the encoder's last_hidden_state
    report = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])
    assert report["outputs"] == ["last_hidden_state"]
    encoder, tok = load_encoder(student_dir)
    texts = ["A man is playing a guitar.", "Two dogs run through the snow on a cold morning."]
    enc = tok(texts, padding=True, return_tensors="pt")
    (hidden,) = run_onnx(onnx_session(tmp_path / "emb.onnx"), dict(enc))
    m = enc["attention_mask"].numpy()[..., None]
    np.testing.assert_allclose((hidden * m).sum(1) / m.sum(1), embed(encoder, tok, texts), atol=1e-4)


def test_bench_embed_compares_a_static_model2vec_baseline_in_the_same_run(student_dir, tmp_path, capsys):
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    glue = shared_path("data", "glue")
    tok = AutoTokenizer.from_pretrained(student_dir)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(tok), 16)).astype(np.float32)
    static = StaticModel(vectors, Tokenizer.from_str(tok.backend_tokenizer.to_str()), normalize=True)
    static.save_pretrained(str(tmp_path / "static"))
    assert main(["bench", "embed", "--model", student_dir, "--data-dir", str(glue / "STS-B"), "--compare",
                 f"model2vec:{tmp_path / 'static'}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["compare"][f"model2vec:{tmp_path / 'static'}"]
    dev = load_glue(get_task("stsb"), str(glue))["dev"]
    reloaded = StaticModel.from_pretrained(str(tmp_path / "static"))
    a = reloaded.encode([p[0] for p in dev.texts])
    b = reloaded.encode([p[1] for p in dev.texts])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert row["spearman"] == pytest.approx(100 * spearmanr(cos, dev.labels)[0], abs=0.01)
    assert row["parameters"] == vectors.size and row["sentences_per_s"] > 0
    assert row["spearman_retention"] == pytest.approx(result["spearman"] / row["spearman"], abs=1e-3)
