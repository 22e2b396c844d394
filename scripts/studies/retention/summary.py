"""The retention study's figures from its committed rows: per task the picks of both models, the
majority baseline, the scores of the seeds that took no part in the pick (seed 42 picks the
pipeline and the rate; seeds 43-45 report), the share of the teacher's gain the student keeps, and
the averages with their spread over seeds. Every statistic is minialbert.finetune.statistics's;
this module only gathers the rows and formats. Runs not yet made are named as pending, never
filled in."""

from __future__ import annotations

import json
from pathlib import Path

from minialbert.finetune import statistics as st
from minialbert.records import read_json, write_json

from ..task_distillation import PIPELINES, best_row, read_rows
from .config import CANDIDATES, REPORTING_SEEDS, RESULTS_DIR, SEEDED_SUFFIX, TASKS, picks, seeded
from ..common import task_folder

PROTOCOL = ("the released student against its teacher, each task's pipeline picked once on dev (seed 42, lr 1e-4), "
            "its learning rate picked on dev with seed 42 from a grid of three; reported: the mean and sample "
            "standard deviation over seeds 43-45, which took no part in either pick, teacher alike "
            "(docs/studies/retention.md)")
GAIN_SPREAD = ("gain retention per reporting seed (each task's student and teacher at that seed: "
               "(student - majority) / (teacher - majority), averaged over the included tasks), then the mean and "
               "sample standard deviation of those per-seed figures")


def reporting(results_dir: Path, row) -> st.SeedScores | None:
    """The reporting seeds' scores of a pick (None while its seeded row is not there)."""
    path = seeded(results_dir, row.model, row.pipeline, row.task)
    if not path.is_file():
        return None
    records = {p.stem: read_json(p) for p in sorted((path.parent / "runs").glob("*.json"))}
    return st.reporting_scores(read_json(path), records)


def baseline_of(results_dir: Path, task: str) -> float:
    """The task's majority baseline in percent, as finetune computed it from the data (every row of a
    task shares its data, so any of them gives it)."""
    for f in sorted(results_dir.glob(f"*/{task_folder(task)}/results.json")):
        result = read_json(f)
        if result.get("majority_baseline"):
            return st.majority_score(result)
    raise SystemExit(f"no results.json of {task} records its majority baseline")


def _pending(row, scores: st.SeedScores | None) -> list[str]:
    folder = f"{row.model}-{row.pipeline}{SEEDED_SUFFIX}/{task_folder(row.task)}"
    if scores is None:
        return [f"{folder}: the grid (seed 42), then seeds {', '.join(map(str, REPORTING_SEEDS))}"]
    return [f"{folder}: seed {', '.join(map(str, scores.pending))}"] if scores.pending else []


def _round(x, digits=2):
    return None if x is None else round(x, digits)


def _score(row, scores: st.SeedScores | None, results_dir: Path) -> dict:
    entry = {"mean": None, "std": None, "seeds": [], "pending_seeds": list(REPORTING_SEEDS)}
    if scores is not None:
        entry = {"mean": _round(scores.mean), "std": _round(scores.std), "seeds": list(scores.by_seed),
                 "pending_seeds": scores.pending}
    path = seeded(results_dir, row.model, row.pipeline, row.task)
    return {**entry, "pipeline": row.pipeline, "selected_on_dev": round(row.selected_on, 2),
            "learning_rate": read_json(path)["best"]["learning_rate"] if path.is_file() else None}


