"""The studies that produce the headline numbers: the pick on dev is made once, from the exploratory
rows, and seeds come after; tables come from the committed files; the study plans reproduce what is
committed."""

import argparse
import json
from pathlib import Path

import pytest

from minialbert.errors import MiniAlbertError

from scripts.studies import common, task_distillation as td

REPO = Path(__file__).resolve().parents[1]


def write_result(root: Path, row: str, task: str, dev: float, test: float | None = None, seeds: int = 1,
                 std: float = 0.0, pipeline: str = "finetune"):
    """A results.json as `minialbert finetune` writes it (the fields the studies read)."""
    ner = task.startswith("ner:")
    best = {"runs": seeds, "std_score": std / 100,
            "metrics_mean": {"devel": {"f1": dev / 100}, "test": {"f1": (test or dev) / 100}} if ner else {},
            "metrics_std": {"test": {"f1": std / 100}} if ner else {}}
    result = {"task": "ner" if ner else task, "score": dev / 100, "best": best, "base_parameters": 1000,
              "pipeline": pipeline}
    folder = root / row / common.task_folder(task)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result))


def test_the_pipeline_is_picked_once_on_the_exploratory_dev_score_and_seeds_do_not_change_it(tmp_path):
    write_result(tmp_path, "student-bi", "mrpc", 83.0)
    write_result(tmp_path, "student-bi-td2", "mrpc", 84.2)  # picked on 84.2 ...
    write_result(tmp_path, "student-bi-td2-3seeds", "mrpc", 82.4, seeds=3, std=1.6)  # ... reported at 82.4
    write_result(tmp_path, "student-cross", "ner:NCBI-disease", dev=60.0, test=45.0)
    write_result(tmp_path, "student-td2", "ner:NCBI-disease", dev=55.0, test=50.0)  # higher test F1, lower devel
    rows = td.read_rows(tmp_path)
    picked = td.choose(rows, "student")
    assert picked["mrpc"].pipeline == "bi-td2" and picked["mrpc"].selected_on == pytest.approx(84.2)
    assert picked["mrpc"].score.mean == pytest.approx(82.4) and picked["mrpc"].score.seeds == 3
    assert picked["ner:NCBI-disease"].pipeline == "cross"  # devel picks, test only reports
    assert picked["ner:NCBI-disease"].score.mean == pytest.approx(45.0)


def test_row_folders_are_parsed_by_one_rule():
    assert td.parse_folder("student-td2-aug4") == ("student", "td2-aug4", None)
    assert td.parse_folder("teacher-cross-3seeds") == ("teacher", "cross", 3)
    with pytest.raises(ValueError):
        td.parse_folder("nobody-cross")


def test_tables_are_built_from_the_committed_files(tmp_path):
    write_result(tmp_path, "student-cross", "rte", 53.07, seeds=2, std=3.06)
    write_result(tmp_path, "teacher-bi", "stsb", 89.3, seeds=3, std=0.11)
    (tmp_path / "teacher-mlm").mkdir()  # a folder without results is not a row
    table = common.results_table(tmp_path, ["stsb", "rte"], "pipeline", lambda name: name.split("-", 1))
    assert table.splitlines() == ["| model | pipeline | stsb | rte |", "|---|---|---|---|",
                                  "| student | cross |  | 53.07 ± 3.06 (2) |",
                                  "| teacher | bi | 89.30 ± 0.11 (3) |  |"]


def test_the_task_distillation_plan_reproduces_the_committed_rows_and_seeds():
    args = argparse.Namespace(student="runs/demo/final", glue_dir="g", ner_dir="n", biomed="b.txt", tasks=td.TASKS,
                              pipelines=list(td.PIPELINES), teacher_pipelines=["bi"], interleave=3,
                              final=td.COMMITTED_FINALS, seeds=3)
    planned = {}
    for job in td.plan(args):
        if job.argv[0] == "finetune":
            runs = int(job.argv[job.argv.index("--runs") + 1])
            planned[str(Path(job.done).parent)] = runs
    committed = {str(f.parent.relative_to(td.RESULTS_DIR)): json.loads(f.read_text())["best"]["runs"]
                 for f in td.RESULTS_DIR.glob("*/*/results.json")}
    # the one row the study planned but stopped for CPU time (docs/studies/task-distillation.md says so)
    assert set(planned) - set(committed) == {"student-td12-transfer/ner-BC5CDR-chem"}
    assert set(committed) <= set(planned)
    assert {k: planned[k] for k in committed} == committed


