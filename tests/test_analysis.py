"""Ablation runner and the two plot commands, on tiny budgets."""

import json

import numpy as np
import pytest
from PIL import Image

from minialbert.cli import main

from helpers import shared_path

TINY = ["--set", "max_length=32", "--set", "stride=16", "--set", "batch_size=4", "--set", "max_docs=60",
        "--set", "warmup_steps=0", "--set", "logging_steps=1", "--set", "iterations=2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    glue = shared_path("data", "glue")
    out = tmp_path_factory.mktemp("ablation")
    args = ["ablate", "--variants", "full,none,full-rank,mlm-only", "--budget-steps", "3", "--tasks", "rte",
            "--glue-dir", str(glue), "--finetune-steps", "3", "--max-length", "32", "--out", str(out), *TINY]
    assert main(args) == 0
    return out, args


def test_ablation_report_and_resume(ablation, capsys):
    out, args = ablation
    report = json.loads((out / "ablation.json").read_text())
    assert set(report["variants"]) == {"full", "none", "full-rank", "mlm-only"} and report["tasks"] == ["rte"]
    full = report["variants"]["full"]
    assert full["drop_vs_full"] == 0.0
    none = report["variants"]["none"]
    assert none["drop_vs_full"] == pytest.approx(none["average"] - full["average"], abs=0.011)
    assert report["variants"]["full-rank"]["recipe"]["embedding_size"] == 384  # E = H of the packaged teacher
    assert none["recipe"]["alignment"] == "none"
    rows = [json.loads(l) for l in (out / "none" / "distill" / "log.jsonl").read_text().splitlines()]
    assert "hidden" not in rows[-1] and "attention" not in rows[-1]
    mlm_only = json.loads((out / "mlm-only" / "distill" / "final" / "distillation.json").read_text())
    assert mlm_only["initialisation"] == {"embedding_init": "random"} and mlm_only["output_loss"] is False
    md = (out / "ablation.md").read_text()
    assert md.startswith("| variant | rte | average | drop vs full |")
    stamp = (out / "full" / "distill" / "final" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # resumes: nothing is distilled again
    assert (out / "full" / "distill" / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    other_budget = [a if a != "3" or args[i - 1] != "--budget-steps" else "4" for i, a in enumerate(args)]
    assert other_budget != args
    capsys.readouterr()
    assert main(other_budget) == 2  # a finished student of another budget is never reused
    assert "max_steps: 3 -> 4" in capsys.readouterr().err


def test_plot_losses_and_attention(ablation, tmp_path, capsys):
    out, _ = ablation
    png = tmp_path / "losses.png"
    assert main(["plot-losses", str(out / "full" / "distill"), "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 500
    gray = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert (gray < 128).mean() > 0.005 and gray.std() > 10  # curves drawn, not an empty frame
    png = tmp_path / "attention.png"
    assert main(["plot-attention", "--teacher", "minilm", "--student", str(out / "full" / "distill" / "final"),
                 "--text", "The cat sat on the mat.", "--max-heads", "4", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert '"teacher_layers": [3, 6]' in printed  # from the student's distillation.json (N=2, L=6)
    assert Image.open(png).size[1] > 300
    rgb = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 200  # heat maps full of graded colours, not blank panels


def test_bad_input(tmp_path, capsys):
    assert main(["plot-losses", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "log.jsonl does not exist" in capsys.readouterr().err
    assert main(["ablate", "--variants", "full,best", "--budget-steps", "1", "--tasks", "rte", "--out",
                 str(tmp_path)]) == 2
    assert "Unknown variants ['best']" in capsys.readouterr().err
    assert main(["ablate", "--budget-steps", "1", "--tasks", "rte", "--set", "nope=1", "--out", str(tmp_path)]) == 2
    assert "--set 'nope=1'" in capsys.readouterr().err
