"""Task distillation: the prediction losses against hand-written formulas, stage 1 against
`distillation_losses`, refused teachers, word-replacement augmentation, transfer data, and
`finetune --teacher` end to end (cross, bi, NER), including kill -9 and resume."""

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Trainer

from minialbert.cli import main
from minialbert.data.transfer import read_transfer_data
from minialbert.taskdistill.augment import augment, load_mlm, replace_words
from minialbert.distillation.losses import distillation_losses
from minialbert.taskdistill.losses import intermediate_losses, prediction_loss, soft_cross_entropy
from minialbert.errors import MiniAlbertError

from helpers import save_tiny_student, shared_path


# --- losses on fixed tensors --------------------------------------------------------------------

def _soft_ce_by_hand(s, t, T):
    total = 0.0
    for row_s, row_t in zip(s.tolist(), t.tolist()):
        zt = [math.exp(x / T) for x in row_t]
        zs = [math.exp(x / T) for x in row_s]
        total += -sum(a / sum(zt) * math.log(b / sum(zs)) for a, b in zip(zt, zs))
    return total / len(s) * T * T


def test_classification_loss_is_soft_cross_entropy_mixed_with_hard_labels_on_labelled_rows():
    s = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.3, 2.0], [-1.0, 0.0, 1.0]])
    t = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.1, 0.2, 0.3]])
    labels, has = torch.tensor([0, 2, 1]), torch.tensor([1, 0, 1])
    for T in (1.0, 2.0, 8.0):
        assert soft_cross_entropy(s, t, T).item() == pytest.approx(_soft_ce_by_hand(s, t, T), rel=1e-5)
    T, w = 2.0, 0.3
    hard = -(math.log(math.exp(1.0) / sum(map(math.exp, [1.0, -0.5, 0.2])))
             + math.log(math.exp(0.0) / sum(map(math.exp, [-1.0, 0.0, 1.0])))) / 2  # rows 0 and 2 only
    expected = (1 - w) * _soft_ce_by_hand(s, t, T) + w * hard
    assert prediction_loss(s, t, labels, has, T, w).item() == pytest.approx(expected, rel=1e-5)
    # no labelled row in the batch: the soft part alone (never a NaN from an empty mean)
    assert prediction_loss(s, t, labels, torch.zeros(3), T, w).item() == pytest.approx(_soft_ce_by_hand(s, t, T),
                                                                                      rel=1e-5)


def test_regression_loss_is_mse_to_the_teacher_prediction_in_the_model_scale():
    s, t = torch.tensor([[4.0], [1.0], [2.5]]), torch.tensor([[3.0], [2.0], [2.5]])
    gold, has = torch.tensor([5.0, 0.0, 1.0]), torch.tensor([1, 1, 0])
    soft = ((4 - 3) ** 2 + (1 - 2) ** 2 + 0) / 3 / 25
    hard = ((4 - 5) ** 2 + (1 - 0) ** 2) / 2 / 25
    assert prediction_loss(s, t, gold, has, regression_scale=5.0).item() == pytest.approx(soft)
    assert prediction_loss(s, t, gold, has, hard_weight=0.5, regression_scale=5.0).item() == \
        pytest.approx(0.5 * soft + 0.5 * hard)


def test_token_loss_counts_only_labelled_positions():
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[-100, 1, -100, 2], [-100, 0, -100, -100]])
    has = torch.tensor([0, 1])
    keep = [(0, 1), (0, 3), (1, 1)]
    soft = _soft_ce_by_hand(torch.stack([s[i, j] for i, j in keep]), torch.stack([t[i, j] for i, j in keep]), 1.0)
    assert prediction_loss(s, t, labels, has).item() == pytest.approx(soft, rel=1e-5)
    hard = -math.log(math.exp(s[1, 1, 0]) / s[1, 1].exp().sum().item())  # the only gold position
    assert prediction_loss(s, t, labels, has, hard_weight=1.0).item() == pytest.approx(hard, rel=1e-5)
    s2 = s.clone()
    s2[:, 0], s2[0, 2] = 100.0, -100.0  # ignored positions cannot move the loss
    assert prediction_loss(s2, t, labels, has).item() == pytest.approx(soft, rel=1e-5)


