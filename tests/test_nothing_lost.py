"""Nothing lost, nothing silently wrong: a finished student is never replaced without --overwrite,
seeds are planned once, task files are named by their task and tied to their base, damaged files
are named, a write cut midway leaves the old file whole, identities come from content, the
resolved dtype is what a resume compares, the seed draws NER subsets, `export --release` reads what
a folder is, and the released modeling code is the package's."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import minialbert  # noqa: F401
from minialbert.cli import main

from helpers import save_tiny_student, shared_path

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max-length", "64", "--stride", "32", "--batch-size", "4", "--max-docs", "50", "--warmup-steps", "0",
        "--dtype", "fp32", "--iterations", "2", "--embedding-size", "64"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# --- 1. the run folder's contract -----------------------------------------------------------------

def test_a_finished_student_is_never_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "X"
    assert main(["distill", *FAST, "--max-steps", "2", "--logging-steps", "1", "--out", str(out)]) == 0
    (out / "final" / "my-notes.txt").write_text("mine")
    weights = (out / "final" / "model.safetensors").read_bytes()
    log = (out / "log.jsonl").read_text()
    shutil.rmtree(out / "checkpoints")  # a user who deleted the checkpoints to save disk
    capsys.readouterr()
    for extra in ([], ["--max-steps", "0"]):
        assert main(["distill", *FAST, "--max-steps", "2", *extra, "--seed", "7", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "already holds a distillation run" in err and "--overwrite" in err and "--resume" in err
    assert (out / "final" / "model.safetensors").read_bytes() == weights
    assert (out / "final" / "my-notes.txt").read_text() == "mine" and (out / "log.jsonl").read_text() == log
    # --resume with another seed is refused too (another configuration), and leaves everything as it was
    assert main(["distill", *FAST, "--max-steps", "2", "--seed", "7", "--resume", "--out", str(out)]) == 2
    assert "seed: 42 -> 7" in capsys.readouterr().err
    assert (out / "final" / "model.safetensors").read_bytes() == weights
    # the explicit flag replaces it
    assert main(["distill", *FAST, "--max-steps", "0", "--seed", "7", "--overwrite", "--out", str(out)]) == 0
    assert not (out / "final" / "my-notes.txt").exists() and not (out / "log.jsonl").exists()
    assert json.loads((out / "final" / "distillation.json").read_text())["seed"] == 7


def test_the_resolved_dtype_is_stored_and_a_resume_that_would_switch_precision_is_refused():
    from minialbert.distillation.recipe import DistillRecipe
    from minialbert.distillation.run_folder import recipe_differences

    now = DistillRecipe(dtype="auto")
    from minialbert.runtime import resolve_dtype

    here = resolve_dtype("auto")
    other = "bf16" if here == "fp32" else "fp32"
    assert recipe_differences(DistillRecipe(dtype=other).to_dict(), now) == [f"dtype: {other!r} -> {here!r}"]
    assert recipe_differences(DistillRecipe(dtype=here).to_dict(), now) == []
    # folders of earlier versions stored 'auto' unresolved: it is what 'auto' resolves to here, not a wildcard
    assert recipe_differences(DistillRecipe(dtype="auto").to_dict(), now) == []
    assert recipe_differences(DistillRecipe(dtype="auto").to_dict(), DistillRecipe(dtype=other)) == [
        f"dtype: {here!r} -> {other!r}"]


# --- 2. seeds planned once -------------------------------------------------------------------------

def test_seeds_at_best_after_a_grid_of_three_seeds_counts_each_seed_once(tmp_path, monkeypatch):
    import minialbert.finetune.runner as runner

    calls = []

    def fake_run_one(plan, spec, data, run_dir):  # the planning is under test, not training
        opts = plan.opts
        calls.append((spec.learning_rate, spec.seed))
        score = 0.5 + spec.learning_rate + spec.seed / 1e4
        return {"task": "rte", "model": opts.model, "adapter_tuning": False, "seed": spec.seed, "score": score,
                "metrics": {"dev": {"accuracy": score, "score": score}}, "train_seconds": 1.0, "train_steps": 1,
                "hyperparameters": {"learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
                                    "epochs": spec.epochs, "max_steps": spec.max_steps},
                "trainable_parameters": 1, "total_parameters": 1, "base_parameters": 1}

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    student = save_tiny_student(tmp_path / "s")
    summary = runner.run_finetune(runner.FinetuneOptions(
        model=student, task="rte", data_dir=str(shared_path("data", "glue")), grid="paper", learning_rates=[1e-4],
        seeds_at_best=3, out=str(tmp_path / "ft"), dtype="fp32", save_models="none"))  # the fake keeps no model
    assert calls == [(1e-4, 42), (1e-4, 43), (1e-4, 44)]
    assert summary["best"]["runs"] == 3 and len(set(summary["best"]["run_ids"])) == 3
    calls.clear()
    summary = runner.run_finetune(runner.FinetuneOptions(
        model=student, task="rte", data_dir=str(shared_path("data", "glue")), grid="paper", learning_rates=[1e-4],
        seeds_at_best=5, out=str(tmp_path / "ft"), dtype="fp32", save_models="none"))
    assert calls == [(1e-4, 45), (1e-4, 46)] and summary["best"]["runs"] == 5


# --- 5. damaged files are named --------------------------------------------------------------------

RESULTS = {"task": "rte", "model": "m", "adapter_tuning": False, "score": 0.6, "configs": [],
           "best": {"best_run": "r", "mean_score": 0.6, "learning_rate": 1e-4, "runs": 1, "run_ids": ["r"],
                    "train_seconds_mean": 1.0}, "base_parameters": 1, "trainable_parameters": 1}


@pytest.mark.parametrize("damage,needle", [
    (lambda text: text[: len(text) // 2], "not readable JSON"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "best"}), "'best' is missing"),
    (lambda text: json.dumps({**json.loads(text), "score": "high"}), "'score' should be"),
])
def test_report_names_a_damaged_results_file(damage, needle, tmp_path, capsys):
    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "results.json").write_text(damage(json.dumps(RESULTS)))
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(folder / "results.json") in err and "Traceback" not in err


@pytest.mark.parametrize("damage,needle", [
    (lambda r: "{\"run_id\": ", "not readable JSON"),
    (lambda r: json.dumps({k: v for k, v in r.items() if k != "seed"}), "'seed' is missing"),
    (lambda r: json.dumps({**r, "hyperparameters": []}), "'hyperparameters' should be"),
])
def test_a_damaged_run_record_is_named_not_a_traceback(damage, needle, tmp_path):
    from minialbert.errors import MiniAlbertError
    from minialbert.records import RUN_RECORD_FIELDS, read_json

    record = {"run_id": "r", "task": "rte", "seed": 42, "score": 0.5, "metrics": {}, "identity": {},
              "hyperparameters": {"learning_rate": 1e-4, "batch_size": 16}, "train_seconds": 1.0,
              "trainable_parameters": 1, "total_parameters": 1, "base_parameters": 1}
    assert read_json_ok(tmp_path / "ok.json", record, RUN_RECORD_FIELDS)
    path = tmp_path / "r.json"
    path.write_text(damage(record))
    with pytest.raises(MiniAlbertError, match=needle) as e:
        read_json(path, RUN_RECORD_FIELDS)
    assert str(path) in str(e.value)


def read_json_ok(path, data, fields):
    from minialbert.records import read_json

    path.write_text(json.dumps(data))
    return read_json(path, fields) == data


def test_a_teacher_folder_whose_results_lack_best_is_named(tmp_path):
    from minialbert.errors import MiniAlbertError
    from minialbert.taskdistill.teacher import resolve_teacher_folder

    (tmp_path / "results.json").write_text(json.dumps({"task": "rte"}))
    with pytest.raises(MiniAlbertError, match="'best.best_run' is missing"):
        resolve_teacher_folder(str(tmp_path))


def test_a_damaged_log_line_is_named(tmp_path):
    from minialbert.distillation.runlog import read_log
    from minialbert.errors import MiniAlbertError

    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n')
    with pytest.raises(MiniAlbertError, match="line 2 is damaged"):
        read_log(tmp_path / "log.jsonl")


def test_a_write_that_fails_midway_leaves_the_old_file_whole_and_no_temporary_file(tmp_path, monkeypatch):
    import os

    from minialbert.records import write_json

    path = tmp_path / "results.json"
    write_json(path, {"score": 1.0})
    old = path.read_text()
    with pytest.raises(ValueError):  # a bare NaN is refused before anything is written
        write_json(path, {"score": float("nan")}, allow_nan=False)

    def killed(*args):  # the process dies between writing the temporary file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"score": 2.0})
    monkeypatch.undo()
    assert path.read_text() == old and json.loads(old) == {"score": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    write_json(path, {"score": 2.0})
    assert json.loads(path.read_text()) == {"score": 2.0}


# --- 6. identity from content ----------------------------------------------------------------------

def test_identity_follows_content_not_place_or_time(tmp_path):
    from minialbert.fingerprint import path_identity

    a, b = tmp_path / "a", tmp_path / "elsewhere" / "a-copy"
    (a / "sub").mkdir(parents=True)
    (a / "train.tsv").write_text("x\t1\n")
    (a / "sub" / "more.txt").write_text("y\n")
    shutil.copytree(a, b)  # another place, other modification times
    assert path_identity(str(a)) == path_identity(str(b)) and str(tmp_path) not in path_identity(str(a))
    (b / "sub" / "more.txt").write_text("z\n")  # an edit deep inside the folder
    assert path_identity(str(a)) != path_identity(str(b))
    (b / "README.md").write_text("a card")  # cards are not inputs
    (b / "sub" / "more.txt").write_text("y\n")
    assert path_identity(str(a)) == path_identity(str(b))


def test_a_folder_corpus_edited_in_place_is_a_new_corpus(tmp_path):
    from transformers import AutoTokenizer

    from minialbert.data.corpus import CorpusOptions, _fingerprint
    from minialbert.packaged import packaged_teacher_path

    tok = AutoTokenizer.from_pretrained(packaged_teacher_path())
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "part1.txt").write_text("first text\n")
    opts = CorpusOptions(source=str(folder))
    before = _fingerprint(opts, tok)
    (folder / "part1.txt").write_text("first text, edited\n")
    assert _fingerprint(opts, tok) != before


def test_a_teacher_kept_by_a_finetune_run_is_that_run_not_the_library_bookkeeping_in_its_files(tmp_path):
    """A teaching model rebuilt on another machine gives the same numbers, but its folder's bytes
    carry the installed versions (config.json's transformers_version): the rows it taught are reused
    by the run that made it, never by a record that names another run."""
    from minialbert.taskdistill.teacher import teacher_identity

    run = tmp_path / "teacher" / "runs" / "mrpc-full-lr5e-05-bs16-ep3-seed42-a76e023190"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text('{"transformers_version": "5.17.0"}')
    record = {"run_id": run.name, "identity": {"seed": 42}}
    run.with_name(run.name + ".json").write_text(json.dumps(record))
    built_here = teacher_identity(str(run / "model"))
    (run / "model" / "config.json").write_text('{"transformers_version": "5.25.0"}')  # rebuilt elsewhere
    assert teacher_identity(str(run / "model")) == built_here == f"finetune-run:{run.name}"
    loose = tmp_path / "loose-model"  # a folder no run record stands for: its content
    shutil.copytree(run / "model", loose)
    assert teacher_identity(str(loose)).startswith("sha256:")
    run.with_name(run.name + ".json").write_text(json.dumps({**record, "run_id": "another-run"}))
    assert teacher_identity(str(run / "model")).startswith("sha256:")


def test_a_finetune_run_identity_holds_no_path_and_survives_a_copy_of_the_data(tmp_path):
    from minialbert.finetune.options import FinetuneOptions

    glue = shared_path("data", "glue")
    copy = tmp_path / "glue"
    shutil.copytree(glue / "RTE", copy / "RTE")
    student = save_tiny_student(tmp_path / "s")
    moved = shutil.copytree(student, tmp_path / "moved" / "s")
    from minialbert.finetune.plan import build_plan

    one = build_plan(FinetuneOptions(model=student, task="rte", data_dir=str(glue), out="o", dtype="fp32")).identity
    two = build_plan(FinetuneOptions(model=str(moved), task="rte", data_dir=str(copy), out="o", dtype="fp32")).identity
    assert one == two and str(tmp_path) not in json.dumps(one) and str(glue) not in json.dumps(one)


def test_records_copied_to_another_machine_are_reused_and_the_kept_model_is_rebuilt(tmp_path):
    """A study resumed elsewhere starts from the committed run records alone: finetune reuses the
    runs it can (their records untouched) and runs again the best one, whose model --save-models
    best promises and a task-distillation row reads."""
    glue = str(shared_path("data", "glue"))
    student = save_tiny_student(tmp_path / "s")
    argv = ["finetune", "--model", student, "--task", "rte", "--data-dir", glue, "--max-steps", "2", "--lr", "1e-3",
            "5e-4", "--max-length", "32", "--dtype", "fp32", "--save-models", "best"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    best = json.loads((tmp_path / "first" / "results.json").read_text())["best"]["best_run"]
    (tmp_path / "again" / "runs").mkdir(parents=True)
    for record in (tmp_path / "first" / "runs").glob("*.json"):  # the records, as committed: no model
        shutil.copyfile(record, tmp_path / "again" / "runs" / record.name)
    other = next(p for p in (tmp_path / "again" / "runs").glob("*.json") if p.stem != best)
    stamp = other.stat().st_mtime_ns
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    assert other.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert (tmp_path / "again" / "runs" / best / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "again" / "results.json").read_text())["best"]["best_run"] == best


# --- 8. the seed draws NER subsets -------------------------------------------------------------------

def test_the_seed_draws_the_ner_subset(tmp_path):
    from transformers import AutoTokenizer

    from minialbert.data.tasks import DataOptions, prepare_data
    from minialbert.packaged import packaged_teacher_path

    tok = AutoTokenizer.from_pretrained(packaged_teacher_path())
    ner = str(shared_path("data", "bioner", "NCBI-disease"))
    draws = [prepare_data(DataOptions("ner", ner, 64, max_train_samples=20, seed=s), tok).raw_train.sentences
             for s in (1, 2, 1)]
    assert len(draws[0]) == 20 and draws[0] == draws[2] and draws[0] != draws[1]


# --- 9. export --release reads what the folder is -----------------------------------------------------

def test_export_release_refuses_a_folder_that_is_not_a_minialbert_student(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(bert)
    assert main(["export", str(bert), "--release", str(tmp_path / "rel")]) == 2
    assert "is a 'bert' model" in capsys.readouterr().err and not (tmp_path / "rel").exists()


# --- 10. the released modeling code is the package's -------------------------------------------------

RELEASED = sorted(p for p in (REPO / "minialbert" / "released").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", RELEASED, ids=lambda p: p.name)
def test_the_released_modeling_code_equals_the_package_byte_for_byte(folder):
    from minialbert.inference.export import model_code_files

    for name, code in model_code_files().items():
        assert (folder / name).read_bytes() == code, f"{folder / name} differs from minialbert/model/{name}: " \
                                                     "run `make release-code`"


def test_update_code_rewrites_only_the_code(tmp_path, capsys):
    student = Path(save_tiny_student(tmp_path / "s"))
    (student / "modeling_minialbert.py").write_text("# stale\n")
    weights = (student / "model.safetensors").read_bytes()
    assert main(["export", str(student), "--update-code"]) == 0
    assert json.loads(capsys.readouterr().out)["updated"] == ["modeling_minialbert.py"]
    assert (student / "model.safetensors").read_bytes() == weights
    assert (student / "modeling_minialbert.py").read_bytes() == \
        (REPO / "minialbert" / "model" / "modeling_minialbert.py").read_bytes()


RELEASED_WITHOUT_PACKAGE = """
import json, sys
sys.modules["minialbert"] = None  # only transformers' remote code can load the folder now
import torch
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    print("VALUES", json.dumps(model(**tok(["a released student"], return_tensors="pt")).last_hidden_state[0, 0, :8].tolist()))
"""


@pytest.mark.parametrize("folder", RELEASED, ids=lambda p: p.name)
def test_the_released_folder_loads_with_remote_code_where_minialbert_is_absent(folder, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    copy = shutil.copytree(folder, tmp_path / folder.name)  # outside the package, as a user downloads it
    result = subprocess.run([sys.executable, "-c", RELEASED_WITHOUT_PACKAGE, str(copy)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        expected = AutoModel.from_pretrained(folder).eval()(**tok(["a released student"], return_tensors="pt"))
    assert json.loads(result.stdout.split("VALUES", 1)[1]) == pytest.approx(expected.last_hidden_state[0, 0, :8].tolist(), abs=1e-5)


# --- 9. no delete-then-rename window; copies verified; the winner keeps its trained weights ---------

def test_a_kill_between_removing_the_old_final_and_renaming_the_new_one_in_loses_nothing(tmp_path, monkeypatch):
    """distill's OUT/final is swapped in by renaming the old folder aside first: a failure of the
    rename that brings the new one in (a kill, simulated by os.replace raising) leaves the old final
    whole (today's code deleted it first and lost it)."""
    import os

    from minialbert.distillation import trainer

    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "final" / "model.safetensors").write_bytes(b"old weights")

    class Saves:
        def __init__(self, payload, name="model.safetensors"):
            self.payload, self.name = payload, name
            self.config = type("Config", (), {})()  # _publish_final records mlm_head_trained in it

        def save_pretrained(self, folder):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / self.name).write_bytes(self.payload)

    monkeypatch.setattr(trainer, "_student_card", lambda *a: None)
    real = os.replace

    def killed(src, dst):  # the rename that brings the new folder in never happens
        if Path(src).name == "final.tmp":
            raise KeyboardInterrupt
        return real(src, dst)

    summary = {"steps": 1, "recipe": {"mlm_weight": 0.0}, "output_loss": False}
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(os, "replace", killed)
        trainer._publish_final(out, Saves(b"new weights"), Saves(b"{}", "tokenizer.json"), summary)
    assert (out / "final" / "model.safetensors").read_bytes() == b"old weights"
    trainer._publish_final(out, Saves(b"new weights"), Saves(b"{}", "tokenizer.json"), summary)
    assert (out / "final" / "model.safetensors").read_bytes() == b"new weights"
    assert sorted(p.name for p in out.iterdir()) == ["final"]  # nothing left aside


