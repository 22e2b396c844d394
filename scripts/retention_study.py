"""How much of the teacher survives: the retention study (docs/RESULTS.md).

    python scripts/retention_study.py run --work runs/retention --jobs 8      # resumable, job by job
    python scripts/retention_study.py collect --work runs/retention            # small files -> docs/results/retention
    python scripts/retention_study.py summarise                                # summary.json + docs/figures/retention.png
    python scripts/retention_study.py pairs --student runs/distill/final       # cross- vs bi-encoder, resumable

`run` completes the packaged MiniLM with an MLM head (fit-head, with its accuracy curve), fine-tunes
the teacher with the protocol below, distils students of one recipe (H 384, E 128, adapters, 6
iterations, from the teacher's initialisation) at budgets 4x apart, the MLM-only students at the
top budget, and fine-tunes each student with the same protocol. Every job is a `minialbert`
command; a job whose output exists is skipped, so an interrupted study continues where it stopped.
Several jobs run at once (`--jobs`): one GPU holds many of these small fine-tunings side by side.

Protocol: learning rate picked on dev with seed 42 from a small grid (teacher {2e-5, 5e-5, 1e-4};
students the paper's {5e-5, 5e-4, 1e-3}), then the picked rate repeated to 3 seeds (SST-2: 1);
3 epochs (SST-2: 1), batch 16 (SST-2: 32), 10% linear warm-up, dynamic padding, max length 128.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TASKS = ["sst2", "mrpc", "stsb", "rte", "cola", "ner:NCBI-disease", "ner:BC5CDR-chem"]
TEACHER_LRS = ["2e-5", "5e-5", "1e-4"]
STUDENT_LRS = ["5e-5", "5e-4", "1e-3"]
BUDGETS = [0, 64, 256, 1024, 4096]  # distillation steps of 64 packed windows of 128 tokens
STUDENT = ["--recipe", "retention-student"]  # minialbert/distillation/recipes/retention-student.yaml
REPO = Path(__file__).resolve().parent.parent


class Job:
    def __init__(self, name: str, argv: list[str], done: str, after: list[str] = ()):
        self.name, self.argv, self.done, self.after = name, argv, done, list(after)


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
        jobs.append(Job(f"distill-{label}", ["distill", *argv, "--corpus", "corpus", "--out", f"students/{label}"],
                        f"students/{label}/final/distillation.json", ["fit-head"] if needs_head else []))
        # the fine-tuning-free axis of the budget curve: zero-shot STS-B of the student's embeddings
        jobs.append(Job(f"embed-{label}", ["bench", "embed", "--model", f"students/{label}/final", "--data-dir",
                                           args.glue_dir, "--out", f"students/{label}/embed.json"],
                        f"students/{label}/embed.json", [f"distill-{label}"]))
    jobs.append(Job("embed-teacher", ["bench", "embed", "--model", "minilm", "--data-dir", args.glue_dir, "--out",
                                      "teacher-embed.json"], "teacher-embed.json"))

    def finetune(model_label, model, lrs, after, adapter=False):
        for task in args.tasks:
            ner = task.startswith("ner:")
            data = str(Path(args.ner_dir) / task[4:]) if ner else args.glue_dir
            sst2 = task == "sst2"
            out = f"ft/{model_label}{'-adapter' if adapter else ''}/{task.replace(':', '-')}"
            argv = ["finetune", "--model", model, "--task", "ner" if ner else task, "--data-dir", data,
                    "--lr", *lrs, "--seeds-at-best", "1" if sst2 else "3", "--epochs", "1" if sst2 else "3",
                    "--save-models", "none", "--out", out]
            if adapter:
                argv.append("--adapter-tuning")
            if args.max_train_samples:
                argv += ["--max-train-samples", str(args.max_train_samples)]
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
    from minialbert.data.offline import wiki_offline_json

    folder = work / "corpus"
    if (folder / "wiki.txt").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    articles = json.loads(wiki_offline_json().read_text(encoding="utf-8"))
    lines = [" ".join(a.get("extract", "").split()) for a in articles.values()]
    shutil.copyfile(biomed, folder / "biomed.txt")
    tmp = folder / "wiki.tmp"
    tmp.write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "wiki.txt")


def run(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    make_corpus(work, Path(args.biomed))
    return run_jobs(plan(args), work, args.jobs, args.threads)


def run_jobs(jobs: list[Job], work: Path, parallel: int = 1, threads: int = 2, on_done=None) -> int:
    """Run `minialbert` jobs in `work`, `parallel` at a time, each after the jobs it depends on.
    The one resume rule of every study: a job whose `done` file exists is finished and skipped
    (each `minialbert` command writes that file last and atomically). `on_done(job)` runs as each
    job finishes (e.g. to copy its small result files into the repository at once)."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    pending = [j for j in jobs if not (work / j.done).exists()]
    finished = {j.name for j in jobs if j not in pending}
    scheduled = {j.name for j in jobs}  # a dependency not planned here is not waited for (e.g. a final
    # row whose teacher ran in an earlier invocation; without that teacher the job fails, naming it)
    failed, running = set(), {}
    print(f"{len(jobs)} jobs, {len(finished)} already done, {len(pending)} to run, {parallel} at a time", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    while pending or running:
        for name, (job, proc, log, started) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            ok = proc.returncode == 0 and (work / job.done).exists()
            (finished if ok else failed).add(name)
            if ok and on_done:
                on_done(job)
            print(f"{time.strftime('%H:%M:%S')} {'done' if ok else 'FAILED'} {name} ({time.time() - started:.0f} s)",
                  flush=True)
        for job in list(pending):
            if len(running) >= parallel:
                break
            if any(a in failed for a in job.after):
                pending.remove(job)
                failed.add(job.name)
                continue
            if (work / job.done).exists():  # finished meanwhile by another invocation
                pending.remove(job)
                finished.add(job.name)
                continue
            if all(a in finished or a not in scheduled for a in job.after):
                pending.remove(job)
                log = (work / "logs" / f"{job.name.replace('/', '_')}.log").open("w")
                proc = subprocess.Popen([sys.executable, "-m", "minialbert", *job.argv], cwd=work, env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
                running[job.name] = (job, proc, log, time.time())
                print(f"{time.strftime('%H:%M:%S')} start {job.name}", flush=True)
        time.sleep(1)
    print(f"finished {len(finished)}, failed {sorted(failed) or 'none'}", flush=True)
    return 1 if failed else 0


def collect(args) -> int:
    """Copy the small result files (never weights) from the work folder into the repository."""
    work, dest = Path(args.work), Path(args.results)
    patterns = ["teacher-mlm/fit_head.json", "students/*/final/distillation.json", "students/*/log.jsonl",
                "students/*/embed.json", "teacher-embed.json", "ft/*/*/results.json", "ft/*/*/runs/*.json"]
    n = 0
    for pattern in patterns:
        for f in work.glob(pattern):
            target = dest / f.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            n += 1
    print(f"copied {n} files into {dest}")
    for folder in sorted(dest.glob("ft/*/*")):
        if not (folder / "results.json").exists() and any(folder.glob("runs/*.json")):
            rebuild(folder)
    return 0


def rebuild(folder: Path) -> None:
    """results.json of a fine-tuning job that stopped early (out of machine time), from the runs it
    finished: the configuration the protocol picked (the one repeated over seeds) with the seeds it
    has, marked "incomplete". A run whose score is NaN (constant predictions, before the metric
    scored those 0) counts as 0."""
    from minialbert.finetune.runner import FinetuneOptions, config_key, summarise

    runs = [json.loads(f.read_text()) for f in sorted(folder.glob("runs/*.json"))]
    for r in runs:
        for split in r["metrics"].values():
            for k, v in split.items():
                split[k] = 0.0 if v != v else v
        r["score"] = 0.0 if r["score"] != r["score"] else r["score"]
    task = folder.name
    opts = FinetuneOptions(model=runs[0]["model"], task="ner" if task.startswith("ner-") else task, out=str(folder),
                           adapter_tuning=runs[0]["adapter_tuning"])
    counts = Counter(config_key(r["hyperparameters"]) for r in runs)  # the protocol repeated one of them
    chosen = max(counts, key=counts.get) if max(counts.values()) > 1 else None
    summary = summarise(opts, runs, chosen)
    summary["data_name"] = task[4:] if task.startswith("ner-") else None  # the NER folder's name, as finetune writes it
    summary["incomplete"] = (f"rebuilt from {len(runs)} finished run records (the job stopped before writing "
                             f"results.json); the picked configuration has {summary['best']['runs']} seed(s)")
    (folder / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    print(f"rebuilt {folder / 'results.json'} ({summary['incomplete']})")


def _rows(results_dir: Path) -> dict:
    """model label -> {task column -> (mean, std, seeds, params)}, scored as `minialbert report` does."""
    from minialbert.finetune.report import task_score

    rows = {}
    for f in sorted(results_dir.glob("ft/*/*/results.json")):
        r = json.loads(f.read_text())
        rows.setdefault(f.parent.parent.name, {})[f.parent.name.replace("ner-", "ner:")] = (
            *task_score(r), r["base_parameters"])
    return rows


def summarise(args) -> int:
    results = Path(args.results)
    rows = _rows(results)
    if "teacher" not in rows:
        print(f"{results}: no teacher results yet", file=sys.stderr)
        return 1
    tasks = [t for t in TASKS if t in rows["teacher"]]

    def average(label):
        row = rows.get(label, {})
        return statistics.fmean(row[t][0] for t in tasks) if all(t in row for t in tasks) else None

    def tokens(label):
        f = results / "students" / label / "final" / "distillation.json"
        return json.loads(f.read_text()).get("distilled_tokens") if f.exists() else None

    curve = sorted((tokens(l), average(l), l) for l in rows if l.startswith("steps-") and not l.endswith("-adapter")
                   and average(l) is not None and tokens(l) is not None)
    teacher_avg = average("teacher")
    top = max(curve, key=lambda c: c[0]) if curve else None
    def zero_shot(label):  # STS-B dev Spearman of the pooled embeddings, no fine-tuning (bench embed)
        f = (results / "teacher-embed.json" if label == "teacher"
             else results / "students" / label.removesuffix("-adapter") / "embed.json")
        return json.loads(f.read_text())["spearman"] if f.exists() else None

    summary = {"teacher_average": round(teacher_avg, 2), "tasks": tasks, "teacher_zero_shot_spearman": zero_shot("teacher"),
               "teacher_parameters": rows["teacher"][tasks[0]][3],
               "models": {l: {"pipeline": "finetune", "average": None if average(l) is None else round(average(l), 2),
                              "distilled_tokens": tokens(l.removesuffix("-adapter")),
                              "zero_shot_spearman": zero_shot(l),
                              "scores": {t: {"mean": round(v[0], 2), "std": round(v[1], 2), "seeds": v[2]}
                                         for t, v in r.items()}} for l, r in sorted(rows.items())}}
    if top:
        student = rows[top[2]]
        summary.update({"student": top[2], "student_average": round(top[1], 2),
                        "retention": round(top[1] / teacher_avg, 4),
                        "student_parameters": student[tasks[0]][3],
                        "parameter_ratio": round(student[tasks[0]][3] / rows["teacher"][tasks[0]][3], 4),
                        "distilled_tokens": top[0], "seeds": {t: student[t][2] for t in tasks},
                        "pipeline": "finetune"})
    td = TD_RESULTS / "summary.json"  # the task-distillation study: per-task pipelines, teacher alike
    if td.exists():
        t = json.loads(td.read_text())
        summary["task_distillation"] = {k: t[k] for k in ("tasks", "all_seven_tasks", "student_model", "pipeline",
                                                          "teacher_pipeline", "student_average", "teacher_average",
                                                          "retention", "parameter_ratio")}
        for who in ("student", "teacher"):  # the picked pipelines, as models of their own, then every row
            summary["models"][f"task-distillation/{who} (pipeline per task)"] = {
                "pipeline": {"per-task mix": t["pipeline" if who == "student" else "teacher_pipeline"]},
                "scores": {k: {f: v[who][f] for f in ("mean", "std", "seeds")} for k, v in t["best_scores"].items()}}
        summary["models"].update({f"task-distillation/{k}": v for k, v in t["models"].items()})
        if t["all_seven_tasks"] and t["parameter_ratio"] <= 0.30 and t["retention"] > summary.get("retention", 0):
            summary.update({"student": t["student_model"], "student_average": t["student_average"],
                            "teacher_average": t["teacher_average"], "retention": t["retention"],
                            "student_parameters": t["student_parameters"], "parameter_ratio": t["parameter_ratio"],
                            "pipeline": {"per-task mix": t["pipeline"]}, "teacher_pipeline": t["teacher_pipeline"],
                            "distilled_tokens": None, "seeds": {k: v["student"]["seeds"] for k, v in t["best_scores"].items()}})
    out = results / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
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
    ax.set_xlabel("distilled tokens (non-padding)")
    ax.set_ylabel("average score (7 tasks)")
    ax.set_title("Retention of the teacher's quality")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.87), ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


PAIR_TASKS = ["stsb", "mrpc", "rte"]
PAIR_RESULTS = REPO / "docs" / "results" / "pair-encoding"


def plan_pairs(args) -> list[Job]:
    """Cross- vs bi-encoder fine-tuning of one student and of the teacher on the sentence-pair
    tasks, one fixed protocol for every row (lr 1e-4, 3 epochs, batch 16, 10% warm-up, mean
    pooling, `--seeds` seeds): the student's rows first, then the teacher's."""
    jobs = []
    for label, model in (("student", str(Path(args.student).resolve())), ("teacher", "minilm")):
        for task in PAIR_TASKS:
            for encoding in ("bi", "cross"):
                out = f"{label}-{encoding}/{task}"
                jobs.append(Job(out, ["finetune", "--model", model, "--task", task, "--data-dir", args.glue_dir,
                                      "--pair-encoding", encoding, "--lr", "1e-4", "--epochs", "3", "--batch-size",
                                      "16", "--runs", str(args.seeds), "--save-models", "none", "--out", out],
                                f"{out}/results.json"))
    return jobs


def pairs(args) -> int:
    """Run (or continue) the pair-encoding jobs; copy each finished results.json into the repository."""
    work = Path(args.work)
    jobs = plan_pairs(args)

    def keep(job):  # results.json into the repository as soon as the job ends
        target = PAIR_RESULTS / job.done
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / job.done, target)

    for job in jobs:  # jobs finished in an earlier call
        if (work / job.done).exists():
            keep(job)
    code = run_jobs(jobs, work, args.jobs, args.threads, on_done=keep)
    print(pairs_table())
    return code


def results_table(root: Path, tasks: list[str], kind: str, split_row) -> str:
    """Markdown: one row per result folder `root/<model>-<kind>` (`split_row` gives the two
    names), one column per task: mean ± sample std (seeds), from the committed files."""
    from minialbert.finetune.report import task_score

    lines = [f"| model | {kind} | " + " | ".join(tasks) + " |", "|" + "---|" * (2 + len(tasks))]
    for folder in sorted(p for p in root.glob("*-*") if p.is_dir()):
        cells = []
        for task in tasks:
            f = folder / task.replace(":", "-") / "results.json"
            if f.exists():
                mean, std, seeds = task_score(json.loads(f.read_text()))
                cells.append(f"{mean:.2f} ± {std:.2f} ({seeds})" if seeds > 1 else f"{mean:.2f} (1)")
            else:
                cells.append("")
        if any(cells):  # e.g. teacher-mlm holds only fit_head.json
            lines.append("| " + " | ".join(split_row(folder.name)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs_table() -> str:
    return results_table(PAIR_RESULTS, PAIR_TASKS, "encoding", lambda name: name.rsplit("-", 1))


TD_RESULTS = REPO / "docs" / "results" / "task-distillation"
TD_TASKS = ["stsb", "mrpc", "rte", "cola", "sst2", "ner:NCBI-disease", "ner:BC5CDR-chem"]
PAIR_TASK_SET = {"stsb", "mrpc", "rte"}
NER_TASK_SET = {"ner:NCBI-disease", "ner:BC5CDR-chem"}
# pipeline label -> (finetune flags, tasks it applies to: None = all); the teacher's own fine-tuned
# cross-encoder (teacher-cross) teaches every distillation row. The task sets are what two CPU
# sessions could afford: the transfer sets where they are cheapest or matter most (the
# biomedical corpus for NER, four masked-LM copies for CoLA and RTE), the sweeps on CoLA.
TD_PIPELINES = {
    "td2": (["--teacher", "{teacher}"], None),
    "cross": ([], None),
    "bi-td2": (["--pair-encoding", "bi", "--teacher", "{teacher}"], PAIR_TASK_SET),
    "bi": (["--pair-encoding", "bi"], PAIR_TASK_SET),
    "td12": (["--teacher", "{teacher}", "--intermediate-epochs", "3"], {"stsb", "rte"}),
    "td2-aug4": (["--teacher", "{teacher}", "--augment", "4"], {"rte", "cola"}),
    "td2-transfer": (["--teacher", "{teacher}", "--transfer-data", "{transfer}", "--max-transfer-samples", "20000"],
                     NER_TASK_SET),
    # 1 + 2 with the transfer data: one stage-1 epoch over ~25 k sentences is already more stage-1
    # examples than td12's 3 epochs over a training split
    "td12-transfer": (["--teacher", "{teacher}", "--intermediate-epochs", "1", "--transfer-data", "{transfer}",
                       "--max-transfer-samples", "20000"], NER_TASK_SET),
    "td2-t4": (["--teacher", "{teacher}", "--temperature", "4"], {"cola"}),  # temperature sweep
    "td2-hard05": (["--teacher", "{teacher}", "--hard-weight", "0.5"], {"cola"}),  # soft + hard labels
}


def _td_task_args(task: str, args) -> tuple[list[str], str]:
    """(the task's finetune flags, its transfer data): GLUE test.tsv, the biomedical corpus for NER."""
    if task.startswith("ner:"):
        return ["--task", "ner", "--data-dir", str(Path(args.ner_dir) / task[4:])], args.biomed
    from minialbert.finetune.glue import get_task

    return ["--task", task, "--data-dir", args.glue_dir], str(Path(args.glue_dir) / get_task(task).folder)


def plan_task_distillation(args) -> list[Job]:
    """Single-seed jobs in priority order: the teacher's cross-encoders first (they teach every
    distillation row), then each pipeline on every task it applies to; with --seeds N, the picked
    pipelines again with N seeds (their seed-42 run copied in, not recomputed)."""
    student = str(Path(args.student).resolve())
    jobs = []

    def job(label, model, task, flags, seeds=1):
        task_args, transfer = _td_task_args(task, args)
        sst2 = task == "sst2"
        teacher = f"teacher-cross/{task.replace(':', '-')}"
        flags = [f.format(teacher=teacher, transfer=transfer) for f in flags]
        row = label if seeds == 1 else f"{label}-{seeds}seeds"
        out = f"{row}/{task.replace(':', '-')}"
        argv = ["finetune", "--model", model, *task_args, "--lr", "1e-4", "--epochs", "1" if sst2 else "3",
                "--batch-size", "32" if sst2 else "16", "--runs", str(1 if sst2 else seeds), "--out", out, *flags,
                "--save-models", "best" if label == "teacher-cross" else "none"]
        after = [f"teacher-cross/{task}"] if "--teacher" in flags and label != "teacher-cross" else []
        jobs.append(Job(f"{row}/{task}", argv, f"{out}/results.json", after))

    def applies(name, task):
        return TD_PIPELINES[name][1] is None or task in TD_PIPELINES[name][1]

    first, rest = args.pipelines[:args.interleave], args.pipelines[args.interleave:]
    for task in args.tasks:  # each teacher, then the first pipelines on its task: early signal
        job("teacher-cross", "minilm", task, [])
        for name in first:
            if applies(name, task):
                job(f"student-{name}", student, task, TD_PIPELINES[name][0])
    for model, label, names in (("minilm", "teacher", args.teacher_pipelines), (student, "student", rest)):
        for name in names:  # the teacher under the same protocols (cross is its teaching row), then the rest
            for task in args.tasks:
                if applies(name, task):
                    job(f"{label}-{name}", model, task, TD_PIPELINES[name][0])
    for spec in args.final:  # LABEL=TASK,TASK: those rows again with --seeds seeds
        label, tasks = spec.split("=", 1)
        model = "minilm" if label.startswith("teacher-") else student
        name = label.split("-", 1)[1]
        for task in tasks.split(","):
            job(label, model, task, TD_PIPELINES[name][0], args.seeds)
    jobs.append(Job("teacher-mlm", ["fit-head", "--teacher", "minilm", "--max-steps", "400", "--batch-size", "32",
                                    "--out", "teacher-mlm"], "teacher-mlm/fit_head.json"))  # --augment-mlm candidate
    return jobs


def task_distillation(args) -> int:
    """Run (or continue) the task-distillation study; copy each job's small files into the
    repository (docs/results/task-distillation) as it ends. With --final-auto, the pipeline of
    each task is then picked on dev from those runs, for the student and the teacher alike, and
    repeated with --seeds seeds (SST-2: one seed, as the issue's protocol has it)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    code = _run_task_distillation_jobs(plan_task_distillation(args), work, args)
    if args.final_auto:
        rows, finals = _td_rows(), []
        for model in ("student", "teacher"):
            picked: dict = {}
            for task, v in _choose(rows, model).items():
                if task in args.tasks and task != "sst2" and v[3] < args.seeds:
                    picked.setdefault(v[0], []).append(task)
            finals += [f"{model}-{label}={','.join(tasks)}" for label, tasks in picked.items()]
        print("picked on dev, to repeat with seeds:", " ".join(finals) or "nothing", flush=True)
        args = argparse.Namespace(**{**vars(args), "final": [*args.final, *finals]})
        code = _run_task_distillation_jobs(plan_task_distillation(args), work, args) or code
    print(task_distillation_table())
    return code


def _run_task_distillation_jobs(jobs: list[Job], work: Path, args) -> int:
    for job in jobs:  # a seeds job starts from its single-seed job's finished run and transfer set
        target = work / Path(job.done).parent  # e.g. student-td2-3seeds/stsb
        if target.parent.name.endswith("seeds") and not (work / job.done).exists():
            single = work / target.parent.name.rsplit("-", 1)[0] / target.name
            for sub in ("runs", "transfer"):
                if (single / sub).is_dir() and not (target / sub).exists():
                    shutil.copytree(single / sub, target / sub, ignore=shutil.ignore_patterns("model", "tensorboard"))

    for job in jobs:  # a transfer set the teacher labelled for another row of this model and task serves
        target = work / Path(job.done).parent  # again (the runner reuses only an identical set: its hash)
        if (work / job.done).exists() or not {"--augment", "--transfer-data"} & set(job.argv):
            continue
        for built in sorted(work.glob(f"{target.parent.name.split('-')[0]}-*/{target.name}/transfer/*/transfer.json")):
            if not (target / "transfer" / built.parent.name).exists():
                shutil.copytree(built.parent, target / "transfer" / built.parent.name)

    def keep(job):
        folder = Path(job.done).parent
        for f in [work / job.done, *(work / folder).glob("runs/*.json"), *(work / folder).glob("transfer/*/transfer.json")]:
            target = TD_RESULTS / f.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)

    for job in jobs:
        if (work / job.done).exists():
            keep(job)
    return run_jobs(jobs, work, args.jobs, args.threads, on_done=keep)


def task_distillation_table() -> str:
    return results_table(TD_RESULTS, TD_TASKS, "pipeline", lambda name: name.split("-", 1))


def augment_probe(args) -> int:
    """Which masked LM serves word replacement: recall of the original word among each LM's
    proposals on STS-B training sentences (docs/results/task-distillation/augment-probe.json)."""
    from transformers import AutoTokenizer

    from minialbert.data.offline import resolve_model_name
    from minialbert.data.transfer import load_mlm, proposal_recall
    from minialbert.finetune.glue import get_task, load_glue

    split = load_glue(get_task("stsb"), args.glue_dir)["train"]
    sentences = sorted({t for pair in split.texts for t in pair})[:args.sentences]
    words = [s.split() for s in sentences]
    result = {"sentences": len(words), "source": "STS-B train, first distinct sentences", "mlms": {}}
    for spec in args.mlms:
        name, path = spec.split("=", 1)
        path = resolve_model_name(path)
        result["mlms"][name] = {"path": path, **proposal_recall(words, load_mlm(path, name),
                                                                 AutoTokenizer.from_pretrained(path))}
    TD_RESULTS.mkdir(parents=True, exist_ok=True)
    (TD_RESULTS / "augment-probe.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _td_rows() -> dict:
    """{model: {pipeline: {task: (mean, std, seeds, base parameters, pipeline name, selection score)}}}
    from the committed task-distillation results. A seeds folder replaces its single-seed row's
    reported score, but the selection score stays the single-seed row's: the pipeline is chosen on
    dev once, from the exploratory runs, and a later seeded run cannot change the choice."""
    from minialbert.finetune.report import task_score

    rows: dict = {}
    for f in sorted(TD_RESULTS.glob("*/*/results.json"), key=lambda f: f.parent.parent.name.endswith("seeds")):
        label, task = f.parent.parent.name, f.parent.name.replace("ner-", "ner:")
        model, pipeline = label.split("-", 1)
        seeds_row = pipeline.endswith("seeds")
        pipeline = pipeline.rsplit("-", 1)[0] if seeds_row else pipeline
        r = json.loads(f.read_text())
        slot = rows.setdefault(model, {}).setdefault(pipeline, {})
        # results.json's `score` is finetune's own selection score (the first dev set: GLUE dev,
        # NER devel F1; the NER test F1 is only reported); single-seed rows come first
        select = slot[task][5] if task in slot else 100 * r["score"]
        slot[task] = (*task_score(r), r["base_parameters"], r.get("pipeline") or
                      ("bi-encoder" if r.get("pair_encoding") == "bi" else "finetune"), select)
    return rows


def _choose(rows: dict, model: str) -> dict:
    """task -> (pipeline label, mean, std, seeds, parameters, pipeline name, selection score): the
    pipeline with the best exploratory dev score, per task."""
    out: dict = {}
    for pipeline, tasks in rows.get(model, {}).items():
        for task, v in tasks.items():
            if task not in out or v[5] > out[task][6]:
                out[task] = (pipeline, *v)
    return out


def task_distillation_summary(args) -> int:
    """docs/results/task-distillation/summary.json and its figure: per task the pipeline picked on
    dev (from the exploratory runs) for the student and, separately, for the teacher, reported
    with its seeds; retention on the tasks both have."""
    rows = _td_rows()
    if "teacher" not in rows or "student" not in rows:
        print("no teacher or student rows yet", file=sys.stderr)
        return 1

    student, teacher = _choose(rows, "student"), _choose(rows, "teacher")
    tasks = [t for t in TD_TASKS if t in student and t in teacher]
    s_avg = statistics.fmean(student[t][1] for t in tasks)
    t_avg = statistics.fmean(teacher[t][1] for t in tasks)
    cross_tasks = [t for t in tasks if t in rows["student"].get("cross", {}) and t in rows["teacher"].get("cross", {})]
    summary = {
        "tasks": tasks, "all_seven_tasks": len(tasks) == len(TD_TASKS),
        "student_model": "make demo student (runs/distill/final: 3 iterations, H 384, E 128, 0.4 M distilled tokens)",
        "student_parameters": student[tasks[0]][4], "teacher_parameters": teacher[tasks[0]][4],
        "parameter_ratio": round(student[tasks[0]][4] / teacher[tasks[0]][4], 4),
        "pipeline": {t: student[t][5] for t in tasks}, "teacher_pipeline": {t: teacher[t][5] for t in tasks},
        "best_scores": {t: {who: {"mean": round(b[t][1], 2), "std": round(b[t][2], 2), "seeds": b[t][3],
                                  "row": b[t][0], "selected_on_dev": round(b[t][6], 2)}
                            for who, b in (("student", student), ("teacher", teacher))} for t in tasks},
        "student_average": round(s_avg, 2), "teacher_average": round(t_avg, 2), "retention": round(s_avg / t_avg, 4),
        "cross_encoder_only": {
            "tasks": cross_tasks,
            "student_average": round(statistics.fmean(rows["student"]["cross"][t][0] for t in cross_tasks), 2)
            if cross_tasks else None,
            "teacher_average": round(statistics.fmean(rows["teacher"]["cross"][t][0] for t in cross_tasks), 2)
            if cross_tasks else None},
        "models": {f"{m}-{p}": {"pipeline": sorted({v[4] for v in tasks_.values()}),
                                "scores": {t: {"mean": round(v[0], 2), "std": round(v[1], 2), "seeds": v[2]}
                                           for t, v in tasks_.items()}}
                   for m, pipelines in rows.items() for p, tasks_ in sorted(pipelines.items())},
    }
    c = summary["cross_encoder_only"]
    if c["student_average"] is not None:
        c["retention"] = round(c["student_average"] / c["teacher_average"], 4)
    (TD_RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "models"}, indent=2))
    _td_figure(rows, tasks, Path(args.figure))
    return 0


def _td_figure(rows, tasks, path: Path) -> None:
    """Grouped bars: per task, the teacher's and the student's score under each pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(m, p) for m in ("teacher", "student") for p in rows.get(m, {}) if any(t in rows[m][p] for t in tasks)]
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(min(18.0, max(7.0, 0.2 * len(bars) * len(tasks))), 5.6))
    for i, (m, p) in enumerate(bars):
        xs = [k + i * width for k, t in enumerate(tasks) if t in rows[m][p]]
        ys = [rows[m][p][t][0] for t in tasks if t in rows[m][p]]
        errs = [rows[m][p][t][1] for t in tasks if t in rows[m][p]]
        ax.bar(xs, ys, width, yerr=errs, label=f"{m}: {p}", hatch="//" if m == "teacher" else None,
               alpha=0.9 if m == "student" else 0.5)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(tasks))], tasks, fontsize=8)
    ax.set_ylabel("dev score (NER: test F1)")
    ax.set_title("Teacher and student per pipeline (finetune / bi-encoder / task distillation)")
    ax.legend(fontsize=7, ncol=min(len(bars), 6), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


EMBED_RESULTS = REPO / "docs" / "results" / "embeddings"


def embed_curve(args) -> int:
    """Zero-shot STS-B Spearman against distilled tokens: reads each `bench embed` result named in
    --points (NAME=RUN: RUN/final/distillation.json gives the tokens, docs/results/embeddings/
    student-NAME.json the scores), writes docs/results/embeddings/curve.json and the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for spec in args.points:
        name, run = spec.split("=", 1)
        tokens = json.loads((Path(run) / "final" / "distillation.json").read_text())["distilled_tokens"]
        result = json.loads((EMBED_RESULTS / f"student-{name}.json").read_text())
        points.append({"name": name, "distilled_tokens": tokens, "spearman": result["spearman"],
                       "spearman_per_iterations": {k: v["spearman"] for k, v in result.get("depths", {}).items()}})
    points.sort(key=lambda p: p["distilled_tokens"])
    teacher = json.loads((EMBED_RESULTS / "demo-student-vs-teacher.json").read_text())["compare"]["minilm"]["spearman"]
    (EMBED_RESULTS / "curve.json").write_text(json.dumps({"teacher_spearman": teacher, "points": points}, indent=2)
                                              + "\n")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    floor = min(p["distilled_tokens"] for p in points if p["distilled_tokens"]) / 4
    xs = [p["distilled_tokens"] or floor for p in points]
    for k in sorted({k for p in points for k in p["spearman_per_iterations"]}):
        ax.plot(xs, [p["spearman_per_iterations"].get(k) for p in points], "o-", label=f"student, {k} iteration(s)")
    ax.axhline(teacher, color="k", ls="--", label=f"teacher (MiniLM) {teacher:.1f}")
    ax.axhline(0.97 * teacher, color="grey", ls=":", label="0.97 of the teacher")
    ax.set_xscale("log")
    ax.set_xlabel("distilled tokens (non-padding; leftmost point: initialisation only)")
    ax.set_ylabel("STS-B dev Spearman, zero-shot")
    ax.set_title("Embedding student: zero-shot score against distilled tokens")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=120)
    print(json.dumps(points, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or continue) every job")
    r.add_argument("--work", default="runs/retention")
    r.add_argument("--glue-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    r.add_argument("--ner-dir", default=str(REPO.parent / "shared" / "data" / "bioner"))
    r.add_argument("--biomed", default=str(REPO.parent / "shared" / "data" / "corpora" / "biomed" / "sentences.txt"))
    r.add_argument("--tasks", type=lambda s: s.split(","), default=TASKS)
    r.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=BUDGETS)
    r.add_argument("--fit-head-steps", type=int, default=3000)
    r.add_argument("--jobs", type=int, default=1, help="jobs at once (CPU: 1; a GPU: 8 or more)")
    r.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    r.add_argument("--max-train-samples", type=int, default=None, help="smoke tests only")
    c = sub.add_parser("collect", help="copy the small result files into the repository")
    c.add_argument("--work", default="runs/retention")
    c.add_argument("--results", default=str(REPO / "docs" / "results" / "retention"))
    s = sub.add_parser("summarise", help="summary.json and the retention figure from committed results")
    s.add_argument("--results", default=str(REPO / "docs" / "results" / "retention"))
    s.add_argument("--figure", default=str(REPO / "docs" / "figures" / "retention.png"))
    q = sub.add_parser("pairs", help="cross- vs bi-encoder fine-tuning of a student and the teacher (resumable)")
    q.add_argument("--student", required=True, help="the distilled student's folder")
    q.add_argument("--work", default="runs/pair-encoding")
    q.add_argument("--glue-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--jobs", type=int, default=1)
    q.add_argument("--threads", type=int, default=2)
    sub.add_parser("pairs-table", help="the pair-encoding table from the committed results")
    t = sub.add_parser("task-distill", help="task distillation against cross/bi fine-tuning, student and teacher "
                                             "(resumable, job by job)")
    t.add_argument("--student", required=True, help="the distilled student's folder")
    t.add_argument("--work", default="runs/task-distillation")
    t.add_argument("--glue-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    t.add_argument("--ner-dir", default=str(REPO.parent / "shared" / "data" / "bioner"))
    t.add_argument("--biomed", default=str(REPO.parent / "shared" / "data" / "corpora" / "biomed" / "sentences.txt"))
    t.add_argument("--tasks", type=lambda s: s.split(","), default=TD_TASKS)
    t.add_argument("--pipelines", type=lambda s: s.split(","), default=list(TD_PIPELINES),
                   help=f"student pipelines, in this order (of {', '.join(TD_PIPELINES)})")
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
    sub.add_parser("task-distill-table", help="the task-distillation table from the committed results")
    ap = sub.add_parser("augment-probe", help="which masked LM serves --augment: recall of the original word")
    ap.add_argument("mlms", nargs="+", metavar="NAME=PATH")
    ap.add_argument("--glue-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    ap.add_argument("--sentences", type=int, default=500)
    ts = sub.add_parser("task-distill-summary", help="summary.json + figure of the task-distillation study")
    ts.add_argument("--figure", default=str(REPO / "docs" / "figures" / "task-distillation.png"))
    e = sub.add_parser("embed-curve", help="zero-shot STS-B against distilled tokens (figure + curve.json)")
    e.add_argument("points", nargs="+", metavar="NAME=RUN", help="bench embed result name and its distillation run")
    e.add_argument("--figure", default=str(REPO / "docs" / "figures" / "embedding-curve.png"))
    args = p.parse_args()
    for name in ("glue_dir", "ner_dir", "biomed"):
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    if args.cmd in ("pairs-table", "task-distill-table"):
        print(pairs_table() if args.cmd == "pairs-table" else task_distillation_table())
        return 0
    return {"run": run, "collect": collect, "summarise": summarise, "pairs": pairs,
            "embed-curve": embed_curve, "task-distill": task_distillation,
            "task-distill-summary": task_distillation_summary, "augment-probe": augment_probe}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
