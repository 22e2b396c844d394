"""Fine-tuning and evaluation: loaders on the real GLUE/NER files, metrics, short runs, adapter
tuning files, grids, reports and bad input."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from minialbert import MiniAlbertForMaskedLM
from minialbert.cli import main
from minialbert.packaged import packaged_teacher_path
from minialbert import load_adapter_model
from minialbert.data.glue import get_task, glue_metrics, load_glue
from minialbert.data.ner import load_ner
from minialbert.data.ner import NerSplit, encode_ner

from helpers import save_tiny_student, shared_path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A small MiniALBERT (H=64) with the bert-base-uncased vocabulary, saved with its tokenizer."""
    return save_tiny_student(tmp_path_factory.mktemp("tiny"))


ROWS = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500), "rte": (2490, 277),
        "wnli": (635, 71)}


@pytest.mark.parametrize("task", sorted(ROWS))
def test_glue_loaders_on_real_files(task):
    glue = shared_path("data", "glue")
    splits = load_glue(get_task(task), str(glue))
    assert (len(splits["train"].labels), len(splits["dev"].labels)) == ROWS[task]
    t = get_task(task)
    labels = set(splits["train"].labels)
    if t.labels is None:
        assert min(labels) == 0.0 and max(labels) == 5.0
    else:
        assert labels == set(range(len(t.labels)))


def test_glue_known_rows():
    glue = str(shared_path("data", "glue"))
    cola = load_glue(get_task("cola"), glue)["train"]
    assert cola.texts[0] == ("Our friends won't buy this analysis, let alone the next one we propose.",) and cola.labels[0] == 1
    mrpc = load_glue(get_task("mrpc"), glue)["train"]
    assert mrpc.texts[0][0].startswith("Amrozi accused his brother") and mrpc.labels[0] == 1 and mrpc.labels[1] == 0
    assert sum(mrpc.labels) == 2474  # MANIFEST: 2,474 positive (the standard 3,668-row split)
    stsb = load_glue(get_task("stsb"), glue)["train"]
    assert stsb.texts[0] == ("A plane is taking off.", "An air plane is taking off.") and stsb.labels[0] == 5.0
    rte = load_glue(get_task("rte"), glue)["train"]
    assert rte.labels[0] == get_task("rte").labels.index("not_entailment")
    sst = load_glue(get_task("sst2"), glue)["train"]
    assert sst.texts[0][0].strip() == "hide new secretions from the parental units" and sst.labels[0] == 0


def test_official_layout_of_mnli_qqp_qnli(tmp_path):
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    head = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1"
    (mnli / "train.tsv").write_text(head + "\tgold_label\n0\t1\t2\tg\t.\t.\t.\t.\tA man.\tA person.\tentailment\tentailment\n")
    dev = head + "\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
    dev += "0\t1\t2\tg\t.\t.\t.\t.\tA b.\tC d.\tneutral\tneutral\tneutral\tneutral\tneutral\tneutral\n"
    (mnli / "dev_matched.tsv").write_text(dev)
    (mnli / "dev_mismatched.tsv").write_text(dev.replace("neutral", "contradiction"))
    s = load_glue(get_task("mnli"), str(tmp_path))
    assert set(s) == {"train", "dev_matched", "dev_mismatched"}
    names = get_task("mnli").labels
    assert names[s["train"].labels[0]] == "entailment" and names[s["dev_mismatched"].labels[0]] == "contradiction"
    qqp = tmp_path / "QQP"
    qqp.mkdir()
    rows = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tHow?\tWhy?\t0\n2\t3\t4\tbroken row\n3\t5\t6\tA?\tB?\t1\n"
    (qqp / "train.tsv").write_text(rows)
    (qqp / "dev.tsv").write_text(rows)
    s = load_glue(get_task("qqp"), str(tmp_path))
    assert s["train"].labels == [0, 1] and s["train"].skipped == 1
    qnli = tmp_path / "QNLI"
    qnli.mkdir()
    rows = "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n"
    (qnli / "train.tsv").write_text(rows)
    (qnli / "dev.tsv").write_text(rows)
    assert load_glue(get_task("qnli"), str(tmp_path))["dev"].texts == [("Who?", "Him.")]


