"""Multi-task serving from one base, `minialbert predict`, and `bench infer`."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM, load_adapter_model
from minialbert.cli import main
from minialbert.data.offline import packaged_teacher_path
from minialbert.inference import MultiTaskModel

from helpers import shared_path


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    glue = shared_path("data", "glue")
    base = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    MiniAlbertForMaskedLM(MiniAlbertConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=128, use_adapters=False)).save_pretrained(base)
    AutoTokenizer.from_pretrained(packaged_teacher_path()).save_pretrained(base)
    dirs = {}
    for task in ("rte", "stsb"):
        out = tmp_path_factory.mktemp(task)
        assert main(["finetune", "--model", str(base), "--task", task, "--data-dir", str(glue), "--adapter-tuning",
                     "--max-steps", "5", "--max-length", "32", "--lr", "1e-2", "--out", str(out)]) == 0
        dirs[task] = next((out / "runs").glob("*/adapter"))
    return base, dirs


def test_two_tasks_from_one_base_match_separately_loaded_models(two_tasks):
    base, dirs = two_tasks
    server = MultiTaskModel(str(base))
    for name, d in dirs.items():
        server.add_task(name, d)
    a, b = ["A man is playing a guitar.", "The cat sleeps."], ["A man plays music.", "A dog barks loudly."]
    tok = AutoTokenizer.from_pretrained(base)
    enc = tok(a, b, padding=True, return_tensors="pt")
    for name in ("rte", "stsb", "rte"):  # interleaved: adapters are swapped, not stacked
        separate = load_adapter_model(dirs[name])
        with torch.no_grad():
            torch.testing.assert_close(server.logits(name, a, b), separate(**enc).logits, atol=1e-5, rtol=1e-5)
    labels = server.predict("rte", a, b)
    assert set(labels) <= {"entailment", "not_entailment"}
    assert all(isinstance(x, float) for x in server.predict("stsb", a, b))


def test_predict_cli(two_tasks, tmp_path, capsys):
    base, dirs = two_tasks
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"task": "rte", "text": "It rains.", "text_pair": "Water falls."}) + "\n"
        + json.dumps({"task": "stsb", "text": "A cat.", "text_pair": "A kitten."}) + "\n")
    assert main(["predict", "--base", str(base), "--task-file", f"rte={dirs['rte']}", "--task-file",
                 f"stsb={dirs['stsb']}", "--input", str(tmp_path / "in.jsonl")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["task"] for r in rows] == ["rte", "stsb"] and isinstance(rows[1]["prediction"], float)
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    assert main(["predict", "--base", str(base), "--task-file", str(dirs["rte"]), "--input",
                 str(tmp_path / "bad.jsonl")]) == 2
    assert "line 1: expected a JSON object with a 'text' field" in capsys.readouterr().err


def test_bench_infer(two_tasks, capsys):
    base, _ = two_tasks
    assert main(["bench", "infer", "--model", str(base), "--compare", "minialbert-128", "--batch", "2", "--seq", "16",
                 "--reps", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["models"]) == {str(base), "minialbert-128"}
    assert r["models"]["minialbert-128"]["parameters"] == 12_072_768
    assert r["student_speedup_vs"]["minialbert-128"] > 0


def test_missing_model_paths_give_clear_errors(tmp_path, capsys):
    missing = str(tmp_path / "no-such-model")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    for args in (["predict", "--base", missing, "--task-file", missing, "--input", str(tmp_path / "in.jsonl")],
                 ["plot-attention", "--teacher", "minilm", "--student", missing, "--text", "x", "--out", "x.png"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "no-such-model" in err and "Traceback" not in err
