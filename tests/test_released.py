"""The one released student (minialbert/released/minialbert-minilm): its weights are the only ones
in the repository, stored in fp16 and computed in fp32; it loads offline by its short name; its
model card carries the command that made it; and `bench embed` reproduces the zero-shot STS-B score
committed for it (docs/results/retention/embed.json) with one command."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import shared_path

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "minialbert" / "released" / "minialbert-minilm"
EMBED = REPO / "docs" / "results" / "retention" / "embed.json"


def test_the_released_student_is_the_only_weights_in_the_repository_and_is_stored_in_fp16():
    from safetensors import safe_open

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    weights = [f for f in tracked if f.endswith((".safetensors", ".bin", ".pt", ".onnx", ".ckpt"))]
    assert weights == ["minialbert/released/minialbert-minilm/model.safetensors"]
    with safe_open(FOLDER / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    size = (FOLDER / "model.safetensors").stat().st_size
    assert 8e6 < size < 16e6, size
    card = (FOLDER / "README.md").read_text()
    assert "minialbert distill --recipe cpu-2h" in card and "base_model" in card


def test_it_loads_by_name_offline_and_computes_in_fp32():
    import torch
    from transformers import AutoModel

    from minialbert.checkpoints import resolve_model_name

    assert Path(resolve_model_name("minialbert-minilm")) == FOLDER
    model = AutoModel.from_pretrained(resolve_model_name("minialbert-minilm"), local_files_only=True)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.model_type == "minialbert" and model.config.num_hidden_layers == 3


def test_bench_embed_by_name_reproduces_the_committed_zero_shot_score():
    from minialbert.inference.embeddings import bench_embed

    committed = json.loads(EMBED.read_text())
    result = bench_embed("minialbert-minilm", str(shared_path("data", "glue")))
    assert result["spearman"] == pytest.approx(committed["spearman"], abs=0.05)
    assert result["parameters"] == committed["parameters"]


SENTENCES = ["A man is playing a guitar.", "The patients received two doses over twelve weeks."]
WITHOUT_PACKAGE = """
import json, sys
sys.modules["minialbert"] = None  # only transformers' remote code can load the folder now
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], trust_remote_code=True, device="cpu")
print("VALUES", json.dumps(model.encode(json.loads(sys.argv[2])).tolist()))
"""


def _mean_pooled(folder, sentences):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from minialbert.model.pooling import pool

    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return pool(AutoModel.from_pretrained(folder).eval()(**enc).last_hidden_state, enc["attention_mask"]).numpy()


def test_it_loads_in_sentence_transformers_as_it_is_and_encodes_as_mean_pooling(tmp_path):
    """No export step: the released folder is a sentence-transformers folder, with minialbert
    imported and, through its modeling code, where minialbert is not installed."""
    import shutil
    import sys

    import numpy as np
    from sentence_transformers import SentenceTransformer

    expected = _mean_pooled(FOLDER, SENTENCES)
    ours = SentenceTransformer(str(FOLDER), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    copy = shutil.copytree(FOLDER, tmp_path / FOLDER.name)  # outside the package, as a user downloads it
    result = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE, str(copy), json.dumps(SENTENCES)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.array(json.loads(result.stdout.split("VALUES", 1)[1])), expected, atol=1e-5)


def test_its_card_says_what_it_is_for_and_that_it_has_no_mlm_head():
    card = (FOLDER / "README.md").read_text()
    assert "no MLM head" in card and "fill-mask" in card and "SentenceTransformer(folder)" in card
    assert "library_name: sentence-transformers" in card and "pipeline_tag: sentence-similarity" in card