def test_metrics_against_hand_computed_values():
    cola = glue_metrics(get_task("cola"), np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0]))
    assert cola["matthews_correlation"] == pytest.approx(2 / 12 ** 0.5)
    mrpc = glue_metrics(get_task("mrpc"), np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0]))
    assert mrpc["f1"] == pytest.approx(2 / 3) and mrpc["accuracy"] == 0.75 and mrpc["score"] == mrpc["f1"]
    stsb = glue_metrics(get_task("stsb"), np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert stsb["pearson"] == pytest.approx(3 / (2 * 14 / 3) ** 0.5) and stsb["spearman"] == pytest.approx(1.0)
    from minialbert.data.ner import ner_metrics
    m = ner_metrics([["B-D", "I-D", "O", "B-D"]], [["B-D", "I-D", "O", "O"]])
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["f1"] == pytest.approx(2 / 3)


def test_ner_loader_on_real_files_and_long_sentence_splitting():
    splits, labels = load_ner(str(shared_path("data", "bioner", "NCBI-disease")))
    assert [len(splits[k].sentences) for k in ("train", "devel", "test")] == [5424, 923, 940]
    assert labels == ["O", "B-Disease", "I-Disease"]
    assert sum(t == "B-Disease" for s in splits["devel"].tags for t in s) == 787
    tok = AutoTokenizer.from_pretrained(packaged_teacher_path())
    words = [f"immunodeficiency{i}" for i in range(60)]
    split = NerSplit([words], [["B-Disease"] + ["I-Disease"] * 59], "mem")
    feats, maps = encode_ner(split, tok, labels, max_length=32)
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 32 for f in feats)
    assert sorted(w for _, firsts in maps for _, w in firsts) == list(range(60))  # every word once
    assert sum(l != -100 for f in feats for l in f["labels"]) == 60


