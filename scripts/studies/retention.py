"""The released student's retention study (docs/RESULTS.md section 9): for the student and for the
teacher alike, per task, each candidate pipeline runs once (seed 42, lr 1e-4: the exploratory row);
the pipeline is picked once on dev; its learning rate is then picked on dev with seed 42 from a
grid of three (the teacher's {2e-5, 5e-5, 1e-4}, the student's {5e-5, 1e-4, 5e-4}) and it is repeated
with seeds 42-44 (SST-2: one seed). The teacher's cross-encoder that teaches the distillation rows is
tuned on the same grid, and the teacher's cross-encoder row takes its pick from there. Results in docs/results/retention/, one folder per row: MODEL-PIPELINE
(exploratory), MODEL-PIPELINE-3seeds (the pick: grid, then seeds), teaching-cross (the teaching
model: the teacher's cross-encoder on the grid).

The summary reports first the share of the teacher's gain over the majority class that the student
keeps, (student - majority) / (teacher - majority) averaged over tasks, with the majority baseline of
each task's own evaluation split computed from the data (results.json's `majority_baseline`); a task
on which the teacher does not beat its baseline by more than its seed spread is named and left out
of both averages. The plain ratio of the averages is reported beside it."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from minialbert.finetune.report import gain_kept

from .common import RESULTS, ROW_FOLDER, printing, protocol_argv, task_folder
from .jobs import Job, run_jobs
from .task_distillation import PIPELINES, choose, parse_folder, read_rows

RESULTS_DIR = RESULTS / "retention"
TASKS = ["stsb", "mrpc", "rte", "cola", "sst2", "ner:NCBI-disease", "ner:BC5CDR-chem"]
GRID = {"teacher": ["2e-5", "5e-5", "1e-4"], "student": ["5e-5", "1e-4", "5e-4"]}
EXPLORATORY_LR = "1e-4"
RELEASED_NAME = "minialbert-minilm"  # the student this study measures (minialbert/released/NAME)
# The candidate pipelines per task: for the student, those the task-distillation study found best
# or close (docs/RESULTS.md section 8), plus the cross-encoder everywhere; the teacher cannot
# distil from itself, so it has the cross- and (sentence pairs) the bi-encoder.
CANDIDATES = {
    "student": {"stsb": ["bi", "bi-td2"], "mrpc": ["bi", "bi-td2", "cross"], "rte": ["cross", "td12", "bi"],
                "cola": ["cross", "td2-aug4"], "sst2": ["cross"], "ner:NCBI-disease": ["cross", "td12-transfer"],
                "ner:BC5CDR-chem": ["cross", "td12-transfer"]},
    "teacher": {t: ["cross", "bi"] if t in ("stsb", "mrpc", "rte") else ["cross"] for t in TASKS},
}


def _finetune(args, model: str, task: str, out: str, lrs: list[str], flags, seeds: int, save: str) -> list[str]:
    return protocol_argv(args, model, task, out, flags, f"teaching-cross/{task_folder(task)}", lrs, seeds,
                         "--seeds-at-best", save)


def plan(args, who: str) -> list[Job]:
    """The exploratory jobs of `who` (and, for the teacher, the tuned teaching cross-encoders first;
    the student's distillation rows wait for them)."""
    model = "minilm" if who == "teacher" else str(Path(args.student).resolve())
    jobs = []
    for task in args.tasks:
        grid = f"teaching-cross/{task_folder(task)}"
        if who == "teacher":
            jobs.append(Job(grid, _finetune(args, model, task, grid, GRID["teacher"], PIPELINES["cross"].flags, 1,
                                            "best"), f"{grid}/results.json"))
        for pipeline in [p for p in CANDIDATES[who][task] if args.pipelines is None or p in args.pipelines]:
            out = f"{who}-{pipeline}/{task_folder(task)}"
            flags = PIPELINES[pipeline].flags
            after = [grid] if "--teacher" in flags or pipeline == "cross" and who == "teacher" else []
            jobs.append(Job(out, _finetune(args, model, task, out, [EXPLORATORY_LR], flags, 1, "none"),
                            f"{out}/results.json", after))
    return jobs


def plan_finals(args, who: str) -> list[Job]:
    """The picked pipeline of each task (best exploratory dev score), on the grid and then with seeds."""
    model = "minilm" if who == "teacher" else str(Path(args.student).resolve())
    jobs = []
    for task, row in choose(read_rows(RESULTS_DIR), who).items():
        if task not in args.tasks:
            continue
        out = f"{who}-{row.pipeline}-3seeds/{task_folder(task)}"
        jobs.append(Job(out, _finetune(args, model, task, out, _final_grid(who, row.pipeline, task),
                                       PIPELINES[row.pipeline].flags, 3, "none"), f"{out}/results.json"))
    return jobs


def _final_grid(who: str, pipeline: str, task: str) -> list[str]:
    """The learning rates of a final row. The teacher's cross-encoder has been through the grid
    already, as the teaching model (the same command line but for the models it saves, seed 42):
    its final row runs the rate picked there, with the seeds; every other row runs the grid."""
    teaching = RESULTS_DIR / "teaching-cross" / task_folder(task) / "results.json"
    if (who, pipeline) == ("teacher", "cross") and teaching.is_file():
        return [f"{json.loads(teaching.read_text())['best']['learning_rate']:g}"]
    return GRID[who]


def _reuse_runs(work: Path, job: Job) -> None:
    """A job starts with the finished runs of its exploratory row (and, for the teacher's
    cross-encoder, of the teaching model's grid) and with every transfer set its model has for the
    task: finetune reuses a run or a transfer set only where its identity is the same."""
    target = work / Path(job.done).parent
    if ROW_FOLDER.match(target.parent.name):
        model, pipeline, _ = parse_folder(target.parent.name)
        runs = [work / f"{model}-{pipeline}" / target.name]
        if (model, pipeline) == ("teacher", "cross"):
            runs.append(work / "teaching-cross" / target.name)
        skip = shutil.ignore_patterns("model", "adapter", "tensorboard", "trainer*")
        for source in runs:
            if source != target and (source / "runs").is_dir():
                shutil.copytree(source / "runs", target / "runs", dirs_exist_ok=True, ignore=skip)
        for built in sorted(work.glob(f"{model}-*/{target.name}/transfer/*/transfer.json")):
            if not (target / "transfer" / built.parent.name).exists():
                shutil.copytree(built.parent, target / "transfer" / built.parent.name)


def _keep(work: Path):
    def keep(job):
        folder = work / Path(job.done).parent
        for f in [work / job.done, *folder.glob("runs/*.json"), *folder.glob("transfer/*/transfer.json")]:
            target = RESULTS_DIR / f.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    return keep


def run(args) -> int:
    """Run (or continue) the study for --who (teacher, student or both): the exploratory rows, then
    the picks on the grid with seeds. Every finished job's small files go into the repository."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    code = 0
    for who in args.who:
        for phase in (plan, plan_finals):
            jobs = phase(args, who)
            for job in jobs:
                if (work / job.done).exists():
                    _keep(work)(job)
            code = run_jobs(jobs, work, args.jobs, args.threads, on_done=_keep(work),
                            on_start=lambda job: _reuse_runs(work, job)) or code
    print(table())
    return code


def summarise_rows(results_dir: Path, student_name: str, student_path: str, zero_shot: dict | None = None) -> dict:
    """The study's summary from its committed rows: per task the picks of both models, the majority
    baseline (from results.json), the share of the teacher's gain kept; the averages over the tasks
    where the teacher beats the baseline by more than its seed spread."""
    rows = read_rows(results_dir)
    student, teacher = choose(rows, "student"), choose(rows, "teacher")
    tasks = [t for t in TASKS if t in student and t in teacher]
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
    return summary


def _score(row, results_dir: Path) -> dict:
    return {"mean": round(row.score.mean, 2), "std": round(row.score.std, 2), "seeds": row.score.seeds,
            "pipeline": row.pipeline, "selected_on_dev": round(row.selected_on, 2),
            "learning_rate": _picked_lr(row, results_dir)}


def _picked_lr(row, results_dir: Path):
    """The learning rate the seeded row ran with, read from the folder of the study given."""
    folder = results_dir / f"{row.model}-{row.pipeline}-3seeds" / task_folder(row.task) / "results.json"
    return json.loads(folder.read_text())["best"]["learning_rate"] if folder.exists() else None


def _majority(results_dir: Path, task: str, split: str) -> float:
    """The task's majority baseline in percent, as finetune computed it from the data (every row of a
    task shares its data, so any of them gives it)."""
    for f in sorted(results_dir.glob(f"*/{task_folder(task)}/results.json")):
        baseline = json.loads(f.read_text()).get("majority_baseline")
        if baseline:
            return 100 * baseline[split if split in baseline else next(iter(baseline))]
    raise SystemExit(f"no results.json of {task} records its majority baseline")


def summary(args) -> int:
    zero_shot = None
    if Path(args.embed).is_file():
        e = json.loads(Path(args.embed).read_text())
        zero_shot = {"student": e["spearman"], "teacher": e.get("compare", {}).get("minilm", {}).get("spearman")}
    result = summarise_rows(RESULTS_DIR, args.name, args.student_path, zero_shot)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_task", "models")}, indent=2))
    return 0


def table() -> str:
    """Per task: the picks, the majority baseline, the gain kept (markdown)."""
    rows = read_rows(RESULTS_DIR)
    student, teacher = choose(rows, "student"), choose(rows, "teacher")
    lines = ["| task | majority | student pipeline | student | teacher pipeline | teacher | gain kept |",
             "|---|---|---|---|---|---|---|"]
    for t in TASKS:
        if t in student and t in teacher:
            split = "test" if t.startswith("ner:") else "dev"
            base = _majority(RESULTS_DIR, t, split)
            s, te = student[t].score, teacher[t].score
            gain = gain_kept(s.mean, te.mean, te.std, base)
            kept = "teacher at majority" if gain is None else f"{gain:.2f}"
            mark = ("" if s.seeds < 2 or s.mean - base > s.std else " (within its spread of majority)")
            lines.append(f"| {t} | {base:.2f} | `{student[t].pipeline}` | {_cell(s)}{mark} | "
                         f"`{teacher[t].pipeline}` | {_cell(te)} | {kept} |")
    return "\n".join(lines)


def _cell(score) -> str:
    """mean ± sample std (seeds); one seed: its spread was not measured, so none is printed."""
    return f"{score.mean:.2f} ± {score.std:.2f} ({score.seeds})" if score.seeds > 1 else \
        f"{score.mean:.2f} (1 seed: spread not measured)"



def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="run (or continue) the study, teacher first (resumable, job by job)")
    r.add_argument("--student", required=True, help="the released student's folder")
    defaults(r, work="runs/retention")
    r.add_argument("--who", type=lambda s: s.split(","), default=["teacher", "student"])
    r.add_argument("--tasks", type=lambda s: s.split(","), default=TASKS)
    r.add_argument("--pipelines", type=lambda s: s.split(","), default=None,
                   help="run only these candidate pipelines (comma-separated; default: every candidate); the "
                        "summary lists the candidates that were run per task")
    r.add_argument("--jobs", type=int, default=2, help="jobs at once (2 cores: 2 jobs of 1 thread)")
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(func=run)
    s = sub.add_parser("summary", help="summary.json from the committed results")
    s.add_argument("--name", default=RELEASED_NAME, help="the student's name in the summary")
    s.add_argument("--student-path", default=f"minialbert/released/{RELEASED_NAME}")
    s.add_argument("--embed", default=str(RESULTS_DIR / "embed.json"),
                   help="the `bench embed --compare` result of the student")
    s.add_argument("--out", default=str(RESULTS_DIR / "summary.json"))
    s.set_defaults(func=summary)
    sub.add_parser("table", help="the per-task table from the committed results").set_defaults(func=printing(table))


def _summary() -> dict:
    return json.loads((RESULTS_DIR / "summary.json").read_text())


def headline() -> str:
    """The study's headline, from summary.json."""
    s = _summary()
    left_out = "; ".join(f"{t} left out: {why}" for t, why in s["excluded_tasks"].items()) or "no task left out"
    return (f"**Gain retention {s['gain_retention']:.3f}**: the student `{s['student']}` keeps that share of the "
            f"teacher's gain over the majority class, averaged over {len(s['included_tasks'])} tasks ({left_out}). "
            f"The plain ratio of the averages is {s['retention']:.3f} ({s['student_average']:.2f} against "
            f"{s['teacher_average']:.2f}), with {s['student_parameters'] / 1e6:.2f} M parameters, "
            f"{100 * s['parameter_ratio']:.0f}% of the teacher's. Zero-shot STS-B: {s['zero_shot_spearman']:.2f} "
            f"(teacher {s['teacher_zero_shot_spearman']:.2f}). Tasks the student really learned (above its majority "
            f"baseline by more than its seed spread): {len(s['tasks_learned'])} of {len(s['tasks'])}"
            + (f" ({', '.join(s['tasks_learned'])}); spread not measured (one seed): "
               f"{', '.join(s['tasks_spread_not_measured']) or 'none'}." if s['tasks_learned'] else "."))


def embeddings_table() -> str:
    """The student, the teacher and the static model2vec baselines of the same teacher, scored and
    timed in one `bench embed --compare` run (docs/results/retention/embed.json)."""
    e = json.loads((RESULTS_DIR / "embed.json").read_text())
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
    e = json.loads((RESULTS_DIR / "embed.json").read_text())
    teacher, statics = e["compare"]["minilm"], {k: v for k, v in e["compare"].items() if k.startswith("model2vec:")}
    best = max(statics.values(), key=lambda r: r["spearman"])
    curve = json.loads((RESULTS_DIR / "release-curve.json").read_text())["curve"]
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