def test_the_committed_task_distillation_summary_rebuilds_byte_for_byte(tmp_path):
    args = argparse.Namespace(figure=str(tmp_path / "figure.png"), out=str(tmp_path / "summary.json"))
    assert td.summary(args) == 0
    assert (tmp_path / "summary.json").read_bytes() == (td.RESULTS_DIR / "summary.json").read_bytes()


def test_the_retention_plan_tunes_both_models_and_runs_only_the_candidates_asked_for(tmp_path, monkeypatch):
    from scripts.studies import retention

    monkeypatch.setattr(retention, "RESULTS_DIR", tmp_path)
    args = argparse.Namespace(student=str(tmp_path / "student"), tasks=["stsb", "rte"], pipelines=["bi", "cross"],
                              glue_dir="glue", ner_dir="ner", biomed="biomed.txt", fit_head_steps=400)
    student = {job.name: job.argv for job in retention.plan(args, "student")}
    assert set(student) == {"student-bi/stsb", "student-cross/stsb", "student-cross/rte", "student-bi/rte"}  # no td
    assert all(argv[argv.index("--lr") + 1] == retention.EXPLORATORY_LR for argv in student.values())
    # the picks: the teacher's cross-encoder takes its rate from the teaching model's grid, the rest run the grid
    write_result(tmp_path, "teacher-cross", "rte", 54.5)
    write_result(tmp_path, "teacher-bi", "rte", 53.1)
    write_result(tmp_path, "teacher-bi", "stsb", 89.3)
    write_result(tmp_path, "teacher-cross", "stsb", 85.2)
    (tmp_path / "teaching-cross" / "rte").mkdir(parents=True)
    (tmp_path / "teaching-cross" / "rte" / "results.json").write_text(json.dumps({"best": {"learning_rate": 2e-5}}))
    finals = {job.name: job.argv for job in retention.plan_finals(args, "teacher", tmp_path)
              if job.name.startswith("teacher-")}
    assert set(finals) == {"teacher-cross-3seeds/rte", "teacher-bi-3seeds/stsb"}
    lrs = {name: argv[argv.index("--lr") + 1:argv.index("--seeds-at-best")] for name, argv in finals.items()}
    assert lrs == {"teacher-cross-3seeds/rte": ["2e-05"], "teacher-bi-3seeds/stsb": retention.GRID["teacher"]}
    assert all(argv[argv.index("--seeds-at-best") + 1] == "3" for argv in finals.values())


def test_the_retention_table_marks_rows_at_majority_and_one_seed_rows(tmp_path):
    """A student row within its seed spread of the majority baseline is marked, a one-seed row says
    its spread was not measured (never '± 0.00'), and the summary counts the tasks really learned."""
    from scripts.studies import retention

    def row(name, task, dev, seeds, std, majority):
        write_result(tmp_path, name, task, dev, seeds=seeds, std=std)
        f = tmp_path / name / common.task_folder(task) / "results.json"
        r = json.loads(f.read_text())
        r["best"]["learning_rate"] = 1e-4
        f.write_text(json.dumps({**r, "majority_baseline": {"dev": majority / 100}}))

    for task, student, seeds, std, majority in (("cola", 3.0, 3, 6.0, 0.0), ("stsb", 86.0, 3, 0.1, 0.0),
                                                ("sst2", 82.0, 1, 0.0, 50.9)):
        for name in ("student-cross", "student-cross-3seeds"):
            row(name, task, student, seeds, std, majority)
        for name in ("teacher-cross", "teacher-cross-3seeds"):
            row(name, task, 90.0, seeds, 0.5, majority)
    summary = retention.summarise_rows(tmp_path, "s", "s", study_tasks=["stsb", "cola", "sst2"])
    lines = {line.split(" | ")[0].strip("| "): line for line in retention.table(tmp_path).splitlines()[2:]}
    assert [summary["per_task"][t]["student_beats_majority_by_more_than_its_spread"] for t in ("cola", "stsb", "sst2")] \
        == [False, True, None]
    for task, entry in summary["per_task"].items():
        learned = entry["student_beats_majority_by_more_than_its_spread"]
        assert ("within its spread of majority" in lines[task]) == (learned is False), task
        assert ("spread not measured" in lines[task]) == (entry["student"]["seeds"] == 1), task
    assert summary["tasks_learned"] == ["stsb"] and summary["tasks_spread_not_measured"] == ["sst2"]
    goals = retention.goals(summary).splitlines()  # the goals read the same summary, and say where they miss
    assert goals[0].startswith(f"- gain retention >= 0.85: **missed**, {summary['gain_retention']:.3f} over the 3 tasks")
    assert "1 of 3; within the spread: cola; one seed, spread not measured: sst2" in goals[2] and "**missed**" in goals[2]
    assert retention.goals({**summary, "gain_retention": 0.9}).startswith("- gain retention >= 0.85: met, 0.900")