def test_the_transfer_set_is_swapped_in_without_a_delete_first_and_a_half_copied_set_is_not_reused(tmp_path):
    """transfer_set.py puts a built set in place with records.replace_dir (never rmtree then rename),
    and a set whose data holds fewer rows than its description counts is built again."""
    import ast

    import datasets

    from minialbert.taskdistill import transfer_set

    source = Path(transfer_set.__file__).read_text()
    build = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "build_transfer_set")
    calls = [ast.unparse(c.func) for c in ast.walk(build) if isinstance(c, ast.Call)]
    assert "replace_dir" in calls and "os.replace" not in calls
    assert not [c for c in ast.walk(build) if isinstance(c, ast.Call) and ast.unparse(c.func) == "shutil.rmtree"
                and "folder," in ast.unparse(c) + ","]  # the finished set is never removed before the new one is in
    folder = tmp_path / "transfer" / "key"
    datasets.Dataset.from_dict({"x": list(range(5))}).save_to_disk(str(folder / "data"))
    (folder / "transfer.json").write_text(json.dumps({"rows": 10}))  # half of it copied
    assert transfer_set._complete_set(folder) is None
    (folder / "transfer.json").write_text(json.dumps({"rows": 5}))
    data, info = transfer_set._complete_set(folder)
    assert len(data) == 5 and info["rows"] == 5


