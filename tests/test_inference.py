"""Multi-task serving from one base, `minialbert predict`, and `bench infer`."""

import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM, load_adapter_model
from minialbert.cli import main
from minialbert.packaged import packaged_teacher_path
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
                     "--max-steps", "5", "--max-length", "32", "--lr", "1e-2", "--pair-encoding", "cross",
                     "--out", str(out)]) == 0
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


def test_two_tasks_served_alternately_from_several_threads_give_each_tasks_own_answers(two_tasks):
    """Adapters are named inside the base and chosen per call (no shared attribute swapped between
    requests), so concurrent requests for different tasks cannot see each other's adapters."""
    from concurrent.futures import ThreadPoolExecutor

    base, dirs = two_tasks
    server = MultiTaskModel(str(base))
    for name, d in dirs.items():
        server.add_task(name, d)
    assert set(server.base.encoder.named_adapters) == {"rte", "stsb"}
    texts = [[f"Sentence number {i} about a cat."] * (1 + i % 3) for i in range(8)]
    pairs = [[f"Another one, {i}, about dogs and the weather."] * len(t) for i, t in enumerate(texts)]
    expected = {(n, i): server.logits(n, texts[i], pairs[i]) for n in dirs for i in range(len(texts))}
    assert not torch.allclose(expected["rte", 0][:, :1], expected["stsb", 0])  # the tasks really differ
    requests = [(n, i) for _ in range(6) for i in range(len(texts)) for n in ("rte", "stsb")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda r: server.logits(r[0], texts[r[1]], pairs[r[1]]), requests))
    for r, got in zip(requests, answers):
        torch.testing.assert_close(got, expected[r], atol=1e-5, rtol=1e-5)
    server.base.set_adapter("stsb")  # PEFT-style default for plain calls; per-call names still win
    torch.testing.assert_close(server.logits("rte", texts[0], pairs[0]), expected["rte", 0], atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match="no adapter named 'nope'"):
        server.base.set_adapter("nope")


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


def test_predict_takes_the_finetune_output_folder_and_answers_with_label_names_and_scores(two_tasks, tmp_path,
                                                                                          capsys):
    """`predict --task-file rte=OUT` with the very folder `finetune --adapter-tuning --out OUT` wrote
    (its best run's adapter is OUT/runs/RUN/adapter), and an SST-2 answer named, not "0"."""
    base, dirs = two_tasks
    glue = shared_path("data", "glue")
    sst2 = tmp_path / "sst2"
    assert main(["finetune", "--model", str(base), "--task", "sst2", "--data-dir", str(glue), "--adapter-tuning",
                 "--max-steps", "2", "--max-length", "32", "--max-train-samples", "32", "--out", str(sst2)]) == 0
    rte = dirs["rte"].parents[2]  # OUT of `finetune --out OUT`
    assert (rte / "results.json").is_file()
    (tmp_path / "in.jsonl").write_text(json.dumps({"task": "rte", "text": "It rains.", "text_pair": "Water falls."})
                                       + "\n" + json.dumps({"task": "sst2", "text": "A lovely, moving film."}) + "\n")
    capsys.readouterr()
    assert main(["predict", "--base", str(base), "--task-file", f"rte={rte}", "--task-file", f"sst2={sst2}",
                 "--input", str(tmp_path / "in.jsonl")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["prediction"] in ("entailment", "not_entailment")
    assert rows[1]["prediction"] in ("negative", "positive")
    assert all(0.5 <= r["score"] <= 1 for r in rows)  # the probability of the chosen label
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--base", str(base), "--task-file", str(tmp_path / "empty"), "--input",
                 str(tmp_path / "in.jsonl")]) == 2
    assert "OUT/runs/RUN/adapter" in capsys.readouterr().err


def test_predict_names_tasks_by_their_own_task_and_refuses_two_of_one_name(two_tasks, tmp_path, capsys):
    base, dirs = two_tasks
    assert dirs["rte"].name == dirs["stsb"].name == "adapter"  # every adapter-tuned task is saved so
    (tmp_path / "in.jsonl").write_text(json.dumps({"task": "rte", "text": "It rains.", "text_pair": "Wet."}) + "\n"
                                       + json.dumps({"task": "stsb", "text": "A cat.", "text_pair": "A kitten."}))
    assert main(["predict", "--base", str(base), "--task-file", str(dirs["rte"]), "--task-file", str(dirs["stsb"]),
                 "--input", str(tmp_path / "in.jsonl")]) == 0  # named by the task files' own `task` field
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["task"] for r in rows] == ["rte", "stsb"] and isinstance(rows[1]["prediction"], float)
    for second in (f"rte={dirs['stsb']}", str(dirs["rte"])):
        assert main(["predict", "--base", str(base), "--task-file", str(dirs["rte"]), "--task-file", second,
                     "--input", str(tmp_path / "in.jsonl")]) == 2
        assert "Two task files are named 'rte'" in capsys.readouterr().err
    assert main(["predict", "--base", str(base), "--task-file", f"default={dirs['rte']}",
                 "--input", str(tmp_path / "in.jsonl")]) == 2
    assert "the base's own adapter set" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text(json.dumps({"task": "rte", "text": 3, "text_pair": "x"}))
    assert main(["predict", "--base", str(base), "--task-file", str(dirs["rte"]), "--input",
                 str(tmp_path / "bad.jsonl")]) == 2
    assert "text must be strings (got int)" in capsys.readouterr().err