def retention_args(tmp_path, **kw):
    return argparse.Namespace(**{"student": str(tmp_path / "student"), "tasks": list(TASKS), "pipelines": None,
                                 "glue_dir": "glue", "ner_dir": "ner", "biomed": "biomed.txt", "fit_head_steps": 400,
                                 "who": ["teacher", "student"], "dtype": "fp32", **kw})


TASKS = ["stsb", "mrpc", "rte", "cola", "sst2", "ner:NCBI-disease", "ner:BC5CDR-chem"]


def test_every_task_has_a_task_distillation_candidate_and_each_row_waits_for_what_it_reads(tmp_path):
    from scripts.studies import retention

    jobs = {job.name: job for job in retention.plan(retention_args(tmp_path), "student")}
    for task in TASKS:
        folder = common.task_folder(task)
        distilling = [n for n, j in jobs.items() if n.endswith(f"/{folder}") and "--teacher" in j.argv
                      and n.startswith("student-")]
        assert distilling, task
        for name in distilling:  # taught by the tuned teacher of its task, which runs in the same plan
            argv = jobs[name].argv
            assert argv[argv.index("--teacher") + 1] == f"teaching-cross/{folder}"
            assert f"teaching-cross/{folder}" in jobs[name].after and f"teaching-cross/{folder}" in jobs
    assert set(jobs["student-td2-aug4/cola"].after) == {"teaching-cross/cola", "teacher-mlm"}
    argv = jobs["student-td2-aug4/sst2"].argv
    assert argv[argv.index("--augment-mlm") + 1] == "teacher-mlm"  # the released student has no MLM head
    assert "student-td2-transfer/ner-NCBI-disease" in jobs["student-td12-transfer/ner-NCBI-disease"].after
    assert {p for n in jobs if n.endswith("/sst2") and n.startswith("student-")
            for p in [n.split("/")[0][8:]]} == {"cross", "td2", "td2-aug4"}


def test_a_study_keeps_the_dtype_of_its_committed_rows_and_refuses_another(tmp_path, capsys):
    """`--dtype auto` resolves per CPU (bf16 where a probe finds it faster), so a study resumed on
    another machine would redo its rows in another dtype: every job runs in the study's one dtype."""
    from scripts.studies import retention
    from scripts.studies.__main__ import main as studies

    assert retention.study_dtype(tmp_path, None) == "fp32"  # a fresh study: fp32, fast on every CPU
    assert retention.study_dtype(tmp_path, "bf16") == "bf16"
    record = tmp_path / "student-cross" / "rte" / "runs" / "rte-run.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"identity": {"dtype": "bf16"}}))
    assert retention.study_dtype(tmp_path, None) == "bf16"
    assert studies(["retention", "run", "--results", str(tmp_path), "--work", str(tmp_path / "work"),
                    "--dtype", "fp32"]) == 2
    err = capsys.readouterr().err
    assert "--dtype fp32" in err and "ran in bf16" in err and "student-cross/rte/runs/rte-run.json" in err
    assert "Traceback" not in err and not (tmp_path / "work").exists()  # refused before anything ran
    (tmp_path / "teacher-mlm").mkdir()
    (tmp_path / "teacher-mlm" / "fit_head.json").write_text(json.dumps({"dtype": "fp32"}))
    with pytest.raises(MiniAlbertError, match="mix dtypes"):
        retention.study_dtype(tmp_path, None)
    jobs = retention.plan(retention_args(tmp_path, dtype="bf16"), "student")
    assert jobs and all(j.argv[j.argv.index("--dtype") + 1] == "bf16" for j in jobs)  # fit-head included


