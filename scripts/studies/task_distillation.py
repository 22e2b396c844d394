"""Pipelines after general distillation (docs/studies/task-distillation.md): cross- and bi-encoder
fine-tuning and task distillation (stage 2, stages 1 + 2, augmented and teacher-labelled transfer
sets) for one student and for the teacher, one protocol for every row (lr 1e-4, 3 epochs, batch 16;
SST-2: 1 epoch, batch 32). Each pipeline runs once with seed 42 (the exploratory row); per task the
pipeline with the best exploratory dev score is picked, once, for the student and for the teacher
separately, and repeated with seeds 42-44. Results in docs/results/task-distillation/, one folder
per row: MODEL-PIPELINE (exploratory) and MODEL-PIPELINE-3seeds (the picked pipeline with seeds)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from minialbert.finetune import statistics as st
from minialbert.records import copy_file, copy_tree, write_json

from .common import (FIGURES, RESULTS, ROW_FOLDER, STUDY_TASKS, Score, copy_results, printing, protocol_argv, read_score, results_table,
                     save_figure, task_folder, task_label)
from .jobs import Job, run_jobs

RESULTS_DIR = RESULTS / "task-distillation"
TASKS = list(STUDY_TASKS)
PAIR_TASKS = {"stsb", "mrpc", "rte"}
NER_TASKS = {"ner:NCBI-disease", "ner:BC5CDR-chem"}


@dataclass(frozen=True)
class Pipeline:
    flags: tuple[str, ...]  # finetune flags; {teacher} and {transfer} are filled in per task
    tasks: frozenset | None = None  # the tasks it runs on (None: all)

    def applies(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


# The teacher's own fine-tuned cross-encoder (teacher-cross) teaches every distillation row. The task
# sets are what two CPU sessions could afford: the transfer sets where they are cheapest or matter
# most (the biomedical corpus for NER, four masked-LM copies for CoLA and RTE), the sweeps on CoLA.
TEACHER = ("--teacher", "{teacher}")
TRANSFER = ("--transfer-data", "{transfer}", "--max-transfer-samples", "20000")
PIPELINES = {
    "td2": Pipeline(TEACHER),
    "cross": Pipeline(("--pair-encoding", "cross")),
    "bi-td2": Pipeline(("--pair-encoding", "bi", *TEACHER), frozenset(PAIR_TASKS)),
    "bi": Pipeline(("--pair-encoding", "bi"), frozenset(PAIR_TASKS)),
    "td12": Pipeline((*TEACHER, "--intermediate-epochs", "3"), frozenset({"stsb", "rte"})),
    "td2-aug4": Pipeline((*TEACHER, "--augment", "4"), frozenset({"rte", "cola"})),
    "td2-transfer": Pipeline((*TEACHER, *TRANSFER), frozenset(NER_TASKS)),
    # 1 + 2 with the transfer data: one stage-1 epoch over ~25 k sentences is already more stage-1
    # examples than td12's 3 epochs over a training split
    "td12-transfer": Pipeline((*TEACHER, "--intermediate-epochs", "1", *TRANSFER), frozenset(NER_TASKS)),
    "td2-t4": Pipeline((*TEACHER, "--temperature", "4"), frozenset({"cola"})),  # temperature sweep
    "td2-hard05": Pipeline((*TEACHER, "--hard-weight", "0.5"), frozenset({"cola"})),  # soft + hard labels
}
# The committed rows repeated with seeds (`run --final`, 3 seeds); every other row is exploratory.
COMMITTED_FINALS = ["student-bi-td2=mrpc", "student-cross=cola", "student-td12=rte", "student-td2-aug4=cola",
                    "teacher-bi=stsb,rte", "teacher-cross=mrpc,cola"]
# Exploratory rows with 2 seeds: those that ran first in the pair-encoding study (the same protocol
# and command line), whose 2 seeds the committed table reports.
TWO_SEED_ROWS = {("student", p, t) for p in ("cross", "bi") for t in PAIR_TASKS} | {("teacher", "bi", "stsb")}


@dataclass(frozen=True)
class Row:
    """One (model, pipeline, task) of the study: the reported score (the seeded row's, when there is
    one) and the exploratory row's dev score, which alone picks the pipeline."""
    model: str
    pipeline: str
    task: str
    score: Score
    selected_on: float


