"""The released student's retention study (docs/studies/retention.md): for the student and for the
teacher alike, per task, each candidate pipeline runs once (seed 42, lr 1e-4: the exploratory row);
the pipeline is picked once on dev (a tie goes to the candidate listed first in CANDIDATES); its
learning rate is then picked on dev with seed 42 from a grid of three (the teacher's {2e-5, 5e-5,
1e-4}, the student's {5e-5, 1e-4, 5e-4}) and it is repeated with seeds 42-44 (SST-2: one seed).
The teacher's cross-encoder that teaches the distillation rows is tuned on the same grid, and the
teacher's cross-encoder row takes its pick from there. Results in
docs/results/retention/, one folder per row, each results.json with its run records (runs/*.json):
MODEL-PIPELINE (exploratory), MODEL-PIPELINE-3seeds (the pick: grid, then seeds), teaching-cross
(the teaching model: the teacher's cross-encoder on the grid), teacher-mlm (fit_head.json of the
teacher that proposes augmentation words); jobs.json holds every attempt of every job with its wall and
CPU seconds (jobs.py measures them).
The work folder (runs/retention) holds the weights and transfer sets, never committed.

The summary reports first the share of the teacher's gain over the majority class that the student
keeps, (student - majority) / (teacher - majority) averaged over tasks, with the majority baseline of
each task's own evaluation split computed from the data (results.json's `majority_baseline`); a task
on which the teacher does not beat its baseline by more than its seed spread is named and left out
of both averages. The plain ratio of the averages is reported beside it."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
from pathlib import Path

from minialbert.errors import MiniAlbertError
from minialbert.finetune.report import gain_kept
from minialbert.records import read_json
from minialbert.taskdistill.teacher import resolve_teacher_folder

from .common import RESULTS, ROW_FOLDER, printing, protocol_argv, task_folder
from .jobs import Job, job_attempts, run_jobs, write_json
from .task_distillation import PIPELINES, best_row, choose, parse_folder, read_rows

RESULTS_DIR = RESULTS / "retention"
TASKS = ["stsb", "mrpc", "rte", "cola", "sst2", "ner:NCBI-disease", "ner:BC5CDR-chem"]
GRID = {"teacher": ["2e-5", "5e-5", "1e-4"], "student": ["5e-5", "1e-4", "5e-4"]}
EXPLORATORY_LR = "1e-4"
RELEASED_NAME = "minialbert-minilm"  # the student this study measures (minialbert/released/NAME)
PREVIOUS_STUDY = ("commit 6a70e5a: cross- and bi-encoder candidates only, gain retention 0.522, plain retention "
                  "0.834, 3 of 7 tasks learned")  # what the README says while a rerun is in progress
# The candidate pipelines per task, as the task-distillation study defines them (docs/studies/
# task-distillation.md): for the student every pipeline on every task, task distillation included; the teacher
# cannot distil from itself, so it has the cross- and (sentence pairs) the bi-encoder.
CANDIDATES = {
    "student": {"stsb": ["cross", "bi", "td2", "bi-td2", "td12"], "mrpc": ["cross", "bi", "td2", "bi-td2"],
                "rte": ["cross", "bi", "td2", "bi-td2", "td12"], "cola": ["cross", "td2", "td2-aug4"],
                "sst2": ["cross", "td2", "td2-aug4"], "ner:NCBI-disease": ["cross", "td2-transfer", "td12-transfer"],
                "ner:BC5CDR-chem": ["cross", "td2-transfer", "td12-transfer"]},
    "teacher": {t: ["cross", "bi"] if t in ("stsb", "mrpc", "rte") else ["cross"] for t in TASKS},
}
# The teaching models, stages of the study: the teacher's cross-encoder tuned per task (its best
# run's weights teach every task-distillation row) and the teacher completed with a masked-LM head
# (`fit-head`: the released student has none, so it proposes the augmentation's replacement words).
TEACHING = "teaching-cross"
TEACHER_MLM = "teacher-mlm"


def _kept_model(folder: str):
    """Completion of a teaching model: its best run's weights are there (not only its results),
    found as --teacher finds them."""
    def complete(work: Path) -> bool:
        try:
            return any(Path(resolve_teacher_folder(str(work / folder))).glob("*.safetensors"))
        except MiniAlbertError:  # no kept model, or a damaged results.json
            return False
    return complete


def _has_weights(folder: str):
    return lambda work: any((work / folder).glob("*.safetensors"))


def _has_transfer_set(folder: str):
    """Completion of a row that builds the transfer set another row reads: its labelled rows are there."""
    return lambda work: any(d.is_dir() for d in (work / folder).glob("transfer/*/data"))


def _picks(rows: dict, who: str) -> dict:
    """task -> `who`'s picked row; on a tie, the candidate listed first (CANDIDATES: simplest first)."""
    return choose(rows, who, lambda task: CANDIDATES[who].get(task, ()))