def test_stage_one_equals_the_general_distillation_components_on_the_same_tensors():
    torch.manual_seed(0)
    B, T, H, heads, N, L = 2, 6, 8, 2, 3, 6
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    maps = lambda n: tuple(torch.softmax(torch.randn(B, heads, T, T), -1) for _ in range(n))  # noqa: E731
    states = lambda n: tuple(torch.randn(B, T, H) for _ in range(n + 1))  # noqa: E731
    student = SimpleNamespace(attentions=maps(N), hidden_states=states(N), logits=torch.randn(B, T, 11))
    teacher = SimpleNamespace(attentions=maps(L), hidden_states=states(L), logits=torch.randn(B, T, 11))
    labels = torch.full((B, T), -100)
    labels[:, 1] = 3
    layer_map = [2, 4, 6]
    mine = intermediate_losses(student, teacher.hidden_states, teacher.attentions, mask, layer_map)
    general = distillation_losses(student, teacher, labels, mask, layer_map)
    assert mine["attention"].item() == pytest.approx(general["attention"].item(), rel=1e-6)
    assert mine["hidden"].item() == pytest.approx(general["hidden"].item(), rel=1e-6)


# --- teachers -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("student"), hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)


def _finetuned(student_dir, root, task, data, *extra):
    out = root / f"teacher-{task}"
    assert main(["finetune", "--model", student_dir, "--task", task, "--data-dir", str(data), "--max-steps", "3",
                 "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32", "--pair-encoding", "cross", "--out", str(out),
                 *extra]) == 0
    return str(out)