def parse_folder(name: str) -> tuple[str, str, int | None]:
    """(model, pipeline, seeds or None for the exploratory row) of a row folder's name."""
    m = ROW_FOLDER.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a row folder (MODEL-PIPELINE or MODEL-PIPELINE-Nseeds)")
    return m["model"], m["pipeline"], int(m["seeds"]) if m["seeds"] else None


def read_rows(results_dir: Path = RESULTS_DIR) -> dict[tuple[str, str, str], Row]:
    """Every row of the committed results (folders MODEL-PIPELINE[-Nseeds]; others, such as a teaching
    model's, are not rows): a seeded folder replaces its exploratory row's reported
    score, but the selection score stays the exploratory row's (the pipeline is chosen on dev once;
    a later seeded run cannot change the choice). results.json's `score` is finetune's own
    selection score (the first dev set: GLUE dev, NER devel F1; the NER test F1 is only reported)."""
    rows: dict = {}
    files = sorted(f for f in results_dir.glob("*/*/results.json") if ROW_FOLDER.match(f.parent.parent.name))
    for f in sorted(files, key=lambda f: parse_folder(f.parent.parent.name)[2] is not None):  # exploratory first
        model, pipeline, _ = parse_folder(f.parent.parent.name)
        key = (model, pipeline, task_label(f.parent.name))
        score = read_score(f)
        rows[key] = Row(*key, score, rows[key].selected_on if key in rows else score.selection)
    return rows


def best_row(rows: Iterable[Row], order: Sequence[str] = ()) -> Row:
    """The row with the best exploratory dev score. On a tie (small dev sets: RTE has 277 examples)
    the pipeline listed first in `order` wins, the simpler and cheaper one to repeat with seeds,
    rather than whichever folder name sorts first; pipelines not listed come after, first read first."""
    rank = {pipeline: i for i, pipeline in enumerate(order)}
    return max(rows, key=lambda r: (r.selected_on, -rank.get(r.pipeline, len(rank))))


def choose(rows: dict, model: str, order: Callable[[str], Sequence[str]] = lambda task: ()) -> dict[str, Row]:
    """task -> the best row of `model` on it (`best_row`, ties going to the first of `order(task)`)."""
    by_task: dict[str, list[Row]] = {}
    for row in rows.values():
        if row.model == model:
            by_task.setdefault(row.task, []).append(row)
    return {task: best_row(task_rows, order(task)) for task, task_rows in by_task.items()}