def _model(args, who: str) -> str:
    return "minilm" if who == "teacher" else str(Path(args.student).resolve())


def _finetune(args, model: str, task: str, out: str, lrs: list[str], flags, seeds: int, save: str) -> list[str]:
    argv = protocol_argv(args, model, task, out, flags, f"{TEACHING}/{task_folder(task)}", lrs, seeds,
                         "--seeds-at-best", save)
    if "--augment" in flags:
        argv += ["--augment-mlm", TEACHER_MLM]
    for flag in ("max_train_samples", "max_transfer_samples"):  # small subsets: trying the stages out
        if getattr(args, flag, None) and (flag == "max_train_samples" or "--transfer-data" in flags):
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return argv


def _reads(flags, tf: str) -> list[str]:
    """The teaching stages a row with these finetune flags reads (job names)."""
    reads = [f"{TEACHING}/{tf}"] if "--teacher" in flags else []
    return reads + ([TEACHER_MLM] if "--augment" in flags else [])


def _seeded(results_dir: Path, model: str, pipeline: str, task: str) -> Path:
    """The results.json of a pick repeated with seeds (the final row)."""
    return results_dir / f"{model}-{pipeline}-3seeds" / task_folder(task) / "results.json"


def _pipelines(args, who: str, task: str) -> list[str]:
    return [p for p in CANDIDATES[who][task] if args.pipelines is None or p in args.pipelines]


def teaching_jobs(args, who: str) -> list[Job]:
    """The teaching stages `who`'s rows read: the tuned teacher per task (the teacher's own
    cross-encoder row takes its pick from there; every task-distillation row is taught by it) and
    the fit-head teacher when a row augments. Finished only when their weights are there."""
    jobs = []
    if who == "student" and any("--augment" in PIPELINES[p].flags for t in args.tasks for p in _pipelines(args, who, t)):
        jobs.append(Job(TEACHER_MLM, ["fit-head", "--teacher", "minilm", "--max-steps", str(args.fit_head_steps),
                                      "--batch-size", "32", "--dtype", args.dtype, "--out", TEACHER_MLM],
                        f"{TEACHER_MLM}/fit_head.json", complete=_has_weights(TEACHER_MLM)))
    for task in args.tasks:
        distils = any("--teacher" in PIPELINES[p].flags for p in _pipelines(args, who, task))
        if who == "teacher" or distils:
            grid = f"{TEACHING}/{task_folder(task)}"
            jobs.append(Job(grid, _finetune(args, "minilm", task, grid, GRID["teacher"], PIPELINES["cross"].flags,
                                            1, "best"), f"{grid}/results.json", complete=_kept_model(grid)))
    return jobs


def plan(args, who: str) -> list[Job]:
    """`who`'s teaching stages, then its exploratory rows (one seed, lr 1e-4), each waiting for what
    it reads: a task-distillation row for its task's teacher, an augmenting row for the fit-head
    teacher, td12-transfer for the transfer set td2-transfer labelled."""
    jobs = teaching_jobs(args, who)
    for task in args.tasks:
        tf = task_folder(task)
        for pipeline in _pipelines(args, who, task):
            out, flags = f"{who}-{pipeline}/{tf}", PIPELINES[pipeline].flags
            after = _reads(flags, tf)
            if (who, pipeline) == ("teacher", "cross"):  # its run is the teaching grid's, reused
                after.append(f"{TEACHING}/{tf}")
            if pipeline == "td12-transfer":  # reads the set td2-transfer labelled
                after.append(f"{who}-td2-transfer/{tf}")
            complete = _has_transfer_set(out) if pipeline == "td2-transfer" else None
            jobs.append(Job(out, _finetune(args, _model(args, who), task, out, [EXPLORATORY_LR], flags, 1, "none"),
                            f"{out}/results.json", after, complete))
    return jobs


