"""The released student's retention study (docs/studies/retention.md): for the student and for the
teacher alike, per task, each candidate pipeline runs once (seed 42, lr 1e-4: the exploratory row);
the pipeline is picked once on dev (a tie goes to the candidate listed first in CANDIDATES); its
learning rate is then picked on dev with seed 42 from a grid of three (the teacher's {2e-5, 5e-5,
1e-4}, the student's {5e-5, 1e-4, 5e-4}), and the picked rate is run with seeds 43-45, which took no
part in either pick and alone are reported (SST-2 alike).
The teacher's cross-encoder that teaches the distillation rows is tuned on the same grid, and the
teacher's cross-encoder row takes its pick from there. Results in
docs/results/retention/, one folder per row, each results.json with its run records (runs/*.json):
MODEL-PIPELINE (exploratory), MODEL-PIPELINE-3seeds (the pick: the grid with seed 42, then the 3
reporting seeds), teaching-cross
(the teaching model: the teacher's cross-encoder on the grid), teacher-mlm (fit_head.json of the
teacher that proposes augmentation words); jobs.json holds every attempt of every job with its wall and
CPU seconds (jobs.py measures them).
The work folder (runs/retention) holds the weights and transfer sets, never committed.

The summary reports first the share of the teacher's gain over the majority class that the student
keeps, (student - majority) / (teacher - majority) averaged over tasks, with the majority baseline of
each task's own evaluation split computed from the data (results.json's `majority_baseline`); a task
on which the teacher does not beat its baseline by more than its seed spread is named and left out
of both averages. The plain ratio of the averages is reported beside it, and the gain retention's
spread over seeds (summary.py says how). Runs not made yet are named as pending.

The pieces: config.py (tasks, grids, candidates; goals.yaml: the goals and the previous study's
figures), plan.py (the jobs and the files they leave), summary.py (the figures, every statistic from
minialbert.finetune.statistics), prose.py (the README's text from summary.json)."""

from __future__ import annotations

import argparse

from ..common import printing
from .config import (CANDIDATES, EXPLORATORY_LR, GOALS, GRID, PICK_RUNS, PREVIOUS_STUDY, RELEASED_NAME,  # noqa: F401
                     RESULTS_DIR, TASKS, TEACHER_MLM, TEACHING)
from .plan import (_keep, _reuse_runs, count_seconds, plan, plan_finals, prune_unrecorded,  # noqa: F401
                   run, study_complete, study_dtype, teaching_jobs, unrecorded_rows)
from .prose import embedding_goals, embeddings_table, goals, headline  # noqa: F401
from .summary import summarise_rows, summary, table, task_distillation_table  # noqa: F401


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
    s = sub.add_parser("summary", help="summary.json from the committed results (once every task is picked; runs "
                                       "not made yet are named as pending)")
    _summary_arguments(s)
    s.add_argument("--out", default=None, help="default: summary.json in --results")
    s.set_defaults(func=summary)
    sub.add_parser("table", help="the per-task table from the committed results").set_defaults(func=printing(table))