def plan(args) -> list[Job]:
    """Single-seed jobs in priority order: the teacher's cross-encoders first (they teach every
    distillation row), then each pipeline on every task it applies to; then each `--final` row
    (LABEL=TASK,TASK) again with --seeds seeds (its seed-42 run copied in, not recomputed)."""
    student = str(Path(args.student).resolve())
    jobs = []

    def job(label, model, task, flags, seeds=None):
        row = label if seeds is None else f"{label}-{seeds}seeds"
        runs = seeds or (2 if (*label.split("-", 1), task) in TWO_SEED_ROWS else 1)
        out = f"{row}/{task_folder(task)}"
        argv = protocol_argv(args, model, task, out, flags, f"teacher-cross/{task_folder(task)}", seeds=runs,
                             save="best" if label == "teacher-cross" else "none")
        after = [f"teacher-cross/{task}"] if "--teacher" in flags and label != "teacher-cross" else []
        jobs.append(Job(f"{row}/{task}", argv, f"{out}/results.json", after))

    first, rest = args.pipelines[:args.interleave], args.pipelines[args.interleave:]
    for task in args.tasks:  # each teacher, then the first pipelines on its task: early signal
        job("teacher-cross", "minilm", task, PIPELINES["cross"].flags)
        for name in first:
            if PIPELINES[name].applies(task):
                job(f"student-{name}", student, task, PIPELINES[name].flags)
    for model, label, names in (("minilm", "teacher", args.teacher_pipelines), (student, "student", rest)):
        for name in names:  # the teacher under the same protocols (cross is its teaching row), then the rest
            for task in args.tasks:
                if PIPELINES[name].applies(task):
                    job(f"{label}-{name}", model, task, PIPELINES[name].flags)
    for spec in args.final:
        label, tasks = spec.split("=", 1)
        model, name, _ = parse_folder(label)
        if name not in PIPELINES:
            raise SystemExit(f"--final {spec}: unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
        for task in tasks.split(","):
            job(label, "minilm" if model == "teacher" else student, task, PIPELINES[name].flags, args.seeds)
    jobs.append(Job("teacher-mlm", ["fit-head", "--teacher", "minilm", "--max-steps", "400", "--batch-size", "32",
                                    "--out", "teacher-mlm"], "teacher-mlm/fit_head.json"))  # --augment-mlm candidate
    return jobs


def run(args) -> int:
    """Run (or continue) the study; copy each job's small files into the repository as it ends.
    With --final-auto, the pipeline of each task is then picked on dev from those runs, for the
    student and the teacher alike, and repeated with --seeds seeds (SST-2: one seed)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    code = _run(plan(args), work, args)
    if args.final_auto:
        finals = []
        for model in ("student", "teacher"):
            picked: dict = {}
            for task, row in choose(read_rows(), model).items():
                if task in args.tasks and task != "sst2" and row.score.seeds < args.seeds:
                    picked.setdefault(row.pipeline, []).append(task)
            finals += [f"{model}-{label}={','.join(tasks)}" for label, tasks in picked.items()]
        print("picked on dev, to repeat with seeds:", " ".join(finals) or "nothing", flush=True)
        args = argparse.Namespace(**{**vars(args), "final": [*args.final, *finals]})
        code = _run(plan(args), work, args) or code
    print(table())
    return code


def _run(jobs: list[Job], work: Path, args) -> int:
    for job in jobs:  # a seeds job starts from its exploratory job's finished run and transfer set
        target = work / Path(job.done).parent  # e.g. student-td2-3seeds/stsb
        model, pipeline, seeds = parse_folder(target.parent.name)
        if seeds is not None and not (work / job.done).exists():
            single = work / f"{model}-{pipeline}" / target.name
            for record in sorted((single / "runs").glob("*.json")):  # verified: a copy cut midway is repaired
                copy_file(record, target / "runs" / record.name)
            for built in sorted((single / "transfer").glob("*/transfer.json")):  # each set whole (copy_tree)
                copy_tree(built.parent, target / "transfer" / built.parent.name)

    for job in jobs:  # a transfer set the teacher labelled for another row of this model and task serves
        target = work / Path(job.done).parent  # again (the runner reuses only an identical set: its key)
        if (work / job.done).exists() or not {"--augment", "--transfer-data"} & set(job.argv):
            continue
        model = parse_folder(target.parent.name)[0]
        sets: dict = {}
        for built in sorted(work.glob(f"{model}-*/{target.name}/transfer/*/transfer.json")):
            sets.setdefault(built.parent.name, built.parent)
        for key, built in sets.items():
            if built != target / "transfer" / key:
                copy_tree(built, target / "transfer" / key)

    def keep(job):
        folder = Path(job.done).parent
        copy_results(work, RESULTS_DIR, [work / job.done, *(work / folder).glob("runs/*.json"),
                                         *(work / folder).glob("transfer/*/transfer.json")])

    for job in jobs:
        if (work / job.done).exists():
            keep(job)
    return run_jobs(jobs, work, args.jobs, args.threads, on_done=keep)


def table() -> str:
    return results_table(RESULTS_DIR, TASKS, "pipeline", lambda name: name.split("-", 1))



def augment_probe(args) -> int:
    """Which masked LM serves word replacement: recall of the original word among each LM's
    proposals on STS-B training sentences (docs/results/task-distillation/augment-probe.json)."""
    from transformers import AutoTokenizer

    from minialbert.checkpoints import resolve_model_name
    from minialbert.data.glue import get_task, load_glue
    from minialbert.taskdistill.augment import load_mlm, proposal_recall

    split = load_glue(get_task("stsb"), args.glue_dir)["train"]
    sentences = sorted({t for pair in split.texts for t in pair})[:args.sentences]
    words = [s.split() for s in sentences]
    result = {"sentences": len(words), "source": "STS-B train, first distinct sentences", "mlms": {}}
    for spec in args.mlms:
        name, path = spec.split("=", 1)
        path = resolve_model_name(path)
        result["mlms"][name] = {"path": path, **proposal_recall(words, load_mlm(path, name),
                                                                 AutoTokenizer.from_pretrained(path))}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS_DIR / "augment-probe.json", result)
    print(json.dumps(result, indent=2))
    return 0


def summary(args) -> int:
    """docs/results/task-distillation/summary.json and its figure: per task the pipeline picked on
    dev (from the exploratory runs) for the student and, separately, for the teacher, reported
    with its seeds; retention on the tasks both have."""
    rows = read_rows()
    models = {row.model for row in rows.values()}
    if "teacher" not in models or "student" not in models:
        print("no teacher or student rows yet", file=sys.stderr)
        return 1
    student, teacher = choose(rows, "student"), choose(rows, "teacher")
    tasks = [t for t in TASKS if t in student and t in teacher]
    s_avg = st.mean(student[t].score.mean for t in tasks)
    t_avg = st.mean(teacher[t].score.mean for t in tasks)
    cross = {(m, t): r.score for (m, p, t), r in rows.items() if p == "cross"}
    cross_tasks = [t for t in tasks if ("student", t) in cross and ("teacher", t) in cross]
    by_row: dict = {}
    for (m, p, t), r in sorted(rows.items()):
        by_row.setdefault(f"{m}-{p}", {})[t] = r.score
    result = {
        "tasks": tasks, "all_seven_tasks": len(tasks) == len(TASKS),
        "student_model": "make demo student (runs/distill/final: 3 iterations, H 384, E 128, 0.4 M distilled tokens)",
        "student_parameters": student[tasks[0]].score.parameters,
        "teacher_parameters": teacher[tasks[0]].score.parameters,
        "parameter_ratio": round(student[tasks[0]].score.parameters / teacher[tasks[0]].score.parameters, 4),
        "pipeline": {t: student[t].score.pipeline for t in tasks},
        "teacher_pipeline": {t: teacher[t].score.pipeline for t in tasks},
        "best_scores": {t: {who: {"mean": round(b[t].score.mean, 2), "std": round(b[t].score.std, 2),
                                  "seeds": b[t].score.seeds, "row": b[t].pipeline,
                                  "selected_on_dev": round(b[t].selected_on, 2)}
                            for who, b in (("student", student), ("teacher", teacher))} for t in tasks},
        "student_average": round(s_avg, 2), "teacher_average": round(t_avg, 2), "retention": round(st.retention([s_avg], [t_avg]), 4),
        "cross_encoder_only": {
            "tasks": cross_tasks,
            "student_average": round(st.mean(cross["student", t].mean for t in cross_tasks), 2)
            if cross_tasks else None,
            "teacher_average": round(st.mean(cross["teacher", t].mean for t in cross_tasks), 2)
            if cross_tasks else None},
        "models": {label: {"pipeline": sorted({s.pipeline for s in scores.values()}),
                           "scores": {t: {"mean": round(s.mean, 2), "std": round(s.std, 2), "seeds": s.seeds}
                                      for t, s in _in_task_order(scores)}}
                   for label, scores in by_row.items()},
    }
    c = result["cross_encoder_only"]
    if c["student_average"] is not None:
        c["retention"] = round(st.retention([c["student_average"]], [c["teacher_average"]]), 4)
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "models"}, indent=2))
    _figure(rows, tasks, Path(args.figure))
    return 0


def _in_task_order(scores: dict):
    return sorted(scores.items(), key=lambda item: TASKS.index(item[0]))


def _figure(rows: dict, tasks, path: Path) -> None:
    """Grouped bars: per task, the teacher's and the student's score under each pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = sorted({(m, p) for (m, p, t) in rows if t in tasks}, key=lambda b: (b[0] != "teacher", b[1]))
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(min(18.0, max(7.0, 0.2 * len(bars) * len(tasks))), 5.6))
    for i, (m, p) in enumerate(bars):
        have = [(k, rows[m, p, t].score) for k, t in enumerate(tasks) if (m, p, t) in rows]
        ax.bar([k + i * width for k, _ in have], [s.mean for _, s in have], width, yerr=[s.std for _, s in have],
               label=f"{m}: {p}", hatch="//" if m == "teacher" else None, alpha=0.9 if m == "student" else 0.5)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(tasks))], tasks, fontsize=8)
    save_figure(fig, ax, path, "Teacher and student per pipeline (finetune / bi-encoder / task distillation)", None,
                "dev score (NER: test F1)", {"fontsize": 7, "ncol": min(len(bars), 6), "loc": "upper center",
                                             "bbox_to_anchor": (0.5, -0.1)}, grid_axis="y")