def plan_finals(args, who: str, results_dir: Path | None = None, report: bool = True) -> list[Job]:
    """The picked pipeline of each task (best exploratory dev score), on the grid and then with seeds.
    A task is picked only once every candidate's exploratory row is in: a pick among some is no pick
    (`report`: say which rows a task still waits for)."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    jobs = teaching_jobs(args, who)
    for task, row in _picks(rows, who).items():
        missing = [p for p in _pipelines(args, who, task) if (who, p, task) not in rows]
        if task not in args.tasks or missing:
            if task in args.tasks and report:
                print(f"{who} {task}: not picked yet, no exploratory row of {', '.join(missing)}", flush=True)
            continue
        tf, flags = task_folder(task), PIPELINES[row.pipeline].flags
        out = f"{who}-{row.pipeline}-3seeds/{tf}"
        jobs.append(Job(out, _finetune(args, _model(args, who), task, out,
                                       _final_grid(who, row.pipeline, task, results_dir), flags, 3, "none"),
                        f"{out}/results.json", _reads(flags, tf)))
    return jobs


def _final_grid(who: str, pipeline: str, task: str, results_dir: Path) -> list[str]:
    """The learning rates of a final row. The teacher's cross-encoder has been through the grid
    already, as the teaching model (the same command line but for the models it saves, seed 42):
    its final row runs the rate picked there, with the seeds; every other row runs the grid."""
    teaching = results_dir / TEACHING / task_folder(task) / "results.json"
    if (who, pipeline) == ("teacher", "cross") and teaching.is_file():
        return [f"{read_json(teaching)['best']['learning_rate']:g}"]
    return GRID[who]


def _reuse_runs(work: Path, results_dir: Path, job: Job) -> None:
    """A job starts with every finished run it may reuse: the records committed beside its own row
    (a study resumed on another machine reuses them: run identities come from content), those of its
    exploratory row, for the teacher's cross-encoder those of the teaching model's grid, and the
    transfer set its exploratory row (td12-transfer: td2-transfer's) labelled. finetune reuses a run or a transfer set only
    where its identity is the same, and runs again a run whose kept model is missing."""
    if job.name == TEACHER_MLM:
        return
    target = work / Path(job.done).parent
    row = target.parent.name
    sources = [Path(row) / target.name]
    if ROW_FOLDER.match(row):
        model, pipeline, _ = parse_folder(row)
        sources.append(Path(f"{model}-{pipeline}") / target.name)
        if (model, pipeline) == ("teacher", "cross"):
            sources.append(Path(TEACHING) / target.name)
    (target / "runs").mkdir(parents=True, exist_ok=True)
    for source in sources:
        for root in (results_dir, work):
            for record in sorted((root / source / "runs").glob("*.json")):
                if not (target / "runs" / record.name).exists():
                    shutil.copyfile(record, target / "runs" / record.name)
    if ROW_FOLDER.match(row):  # the labelled set of its exploratory row, or td2-transfer's for td12-transfer
        same_set = [f"{model}-{pipeline}"] + ([f"{model}-td2-transfer"] if pipeline == "td12-transfer" else [])
        for built in sorted(b for name in same_set for b in work.glob(f"{name}/{target.name}/transfer/*/data")):
            if not (target / "transfer" / built.parent.name).exists():
                shutil.copytree(built.parent, target / "transfer" / built.parent.name)


def _keep(work: Path, results_dir: Path):
    """On a job's end: its results.json and every run record and transfer-set description beside it
    go into the repository's folder (a teaching stage's fit_head.json too) and the records of runs
    it no longer reports (an older identity) leave it, its seconds into
    `jobs.json`; the summary of an older set of rows no longer holds, so it goes."""
    def keep(job):
        count_seconds(results_dir / "jobs.json", job.name, job_attempts(work, job.name))
        folder = work / Path(job.done).parent
        records = [folder / "runs" / f"{i}.json" for i in _run_ids(work / job.done)]  # the row's own runs only
        for f in [work / job.done, *records, *folder.glob("transfer/*/transfer.json")]:
            target = results_dir / f.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        kept = results_dir / folder.relative_to(work)
        reported = {r.stem for r in records}
        for stale in (kept / "runs").glob("*.json"):  # records of a run the row no longer reports
            if stale.stem not in reported:
                stale.unlink()
        (results_dir / "summary.json").unlink(missing_ok=True)
    return keep


def count_seconds(path: Path, name: str, attempts: dict) -> None:
    """jobs.json: every attempt of every job (jobs.py's ledger: wall and CPU seconds; a job cut by a
    kill or a session's end is several attempts), merged by start time, so counting twice changes
    nothing and attempts made on another machine stay; `wall` and `cpu` are the job's totals."""
    if not attempts:
        return
    timings = read_json(path) if path.is_file() else {}
    entry = timings.setdefault(name, {})
    entry["attempts"] = merged = {**entry.get("attempts", {}), **attempts}
    for kind in ("wall", "cpu"):
        entry[kind] = round(sum(a.get(kind, 0.0) for a in merged.values()), 1)
    write_json(path, dict(sorted(timings.items())))


def _run_ids(results: Path) -> list[str]:
    """The runs a results.json reports (none for another done file, such as fit_head.json)."""
    if results.name != "results.json":
        return []
    return [i for c in read_json(results).get("configs", []) for i in c.get("run_ids", [])]


def unrecorded_rows(results_dir: Path) -> list[Path]:
    """The results.json files under `results_dir` that a run record of theirs is missing beside."""
    stale = []
    for f in sorted(results_dir.glob("*/*/results.json")):
        run_ids = _run_ids(f)
        if not run_ids or any(not (f.parent / "runs" / f"{i}.json").is_file() for i in run_ids):
            stale.append(f)
    return stale


def prune_unrecorded(results_dir: Path) -> None:
    """Rows that cannot be audited (a run record of theirs is missing) are removed, to be rerun."""
    stale = unrecorded_rows(results_dir)
    for f in stale:
        print(f"no run records beside {f.relative_to(results_dir)}: removed, it is rerun", flush=True)
        shutil.rmtree(f.parent)
    if stale:
        (results_dir / "summary.json").unlink(missing_ok=True)


def study_dtype(results_dir: Path, requested: str | None) -> str:
    """The one dtype of every row of the study: the dtype its committed rows ran in (run records,
    fit_head.json), else `requested`, else fp32 (fast on every CPU, and within a few last bits the
    same numbers on each; bf16 is fast only on some). `--dtype auto` would resolve per machine, so a
    study resumed on another CPU would recompute its finished rows in another dtype and mix the two;
    a request against the committed rows is refused."""
    found: dict[str, list[str]] = {}
    for f in sorted(results_dir.glob("*/*/runs/*.json")) + sorted(results_dir.glob("*/fit_head.json")):
        record = read_json(f)  # a damaged file: one paragraph naming it, not a traceback
        dtype = record.get("identity", record).get("dtype")
        if dtype:
            found.setdefault(dtype, []).append(str(f.relative_to(results_dir)))
    if len(found) > 1:
        mixed = ", ".join(f"{d}: {len(f)} files, e.g. {f[0]}" for d, f in found.items())
        raise MiniAlbertError(f"{results_dir}: the committed rows mix dtypes ({mixed}); "
                              "remove the rows of the dtype that does not belong, and they are rerun in the other.")
    if found and requested and requested not in found:
        (dtype, files), = found.items()
        raise MiniAlbertError(f"--dtype {requested}: the committed rows under {results_dir} ran in {dtype} ({len(files)} "
                              f"files, e.g. {files[0]}), and one study's rows share one dtype. Leave --dtype out (or "
                              f"give {dtype}) to continue the study, or start a new one with --results and --work "
                              "elsewhere.")
    return next(iter(found), None) or requested or "fp32"


def study_complete(args, results_dir: Path) -> list[str]:
    """The rows the summary still needs (empty when the study is complete)."""
    rows = read_rows(results_dir)
    missing = []
    for who in args.who:
        for task in args.tasks:
            missing += [f"{who}-{p}/{task_folder(task)}" for p in _pipelines(args, who, task) if (who, p, task) not in rows]
        picks = _picks(rows, who)
        missing += [f"{who}-{r.pipeline}-3seeds/{task_folder(t)}" for t, r in picks.items()
                    if t in args.tasks and not _seeded(results_dir, who, r.pipeline, t).is_file()]
    return missing


def run(args) -> int:
    """Run (or continue) the study, in one command from a fresh clone: the teacher's and the
    student's teaching stages and exploratory rows in one queue, each pick (the grid, then seeds)
    joining it as soon as its task's rows are in; every finished job's small files go into the
    repository as it ends, and the summary is written once the last row is in."""
    work, results_dir = Path(args.work), Path(args.results)
    args.dtype = study_dtype(results_dir, args.dtype)
    print(f"every row in {args.dtype}", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    prune_unrecorded(results_dir)
    keep = _keep(work, results_dir)
    start = functools.partial(_reuse_runs, work, results_dir)

    def finals():  # the picks whose candidates are all in, planned as soon as they are
        return [j for who in args.who for j in plan_finals(args, who, results_dir, report=False)]

    jobs = [j for who in args.who for j in plan(args, who)]
    for job in jobs + finals():
        if job.finished(work) and not (results_dir / job.done).exists():
            keep(job)
    code = run_jobs(jobs, work, args.jobs, args.threads, on_done=keep, on_start=start, more=finals)
    for who in args.who:
        plan_finals(args, who, results_dir)  # says which picks still wait, and for what
    missing = study_complete(args, results_dir)
    if missing:
        print(f"the study is not complete; still missing: {', '.join(missing)}", flush=True)
        return code or 1
    result = summarise_rows(results_dir, args.name, args.student_path, _zero_shot(Path(args.embed)), args.tasks)
    _write_summary(results_dir / "summary.json", result)
    print(table(results_dir))
    return code


def summarise_rows(results_dir: Path, student_name: str, student_path: str, zero_shot: dict | None = None,
                   study_tasks: list[str] = TASKS) -> dict:
    """The study's summary from its committed rows: per task the picks of both models, the majority
    baseline (from results.json), the share of the teacher's gain kept; the averages over the tasks
    where the teacher beats the baseline by more than its seed spread."""
    rows = read_rows(results_dir)
    student, teacher = _picks(rows, "student"), _picks(rows, "teacher")
    tasks = [t for t in study_tasks if t in student and t in teacher]
    absent = [f"{who} {t}" for t in study_tasks for who, picks in (("student", student), ("teacher", teacher))
              if t not in picks]
    if absent:
        raise SystemExit(f"{results_dir}: no results.json of {', '.join(absent)}; run `python -m scripts.studies "
                         "retention run --student ...` to finish the study (it resumes).")
    unseeded = [f"{r.model}-{r.pipeline}-3seeds/{task_folder(t)}" for t in tasks for r in (student[t], teacher[t])
                if not _seeded(results_dir, r.model, r.pipeline, t).is_file()]
    if unseeded:  # never a silent fallback to the exploratory row's single seed
        raise SystemExit(f"{results_dir}: the picked pipeline has no seeded row in {', '.join(unseeded)}; run "
                         "`python -m scripts.studies retention run --student ...` to finish the study (it resumes).")
    per_task, excluded = {}, {}
    for t in tasks:
        s, te = student[t], teacher[t]
        split = "test" if t.startswith("ner:") else "dev"
        baseline = _majority(results_dir, t, split)
        gain = gain_kept(s.score.mean, te.score.mean, te.score.std, baseline)
        entry = {"student": _score(s, results_dir), "teacher": _score(te, results_dir), "majority": round(baseline, 2),
                 "majority_split": split, "teacher_gain": round(te.score.mean - baseline, 2)}
        if gain is None:
            excluded[t] = (f"the teacher ({te.score.mean:.2f} ± {te.score.std:.2f}) does not beat the majority "
                           f"baseline ({baseline:.2f}) by more than its seed spread")
        else:
            entry["gain_kept"] = round(gain, 4)
            entry["ratio"] = round(s.score.mean / te.score.mean, 4)
        entry["student_beats_majority_by_more_than_its_spread"] = (
            s.score.mean - baseline > s.score.std if s.score.seeds > 1 else None)  # one seed: spread not measured
        per_task[t] = entry
    included = [t for t in tasks if t not in excluded]
    s_avg = statistics.fmean(student[t].score.mean for t in included) if included else None
    t_avg = statistics.fmean(teacher[t].score.mean for t in included) if included else None
    summary = {
        "study": "the released student against its teacher, each task's pipeline picked once on dev, its learning "
                 "rate picked on dev from a grid of three, then seeds 42-44 (SST-2: 1), teacher alike "
                 "(docs/RESULTS.md section 9)",
        "student": student_name, "student_path": student_path,
        "gain_retention": round(statistics.fmean(per_task[t]["gain_kept"] for t in included), 4) if included else None,
        "retention": round(s_avg / t_avg, 4) if included else None,
        "student_average": round(s_avg, 2) if included else None,
        "teacher_average": round(t_avg, 2) if included else None,
        "tasks": tasks, "included_tasks": included, "excluded_tasks": excluded,
        "tasks_learned": [t for t in tasks if per_task[t]["student_beats_majority_by_more_than_its_spread"]],
        "tasks_spread_not_measured": [t for t in tasks if per_task[t]["student_beats_majority_by_more_than_its_spread"]
                                      is None],
        "student_parameters": student[tasks[0]].score.parameters if tasks else None,
        "teacher_parameters": teacher[tasks[0]].score.parameters if tasks else None,
        "zero_shot_spearman": (zero_shot or {}).get("student"),
        "teacher_zero_shot_spearman": (zero_shot or {}).get("teacher"),
        "per_task": per_task,
        "candidates": {who: {t: sorted(r.pipeline for r in rows.values() if (r.model, r.task) == (who, t))
                             for t in tasks} for who in ("student", "teacher")},
        "models": {student_name: {"pipeline": {t: student[t].pipeline for t in tasks},
                                  "scores": {t: _score(student[t], results_dir) for t in tasks}},
                   "teacher": {"pipeline": {t: teacher[t].pipeline for t in tasks},
                               "scores": {t: _score(teacher[t], results_dir) for t in tasks}}},
    }
    if tasks:
        summary["parameter_ratio"] = round(summary["student_parameters"] / summary["teacher_parameters"], 4)
    summary["task_distillation_added"] = _task_distillation_added(rows, student, tasks)
    timings = results_dir / "jobs.json"
    if timings.is_file():  # every job's CPU seconds, over all its attempts and sessions
        summary["cpu_hours"] = round(sum(j["cpu"] for j in read_json(timings).values()) / 3600, 2)
    return summary


def _task_distillation_added(rows: dict, picks: dict, tasks: list[str]) -> dict:
    """Per task, the student's best task-distillation row against its best row without a teacher,
    both exploratory (seed 42, lr 1e-4, dev), with the seed spread of the task's pick beside it as
    the yardstick of noise (one seed: not measured)."""
    added = {}
    for t in tasks:
        mine = [r for r in rows.values() if (r.model, r.task) == ("student", t)]
        td = [r for r in mine if "--teacher" in PIPELINES[r.pipeline].flags]
        plain = [r for r in mine if "--teacher" not in PIPELINES[r.pipeline].flags]
        if td and plain:
            a, b = (best_row(some, CANDIDATES["student"].get(t, ())) for some in (td, plain))
            added[t] = {"task_distillation": a.pipeline, "dev": round(a.selected_on, 2), "without": b.pipeline,
                        "without_dev": round(b.selected_on, 2), "difference": round(a.selected_on - b.selected_on, 2) + 0.0}
            if picks[t].score.seeds > 1:  # one seed (SST-2): the spread was not measured, so none is given
                added[t]["seed_spread_of_the_pick"] = round(picks[t].score.std, 2)
    return added


def _score(row, results_dir: Path) -> dict:
    return {"mean": round(row.score.mean, 2), "std": round(row.score.std, 2), "seeds": row.score.seeds,
            "pipeline": row.pipeline, "selected_on_dev": round(row.selected_on, 2),
            "learning_rate": _picked_lr(row, results_dir)}


def _picked_lr(row, results_dir: Path):
    """The learning rate the seeded row ran with, read from the folder of the study given."""
    seeded = _seeded(results_dir, row.model, row.pipeline, row.task)
    return read_json(seeded)["best"]["learning_rate"] if seeded.exists() else None


def _majority(results_dir: Path, task: str, split: str) -> float:
    """The task's majority baseline in percent, as finetune computed it from the data (every row of a
    task shares its data, so any of them gives it)."""
    for f in sorted(results_dir.glob(f"*/{task_folder(task)}/results.json")):
        baseline = read_json(f).get("majority_baseline")
        if baseline:
            return 100 * baseline[split if split in baseline else next(iter(baseline))]
    raise SystemExit(f"no results.json of {task} records its majority baseline")


def _zero_shot(embed: Path) -> dict | None:
    if not embed.is_file():
        return None
    e = read_json(embed)
    return {"student": e["spearman"], "teacher": e.get("compare", {}).get("minilm", {}).get("spearman")}


def _write_summary(path: Path, result: dict) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_task", "models")}, indent=2))


def summary(args) -> int:
    results_dir = Path(args.results)
    result = summarise_rows(results_dir, args.name, args.student_path, _zero_shot(Path(args.embed)))
    _write_summary(Path(args.out) if args.out else results_dir / "summary.json", result)
    return 0


def table(results_dir: Path | None = None) -> str:
    """Per task: the picks, the majority baseline, the gain kept (markdown). A pick not yet repeated
    with seeds is shown as what it is, its exploratory row, and no gain is computed from it."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    student, teacher = _picks(rows, "student"), _picks(rows, "teacher")
    lines = ["| task | majority | student pipeline | student | teacher pipeline | teacher | gain kept |",
             "|---|---|---|---|---|---|---|"]
    for t in TASKS:
        if t in student and t in teacher:
            split = "test" if t.startswith("ner:") else "dev"
            base = _majority(results_dir, t, split)
            s, te = student[t].score, teacher[t].score
            unseeded = [r for r in (student[t], teacher[t]) if not _seeded(results_dir, r.model, r.pipeline, t).is_file()]
            gain = gain_kept(s.mean, te.mean, te.std, base)
            kept = ("not yet: " + " and ".join(f"the {r.model}'s pick" for r in unseeded) + " not yet repeated with "
                    "seeds" if unseeded else "teacher at majority" if gain is None else f"{gain:.2f}")
            mark = ("" if s.seeds < 2 or s.mean - base > s.std else " (within its spread of majority)")
            lines.append(f"| {t} | {base:.2f} | `{student[t].pipeline}` | {_cell(s)}{mark} | "
                         f"`{teacher[t].pipeline}` | {_cell(te)} | {kept} |")
    return "\n".join(lines)


def task_distillation_table(results_dir: Path | None = None) -> str:
    """What task distillation adds for the student, per task, from the exploratory rows in (markdown)."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    picks = _picks(rows, "student")
    added = _task_distillation_added(rows, picks, [t for t in TASKS if t in picks])
    lines = ["| task | best with task distillation | dev | best without | dev | difference | seed spread of the pick |",
             "|---|---|---|---|---|---|---|"]
    for t, a in added.items():
        spread = f"{a['seed_spread_of_the_pick']:.2f}" if "seed_spread_of_the_pick" in a else "not measured"
        lines.append(f"| {t} | `{a['task_distillation']}` | {a['dev']:.2f} | `{a['without']}` | {a['without_dev']:.2f} "
                     f"| {a['difference']:+.2f} | {spread} |")
    return "\n".join(lines) if added else "No task has both kinds of rows yet."


def _cell(score) -> str:
    """mean ± sample std (seeds); one seed: its spread was not measured, so none is printed."""
    return f"{score.mean:.2f} ± {score.std:.2f} ({score.seeds})" if score.seeds > 1 else \
        f"{score.mean:.2f} (1 seed: spread not measured)"


def _names_of(known: list[str]):
    """An argparse type: a comma-separated list, each name one of `known` (else a clear error, exit 2)."""
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown) or 'empty list'}; choose among "
                                             f"{', '.join(known)} (comma-separated)")
        return names
    return parse


