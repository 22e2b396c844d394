"""`minialbert distill` / `fit-head` end to end with the real packaged teacher and real text."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, BertConfig, BertModel, BertTokenizerFast

import minialbert  # noqa: F401
from minialbert.cli import main
from minialbert.data.corpus import CorpusOptions, build_windows

from helpers import shared_path

FAST = ["--max-length", "64", "--stride", "32", "--batch-size", "8", "--max-docs", "300", "--warmup-steps", "0"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def log_rows(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "minialbert", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=900)


@pytest.mark.parametrize("args,needle", [
    (["--corpus", "/nonexistent/corpus.txt"], "does not exist"),
    (["--recipe", "no-such-recipe"], "Unknown recipe"),
    (["--preset", "minialbert-999"], "Unknown preset"),
    (["--layer-map", "1,2"], "has 2 entries but the student has 3"),
    (["--layer-map", "2,4,9"], "out of range"),
    (["--hidden-size", "192"], "Hidden-size mismatch"),
    (["--num-attention-heads", "6"], "Head-count mismatch"),
    (["--dtype", "fp8"], "--dtype must be"),
])
def test_bad_input_gives_clear_error(args, needle, tmp_path, capsys):
    assert main(["distill", "--out", str(tmp_path / "o"), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_empty_corpus_and_unknown_recipe_field(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    assert main(["distill", "--out", str(tmp_path / "o"), "--corpus", str(tmp_path / "empty.txt")]) == 2
    assert "is empty" in capsys.readouterr().err
    (tmp_path / "r.yaml").write_text("teacher: minilm\nlearning_rat: 1.0\n")
    assert main(["distill", "--out", str(tmp_path / "o"), "--recipe", str(tmp_path / "r.yaml")]) == 2
    assert "unknown fields ['learning_rat']" in capsys.readouterr().err


def test_embedding_init_with_another_vocabulary_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                                                   [f"tok{i}" for i in range(30517)]))
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(other)
    BertModel(BertConfig(hidden_size=128, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)) \
        .save_pretrained(other)
    assert main(["distill", "--out", str(tmp_path / "o"), *FAST, "--embedding-init", str(other)]) == 2
    assert "Tokenizer mismatch" in capsys.readouterr().err


def test_windows_from_text_and_jsonl_sources(tmp_path):
    from transformers import AutoTokenizer

    from minialbert.packaged import packaged_teacher_path

    tok = AutoTokenizer.from_pretrained(packaged_teacher_path())
    long_doc = " ".join(f"word{i}" for i in range(400))
    (tmp_path / "a.txt").write_text(f"{long_doc}\nshort document here\n\n")
    opts = CorpusOptions(source=str(tmp_path / "a.txt"), max_length=32, stride=8, windows_per_doc=3, seed=1)
    w = build_windows(tok, opts)
    assert len(w) == 4 and max(len(x) for x in w["input_ids"]) == 32  # 3 sampled windows + the short doc
    again = build_windows(tok, opts)  # cached, memory-mapped, identical
    assert again["input_ids"] == w["input_ids"] and again.cache_files
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "first doc"}) + "\n" + json.dumps({"body": "second"}) + "\n")
    assert len(build_windows(tok, CorpusOptions(source=str(tmp_path / "b.jsonl"), text_field="body"))) == 2
    with pytest.raises(Exception, match="no field 'text'"):
        build_windows(tok, CorpusOptions(source=str(tmp_path / "b.jsonl")))
    (tmp_path / "c.txt").write_text("para one line one\npara one line two\n\npara two\n")
    assert len(build_windows(tok, CorpusOptions(source=str(tmp_path / "c.txt"), blank_line_docs=True))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["wiki-offline", "biomed"])
def test_200_real_steps_lower_alignment_losses_and_student_loads(corpus, tmp_path):
    source = "wiki-offline" if corpus == "wiki-offline" else str(shared_path("data", "corpora", "biomed", "sentences.txt"))
    out = tmp_path / "run"
    assert main(["distill", "--out", str(out), "--corpus", source, "--max-steps", "200", "--logging-steps", "20",
                 "--save-steps", "100", *FAST[:-2], "--warmup-steps", "10", "--max-docs", "3000",
                 "--batch-size", "4"]) == 0
    rows = log_rows(out)
    first, last = rows[0], rows[-1]
    assert last["step"] == 200
    assert last["hidden"] < 0.8 * first["hidden"], (first, last)
    assert last["attention"] < 0.8 * first["attention"], (first, last)
    student = AutoModelForMaskedLM.from_pretrained(out / "final")
    assert type(student).__name__ == "MiniAlbertForMaskedLM" and student.config.embedding_size == 128
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["steps"] == 200 and info["output_loss"] is False and info["layer_map"] == [2, 4, 6]
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))  # this run's own TensorBoard folder


def test_mlm_only_baseline_skips_the_teacher_pass_and_teacher_initialisation(tmp_path, monkeypatch):
    from minialbert.distillation.teacher import Teacher

    def no_teacher_pass(*args, **kwargs):
        raise AssertionError("the teacher's forward pass ran for an MLM-only student")

    monkeypatch.setattr(Teacher, "forward", no_teacher_pass)
    out = tmp_path / "run"
    assert main(["distill", "--out", str(out), "--alignment", "none", "--output-weight", "0",
                 "--embedding-init", "random", "--shared-layer-init", "0", "--max-steps", "2",
                 "--logging-steps", "1", *FAST]) == 0
    assert all(set(row) & {"hidden", "attention", "output"} == set() for row in log_rows(out))
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["initialisation"] == {"embedding_init": "random"}


@pytest.mark.slow
def test_fit_head_improves_accuracy_and_enables_output_loss(tmp_path):
    head = tmp_path / "minilm-mlm"
    assert main(["fit-head", "--out", str(head), "--max-steps", "30", "--batch-size", "16", "--max-length", "64",
                 "--max-docs", "600", "--eval-windows", "64"]) == 0
    report = json.loads((head / "fit_head.json").read_text())
    assert report["masked_token_accuracy_after"] > report["masked_token_accuracy_before"] + 0.02
    out = tmp_path / "run"
    assert main(["distill", "--out", str(out), "--teacher", str(head), "--max-steps", "4", "--logging-steps", "2",
                 *FAST]) == 0
    assert all("output" in row for row in log_rows(out))
    assert json.loads((out / "final" / "distillation.json").read_text())["output_loss"] is True


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["distill", "--out", str(out), "--max-steps", "6", "--save-steps", "1", "--learning-rate", "1e30",
               "--logging-steps", "1", *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "training stopped" in err and "Traceback" not in err
    assert (out / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()
    assert not (out / "final").exists()


def _run_until_checkpoint_then_kill(args, out, step):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, f"run ended or stalled before checkpoint-{step}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_twice_then_resume_matches_an_uninterrupted_run(tmp_path):
    out, straight = tmp_path / "run", tmp_path / "straight"
    common = ["--max-steps", "40", "--save-steps", "5", "--logging-steps", "5", "--dtype", "fp32", *FAST]
    args = [sys.executable, "-m", "minialbert", "distill", "--out", str(out), *common]
    _run_until_checkpoint_then_kill(args, out, 15)
    assert not (out / "final").exists()
    _run_until_checkpoint_then_kill(args + ["--resume"], out, 25)  # a second crash, after a resume
    newest = max((c for c in (out / "checkpoints").glob("checkpoint-*") if c.name.split("-")[1].isdigit()),
                 key=lambda c: int(c.name.split("-")[1]))
    planted = out / "checkpoints" / f"checkpoint-{int(newest.name.split('-')[1]) + 5}"  # half-written, newest
    shutil.copytree(newest, planted)
    with open(planted / "model.safetensors", "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    result = run_cli("distill", "--out", str(out), *common, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["steps"] == 40 and info["resumed_from"].endswith(newest.name)
    # the clock counts the killed parts too (restored from the checkpoint), not only the last process
    assert info["train_seconds_total"] > info["train_seconds_this_run"] + 0.5
    assert f"Skipping {planted}" in result.stderr
    assert run_cli("distill", "--out", str(straight), *common).returncode == 0
    resumed_log, straight_log = log_rows(out), log_rows(straight)
    assert [r["step"] for r in resumed_log] == [r["step"] for r in straight_log] == [1, *range(5, 41, 5)]
    for a, b in zip(resumed_log, straight_log):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)
    a, b = (load_file(str(d / "final" / "model.safetensors")) for d in (out, straight))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)
    again = run_cli("distill", "--out", str(out), *FAST)  # refuses to overwrite without --resume
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    # resuming a finished run is a no-op with a message: no extra step, the student untouched
    stamp = (out / "final" / "model.safetensors").stat().st_mtime_ns
    done = run_cli("distill", "--out", str(out), *common, "--resume")
    assert done.returncode == 0 and "already complete (40 of 40 steps)" in done.stderr
    assert json.loads((out / "final" / "distillation.json").read_text())["steps"] == 40
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    assert [r["step"] for r in log_rows(out)][-1] == 40
    # a resume with a setting that changes the numbers is refused, naming it
    changed = run_cli("distill", "--out", str(out), *common, "--max-steps", "50", "--learning-rate", "1e-3", "--resume")
    assert changed.returncode == 2 and "learning_rate: 0.0005 -> 0.001" in changed.stderr
    assert "Traceback" not in changed.stderr


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "minialbert",
                             "distill", "--out", str(out), "--max-steps", "4", "--logging-steps", "2", *FAST],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["steps"] == 4 and info["world_size"] == 2
    first, second = info["first_windows_per_process"]
    assert len(first) == len(second) == 32 and not set(first) & set(second)  # each rank its own shard


def test_saved_student_carries_a_model_card_naming_its_teacher(tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "init"
    assert main(["distill", "--out", str(out), "--max-steps", "0", *FAST]) == 0
    card = ModelCard.load(out / "final" / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the packaged teacher's hub id
    assert card.data.pipeline_tag == "fill-mask" and "minialbert" in card.data.tags
    assert "0 steps" in card.text and "minialbert distill" in card.text
    import transformers

    from minialbert.fingerprint import CODE_NUMBERS_VERSION

    info = json.loads((out / "final" / "distillation.json").read_text())
    assert info["code_numbers"] == CODE_NUMBERS_VERSION
    assert info["versions"] == {"torch": torch.__version__, "transformers": transformers.__version__}


def test_a_short_run_logs_every_step_and_its_summary_compares_the_first_and_last(tmp_path, capsys):
    """A 5-step smoke run under cpu-demo (--logging-steps 10) used to log step 1 alone and print
    "step 1 -> step 1, +0.0%" for every loss."""
    out = tmp_path / "run"
    assert main(["distill", "--out", str(out), "--max-steps", "5", *FAST]) == 0
    assert [row["step"] for row in log_rows(out) if "loss" in row] == [1, 2, 3, 4, 5]
    summary = capsys.readouterr().out.split("Distilled 5 steps", 1)[1]
    header = next(line for line in summary.splitlines() if line.startswith("component"))
    assert header.split()[1:5] == ["step", "1", "step", "5"], header
    # the MLM loss trained the head: the saved config says so (loading it gives no warning)
    assert json.loads((out / "final" / "config.json").read_text())["mlm_head_trained"] is True


def test_a_summary_of_one_logged_step_says_so_instead_of_a_zero_change(tmp_path):
    from minialbert.distillation.trainer import loss_summary

    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 9.5, "mlm": 8.0}) + "\n")
    assert loss_summary(tmp_path / "log.jsonl").startswith("Only step 1 was logged (loss 9.5000, mlm 8.0000)")


def test_loading_an_untrained_mlm_head_warns(tmp_path, caplog):
    """`--max-steps 0` saves the initialised student: its MLM head never trained. Its config records
    that, and loading it for fill-mask warns (before: random words, no word from the project)."""
    from minialbert import MiniAlbertForMaskedLM

    out = tmp_path / "init"
    assert main(["distill", "--out", str(out), "--max-steps", "0", *FAST]) == 0
    assert json.loads((out / "final" / "config.json").read_text())["mlm_head_trained"] is False
    caplog.clear()
    with caplog.at_level("WARNING"):
        AutoModelForMaskedLM.from_pretrained(out / "final")
    assert "masked-LM head of this checkpoint was never trained" in caplog.text
    model, info = MiniAlbertForMaskedLM.from_pretrained(out / "final", output_loading_info=True)  # as transformers'
    assert isinstance(model, MiniAlbertForMaskedLM) and "missing_keys" in info


def test_resume_reuses_a_finished_run_only_under_the_same_code_numbers(tmp_path, capsys, monkeypatch):
    """A finished run (or the checkpoints of an unfinished one) made by code whose numbers are another
    version (fingerprint.CODE_NUMBERS_VERSION) is neither reused nor continued by --resume; a folder
    from before the version was recorded counts as version 1 (the released student's kind)."""
    from minialbert import fingerprint

    out = tmp_path / "one-step"
    assert main(["distill", "--out", str(out), "--max-steps", "1", "--save-steps", "1", *FAST]) == 0
    info_path = out / "final" / "distillation.json"
    info = json.loads(info_path.read_text())
    assert info["code_numbers"] == fingerprint.CODE_NUMBERS_VERSION == 1
    assert json.loads((out / "code_numbers.json").read_text()) == {"code_numbers": 1}
    resume = ["distill", "--out", str(out), "--max-steps", "1", "--save-steps", "1", "--resume", *FAST]
    # an older folder: no code_numbers anywhere -> version 1, reused as it is
    (out / "code_numbers.json").unlink()
    info_path.write_text(json.dumps({k: v for k, v in info.items() if k != "code_numbers"}))
    before = info_path.read_bytes()
    capsys.readouterr()
    assert main(resume) == 0 and info_path.read_bytes() == before
    # the finished student says version 0
    info_path.write_text(json.dumps({**info, "code_numbers": 0}))
    before = info_path.read_bytes()
    assert main(resume) != 0
    err = capsys.readouterr().err
    assert "numbers are version 0" in err and "this code computes version 1" in err and "Traceback" not in err
    assert info_path.read_bytes() == before  # left as it was
    # this code's version moved on (the bump of a commit that changes a number)
    info_path.write_text(json.dumps(info))
    monkeypatch.setattr(fingerprint, "CODE_NUMBERS_VERSION", 2)
    assert main(resume) != 0
    assert "numbers are version 1" in capsys.readouterr().err
    # an unfinished run's checkpoints made under version 0 (as its code_numbers.json says) are not continued
    monkeypatch.setattr(fingerprint, "CODE_NUMBERS_VERSION", 1)
    shutil.rmtree(out / "final")
    (out / "code_numbers.json").write_text(json.dumps({"code_numbers": 0}))
    assert main(resume) != 0
    assert "code_numbers.json" in capsys.readouterr().err