def summarise_rows(results_dir: Path, student_name: str, student_path: str, zero_shot: dict | None = None,
                   study_tasks: list[str] = TASKS) -> dict:
    """The study's summary from its committed rows. A task enters the averages when both models have
    at least two reporting seeds (a spread) and the teacher beats the majority baseline by more than
    its spread; the others are named with why (teacher at majority, or runs pending). `complete`
    says whether every reporting seed of every pick is in; `pending` names the runs still to make."""
    rows = read_rows(results_dir)
    student, teacher = picks(rows, "student"), picks(rows, "teacher")
    absent = [f"{who} {t}" for t in study_tasks for who, chosen in (("student", student), ("teacher", teacher))
              if t not in chosen]
    if absent:
        raise SystemExit(f"{results_dir}: no results.json of {', '.join(absent)}; run `python -m scripts.studies "
                         "retention run --student ...` to finish the study (it resumes).")
    tasks = list(study_tasks)
    per_task, excluded, pending, scores = {}, {}, [], {}
    for t in tasks:
        s, te = reporting(results_dir, student[t]), reporting(results_dir, teacher[t])
        scores[t] = (s, te)
        pending += _pending(student[t], s) + _pending(teacher[t], te)
        base = baseline_of(results_dir, t)
        entry = {"student": _score(student[t], s, results_dir), "teacher": _score(teacher[t], te, results_dir),
                 "majority": round(base, 2), "majority_split": st.reported_split(t)}
        measured = s is not None and te is not None and s.std is not None and te.std is not None
        if te is not None and te.mean is not None:
            entry["teacher_gain"] = round(st.gain_over(te.mean, base), 2)
        gain = st.gain_kept(s.mean, te.mean, te.std, base) if measured else None
        if not measured:
            excluded[t] = "pending: fewer than two reporting seeds of " + " and ".join(
                who for who, x in (("the student", s), ("the teacher", te)) if x is None or x.std is None)
        elif gain is None:
            excluded[t] = (f"the teacher ({te.mean:.2f} ± {te.std:.2f}) does not beat the majority "
                           f"baseline ({base:.2f}) by more than its seed spread")
        else:
            entry["gain_kept"] = round(gain, 4)
            entry["ratio"] = round(st.retention([s.mean], [te.mean]), 4)
        entry["student_beats_majority_by_more_than_its_spread"] = (
            st.learned(s.mean, s.std, base) if s is not None and s.mean is not None else None)
        per_task[t] = entry
    included = [t for t in tasks if t not in excluded]
    s_avg = st.mean(scores[t][0].mean for t in included)
    t_avg = st.mean(scores[t][1].mean for t in included)
    gain, gain_std, per_seed = st.gain_retention_over_seeds({t: scores[t][0] for t in included},
                                                           {t: scores[t][1] for t in included},
                                                           {t: baseline_of(results_dir, t) for t in included})
    first = student[tasks[0]].score.parameters if tasks else None
    teacher_parameters = teacher[tasks[0]].score.parameters if tasks else None
    summary = {
        "study": PROTOCOL, "student": student_name, "student_path": student_path,
        "complete": not pending, "pending": pending,
        "gain_retention": _round(st.mean(per_task[t]["gain_kept"] for t in included), 4),
        "gain_retention_over_seeds": {"mean": _round(gain, 4), "std": _round(gain_std, 4),
                                      "per_seed": {str(k): round(v, 4) for k, v in per_seed.items()},
                                      "how": GAIN_SPREAD},
        "retention": _round(st.retention([s_avg], [t_avg]) if included else None, 4),
        "student_average": _round(s_avg), "teacher_average": _round(t_avg),
        "tasks": tasks, "included_tasks": included, "excluded_tasks": excluded,
        "tasks_learned": [t for t in tasks if per_task[t]["student_beats_majority_by_more_than_its_spread"]],
        "tasks_spread_not_measured": [t for t in tasks if per_task[t]["student_beats_majority_by_more_than_its_spread"]
                                      is None],
        "student_parameters": first, "teacher_parameters": teacher_parameters,
        "zero_shot_spearman": (zero_shot or {}).get("student"),
        "teacher_zero_shot_spearman": (zero_shot or {}).get("teacher"),
        "per_task": per_task,
        "candidates": {who: {t: sorted(r.pipeline for r in rows.values() if (r.model, r.task) == (who, t))
                             for t in tasks} for who in ("student", "teacher")},
    }
    if tasks:
        summary["parameter_ratio"] = round(first / teacher_parameters, 4)
    summary["task_distillation_added"] = task_distillation_added(rows, {t: scores[t][0] for t in tasks}, tasks)
    timings = results_dir / "jobs.json"
    if timings.is_file():  # every job's CPU seconds, over all its attempts and sessions
        summary["cpu_hours"] = round(sum(j["cpu"] for j in read_json(timings).values()) / 3600, 2)
    return summary


def task_distillation_added(rows: dict, reported: dict, tasks: list[str]) -> dict:
    """Per task, the student's best task-distillation row against its best row without a teacher,
    both exploratory (seed 42, lr 1e-4, dev), with the spread of the pick over its reporting seeds
    beside it as the yardstick of noise (fewer than two: not measured)."""
    added = {}
    for t in tasks:
        mine = [r for r in rows.values() if (r.model, r.task) == ("student", t)]
        td = [r for r in mine if "--teacher" in PIPELINES[r.pipeline].flags]
        plain = [r for r in mine if "--teacher" not in PIPELINES[r.pipeline].flags]
        if td and plain:
            a, b = (best_row(some, CANDIDATES["student"].get(t, ())) for some in (td, plain))
            added[t] = {"task_distillation": a.pipeline, "dev": round(a.selected_on, 2), "without": b.pipeline,
                        "without_dev": round(b.selected_on, 2), "difference": round(a.selected_on - b.selected_on, 2) + 0.0}
            spread = reported.get(t).std if reported.get(t) is not None else None
            if spread is not None:
                added[t]["seed_spread_of_the_pick"] = round(spread, 2)
    return added