def _summary_arguments(p) -> None:
    p.add_argument("--results", default=str(RESULTS_DIR),
                   help="the folder of the study's rows (the repository's; another one to try the stages out)")
    p.add_argument("--name", default=RELEASED_NAME, help="the student's name in the summary")
    p.add_argument("--student-path", default=f"minialbert/released/{RELEASED_NAME}")
    p.add_argument("--embed", default=str(RESULTS_DIR / "embed.json"),
                   help="the `bench embed --compare` result of the student")


def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="run (or continue) the whole study from a fresh clone: teaching stages, "
                                   "exploratory rows, picks with seeds, summary (resumable, job by job)")
    r.add_argument("--student", default=f"minialbert/released/{RELEASED_NAME}",
                   help="the student's folder (default: the released student)")
    defaults(r, work="runs/retention")
    _summary_arguments(r)
    r.add_argument("--who", type=_names_of(["teacher", "student"]), default=["teacher", "student"])
    r.add_argument("--tasks", type=_names_of(TASKS), default=TASKS)
    r.add_argument("--pipelines", type=_names_of(sorted({p for c in CANDIDATES.values() for ps in c.values()
                                                         for p in ps})), default=None,
                   help="run only these candidate pipelines (comma-separated; default: every candidate); the "
                        "summary lists the candidates that were run per task")
    r.add_argument("--max-train-samples", type=int, default=None,
                   help="try the stages out on N training examples per task (with --results elsewhere)")
    r.add_argument("--max-transfer-samples", type=int, default=None,
                   help="try the stages out on N transfer examples (the study's own: 20,000)")
    r.add_argument("--fit-head-steps", type=int, default=400, help="steps of the fit-head teacher that augments")
    r.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                   help="the dtype of every row (default: that of the committed rows, else fp32, fast on every CPU where "
                        "bf16 is fast on some only); a study never mixes two")
    r.add_argument("--jobs", type=int, default=2, help="jobs at once (2 cores: 2 jobs of 1 thread)")
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(func=run)
    s = sub.add_parser("summary", help="summary.json from the committed results (every pick seeded, or an error "
                                       "naming the missing row)")
    _summary_arguments(s)
    s.add_argument("--out", default=None, help="default: summary.json in --results")
    s.set_defaults(func=summary)
    sub.add_parser("table", help="the per-task table from the committed results").set_defaults(func=printing(table))