def test_a_kept_row_carries_the_records_of_the_runs_it_reports_and_no_others(tmp_path):
    """A row rerun under a new identity replaces its committed records: the old runs' records leave."""
    from scripts.studies import retention
    from scripts.studies.jobs import Job

    work, results = tmp_path / "work", tmp_path / "results"
    (work / "student-td2" / "rte" / "runs").mkdir(parents=True)
    (work / "student-td2" / "rte" / "results.json").write_text(json.dumps({"configs": [{"run_ids": ["rte-new"]}]}))
    (work / "student-td2" / "rte" / "runs" / "rte-new.json").write_text("{}")
    (results / "student-td2" / "rte" / "runs").mkdir(parents=True)
    (results / "student-td2" / "rte" / "runs" / "rte-old.json").write_text("{}")
    retention._keep(work, results)(Job("student-td2/rte", [], "student-td2/rte/results.json"))
    assert [p.name for p in (results / "student-td2" / "rte" / "runs").iterdir()] == ["rte-new.json"]
    assert (results / "student-td2" / "rte" / "results.json").is_file()


def test_a_teaching_stage_is_finished_only_when_its_weights_are_there(tmp_path):
    """The done file alone (results.json, fit_head.json) is not a finished teaching model: a lost
    model is rebuilt before any row that reads it starts."""
    from scripts.studies import retention

    jobs = {job.name: job for job in retention.plan(retention_args(tmp_path, tasks=["cola"]), "student")}
    teaching, mlm = jobs["teaching-cross/cola"], jobs["teacher-mlm"]
    folder = tmp_path / "teaching-cross" / "cola"
    (folder / "runs" / "best-run" / "model").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"best": {"best_run": "best-run"}}))
    (tmp_path / "teacher-mlm").mkdir()
    (tmp_path / "teacher-mlm" / "fit_head.json").write_text("{}")
    assert not teaching.finished(tmp_path) and not mlm.finished(tmp_path)
    (folder / "runs" / "best-run" / "model" / "model.safetensors").write_bytes(b"w")
    (tmp_path / "teacher-mlm" / "model.safetensors").write_bytes(b"w")
    assert teaching.finished(tmp_path) and mlm.finished(tmp_path)


def test_a_task_is_picked_only_once_every_candidate_row_is_in(tmp_path):
    from scripts.studies import retention

    args = retention_args(tmp_path, tasks=["cola"])
    write_result(tmp_path, "student-cross", "cola", 20.0)
    write_result(tmp_path, "student-td2", "cola", 30.0)
    assert not [j for j in retention.plan_finals(args, "student", tmp_path) if "3seeds" in j.name]
    write_result(tmp_path, "student-td2-aug4", "cola", 25.0)
    assert [j.name for j in retention.plan_finals(args, "student", tmp_path) if "3seeds" in j.name] == \
        ["student-td2-3seeds/cola"]


def test_a_tie_on_dev_goes_to_the_candidate_listed_first_not_to_the_folder_name_sorted_first(tmp_path):
    from scripts.studies import retention

    args = retention_args(tmp_path, tasks=["rte"])
    for pipeline, dev in (("cross", 51.26), ("bi", 49.82), ("bi-td2", 54.51)):
        write_result(tmp_path, f"student-{pipeline}", "rte", dev)
    for pipeline in ("td12", "td2"):  # the same 155 of 277 right; "td12" sorts first, "td2" is listed first
        write_result(tmp_path, f"student-{pipeline}", "rte", 100 * 155 / 277)
    assert td.choose(td.read_rows(tmp_path), "student")["rte"].pipeline == "td12"  # no order: first read
    assert [j.name for j in retention.plan_finals(args, "student", tmp_path) if "3seeds" in j.name] == \
        ["student-td2-3seeds/rte"]
    write_result(tmp_path, "student-td2-3seeds", "rte", 55.0, seeds=3, std=1.0)
    assert "| `td2` | 55.96 | `cross` |" in retention.task_distillation_table(tmp_path)

def test_a_missing_seeded_row_is_an_error_that_names_it(tmp_path):
    from scripts.studies import retention

    for row, dev in (("student-cross", 20.0), ("student-td2", 30.0), ("teacher-cross", 50.0),
                     ("teacher-cross-3seeds", 51.0)):
        write_result(tmp_path, row, "cola", dev)
    with pytest.raises(SystemExit, match="student-td2-3seeds/cola"):
        retention.summarise_rows(tmp_path, "s", "s", study_tasks=["cola"])
    result = tmp_path / "student-td2" / "cola" / "results.json"
    result.write_text(json.dumps({**json.loads(result.read_text()), "majority_baseline": {"dev": 0.0}}))
    row = retention.table(tmp_path).splitlines()[-1]  # the table shows the pick as what it is
    assert row.startswith("| cola |") and "not yet: the student's pick not yet repeated with seeds" in row