def recompute_dev_metrics(model_dir, task, data_dir, max_length):
    """Score the saved model's dev predictions independently of the run (scikit-learn / scipy for GLUE)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, matthews_corrcoef
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, DataCollatorWithPadding

    from minialbert.data.ner import ner_metrics, word_level_predictions
    from minialbert.data.tasks import DataOptions, prepare_data

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = prepare_data(DataOptions(task=task, data_dir=str(data_dir), max_length=max_length), tok)
    split = "devel" if task == "ner" else "dev"
    dataset, maps = data.evals[split]
    auto = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir).eval()
    collate = DataCollatorForTokenClassification(tok) if task == "ner" else DataCollatorWithPadding(tok)
    logits = []
    with torch.no_grad():
        for i in range(0, len(dataset), 64):
            rows = [dataset[j] for j in range(i, min(i + 64, len(dataset)))]
            batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows])
            logits += list(model(**batch).logits.numpy())
    if task == "ner":
        return ner_metrics(data.ner_splits[split].tags, word_level_predictions(maps, logits, data.ner_splits[split],
                                                                                data.label_names))
    labels = np.array(dataset["labels"])
    if task == "stsb":
        return {"spearman": spearmanr(np.array(logits)[:, 0], labels)[0]}
    pred = np.array(logits).argmax(-1)
    return {"accuracy": accuracy_score(labels, pred), "matthews_correlation": matthews_corrcoef(labels, pred)}


@pytest.mark.slow
@pytest.mark.parametrize("task,data,metric", [
    ("rte", ("glue",), "accuracy"), ("stsb", ("glue",), "spearman"), ("cola", ("glue",), "matthews_correlation"),
    ("ner", ("bioner", "NCBI-disease"), "f1")])
def test_short_runs_write_results_with_the_right_metrics(task, data, metric, tiny_checkpoint, tmp_path):
    data_dir = shared_path("data", *data)
    assert main(["finetune", "--model", tiny_checkpoint, "--task", task, "--data-dir", str(data_dir),
                 "--max-steps", "100", "--max-length", "64", "--lr", "1e-3", "--dtype", "fp32",
                 "--pair-encoding", "cross", "--out", str(tmp_path)]) == 0  # the recomputation reads [CLS] a [SEP] b
    results = json.loads((tmp_path / "results.json").read_text())
    split = "devel" if task == "ner" else "dev"
    stored = results["best"]["metrics_mean"][split][metric]
    low = -1.0 if metric in ("spearman", "matthews_correlation") else 0.0
    assert np.isfinite(stored) and low <= stored <= 1.0
    run = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert run["train_steps"] == 100 and run["trainable_parameters"] > 0 and run["train_seconds"] > 0
    import transformers  # the library versions are recorded beside the identity, not hashed into it

    assert run["versions"] == {"torch": torch.__version__, "transformers": transformers.__version__}
    assert "versions" not in run["identity"] and run["identity"]["code_numbers"] >= 1
    if task == "ner":
        assert "test" in run["metrics"] and {"precision", "recall"} <= set(run["metrics"]["test"])
    # the stored score is the saved model's: recomputed from its predictions, outside the run
    model_dir = next((tmp_path / "runs").glob("*/model"))
    assert recompute_dev_metrics(model_dir, task, data_dir, 64)[metric] == pytest.approx(stored, abs=1e-6)
    # its model card carries the Hub's metadata and the measured score
    from huggingface_hub import ModelCard

    card = ModelCard.load(model_dir / "README.md")
    result = next(r for r in card.data.eval_results if r.metric_type == metric)
    assert result.metric_value == pytest.approx(run["metrics"]["test" if task == "ner" else "dev"][metric], abs=1e-4)
    assert "minialbert" in card.data.tags and "How this model was made" in card.text


@pytest.mark.slow
def test_packaged_minilm_learns_sst2_beyond_majority(tmp_path):
    glue = shared_path("data", "glue")
    assert main(["finetune", "--model", "minilm", "--task", "sst2", "--data-dir", str(glue), "--max-steps", "250",
                 "--batch-size", "16", "--max-length", "64", "--lr", "1e-4", "--save-models", "none",
                 "--max-train-samples", "4000",
                 "--out", str(tmp_path)]) == 0
    dev = load_glue(get_task("sst2"), str(glue))["dev"].labels
    majority = max(np.mean(dev), 1 - np.mean(dev))
    accuracy = json.loads((tmp_path / "results.json").read_text())["score"]
    assert accuracy > majority + 0.2, (accuracy, majority)


@pytest.mark.slow
def test_adapter_tuning_file_reloads_to_the_same_predictions(tiny_checkpoint, tmp_path):
    glue = shared_path("data", "glue")
    assert main(["finetune", "--model", tiny_checkpoint, "--task", "mrpc", "--data-dir", str(glue), "--adapter-tuning",
                 "--max-steps", "20", "--max-length", "64", "--dtype", "fp32", "--pair-encoding", "cross",
                 "--out", str(tmp_path)]) == 0
    run = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    H, r = 64, 16
    adapters = 2 * 2 * ((H * (H // r) + H // r) + (H // r * H + H) + 2 * H)
    assert run["trainable_parameters"] == adapters + (H * 2 + 2)  # adapters + classifier
    task_dir = next((tmp_path / "runs").glob("*/adapter"))
    cfg = json.loads((task_dir / "minialbert_adapter.json").read_text())
    assert cfg["parameters"] == run["trainable_parameters"] and cfg["base_model"].endswith(tiny_checkpoint.split("/")[-1])
    model = load_adapter_model(task_dir)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=2)
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base(ids).logits)  # the saved adapters/head are used
    # the reloaded task file reproduces the dev score the run stored for it
    from minialbert.data.tasks import DataOptions, prepare_data
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    dev, _ = prepare_data(DataOptions(task="mrpc", data_dir=glue, max_length=64), tok).evals["dev"]
    from transformers import DataCollatorWithPadding
    batch = DataCollatorWithPadding(tok)([{k: v for k, v in r.items() if k != "labels"} for r in dev])
    with torch.no_grad():
        pred = model.eval()(**batch).logits.argmax(-1).numpy()
    metrics = glue_metrics(get_task("mrpc"), pred, np.array(dev["labels"]))
    assert metrics["f1"] == pytest.approx(run["metrics"]["dev"]["f1"], abs=1e-6)


@pytest.mark.slow
def test_grid_resumes_and_report_tables(tiny_checkpoint, tmp_path, capsys):
    glue = str(shared_path("data", "glue"))
    args = ["finetune", "--model", tiny_checkpoint, "--task", "rte", "--data-dir", glue, "--max-steps", "3",
            "--lr", "1e-3", "5e-4", "--runs", "2", "--max-length", "32", "--out", str(tmp_path / "rte")]
    assert main(args) == 0
    records = sorted((tmp_path / "rte" / "runs").glob("*.json"))
    assert len(records) == 4
    stamps = [p.stat().st_mtime_ns for p in records]
    assert main(args) == 0  # a second call redoes nothing
    assert [p.stat().st_mtime_ns for p in records] == stamps
    summary = json.loads((tmp_path / "rte" / "results.json").read_text())
    assert len(summary["configs"]) == 2 and all(c["runs"] == 2 for c in summary["configs"])
    assert summary["score"] == max(c["mean_score"] for c in summary["configs"])
    assert len([p for p in (tmp_path / "rte" / "runs").glob("*/model")]) == 1  # only the best run's model is kept
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--format", "md", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "| model | adapter | EF | #params | trainable | rte | average |" in out and "[paper]" in out
    assert main(["report", str(tmp_path), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["rte"] == pytest.approx(100 * summary["score"], abs=0.01)
    assert row["train s"] == round(summary["best"]["train_seconds_mean"])


def test_a_rerun_with_other_options_is_a_fresh_run_never_a_reuse(tiny_checkpoint, tmp_path):
    """The run id holds a hash of everything that changes the numbers: the same --out with another
    --max-length, or the same model folder saved again, must not return the earlier scores."""
    glue = str(shared_path("data", "glue"))
    out = tmp_path / "rte"
    base = ["finetune", "--task", "rte", "--data-dir", glue, "--max-steps", "2", "--lr", "1e-3",
            "--save-models", "none", "--out", str(out)]
    assert main([*base, "--model", tiny_checkpoint, "--max-length", "32"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert main([*base, "--model", tiny_checkpoint, "--max-length", "48"]) == 0
    second = json.loads((out / "results.json").read_text())
    assert first["best"]["run_ids"] != second["best"]["run_ids"]
    assert len(list((out / "runs").glob("*.json"))) == 2
    record = json.loads((out / "runs" / f"{second['best']['run_ids'][0]}.json").read_text())
    assert record["identity"]["max_length"] == 48 and record["hyperparameters"]["max_length"] == 48
    assert main([*base, "--model", tiny_checkpoint, "--max-length", "48"]) == 0  # identical: reused
    assert len(list((out / "runs").glob("*.json"))) == 2
    # a copy of the same model elsewhere is the same model (identity from content, not place) ...
    other = tmp_path / "tiny-again"
    shutil.copytree(tiny_checkpoint, other)
    assert main([*base, "--model", str(other), "--max-length", "48"]) == 0
    third = json.loads((out / "results.json").read_text())["best"]["run_ids"]
    assert third == second["best"]["run_ids"] and len(list((out / "runs").glob("*.json"))) == 2
    # ... and the same folder with new weights (a student distilled again into it) is another model
    rewritten = MiniAlbertForMaskedLM.from_pretrained(other)
    with torch.no_grad():
        rewritten.minialbert.embeddings.word_embeddings.weight.add_(0.01)  # other weights, same folder, same size
    rewritten.save_pretrained(other)  # rewritten in place
    assert main([*base, "--model", str(other), "--max-length", "48"]) == 0
    assert json.loads((out / "results.json").read_text())["best"]["run_ids"] != third
    assert len(list((out / "runs").glob("*.json"))) == 3


def test_bench_finetune_measures_both_modes(tiny_checkpoint, capsys):
    glue = shared_path("data", "glue")
    assert main(["bench", "finetune", "--model", tiny_checkpoint, "--data-dir", str(glue), "--steps", "2",
                 "--batch-size", "4", "--max-length", "32", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["full_step_s_median"] > 0 and r["adapter_step_s_median"] > 0
    assert r["adapter_trainable_parameters"] < r["full_trainable_parameters"]


def test_bad_input(tiny_checkpoint, tmp_path, capsys):
    def fails(args, needle):
        assert main(["finetune", "--model", tiny_checkpoint, "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err

    fails(["--task", "squad"], "Unknown task 'squad'")
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    fails(["--task", "rte", "--data-dir", str(tmp_path)], "Missing split file")
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    fails(["--task", "rte", "--data-dir", str(tmp_path)], f"{tmp_path / 'RTE' / 'dev.tsv'}, line 3: malformed row")
    ner = tmp_path / "ner"
    ner.mkdir()
    (ner / "train.tsv").write_text("Aspirin\tB-Chemical\n.\tO\n")
    (ner / "devel.tsv").write_text("cancer\tB-Disease\n")
    (ner / "test.tsv").write_text("x\tO\n")
    fails(["--task", "ner", "--data-dir", str(ner)], f"{ner / 'devel.tsv'}, line 1: tag 'B-Disease' does not occur")
    clf = tmp_path / "clf"
    AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=2).save_pretrained(clf)
    AutoTokenizer.from_pretrained(tiny_checkpoint).save_pretrained(clf)
    assert main(["finetune", "--model", str(clf), "--task", "stsb", "--data-dir", str(shared_path("data", "glue")),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "classifier with 2 labels" in capsys.readouterr().err


def _result(model, task, score, adapter=False, seconds=10.0, data_name="glue"):
    best = {"train_seconds_mean": seconds, "metrics_mean": {"test": {"f1": score}}}
    return {"task": task, "model": model, "adapter_tuning": adapter, "data_name": data_name, "score": score,
            "best": best, "base_parameters": 5_900_000, "trainable_parameters": 120_000}


def test_report_averages_only_complete_rows_and_tasks_selects_columns(tmp_path, capsys):
    from minialbert.errors import MiniAlbertError
    from minialbert.finetune.report import build_table

    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text(json.dumps({"embedding_size": 128, "hidden_size": 384}))
    results = [_result(str(student), "sst2", 0.80), _result(str(student), "rte", 0.60),
               _result(str(student), "ner", 0.50, data_name="NCBI-disease"),
               _result("teacher", "sst2", 0.90, seconds=30.0)]
    header, table = build_table(results)
    assert header[5:] == ["sst2", "rte", "ner:NCBI-disease", "average", "train s"]
    rows = {row[0]: dict(zip(header, row)) for row in table}
    assert rows[str(student)]["average"] == pytest.approx(63.33, abs=0.01)
    assert rows[str(student)]["EF"] == "yes" and rows["teacher"]["EF"] == ""
    assert rows["teacher"]["average"] is None  # misses rte and NER: no average that reads as comparable
    header, table = build_table(results, ["sst2"])
    rows = {row[0]: dict(zip(header, row)) for row in table}
    assert rows["teacher"]["average"] == 90.0 and rows[str(student)]["average"] == 80.0
    assert rows[str(student)]["train s"] == 10  # only the shown task's training time
    with pytest.raises(MiniAlbertError, match="--tasks mnli"):
        build_table(results, ["mnli"])
    json_dir = tmp_path / "r"
    json_dir.mkdir()
    (json_dir / "results.json").write_text(json.dumps(results[0]))
    assert main(["report", str(json_dir), "--tasks", "rte"]) != 0
    assert "no results for that task" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_torchrun_finetune_checkpoints_at_the_same_steps_and_finishes(tmp_path):
    """Under torchrun the processes must checkpoint at the same steps (a collective save would
    otherwise wait forever): the interval is calibrated per process, then the smallest is shared."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    student = save_tiny_student(tmp_path / "s")
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29541", "-m", "minialbert",
                             "finetune", "--model", student, "--task", "rte", "--data-dir",
                             str(shared_path("data", "glue")), "--max-train-samples", "48", "--batch-size", "4",
                             "--epochs", "2", "--lr", "1e-3", "--max-length", "32", "--dtype", "fp32",
                             "--checkpoint-minutes", "0.001", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    intervals = {line.split("A checkpoint every ")[1].split(" steps")[0]
                 for line in (result.stdout + result.stderr).splitlines() if "A checkpoint every " in line}
    assert len(intervals) == 1  # one interval, logged by both processes
    record = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert record["train_steps"] == 12