def _summary() -> dict:
    return read_json(RESULTS_DIR / "summary.json")


def _left_out(s: dict) -> str:
    """The tasks the summary leaves out of the averages, each with why ('' when none)."""
    return "; ".join(f"{t} left out: {why}" for t, why in s["excluded_tasks"].items())


def headline() -> str:
    """The study's headline, from summary.json; while a rerun is in progress (no summary: it is
    written once the last row is in), what is done and the previous complete study."""
    if not (RESULTS_DIR / "summary.json").is_file():
        done = len(list(RESULTS_DIR.glob("*/*/results.json")))
        return (f"**The retention study is being rerun** with every pipeline as a candidate on every task "
                f"(task distillation included); {done} result folders are in so far (docs/results/retention); the "
                f"table below shows a task once both models have a row for it, marked until their picks are "
                f"repeated with seeds, and the summary comes with the last row. The previous complete study "
                f"({PREVIOUS_STUDY}) is in git history.")
    s = _summary()
    left_out = _left_out(s) or "no task left out"
    return (f"**Gain retention {s['gain_retention']:.3f}**: the student `{s['student']}` keeps that share of the "
            f"teacher's gain over the majority class, averaged over {len(s['included_tasks'])} tasks ({left_out}). "
            f"The plain ratio of the averages is {s['retention']:.3f} ({s['student_average']:.2f} against "
            f"{s['teacher_average']:.2f}), with {s['student_parameters'] / 1e6:.2f} M parameters, "
            f"{100 * s['parameter_ratio']:.0f}% of the teacher's. Zero-shot STS-B: {s['zero_shot_spearman']:.2f} "
            f"(teacher {s['teacher_zero_shot_spearman']:.2f}). Tasks the student really learned (above its majority "
            f"baseline by more than its seed spread): {len(s['tasks_learned'])} of {len(s['tasks'])}"
            + (f" ({', '.join(s['tasks_learned'])}); spread not measured (one seed): "
               f"{', '.join(s['tasks_spread_not_measured']) or 'none'}." if s['tasks_learned'] else "."))