def add_commands(sub, defaults) -> None:
    t = sub.add_parser("run", help="task distillation against cross/bi fine-tuning, student and teacher (resumable)")
    t.add_argument("--student", required=True, help="the distilled student's folder")
    defaults(t, work="runs/task-distillation")
    t.add_argument("--tasks", type=lambda s: s.split(","), default=TASKS)
    t.add_argument("--pipelines", type=lambda s: s.split(","), default=list(PIPELINES),
                   help=f"student pipelines, in this order (of {', '.join(PIPELINES)})")
    t.add_argument("--teacher-pipelines", type=lambda s: [x for x in s.split(",") if x], default=["bi"],
                   help="pipelines also run on the teacher (besides its cross-encoder)")
    t.add_argument("--interleave", type=int, default=3,
                   help="the first N pipelines run task by task right after that task's teacher")
    t.add_argument("--final", nargs="*", default=[], metavar="LABEL=TASKS",
                   help="rows to repeat with --seeds seeds, e.g. student-td2=stsb,mrpc teacher-cross=stsb")
    t.add_argument("--final-auto", action="store_true",
                   help="then repeat each task's pipeline picked on dev (student and teacher) with --seeds seeds")
    t.add_argument("--seeds", type=int, default=3)
    t.add_argument("--jobs", type=int, default=2, help="jobs at once (2 cores: 2 jobs of 1 thread)")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(func=run)
    sub.add_parser("table", help="the table from the committed results").set_defaults(func=printing(table))
    ap = sub.add_parser("augment-probe", help="which masked LM serves --augment: recall of the original word")
    ap.add_argument("mlms", nargs="+", metavar="NAME=PATH")
    defaults(ap)
    ap.add_argument("--sentences", type=int, default=500)
    ap.set_defaults(func=augment_probe)
    ts = sub.add_parser("summary", help="summary.json + figure from the committed results")
    ts.add_argument("--figure", default=str(FIGURES / "task-distillation.png"))
    ts.add_argument("--out", default=str(RESULTS_DIR / "summary.json"))
    ts.set_defaults(func=summary)