def test_a_copy_cut_midway_is_repaired_and_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    import os

    from minialbert.records import copy_file, copy_tree, replace_dir

    source = tmp_path / "a.json"
    source.write_bytes(b"x" * 5000)
    target = tmp_path / "copy" / "a.json"
    target.parent.mkdir()
    target.write_bytes(b"x" * 2000)  # cut by a kill: same name, not the same bytes
    assert copy_file(source, target) and target.read_bytes() == source.read_bytes()
    assert not copy_file(source, target)  # done: nothing written again
    tree, into = tmp_path / "tree", tmp_path / "into"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "part.arrow").write_bytes(b"y" * 3000)
    (tree / "transfer.json").write_text("{}")
    (into / "data").mkdir(parents=True)
    (into / "data" / "part.arrow").write_bytes(b"y" * 10)
    assert copy_tree(tree, into) and (into / "data" / "part.arrow").read_bytes() == b"y" * 3000
    new = tmp_path / "new"
    new.mkdir()
    (new / "f").write_text("new")
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(KeyboardInterrupt) if Path(s) == new
                        else real(s, d))
    with pytest.raises(KeyboardInterrupt):
        replace_dir(new, into)
    monkeypatch.undo()
    assert (into / "transfer.json").is_file() and (into / "data" / "part.arrow").read_bytes() == b"y" * 3000


