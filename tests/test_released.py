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
