"""The budget-curve study (docs/studies/budget-curve.md, a lent H100): the packaged MiniLM completed
with an MLM head (fit-head), the teacher fine-tuned with a small learning-rate grid, students of one
recipe (H 384, E 128, adapters, 6 iterations, from the teacher's initialisation) distilled at
budgets 4x apart plus the MLM-only students, each fine-tuned with the same protocol. Results in
docs/results/budget-curve/.

Protocol: learning rate picked on dev with seed 42 from a small grid (teacher {2e-5, 5e-5, 1e-4};
students the paper's {5e-5, 5e-4, 1e-3}), then the picked rate repeated to 3 seeds (SST-2: 1);
3 epochs (SST-2: 1), batch 16 (SST-2: 32), 10% linear warm-up, dynamic padding, max length 128.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from minialbert.finetune import statistics as st
from minialbert.records import copy_file, read_json, write_json, write_text

from .common import FIGURES, RESULTS, STUDY_TASKS, copy_results, protocol_argv, read_score, save_figure, task_label
from .jobs import Job, run_jobs

# the study tasks in the column order of the paper's GLUE table (SST-2 first), NER after
TASKS = sorted(STUDY_TASKS, key=lambda t: (t.startswith("ner:"), ("sst2", "mrpc", "stsb", "rte", "cola").index(t)
                                          if not t.startswith("ner:") else STUDY_TASKS.index(t)))
TEACHER_LRS = ["2e-5", "5e-5", "1e-4"]
STUDENT_LRS = ["5e-5", "5e-4", "1e-3"]
BUDGETS = [0, 64, 256, 1024, 4096]  # distillation steps of 64 packed windows of 128 tokens
STUDENT = ["--recipe", "retention-student"]  # minialbert/distillation/recipes/retention-student.yaml
RESULTS_DIR = RESULTS / "budget-curve"


def plan(args) -> list[Job]:
    """Jobs in priority order: the teacher and the top-budget students first, the curve last."""
    top = max(args.budgets)
    jobs = [Job("fit-head", ["fit-head", "--teacher", "minilm", "--corpus", "corpus", "--max-steps",
                             str(args.fit_head_steps), "--eval-every", str(max(1, args.fit_head_steps // 12)),
                             "--batch-size", "64", "--eval-windows", "512", "--out", "teacher-mlm"],
                "teacher-mlm/fit_head.json")]
    students = {}  # label -> (distill argv, needs the completed teacher)
    for steps in sorted(args.budgets, key=lambda b: (b != top, -b)):
        students[f"steps-{steps}"] = ([*STUDENT, "--teacher", "teacher-mlm", "--max-steps", str(steps),
                                       "--warmup-steps", str(steps // 10)], True)
    students[f"none-{top}"] = ([*STUDENT, "--teacher", "minilm", "--alignment", "none", "--output-weight", "0",
                                "--max-steps", str(top), "--warmup-steps", str(top // 10)], False)
    students[f"mlm-only-{top}"] = ([*STUDENT, "--teacher", "minilm", "--alignment", "none", "--output-weight", "0",
                                    "--embedding-init", "random", "--shared-layer-init", "0",
                                    "--max-steps", str(top), "--warmup-steps", str(top // 10)], False)
    for label, (argv, needs_head) in students.items():
        jobs.append(Job(f"distill-{label}", ["distill", *argv, "--corpus", "corpus", "--out", f"students/{label}", "--resume"],
                        f"students/{label}/final/distillation.json", ["fit-head"] if needs_head else []))
        # the fine-tuning-free axis of the budget curve: zero-shot STS-B of the student's embeddings
        jobs.append(Job(f"embed-{label}", ["bench", "embed", "--model", f"students/{label}/final", "--data-dir",
                                           args.glue_dir, "--out", f"students/{label}/embed.json"],
                        f"students/{label}/embed.json", [f"distill-{label}"]))
    jobs.append(Job("embed-teacher", ["bench", "embed", "--model", "minilm", "--data-dir", args.glue_dir, "--out",
                                      "teacher-embed.json"], "teacher-embed.json"))

    def finetune(model_label, model, lrs, after, adapter=False):
        for task in args.tasks:
            out = f"ft/{model_label}{'-adapter' if adapter else ''}/{task.replace(':', '-')}"
            flags = (["--adapter-tuning"] if adapter else []) + (
                ["--max-train-samples", str(args.max_train_samples)] if args.max_train_samples else [])
            argv = protocol_argv(args, model, task, out, flags, lrs=lrs, seeds=3, seed_flag="--seeds-at-best")
            jobs.append(Job(f"ft-{out[3:]}", argv, f"{out}/results.json", after))

    finetune("teacher", "minilm", TEACHER_LRS, [])
    order = [f"steps-{top}", f"none-{top}", f"mlm-only-{top}"] + [l for l in students if l.startswith("steps-")
                                                                  and l != f"steps-{top}"]
    for i, label in enumerate(order):
        finetune(label, f"students/{label}/final", STUDENT_LRS, [f"distill-{label}"])
        if i == 0:
            finetune(label, f"students/{label}/final", STUDENT_LRS, [f"distill-{label}"], adapter=True)
    return jobs


def make_corpus(work: Path, biomed: Path) -> None:
    """work/corpus: the offline Wikipedia summaries and the biomedical sentences, one document per
    line (consecutive biomedical lines come from one document, so packing keeps them together)."""
    from minialbert.packaged import wiki_offline_json

    folder = work / "corpus"
    if (folder / "wiki.txt").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    articles = read_json(wiki_offline_json())
    lines = [" ".join(a.get("extract", "").split()) for a in articles.values()]
    copy_file(biomed, folder / "biomed.txt")
    write_text(folder / "wiki.txt", "\n".join(line for line in lines if line) + "\n")


def run(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    make_corpus(work, Path(args.biomed))
    return run_jobs(plan(args), work, args.jobs, args.threads)


def collect(args) -> int:
    """Copy the small result files (never weights) from the work folder into the repository."""
    work, dest = Path(args.work), Path(args.results)
    patterns = ["teacher-mlm/fit_head.json", "students/*/final/distillation.json", "students/*/log.jsonl",
                "students/*/embed.json", "teacher-embed.json", "ft/*/*/results.json", "ft/*/*/runs/*.json"]
    files = [f for pattern in patterns for f in work.glob(pattern)]
    copy_results(work, dest, files)
    print(f"copied {len(files)} files into {dest}")
    for folder in sorted(dest.glob("ft/*/*")):
        if not (folder / "results.json").exists() and any(folder.glob("runs/*.json")):
            rebuild(folder)
    return 0


def rebuild(folder: Path) -> None:
    """results.json of a fine-tuning job that stopped early (out of machine time), from the runs it
    finished: the configuration the protocol picked (the one repeated over seeds) with the seeds it
    has, marked "incomplete". A run whose score is NaN (constant predictions, before the metric
    scored those 0) counts as 0."""
    from minialbert.finetune.options import FinetuneOptions, config_key
    from minialbert.finetune.report import summarise

    runs = [read_json(f) for f in sorted(folder.glob("runs/*.json"))]
    for r in runs:
        for split in r["metrics"].values():
            for k, v in split.items():
                split[k] = 0.0 if v != v else v
        r["score"] = 0.0 if r["score"] != r["score"] else r["score"]
    task = folder.name
    opts = FinetuneOptions(model=runs[0]["model"], task="ner" if task.startswith("ner-") else task, out=str(folder),
                           adapter_tuning=runs[0]["adapter_tuning"], pair_encoding="cross")
    counts = Counter(config_key(r["hyperparameters"]) for r in runs)  # the protocol repeated one of them
    chosen = max(counts, key=counts.get) if max(counts.values()) > 1 else None
    summary = summarise(opts, runs, chosen)
    summary["data_name"] = task[4:] if task.startswith("ner-") else None  # the NER folder's name, as finetune writes it
    summary["incomplete"] = (f"rebuilt from {len(runs)} finished run records (the job stopped before writing "
                             f"results.json); the picked configuration has {summary['best']['runs']} seed(s)")
    write_json(folder / "results.json", summary, allow_nan=False)
    print(f"rebuilt {folder / 'results.json'} ({summary['incomplete']})")


def _rows(results_dir: Path) -> dict:
    """model label -> {task column -> Score}."""
    rows = {}
    for f in sorted(results_dir.glob("ft/*/*/results.json")):
        rows.setdefault(f.parent.parent.name, {})[task_label(f.parent.name)] = read_score(f)
    return rows


def summarise(args) -> int:
    """docs/results/budget-curve/summary.json (this study only) and the curve figure."""
    results = Path(args.results)
    rows = _rows(results)
    if "teacher" not in rows:
        print(f"{results}: no teacher results yet", file=sys.stderr)
        return 1
    tasks = [t for t in TASKS if t in rows["teacher"]]

    def average(label):
        row = rows.get(label, {})
        return st.mean(row[t].mean for t in tasks) if all(t in row for t in tasks) else None

    def tokens(label):
        f = results / "students" / label / "final" / "distillation.json"
        return read_json(f).get("distilled_tokens") if f.exists() else None

    def zero_shot(label):  # STS-B dev Spearman of the pooled embeddings, no fine-tuning (bench embed)
        f = (results / "teacher-embed.json" if label == "teacher"
             else results / "students" / label.removesuffix("-adapter") / "embed.json")
        return read_json(f)["spearman"] if f.exists() else None

    curve = sorted((tokens(l), average(l), l) for l in rows if l.startswith("steps-") and not l.endswith("-adapter")
                   and average(l) is not None and tokens(l) is not None)
    teacher_avg = average("teacher")
    def measured(**fields):  # a zero-shot score this study did not measure is left out, never null
        return {k: v for k, v in fields.items() if v is not None}

    summary = {"study": "budget curve: students of one recipe distilled at budgets 4x apart, each fine-tuned as a "
                        "cross-encoder with a learning-rate grid (docs/studies/budget-curve.md)",
               "teacher_average": round(teacher_avg, 2), "tasks": tasks,
               **measured(teacher_zero_shot_spearman=zero_shot("teacher")),
               "teacher_parameters": rows["teacher"][tasks[0]].parameters,
               "models": {l: {"pipeline": "finetune", "average": None if average(l) is None else round(average(l), 2),
                              "distilled_tokens": tokens(l.removesuffix("-adapter")),
                              **measured(zero_shot_spearman=zero_shot(l)),
                              "scores": {t: {"mean": round(v.mean, 2), "std": round(v.std, 2), "seeds": v.seeds}
                                         for t, v in r.items()}} for l, r in sorted(rows.items())}}
    if curve:
        top = max(curve, key=lambda c: c[0])
        student = rows[top[2]]
        summary.update({"student": top[2], "student_average": round(top[1], 2),
                        "retention": round(st.retention([top[1]], [teacher_avg]), 4),
                        "student_parameters": student[tasks[0]].parameters,
                        "parameter_ratio": round(student[tasks[0]].parameters / rows["teacher"][tasks[0]].parameters, 4),
                        "distilled_tokens": top[0], **measured(zero_shot_spearman=zero_shot(top[2])),
                        "seeds": {t: student[t].seeds for t in tasks}, "pipeline": "finetune"})
    out = results / "summary.json"
    write_json(out, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "models"}, indent=2))
    if curve:
        plot(curve, teacher_avg, rows, average, tokens, Path(args.figure))
    return 0


def plot(curve, teacher_avg, rows, average, tokens, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = min(t for t, _, _ in curve if t) / 4 if any(t for t, _, _ in curve) else 1e4
    xs = [t if t else floor for t, _, _ in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, [a for _, a, _ in curve], "o-", label="distilled student (full fine-tuning)")
    if curve[0][0] == 0:
        ax.annotate("init only\n(0 tokens)", (xs[0], curve[0][1]), textcoords="offset points", xytext=(4, -24),
                    fontsize=8)
    ax.axhline(teacher_avg, color="k", ls="--", label=f"teacher (MiniLM) {teacher_avg:.1f}")
    ax.axhline(0.9 * teacher_avg, color="grey", ls=":", label="90% of the teacher")
    for label, marker, text in [("none-", "s", "MLM only, teacher init"), ("mlm-only-", "^", "MLM only, random init"),
                                ("steps-", "D", "adapter tuning (top student)")]:
        for l in rows:
            is_adapter = l.endswith("-adapter")
            if l.startswith(label) and (is_adapter == (label == "steps-")) and average(l) is not None:
                t = tokens(l.removesuffix("-adapter"))
                ax.plot([t], [average(l)], marker, ms=8, label=text)
    ax.set_xscale("log")
    save_figure(fig, ax, path, "Retention of the teacher's quality", "distilled tokens (non-padding)",
                "average score (7 tasks)", {"fontsize": 8, "loc": "upper center", "bbox_to_anchor": (0.5, 0.87), "ncol": 2})


def add_commands(sub, defaults) -> None:
    r = sub.add_parser("run", help="run (or continue) every job")
    defaults(r, work="runs/budget-curve")
    r.add_argument("--tasks", type=lambda s: s.split(","), default=TASKS)
    r.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=BUDGETS)
    r.add_argument("--fit-head-steps", type=int, default=3000)
    r.add_argument("--jobs", type=int, default=1, help="jobs at once (CPU: 1; a GPU: 8 or more)")
    r.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    r.add_argument("--max-train-samples", type=int, default=None, help="smoke tests only")
    r.set_defaults(func=run)
    c = sub.add_parser("collect", help="copy the small result files into the repository")
    c.add_argument("--work", default="runs/budget-curve")
    c.add_argument("--results", default=str(RESULTS_DIR))
    c.set_defaults(func=collect)
    s = sub.add_parser("summarise", help="summary.json and the curve figure from committed results")
    s.add_argument("--results", default=str(RESULTS_DIR))
    s.add_argument("--figure", default=str(FIGURES / "retention.png"))
    s.set_defaults(func=summarise)