def test_rows_without_their_run_records_are_removed_to_be_rerun(tmp_path):
    from scripts.studies import retention

    for row in ("student-cross", "student-td2"):
        folder = tmp_path / row / "cola"
        (folder / "runs").mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"configs": [{"run_ids": ["a", "b"]}]}))
        (folder / "runs" / "a.json").write_text("{}")
    (tmp_path / "student-td2" / "cola" / "runs" / "b.json").write_text("{}")
    (tmp_path / "summary.json").write_text("{}")
    assert retention.unrecorded_rows(tmp_path) == [tmp_path / "student-cross" / "cola" / "results.json"]
    retention.prune_unrecorded(tmp_path)
    assert not (tmp_path / "student-cross" / "cola").exists() and (tmp_path / "student-td2" / "cola").exists()
    assert not (tmp_path / "summary.json").exists()  # built from a row that is gone


def test_every_committed_retention_row_has_its_run_records_beside_it():
    from scripts.studies import retention

    assert retention.unrecorded_rows(retention.RESULTS_DIR) == []


@pytest.mark.parametrize("flag,value", [("--tasks", "bogus"), ("--pipelines", "nope"), ("--who", "both")])
def test_retention_run_refuses_an_unknown_name_before_any_job_starts(flag, value, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "scripts.studies", "retention", "run", flag, value,
                           "--work", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and f"unknown {value}; choose among" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "work").exists()


def test_a_jobs_cpu_seconds_are_read_from_the_os_and_every_attempt_counts_once(tmp_path, monkeypatch):
    """The study's CPU time: jobs.py reads each job's CPU seconds as it runs (a job that mostly
    waits costs little CPU whatever its wall time); an attempt cut earlier (a kill, a session's end)
    stays in the work folder's ledger, and jobs.json merges attempts by start time: counting twice
    changes nothing, attempts made on another machine are kept."""
    import sys

    from scripts.studies import jobs, retention

    script = ("import sys, time, pathlib\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
              "time.sleep(1.0)\npathlib.Path(sys.argv[1]).write_text('done')")
    monkeypatch.setattr(jobs, "COMMAND", [sys.executable, "-c", script])
    work = tmp_path / "work"
    work.mkdir()
    (work / jobs.LEDGER).write_text(json.dumps({"row": {"1": {"wall": 100.0, "cpu": 90.0}}}))  # a cut attempt
    assert jobs.run_jobs([jobs.Job("row", ["done.txt"], "done.txt")], work) == 0
    attempts = jobs.job_attempts(work, "row")
    assert len(attempts) == 2 and attempts["1"] == {"wall": 100.0, "cpu": 90.0}
    new = next(a for k, a in attempts.items() if k != "1")
    assert 0.9 <= new["cpu"] <= 1.8 and new["wall"] >= 1.9  # the sleep is wall time, not CPU time
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"row": {"attempts": {"0": {"wall": 5.0, "cpu": 4.0}}}}))  # another machine's
    for _ in range(2):
        retention.count_seconds(path, "row", attempts)
    entry = json.loads(path.read_text())["row"]
    assert len(entry["attempts"]) == 3 and entry["cpu"] == pytest.approx(94.0 + new["cpu"], abs=0.1)


def test_jobs_planned_from_finished_ones_join_the_queue_without_waiting_for_a_phase(tmp_path, monkeypatch, capsys):
    """The picks are planned as soon as their task's rows are in (`more`), while other jobs still
    run: no core waits for a whole phase to end."""
    import sys

    from scripts.studies import jobs

    script = ("import sys, time, pathlib\ntime.sleep(float(sys.argv[2]))\npathlib.Path(sys.argv[1]).write_text('x')")
    monkeypatch.setattr(jobs, "COMMAND", [sys.executable, "-c", script])
    work = tmp_path / "work"
    work.mkdir()
    first = [jobs.Job("row", ["row.txt", "0.1"], "row.txt"), jobs.Job("long", ["long.txt", "4"], "long.txt")]

    def more():
        return [jobs.Job("pick", ["pick.txt", "0.1"], "pick.txt", ["row"])] if (work / "row.txt").exists() else []

    assert jobs.run_jobs(first, work, parallel=2, more=more) == 0
    log = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines() if line[:2].isdigit()]
    assert log.index("planned pick") < log.index("start pick") < next(i for i, l in enumerate(log) if l.startswith("done long"))