def test_an_adapter_file_refuses_a_base_other_than_its_own(two_tasks, tmp_path, capsys):
    base, dirs = two_tasks
    config = json.loads((dirs["rte"] / "minialbert_adapter.json").read_text())
    assert config["format_version"] == 2 and len(config["base_model_sha256"]) == 64 and config["task"] == "rte"
    other = tmp_path / "other-base"
    torch.manual_seed(123)  # the same shape, other weights
    MiniAlbertForMaskedLM(MiniAlbertConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=128, use_adapters=False)).save_pretrained(other)
    AutoTokenizer.from_pretrained(base).save_pretrained(other)
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "It rains.", "text_pair": "Wet."}))
    assert main(["predict", "--base", str(other), "--task-file", str(dirs["rte"]), "--input",
                 str(tmp_path / "in.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "was tuned on the base" in err and str(other) in err
    from minialbert.errors import MiniAlbertError

    with pytest.raises(MiniAlbertError, match="was tuned on the base"):
        load_adapter_model(dirs["rte"], base_model=str(other))
    # a file of an earlier version (no hash) still loads, over any base
    legacy = tmp_path / "legacy"
    shutil.copytree(dirs["rte"], legacy)
    old = {k: v for k, v in config.items() if k not in ("base_model_sha256", "format_version")}
    (legacy / "minialbert_adapter.json").write_text(json.dumps(old))
    assert load_adapter_model(legacy, base_model=str(other)) is not None


@pytest.mark.parametrize("damage,needle", [
    (lambda c: "{", "not readable JSON"),
    (lambda c: json.dumps({k: v for k, v in c.items() if k != "head"}), "head missing"),
    (lambda c: json.dumps({**c, "num_labels": "two"}), "'num_labels' must be"),
])
def test_a_damaged_adapter_file_is_named(two_tasks, tmp_path, damage, needle):
    from minialbert.errors import MiniAlbertError

    _, dirs = two_tasks
    task = shutil.copytree(dirs["rte"], tmp_path / "t")
    (task / "minialbert_adapter.json").write_text(damage(json.loads((dirs["rte"] / "minialbert_adapter.json").read_text())))
    with pytest.raises(MiniAlbertError, match=needle):
        load_adapter_model(task)


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


def _onnx_outputs(path, inputs):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})


def _inputs(B, T, vocab, pad=0):
    ids = torch.randint(0, vocab, (B, T))
    mask = torch.ones_like(ids)
    mask[0, T - pad:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.fixture(scope="module")
def token_classifier(tmp_path_factory):
    from minialbert import MiniAlbertForTokenClassification

    torch.manual_seed(0)
    config = MiniAlbertConfig(vocab_size=1200, embedding_size=32, hidden_size=128, num_hidden_layers=6,
                              num_attention_heads=4, intermediate_size=512, num_labels=3)
    folder = tmp_path_factory.mktemp("tagger")
    model = MiniAlbertForTokenClassification(config).eval()
    model.save_pretrained(folder)
    return folder, model


def test_onnx_export_matches_pytorch_on_other_shapes_and_stores_the_shared_layer_once(token_classifier, tmp_path,
                                                                                      capsys):
    folder, model = token_classifier
    out = tmp_path / "tagger.onnx"
    assert main(["export", str(folder), "--onnx", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outputs"] == ["logits"] and report["fp32_max_abs_diff"] <= 1e-4
    for B, T, pad in ((1, 5, 0), (4, 23, 6)):  # dynamic batch and sequence axes, with padding
        inputs = _inputs(B, T, 1200, pad)
        with torch.no_grad():
            expected = model(**inputs).logits
        (got,) = _onnx_outputs(out, inputs)
        assert got.shape == tuple(expected.shape)
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=0)
    unique = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for p in model.minialbert.encoder.layer.parameters())
    size = out.stat().st_size
    # one copy of the shared layer: the file is about 4 bytes per unique parameter; a second copy of
    # the layer (let alone N = 6) would add 4 * layer bytes
    assert 0.95 * 4 * unique <= size < 4 * (unique + layer), (size, unique, layer)


def test_int8_export_is_smaller_and_close(token_classifier, tmp_path, capsys):
    folder, model = token_classifier
    assert main(["export", str(folder), "--onnx", str(tmp_path / "fp32.onnx")]) == 0
    assert main(["export", str(folder), "--onnx", str(tmp_path / "int8.onnx"), "--int8"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n}\n")[1] + "\n}")
    assert report["int8"] is True
    fp32, int8 = (tmp_path / "fp32.onnx").stat().st_size, (tmp_path / "int8.onnx").stat().st_size
    assert int8 < fp32 / 2.5, (int8, fp32)  # the shared layer's weights are quantised too
    inputs = _inputs(4, 20, 1200)
    (a,), (b,) = _onnx_outputs(tmp_path / "fp32.onnx", inputs), _onnx_outputs(tmp_path / "int8.onnx", inputs)
    assert torch.corrcoef(torch.stack([torch.from_numpy(a).flatten(), torch.from_numpy(b).flatten()]))[0, 1] > 0.99


def test_export_of_a_distilled_student_writes_its_encoder_unless_asked_for_the_mlm_head(tmp_path, capsys):
    """A distilled student is saved as a masked LM; what a user deploys is its encoder. Before `--part`,
    `export STUDENT --onnx` wrote the vocabulary logits (the head is most of the file)."""
    from helpers import save_tiny_student

    student = save_tiny_student(tmp_path / "student", tokenizer=False)
    assert main(["export", student, "--onnx", str(tmp_path / "encoder.onnx")]) == 0
    encoder = json.loads(capsys.readouterr().out)
    assert encoder["part"] == "base" and encoder["class"] == "MiniAlbertModel"
    assert "logits" not in encoder["outputs"] and encoder["outputs"][0] == "last_hidden_state"
    assert main(["export", student, "--onnx", str(tmp_path / "mlm.onnx"), "--part", "mlm"]) == 0
    mlm = json.loads(capsys.readouterr().out)
    assert mlm["part"] == "mlm" and mlm["outputs"] == ["logits"] and mlm["parameters"] > encoder["parameters"]
    (logits,) = _onnx_outputs(tmp_path / "mlm.onnx", _inputs(2, 7, 120))
    assert logits.shape[-1] == MiniAlbertConfig.from_pretrained(student).vocab_size
    assert main(["export", student, "--onnx", str(tmp_path / "task.onnx"), "--part", "task"]) == 2
    assert "--part mlm or --part base" in capsys.readouterr().err
    assert not (tmp_path / "task.onnx").exists()


def test_export_of_a_fine_tuned_model_writes_its_head_by_default(token_classifier, tmp_path, capsys):
    folder, _ = token_classifier
    assert main(["export", str(folder), "--onnx", str(tmp_path / "base.onnx"), "--part", "base"]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "MiniAlbertModel"
    assert main(["export", str(folder), "--sentence-transformers", str(tmp_path / "st"), "--part", "base"]) == 2
    assert "--part chooses what --onnx writes" in capsys.readouterr().err


def test_export_bad_input(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "minialbert-128", "--onnx", str(tmp_path / "m.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written
    assert main(["bench", "onnx", "--model", "minialbert-128", "--task", "sst2"]) == 2  # before any export
    assert "no task head" in capsys.readouterr().err


def test_bench_onnx_reports_speed_and_dev_accuracy_of_an_adapter_task(two_tasks, capsys):
    _, dirs = two_tasks
    glue = shared_path("data", "glue")
    assert main(["bench", "onnx", "--model", str(dirs["rte"]), "--task", "rte", "--data-dir", str(glue),
                 "--batch", "2", "--seq", "16", "--reps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["models"][str(dirs["rte"])]["engines"]) == {"pytorch", "onnx-fp32", "onnx-int8"}
    dev = result["dev"]
    # same predictions up to 1e-4 in the logits: the same dev accuracy (ties aside)
    assert abs(dev["onnx-fp32"]["accuracy"] - dev["pytorch"]["accuracy"]) <= 1 / 277
    assert dev["int8_change_points"] == pytest.approx(100 * (dev["onnx-int8"]["score"] - dev["pytorch"]["score"]),
                                                      abs=0.01)
    assert abs(dev["int8_change_points"]) <= 1.0  # int8 weights cost at most 1 point of dev accuracy
    sizes = result["models"][str(dirs["rte"])]["file_mb"]
    assert sizes["int8"] < sizes["fp32"]


def test_bench_onnx_compares_models_in_one_run(capsys):
    assert main(["bench", "onnx", "--model", "minialbert-128", "--compare", "minialbert-312", "--batch", "1",
                 "--seq", "8", "--reps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["models"]) == {"minialbert-128", "minialbert-312"}
    assert set(result["student_speedup_vs"]["minialbert-312"]) == {"pytorch", "onnx-fp32", "onnx-int8"}