@pytest.fixture(scope="module")
def teachers(student_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    glue = shared_path("data", "glue")
    return {"stsb": _finetuned(student_dir, root, "stsb", glue), "mrpc": _finetuned(student_dir, root, "mrpc", glue),
            "ner": _finetuned(student_dir, root, "ner", shared_path("data", "bioner", "NCBI-disease"))}


def test_mismatched_teachers_are_refused_naming_what_differs(student_dir, teachers, tmp_path, capsys):
    glue = str(shared_path("data", "glue"))
    base = ["finetune", "--model", student_dir, "--data-dir", glue, "--max-steps", "1", "--max-length", "32",
            "--out", str(tmp_path / "x")]
    cases = [(["--task", "rte", "--teacher", teachers["mrpc"]], "label set"),          # 0/1 vs entailment/...
             (["--task", "stsb", "--teacher", teachers["mrpc"]], "2 labels"),
             (["--task", "mrpc", "--teacher", student_dir], "not a fine-tuned sequence classifier"),
             (["--task", "mrpc", "--augment", "2"], "needs --teacher")]
    for args, message in cases:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    # the same labels in another order, and another vocabulary
    folder = next((Path(teachers["mrpc"]) / "runs").glob("*/model"))
    config = json.loads((folder / "config.json").read_text())
    swapped = tmp_path / "swapped"
    shutil.copytree(folder, swapped)
    config["id2label"], config["label2id"] = {"0": "1", "1": "0"}, {"1": 0, "0": 1}
    (swapped / "config.json").write_text(json.dumps(config))
    assert main([*base, "--task", "mrpc", "--teacher", str(swapped)]) == 2
    assert "label order" in capsys.readouterr().err
    other_vocab = tmp_path / "vocab"
    shutil.copytree(folder, other_vocab)
    spec = json.loads((other_vocab / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]  # two words swap ids: same size, other vocabulary
    vocab["cat"], vocab["dog"] = vocab["dog"], vocab["cat"]
    (other_vocab / "tokenizer.json").write_text(json.dumps(spec))
    assert main([*base, "--task", "mrpc", "--teacher", str(other_vocab)]) == 2
    assert "another vocabulary" in capsys.readouterr().err


# --- augmentation and transfer data ------------------------------------------------------------

def test_augmentation_is_deterministic_and_replaces_only_whole_words(student_dir):
    tok = AutoTokenizer.from_pretrained(student_dir)
    mlm = load_mlm(student_dir, "student")
    examples = [("the cat sat on the mat , eating 42 apples".split(), "a dog runs in the park".split()),
                ("photosynthesis happens in leaves .".split(),)]
    first = augment(examples, 3, mlm, tok, probability=0.5, seed=7)
    assert augment(examples, 3, mlm, tok, probability=0.5, seed=7) == first
    assert augment(examples, 3, mlm, tok, probability=0.5, seed=8) != first
    assert [i for _, i in first] == [0, 0, 0, 1, 1, 1]
    vocab = tok.get_vocab()
    changed = 0
    for new, i in first:
        for old_words, new_words in zip(examples[i], new):
            assert len(old_words) == len(new_words)
            for a, b in zip(old_words, new_words):
                if a != b:
                    changed += 1
                    # only single-piece alphabetic words, replaced by a whole word (never a ## piece)
                    assert a.isalpha() and len(tok(a, add_special_tokens=False)["input_ids"]) == 1
                    assert b.isalpha() and b in vocab
            assert [w for w in old_words if not w.isalpha()] == [w for w in new_words if not w.isalpha()]
            # "photosynthesis" is several pieces: never replaced
            assert "photosynthesis" not in old_words or new_words[0] == "photosynthesis"
    assert changed > 0
    # probability 1 replaces every word that has candidates, and only those
    words = ["one", "two", "three"]
    assert replace_words(words, {0: ["a"], 2: ["b"]}, 1.0, np.random.default_rng(0)) == ["a", "two", "b"]


class Cut(Exception):
    """A run stopped midway (a kill, a session's end)."""


def _cut_at_call(module, monkeypatch, n: int) -> list:
    """Make `module`'s forward raise Cut at its n-th call, once (then it counts calls only); returns
    the call log."""
    calls, forward, armed = [], module.forward, [True]

    def counted(*args, **kwargs):
        calls.append(1)
        if armed[0] and len(calls) == n:
            armed[0] = False
            raise Cut
        return forward(*args, **kwargs)
    monkeypatch.setattr(module, "forward", counted)
    return calls


def test_cut_augmentation_candidates_and_teacher_labels_resume_to_the_uncut_results(student_dir, teachers, tmp_path,
                                                                                    monkeypatch):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from minialbert.taskdistill import augment as augment_module, teacher as teacher_module

    monkeypatch.setattr(augment_module, "CHUNK_BATCHES", 2)  # many small chunks: 2 batches each
    monkeypatch.setattr(teacher_module, "CHUNK_BATCHES", 2)
    tok = AutoTokenizer.from_pretrained(student_dir)
    mlm = load_mlm(student_dir, "student")
    sentences = [f"the {w} sat on the mat near a small red house today".split()
                 for w in ("cat", "dog", "bird", "fish", "man", "tree", "child")]
    uncut = augment_module.replacement_candidates(sentences, mlm, tok, batch_size=3)
    batches = math.ceil(sum(min(7, len(c)) for c in uncut) / 3)  # one request per group of masked words
    calls = _cut_at_call(mlm.base_model, monkeypatch, 6)
    with pytest.raises(Cut):
        augment_module.replacement_candidates(sentences, mlm, tok, batch_size=3, cache=tmp_path / "candidates")
    assert len(list((tmp_path / "candidates").glob("chunk-*.json"))) == 2  # batches 1-4 kept, 5 lost
    calls.clear()
    assert augment_module.replacement_candidates(sentences, mlm, tok, batch_size=3,
                                                 cache=tmp_path / "candidates") == uncut
    assert len(calls) == batches - 4  # only the chunks the cut lost were computed again
    # other inputs under the same folder are never answered from it
    other = [s[::-1] for s in sentences]
    assert (augment_module.replacement_candidates(other, mlm, tok, batch_size=3, cache=tmp_path / "candidates")
            == augment_module.replacement_candidates(other, mlm, tok, batch_size=3))

    model = AutoModelForSequenceClassification.from_pretrained(next((Path(teachers["mrpc"]) / "runs").glob("*/model")))
    rows = Dataset.from_dict(dict(tok([" ".join(s) for s in sentences * 3], truncation=True)))
    label = lambda cache=None: teacher_module.label_with_teacher(model, rows, DataCollatorWithPadding(tok),
                                                                 batch_size=4, cache=cache)
    uncut = label()
    calls = _cut_at_call(model, monkeypatch, 4)
    with pytest.raises(Cut):
        label(tmp_path / "logits")
    calls.clear()
    assert label(tmp_path / "logits") == uncut and len(calls) == math.ceil(len(rows) / 4) - 2


def test_transfer_data_readers(tmp_path):
    from minialbert.data.glue import get_task

    glue = shared_path("data", "glue")
    pairs = read_transfer_data(str(glue / "STS-B"), get_task("stsb"))
    assert len(pairs) == 1379 and pairs[0] == ("A girl is styling her hair.", "A girl is brushing her hair.")
    assert len(read_transfer_data(str(glue), get_task("cola"))) == 1063  # the GLUE root: the task's test.tsv
    text = tmp_path / "pairs.txt"
    text.write_text("one a\tone b\ntwo a\ttwo b\n")
    assert read_transfer_data(str(text), get_task("mrpc")) == [("one a", "one b"), ("two a", "two b")]
    with pytest.raises(MiniAlbertError, match="example 1: 1 tab-separated field"):
        read_transfer_data(str(_write(tmp_path / "one.txt", "no tab\n")), get_task("rte"))


def _write(path, text):
    path.write_text(text)
    return path


# --- finetune --teacher end to end --------------------------------------------------------------

def test_cross_student_distils_from_teacher_with_augmentation_and_transfer_data(student_dir, teachers, tmp_path):
    glue = shared_path("data", "glue")
    out = tmp_path / "td"
    args = ["finetune", "--model", student_dir, "--task", "stsb", "--data-dir", str(glue), "--teacher",
            teachers["stsb"], "--max-train-samples", "24", "--augment", "2", "--transfer-data", str(glue / "STS-B"),
            "--max-transfer-samples", "10", "--intermediate-epochs", "1", "--epochs", "1", "--lr", "1e-3",
            "--max-length", "32", "--dtype", "fp32", "--pair-encoding", "cross", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["pipeline"] == "task-distillation[1+2,augment 2,transfer data]"
    assert {k: summary["transfer_set"][k] for k in ("labelled", "augmented", "transfer", "rows")} == \
        {"labelled": 24, "augmented": 48, "transfer": 10, "rows": 82}
    run = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert run["hyperparameters"]["task_distillation"]["intermediate_epochs"] == 1
    assert run["identity"]["distillation"]["augment"] == 2
    # the stored teacher logits are the teacher's own predictions on those rows
    import datasets

    from minialbert.taskdistill.teacher import check_teacher, load_task_teacher, resolve_teacher_folder

    cached = datasets.load_from_disk(str(next((out / "transfer").glob("*/data"))))
    assert sum(cached["has_label"]) == 24 and len(cached) == 82
    checked = check_teacher(resolve_teacher_folder(teachers["stsb"]), False, AutoTokenizer.from_pretrained(student_dir))
    teacher = load_task_teacher(checked, SimpleNamespace(kind="glue", num_labels=1, label_names=["score"]))[0]
    row = cached[30]
    with torch.no_grad():
        expected = teacher(input_ids=torch.tensor([row["input_ids"]]),
                           token_type_ids=torch.tensor([row["token_type_ids"]])).logits[0].tolist()
    assert row["teacher_logits"] == pytest.approx(expected, abs=1e-5)
    # a second call reuses the cached transfer set and the finished run
    assert main(args) == 0
    assert len(list((out / "transfer").iterdir())) == 1


def test_bi_student_learns_from_a_cross_teacher_and_ner_distils_per_token(student_dir, teachers, tmp_path):
    glue = shared_path("data", "glue")
    out = tmp_path / "bi"
    assert main(["finetune", "--model", student_dir, "--task", "mrpc", "--data-dir", str(glue), "--pair-encoding",
                 "bi", "--teacher", teachers["mrpc"], "--max-train-samples", "16", "--intermediate-epochs", "1",
                 "--max-steps", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32", "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["pipeline"] == "task-distillation[1+2] bi-encoder"
    assert summary["transfer_set"]["teacher_pair_encoding"] == "cross"
    biomed = shared_path("data", "corpora", "biomed", "sentences.txt")
    ner = tmp_path / "ner"
    assert main(["finetune", "--model", student_dir, "--task", "ner", "--data-dir",
                 str(shared_path("data", "bioner", "NCBI-disease")), "--teacher", teachers["ner"],
                 "--max-train-samples", "16", "--transfer-data", str(biomed), "--max-transfer-samples", "8",
                 "--hard-weight", "0.5", "--max-steps", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32",
                 "--out", str(ner)]) == 0
    summary = json.loads((ner / "results.json").read_text())
    assert summary["transfer_set"]["transfer"] == 8 and "f1" in summary["best"]["metrics_mean"]["test"]


@pytest.mark.slow
def test_kill_9_during_a_distillation_grid_then_resume_equals_an_uninterrupted_run(student_dir, teachers, tmp_path):
    glue = str(shared_path("data", "glue"))
    common = ["-m", "minialbert", "finetune", "--model", student_dir, "--task", "stsb", "--data-dir", glue,
              "--teacher", teachers["stsb"], "--max-train-samples", "64", "--augment", "1", "--epochs", "2",
              "--lr", "1e-3", "2e-3", "--max-length", "32", "--dtype", "fp32", "--save-models", "none",
              "--pair-encoding", "cross"]
    out, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen([sys.executable, *common, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list((out / "runs").glob("*.json")):  # killed during the second run of the grid
        assert proc.poll() is None and time.time() < deadline, "run ended or stalled before its first result"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    for folder in (out, straight):
        result = subprocess.run([sys.executable, *common, "--out", str(folder)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    a, b = (json.loads((f / "results.json").read_text()) for f in (out, straight))
    assert [c["mean_score"] for c in a["configs"]] == pytest.approx([c["mean_score"] for c in b["configs"]], abs=1e-6)
    assert a["transfer_set"] == b["transfer_set"]


class _Cut(Exception):
    """Stands for kill -9 right after a checkpoint was written."""


@pytest.mark.parametrize("pipeline", ["plain", "td-2-stages"])
def test_a_run_cut_midway_resumes_from_its_checkpoint_with_the_numbers_of_an_uninterrupted_run(
        pipeline, student_dir, teachers, tmp_path, monkeypatch):
    """A fine-tuning run checkpoints as it trains (--checkpoint-minutes) and a rerun of the command
    continues it: the cut falls in the second epoch of a length-grouped order (the epoch's order must
    come back, not only the RNG state of the checkpoint), and for task distillation in stage 2, which
    must not repeat stage 1. The student has no dropout, so only the data order can differ."""
    from minialbert import resumable
    from minialbert.taskdistill import trainers

    glue = str(shared_path("data", "glue"))
    args = ["finetune", "--model", student_dir, "--task", "stsb", "--data-dir", glue, "--max-train-samples", "24",
            "--batch-size", "4", "--epochs", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32",
            "--pair-encoding", "cross", "--checkpoint-minutes", "1e-9"]  # a checkpoint after every step
    if pipeline != "plain":
        args += ["--teacher", teachers["stsb"], "--intermediate-epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    saved = resumable.SaveEveryCallback.on_save
    cut_at = 9  # of 12 steps: epoch 2 (of stage 2)

    def cut(self, args_, state, control, **kw):
        saved(self, args_, state, control, **kw)
        if state.global_step == cut_at and not args_.output_dir.endswith("stage1"):
            raise _Cut()

    monkeypatch.setattr(resumable.SaveEveryCallback, "on_save", cut)
    with pytest.raises(_Cut):
        main([*args, "--out", str(tmp_path / "cut")])
    run_dir = next(p for p in (tmp_path / "cut" / "runs").iterdir() if p.is_dir())
    assert (run_dir / "trainer" / f"checkpoint-{cut_at}" / "trainer_state.json").is_file()
    assert not list((tmp_path / "cut" / "runs").glob("*.json"))  # no record: the run is not finished
    monkeypatch.setattr(resumable.SaveEveryCallback, "on_save", saved)
    stage1_runs = []
    monkeypatch.setattr(trainers.IntermediateDistillationTrainer, "train",
                        lambda self, **kw: stage1_runs.append(kw) or Trainer.train(self, **kw))
    assert main([*args, "--out", str(tmp_path / "cut")]) == 0
    assert stage1_runs == []  # stage 2 resumed: stage 1 is not repeated
    record, straight = (json.loads(next((tmp_path / f / "runs").glob("*.json")).read_text()) for f in ("cut", "straight"))
    assert record["run_id"] == straight["run_id"] and record["train_steps"] == straight["train_steps"] == 12
    for split, metrics in straight["metrics"].items():
        assert record["metrics"][split] == pytest.approx(metrics, abs=1e-6), split
    assert record["train_seconds"] > 0 and not (run_dir / "trainer").exists()
