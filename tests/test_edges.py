"""Bad input and faults at the edges: every case ends in a clear one-paragraph error that
names the option, file or line, with exit code 2 and no traceback, or works as a user expects.
Each case failed on the main branch before this file existed."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import minialbert  # noqa: F401
from minialbert import MiniAlbertConfig, MiniAlbertForMaskedLM
from minialbert.cli import main
from minialbert.packaged import packaged_teacher_path
from minialbert.checkpoints import latest_complete_checkpoint, set_aside_incomplete
from minialbert.data.glue import get_task, glue_metrics



@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files of every kind, made once."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_bytes(b"")
    (d / "binary.txt").write_bytes(b"\x7fELF\x00\x01\x02" * 100)
    (d / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (d / "a-file").write_text("not a folder")
    broken = d / "broken-teacher"
    shutil.copytree(packaged_teacher_path(), broken)
    with open(broken / "model.safetensors", "r+b") as f:  # a copy cut short
        f.truncate(f.seek(0, 2) // 2)
    (d / "bad-config").mkdir()
    (d / "bad-config" / "config.json").write_text("{not json")
    glue = d / "glue"
    for task in ("RTE", "STS-B", "STS-B-nan"):
        (glue / task).mkdir(parents=True)
    (glue / "RTE" / "train.tsv").write_text("")
    (glue / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tg\tf\t2012\t0\ts\ts\tA man.\tA person.\t{}\n"
    (glue / "STS-B" / "train.tsv").write_text(head + row.format("3.2") + row.format("7.5"))
    (glue / "STS-B" / "dev.tsv").write_text(head + row.format("1.0"))
    (glue / "STS-B-nan" / "train.tsv").write_text(head + row.format("nan"))
    (glue / "STS-B-nan" / "dev.tsv").write_text(head + row.format("1.0"))
    ner = d / "ner"
    ner.mkdir()
    for split in ("train", "devel", "test"):
        (ner / f"{split}.tsv").write_text("Familial\tO\nadenoma\tB-Disease\n\n")
    (ner / "devel.tsv").write_text("Familial\tO\ntok\tB-Disease\tO\n\n")  # a stray third column
    return d


DISTILL_CASES = {
    "empty corpus": (["--corpus", "{d}/empty.txt"], "is empty"),
    "binary corpus": (["--corpus", "{d}/binary.txt"], "binary.txt looks binary"),
    "non-UTF-8 corpus": (["--corpus", "{d}/latin1.txt"], "latin1.txt is not UTF-8"),
    "negative stride": (["--stride", "-5"], "--stride must be 0 or more"),
    "window longer than positions": (["--max-length", "100000"], "exceeds the 512 positions"),
    "zero batch": (["--batch-size", "0"], "--batch-size must be at least 1"),
    "negative learning rate": (["--learning-rate", "-1"], "--learning-rate must be positive"),
    "mask probability above 1": (["--mlm-probability", "1.5"], "--mlm-probability must be between 0 and 1"),
    "zero iterations": (["--iterations", "0"], "--iterations must be at least 1"),
    "negative steps": (["--max-steps", "-1"], "--max-steps must be 0"),
    "truncated teacher": (["--teacher", "{d}/broken-teacher"], "model.safetensors is damaged"),
    "out is a file": (["--out", "{d}/a-file"], "is a file"),
    "out under a file": (["--out", "{d}/a-file/run"], "a folder you can write to"),
}


@pytest.mark.parametrize("case", sorted(DISTILL_CASES))
def test_distill_bad_input(case, files, tmp_path, capsys):
    args, needle = DISTILL_CASES[case]
    args = [a.format(d=files) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    assert main(["distill", *out, "--max-steps", "1", "--max-docs", "50", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # a failed run leaves no empty output folder


FINETUNE_CASES = {
    "empty train.tsv": (["--task", "rte", "--data-dir", "{d}/glue"], "train.tsv holds no data"),
    "STS-B label out of range": (["--task", "stsb", "--data-dir", "{d}/glue"], "line 3: malformed row"),
    "STS-B label nan": (["--task", "stsb", "--data-dir", "{d}/glue/STS-B-nan"], "line 2: malformed row"),
    "NER extra column": (["--task", "ner", "--data-dir", "{d}/ner"], "devel.tsv, line 2: 3 tab-separated fields"),
    "negative lr": (["--task", "rte", "--lr", "-1"], "--lr must be positive"),
    "zero batch": (["--task", "rte", "--batch-size", "0"], "--batch-size must be at least 1"),
    "input longer than positions": (["--task", "rte", "--max-length", "100000"], "exceeds the 512 positions"),
    "truncated model": (["--task", "rte", "--model", "{d}/broken-teacher"], "model.safetensors is damaged"),
    "bi-encoder on a single-sentence task": (["--task", "cola", "--pair-encoding", "bi"],
                                             "--pair-encoding bi needs a sentence-pair task"),
    "task distillation with exits": (["--task", "rte", "--teacher", "{d}/glue", "--exits", "all"],
                                     "--exits is not available with task distillation"),
    "augmentation without a teacher": (["--task", "rte", "--augment", "2"],
                                       "--augment is part of task distillation and needs --teacher"),
    "teacher that is no classifier": (["--task", "rte", "--teacher", "minilm"],
                                      "is not a fine-tuned sequence classifier"),
    "negative temperature": (["--task", "rte", "--teacher", "minilm", "--temperature", "-1"],
                             "--temperature must be positive"),
}


@pytest.mark.parametrize("case", sorted(FINETUNE_CASES))
def test_finetune_bad_input(case, files, tmp_path, capsys):
    args, needle = FINETUNE_CASES[case]
    args = [a.format(d=files) for a in args]
    model = [] if "--model" in args else ["--model", "minilm"]
    data = [] if "--data-dir" in args else ["--data-dir", str(files / "glue")]
    assert main(["finetune", *model, *data, "--max-steps", "1", "--out", str(tmp_path / "ft"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "ft").exists()


def test_stsb_constant_or_diverged_predictions_score_zero_not_nan():
    labels = np.array([1.0, 2.0, 4.0])
    for predictions in (np.full(3, 2.5), np.array([1.0, np.nan, 2.0])):
        m = glue_metrics(get_task("stsb"), predictions, labels)
        assert m == {"pearson": 0.0, "spearman": 0.0, "score": 0.0}
        json.dumps(m, allow_nan=False)  # valid JSON


def test_info_accepts_minilm_and_names_a_corrupt_config(files, capsys):
    assert main(["info", "minilm", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["model_type"] == "bert" and info["parameters"]["base"] == 22_713_216
    assert main(["info", str(files / "bad-config")]) == 2
    err = capsys.readouterr().err
    assert "config.json is not valid JSON" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_without_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("notok")
    torch.manual_seed(0)
    MiniAlbertForMaskedLM(MiniAlbertConfig(vocab_size=200, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64,
                                           adapter_reduction_factor=4)).save_pretrained(path)
    return path


def test_export_refuses_a_bad_opset_and_a_folder_and_leaves_nothing_behind(tiny_without_tokenizer, tmp_path, capsys):
    assert main(["export", str(tiny_without_tokenizer), "--onnx", str(tmp_path / "m.onnx"), "--opset", "5"]) == 2
    assert "--opset 5 is not supported" in capsys.readouterr().err
    folder = tmp_path / "dir.onnx"
    folder.mkdir()
    assert main(["export", str(tiny_without_tokenizer), "--onnx", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dir.onnx"]


def test_export_warns_when_the_folder_has_no_tokenizer_and_reports_the_written_opset(tiny_without_tokenizer,
                                                                                       tmp_path, capsys):
    assert main(["export", str(tiny_without_tokenizer), "--onnx", str(tmp_path / "m.onnx"), "--opset", "19"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "no tokenizer files" in report["warning"] and report["opset"] == 19
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def _checkpoint(folder: Path, step: int, damaged: bool = False) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.ones(64, 64)}, str(ckpt / "model.safetensors"))
    if damaged:
        with open(ckpt / "model.safetensors", "r+b") as f:
            f.truncate(4000)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def test_resume_point_survives_repeated_kills_and_skips_a_damaged_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    good = _checkpoint(folder, 2)
    _checkpoint(folder, 4, damaged=True)  # trainer_state.json intact, weights cut short
    (folder / "checkpoint-6").mkdir()  # killed before trainer_state.json
    (folder / "checkpoint-4.incomplete").mkdir()  # set aside by an earlier resume
    assert latest_complete_checkpoint(folder) == good
    set_aside_incomplete(folder, good)  # used to crash on 'checkpoint-4.incomplete'
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint-2", "checkpoint-4.incomplete", "checkpoint-4.incomplete.1", "checkpoint-6.incomplete"]
    _checkpoint(folder, 4)  # the resumed run writes checkpoint-4 again, then is killed once more
    assert latest_complete_checkpoint(folder).name == "checkpoint-4"
    set_aside_incomplete(folder, latest_complete_checkpoint(folder))  # a third resume still works


def _weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "final" / "model.safetensors"))


@pytest.mark.slow
def test_resumed_run_ends_with_the_weights_and_losses_of_an_uninterrupted_one(tmp_path):
    fast = ["--max-length", "64", "--batch-size", "8", "--max-docs", "300", "--warmup-steps", "0", "--iterations", "2",
            "--dtype", "fp32", "--logging-steps", "1", "--max-steps", "6", "--save-steps", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["distill", "--out", str(straight), *fast]) == 0
    shutil.copytree(straight, resumed)  # the same run, then a crash after checkpoint-2 ...
    shutil.rmtree(resumed / "final")
    for step in (4, 6):
        shutil.rmtree(resumed / "checkpoints" / f"checkpoint-{step}")
    half = resumed / "checkpoints" / "checkpoint-4"  # ... that left a half-written checkpoint-4
    shutil.copytree(straight / "checkpoints" / "checkpoint-4", half)
    with open(half / "model.safetensors", "r+b") as f:
        f.truncate(f.seek(0, 2) // 3)
    assert main(["distill", "--out", str(resumed), *fast, "--resume"]) == 0
    info = json.loads((resumed / "final" / "distillation.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-2") and info["steps"] == 6
    rows = [[json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()] for d in (straight, resumed)]
    assert [r["step"] for r in rows[1]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(*rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), (a, b)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("content, expected", [(None, "not a readable JSON file"), ("{bad", "not a readable JSON file"),
                                               ("[1]", "expected a JSON object")])
def test_export_release_names_an_unreadable_measured_file_and_writes_nothing(content, expected, tmp_path, capsys):
    measured = tmp_path / "embed.json"
    if content is not None:
        measured.write_text(content)
    out = tmp_path / "release"
    assert main(["export", "minialbert-minilm", "--release", str(out), "--release-measured", str(measured)]) == 2
    err = capsys.readouterr().err
    assert f"--release-measured {measured}" in err and expected in err and "Traceback" not in err
    assert not out.exists()