GOALS = {"gain_retention": 0.85, "retention": 0.92}


def goals(summary: dict | None = None) -> str:
    """The study's goals checked against summary.json (or the summary given): gain retention and
    plain retention over the tasks whose teacher beats its majority baseline, every task learned,
    and what the study cost."""
    if summary is None:
        if not (RESULTS_DIR / "summary.json").is_file():
            return "Checked against `summary.json` when the study's last row is in."
        summary = _summary()
    s, n = summary, len(summary["included_tasks"])
    left_out = _left_out(s)
    over = f"over the {n} tasks whose teacher beats its majority baseline" + (f" ({left_out})" if left_out else "")

    def verdict(key: str) -> str:
        return "met" if s[key] >= GOALS[key] else "**missed**"

    failed = [t for t in s["tasks"] if s["per_task"][t]["student_beats_majority_by_more_than_its_spread"] is False]
    unmeasured = s["tasks_spread_not_measured"]
    learned = "met" if not failed and not unmeasured else "**missed**" if failed else "not checked on every task"
    lines = [f"- gain retention >= {GOALS['gain_retention']}: {verdict('gain_retention')}, {s['gain_retention']:.3f} {over}",
             f"- plain retention >= {GOALS['retention']}: {verdict('retention')}, {s['retention']:.3f} "
             f"({s['student_average']:.2f} against {s['teacher_average']:.2f}, the same tasks)",
             f"- every task above its majority baseline by more than its seed spread: {learned}, "
             f"{len(s['tasks_learned'])} of {len(s['tasks'])}"
             + (f"; within the spread: {', '.join(failed)}" if failed else "")
             + (f"; one seed, spread not measured: {', '.join(unmeasured)}" if unmeasured else "")]
    if "cpu_hours" in s:
        lines.append(f"- the study's cost: {s['cpu_hours']:.1f} CPU hours over every job and attempt (`jobs.json`)")
    return "\n".join(lines)