def zero_shot(embed: Path) -> dict | None:
    if not embed.is_file():
        return None
    e = read_json(embed)
    return {"student": e["spearman"], "teacher": e.get("compare", {}).get("minilm", {}).get("spearman")}


def write_summary(results_dir: Path, args, tasks=TASKS, out: Path | None = None) -> dict:
    result = summarise_rows(results_dir, args.name, args.student_path, zero_shot(Path(args.embed)), tasks)
    write_json(out or results_dir / "summary.json", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_task", "models")}, indent=2))
    return result


def summary(args) -> int:
    results_dir = Path(args.results)
    write_summary(results_dir, args, out=Path(args.out) if args.out else None)
    return 0


def cell(score: dict) -> str:
    """mean ± sample std (reporting seeds), the pending seeds named; fewer than two: no spread."""
    seeds, pending = score["seeds"], score["pending_seeds"]
    wait = f"; seed {', '.join(map(str, pending))} pending" if pending else ""
    if not seeds:
        return "pending"
    if len(seeds) == 1:
        return f"{score['mean']:.2f} (seed {seeds[0]} alone: spread not measured{wait})"
    return f"{score['mean']:.2f} ± {score['std']:.2f} (seeds {', '.join(map(str, seeds))}{wait})"


def table(results_dir: Path | None = None) -> str:
    """Per task: the picks, the majority baseline, the scores over the reporting seeds and the gain
    kept (markdown), from summary.json's figures recomputed from the rows; a task whose picks are
    not in yet shows what is there and says what is pending."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    student, teacher = picks(rows, "student"), picks(rows, "teacher")
    tasks = [t for t in TASKS if t in student and t in teacher]
    if not tasks:
        return "No task has rows of both models yet."
    s = summarise_rows(results_dir, "student", "", study_tasks=tasks)
    lines = ["| task | majority | student's pipeline (any, task distillation included) | student | teacher's "
             "pipeline (no distillation: cross, bi) | teacher | gain kept |", "|---|---|---|---|---|---|---|"]
    for t in tasks:
        e = s["per_task"][t]
        kept = (f"{e['gain_kept']:.2f}" if "gain_kept" in e else
                "teacher at majority" if not s["excluded_tasks"][t].startswith("pending") else "pending")
        mark = " (within its spread of majority)" if e["student_beats_majority_by_more_than_its_spread"] is False else ""
        lines.append(f"| {t} | {e['majority']:.2f} | `{e['student']['pipeline']}` | {cell(e['student'])}{mark} | "
                     f"`{e['teacher']['pipeline']}` | {cell(e['teacher'])} | {kept} |")
    lines.append("")
    lines.append("Seed 42 picks each pipeline and learning rate on dev; the scores are the mean ± sample standard "
                 "deviation over seeds 43-45, which took no part in the pick. The distillation pipelines are the "
                 "student's: the teacher runs every pipeline without a teacher that applies to the task.")
    return "\n".join(lines)


def task_distillation_table(results_dir: Path | None = None) -> str:
    """What task distillation adds for the student, per task, from the exploratory rows in (markdown)."""
    results_dir = results_dir or RESULTS_DIR
    rows = read_rows(results_dir)
    chosen = picks(rows, "student")
    tasks = [t for t in TASKS if t in chosen]
    added = task_distillation_added(rows, {t: reporting(results_dir, chosen[t]) for t in tasks}, tasks)
    lines = ["| task | best with task distillation | dev | best without | dev | difference | seed spread of the pick |",
             "|---|---|---|---|---|---|---|"]
    for t, a in added.items():
        spread = f"{a['seed_spread_of_the_pick']:.2f}" if "seed_spread_of_the_pick" in a else "not measured"
        lines.append(f"| {t} | `{a['task_distillation']}` | {a['dev']:.2f} | `{a['without']}` | {a['without_dev']:.2f} "
                     f"| {a['difference']:+.2f} | {spread} |")
    return "\n".join(lines) if added else "No task has both kinds of rows yet."