def test_the_best_run_always_has_its_trained_weights_even_when_a_rebuild_scores_otherwise(tmp_path, monkeypatch):
    """Records copied in without models (a study resumed elsewhere): the best run is trained again
    to keep its model. Should the retrained run score lower, so that another record becomes the best,
    that one is trained too; the best run named in results.json always has a model, and that model
    is the one whose score the record reports (today: a best run with no model, and --save-models
    best deleting the one retrained)."""
    from minialbert.finetune import runner

    glue = str(shared_path("data", "glue"))
    student = save_tiny_student(tmp_path / "s")
    scores = {(1e-3, "first"): 0.60, (5e-4, "first"): 0.50, (1e-3, "again"): 0.40, (5e-4, "again"): 0.50}
    phase = {"now": "first"}

    def fake_run_one(plan, spec, data, run_dir):  # trains nothing; its "weights" name the score they got
        score = scores[(spec.learning_rate, phase["now"])]
        (run_dir / "model").mkdir(parents=True, exist_ok=True)
        (run_dir / "model" / "weights.txt").write_text(str(score))
        return {"task": "rte", "model": student, "adapter_tuning": False, "seed": spec.seed, "score": score,
                "metrics": {"dev": {"accuracy": score, "score": score}}, "train_seconds": 1.0, "train_steps": 1,
                "hyperparameters": {"learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
                                    "epochs": spec.epochs, "max_steps": spec.max_steps},
                "trainable_parameters": 1, "total_parameters": 1, "base_parameters": 1}

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    argv = ["finetune", "--model", student, "--task", "rte", "--data-dir", glue, "--max-steps", "2", "--lr", "1e-3",
            "5e-4", "--max-length", "32", "--dtype", "fp32", "--save-models", "best"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    (tmp_path / "again" / "runs").mkdir(parents=True)
    for record in (tmp_path / "first" / "runs").glob("*.json"):  # the records, as committed: no model
        shutil.copyfile(record, tmp_path / "again" / "runs" / record.name)
    phase["now"] = "again"
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    result = json.loads((tmp_path / "again" / "results.json").read_text())
    best = result["best"]["best_run"]
    weights = tmp_path / "again" / "runs" / best / "model" / "weights.txt"
    assert weights.is_file(), "the best run has no model"
    record = json.loads((tmp_path / "again" / "runs" / f"{best}.json").read_text())
    assert float(weights.read_text()) == record["score"] == 0.50  # the weights are the ones that scored it
    assert [p.parent.name for p in (tmp_path / "again" / "runs").glob("*/model")] == [best]


@pytest.mark.parametrize("cut", ["between the renames", "before the old one is deleted"])
def test_a_swap_cut_by_a_kill_is_repaired_by_the_next_run_of_another_process(tmp_path, monkeypatch, cut):
    """replace_dir killed between its two renames leaves the target missing and its old version
    aside; killed after them, both. The next process (another PID) finds the aside folder by its
    fixed name: a reader gets the old folder back (or keeps the new one, the aside removed), and the
    next replace_dir completes with nothing left over."""
    import os
    import shutil

    from minialbert import records

    target = tmp_path / "final"
    target.mkdir()
    (target / "w").write_text("old")
    new = tmp_path / "final.tmp"
    new.mkdir()
    (new / "w").write_text("new")
    real_replace, calls = os.replace, []

    def killed_from_the_second_call(s, d):  # a kill stops the put-it-back branch too
        calls.append((s, d))
        if len(calls) >= 2:
            raise KeyboardInterrupt("killed")
        return real_replace(s, d)

    with monkeypatch.context() as m:
        if cut == "between the renames":
            m.setattr(os, "replace", killed_from_the_second_call)
        else:
            m.setattr(shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
        with pytest.raises(KeyboardInterrupt):
            records.replace_dir(new, target)
    monkeypatch.setattr(os, "getpid", lambda: 999_999)  # the rerun is another process
    left = {p.name for p in tmp_path.iterdir()}
    assert ".final.old" in left and ("final" in left) == (cut != "between the renames")
    records.recover_dir(target)  # what a reader of the target does first
    assert (target / "w").read_text() == ("old" if cut == "between the renames" else "new")
    assert not (tmp_path / ".final.old").exists()
    shutil.rmtree(new, ignore_errors=True)
    again = tmp_path / "again"
    again.mkdir()
    (again / "w").write_text("newer")
    records.replace_dir(again, target)
    assert (target / "w").read_text() == "newer" and [p.name for p in tmp_path.iterdir()] == ["final"]


def test_replace_dir_itself_restores_a_target_left_aside(tmp_path):
    """A kill between replace_dir's renames, then a replace_dir by the next run: the old folder is put
    back first and then replaced; no orphan is left."""
    from minialbert import records

    target = tmp_path / "set"
    aside = records.aside_dir(target)
    aside.mkdir()
    (aside / "w").write_text("old")  # what the kill left: the target renamed aside, nothing in its place
    new = tmp_path / "new"
    new.mkdir()
    (new / "w").write_text("new")
    records.replace_dir(new, target)
    assert (target / "w").read_text() == "new" and not aside.exists()


def test_the_release_is_swapped_in_and_fit_head_json_written_atomically():
    """export_release puts the release in place with records.replace_dir (never rmtree of the target
    then a rename: a kill between them lost the folder given), and fit-head writes fit_head.json
    with records.write_json (never a bare write_text, which a kill cuts in half)."""
    import ast

    from minialbert.distillation import fit_head
    from minialbert.inference import export

    def calls_of(module, function):
        tree = ast.parse(Path(module.__file__).read_text())
        body = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
        return [ast.unparse(c) for c in ast.walk(body) if isinstance(c, ast.Call)]

    release = calls_of(export, "export_release")
    assert "replace_dir(staging, out)" in release
    assert not [c for c in release if c.startswith(("shutil.rmtree(out", "staging.replace", "os.replace"))]
    fit = calls_of(fit_head, "fit_mlm_head")
    assert any(c.startswith("write_json(out / 'fit_head.json'") for c in fit)
    assert not [c for c in fit if "fit_head.json" in c and ".write_text(" in c]


def test_recover_dir_by_several_processes_at_once(tmp_path, monkeypatch):
    """Every process of a multi-process distill recovers the student folder as it starts: the one
    that loses the race to put the old folder back finds it back already, and goes on."""
    import os

    from minialbert import records

    target = tmp_path / "final"
    aside = records.aside_dir(target)
    aside.mkdir()
    (aside / "w").write_text("old")
    real_replace = os.replace

    def another_process_first(s, d):  # between this process's checks and its rename, another one renames
        real_replace(s, d)
        raise FileNotFoundError(2, "No such file or directory", str(s))

    monkeypatch.setattr(os, "replace", another_process_first)
    records.recover_dir(target)
    assert (target / "w").read_text() == "old" and not aside.exists()
    aside.mkdir()  # a rename that fails while nobody put the folder back is not swallowed
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(FileNotFoundError(2, "gone", str(s))))
    os.rename(target, tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError):
        records.recover_dir(target)