def embeddings_table() -> str:
    """The student, the teacher and the static model2vec baselines of the same teacher, scored and
    timed in one `bench embed --compare` run (docs/results/retention/embed.json)."""
    e = read_json(RESULTS_DIR / "embed.json")
    rows = [(f"`{RELEASED_NAME}` (the released student)", e["parameters"], e["spearman"], e["sentences_per_s"], "")]
    for name, r in e.get("compare", {}).items():
        made = f", distilled in {r['distill_seconds']:.0f} s" if r.get("distill_seconds") else ""
        rows.append((f"`{name}`{made}", r["parameters"], r["spearman"], r["sentences_per_s"],
                     f"{r['spearman_retention']:.3f} / {r['speedup']:.2f}x"))
    lines = ["| model | parameters | STS-B dev Spearman | sentences/s | student's retention / speed-up against it |",
             "|---|---|---|---|---|"]
    lines += [f"| {m} | {p / 1e6:.2f} M | {sp:.2f} | {sps:,.0f} | {ratio} |" for m, p, sp, sps, ratio in rows]
    return "\n".join(lines)


def embedding_goals() -> str:
    """The zero-shot goals of the released student against embed.json and the release curve."""
    e = read_json(RESULTS_DIR / "embed.json")
    teacher, statics = e["compare"]["minilm"], {k: v for k, v in e["compare"].items() if k.startswith("model2vec:")}
    best = max(statics.values(), key=lambda r: r["spearman"])
    curve = read_json(RESULTS_DIR / "release-curve.json")["curve"]
    late = [r["zero_shot_spearman"] for r in curve if r["step"] >= 250]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return (f"- zero-shot >= 0.97 of the teacher ({0.97 * teacher['spearman']:.1f}): {verdict(e['spearman'] >= 0.97 * teacher['spearman'])}, "
            f"{e['spearman']:.2f} ({teacher['spearman_retention']:.3f} of {teacher['spearman']:.2f})\n"
            f"- >= 1.7x the teacher's sentences/s in the same run: {verdict(teacher['speedup'] >= 1.7)}, {teacher['speedup']:.2f}x\n"
            f"- >= 4 points above the model2vec baseline: {verdict(e['spearman'] - best['spearman'] >= 4)}, "
            f"{e['spearman'] - best['spearman']:+.2f} against the stronger one (`{best['model']}`)\n"
            f"- <= 30% of the teacher's parameters: {verdict(teacher['parameter_ratio'] <= 0.3)}, "
            f"{100 * teacher['parameter_ratio']:.1f}%\n"
            f"- over the run: {curve[0]['zero_shot_spearman']:.2f} at step 0, then between {min(late):.2f} and "
            f"{max(late):.2f} from step 250 ({curve[1]['tokens'] / 1e6:.2f} M tokens) to step {curve[-1]['step']} "
            f"({curve[-1]['tokens'] / 1e6:.2f} M tokens)")
