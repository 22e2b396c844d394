"""What the retention study is: its tasks, grids, candidates per model, row folders and goals (the
goals and the previous study's figures are data: goals.yaml beside this file)."""

from __future__ import annotations

from pathlib import Path

import yaml

from minialbert.finetune.statistics import REPORTING_SEEDS

from ..common import RESULTS, STUDY_TASKS, task_folder
from ..task_distillation import PIPELINES, choose

RESULTS_DIR = RESULTS / "retention"
TASKS = list(STUDY_TASKS)
GRID = {"teacher": ["2e-5", "5e-5", "1e-4"], "student": ["5e-5", "1e-4", "5e-4"]}
EXPLORATORY_LR = "1e-4"
RELEASED_NAME = "minialbert-minilm"  # the student this study measures (minialbert/released/NAME)
# A pick's row: seed 42 on the grid picks the learning rate, then seeds 43-45 report (finetune
# --seeds-at-best 4 from seed 42); the folder is named by its reporting seeds: MODEL-PIPELINE-3seeds.
PICK_RUNS = 1 + len(REPORTING_SEEDS)
SEEDED_SUFFIX = f"-{len(REPORTING_SEEDS)}seeds"
_DATA = yaml.safe_load((Path(__file__).with_name("goals.yaml")).read_text())
GOALS: dict = _DATA["goals"]
PREVIOUS_STUDY: str = _DATA["previous_study"]  # what the README says while a rerun is in progress


def _non_distilling(task: str) -> list[str]:
    """Every pipeline without a teacher that applies to the task: what the teacher can run (it
    cannot distil from itself); cross first, the simplest."""
    return list(dict.fromkeys(p for p in ("cross", *PIPELINES) if "--teacher" not in PIPELINES[p].flags
                              and PIPELINES[p].applies(task)))


# The candidate pipelines per task, as the task-distillation study defines them
# (docs/studies/task-distillation.md): for the student every pipeline on every task, task distillation included (the
# distillation pipelines are the student's); the teacher runs every pipeline without a teacher that
# applies to the task (cross, and bi on sentence pairs).
CANDIDATES = {
    "student": {"stsb": ["cross", "bi", "td2", "bi-td2", "td12"], "mrpc": ["cross", "bi", "td2", "bi-td2"],
                "rte": ["cross", "bi", "td2", "bi-td2", "td12"], "cola": ["cross", "td2", "td2-aug4"],
                "sst2": ["cross", "td2", "td2-aug4"], "ner:NCBI-disease": ["cross", "td2-transfer", "td12-transfer"],
                "ner:BC5CDR-chem": ["cross", "td2-transfer", "td12-transfer"]},
    "teacher": {t: _non_distilling(t) for t in TASKS},
}
# The teaching models, stages of the study: the teacher's cross-encoder tuned per task (its best
# run's weights teach every task-distillation row) and the teacher completed with a masked-LM head
# (`fit-head`: the released student has none, so it proposes the augmentation's replacement words).
TEACHING = "teaching-cross"
TEACHER_MLM = "teacher-mlm"


def picks(rows: dict, who: str) -> dict:
    """task -> `who`'s picked row; on a tie, the candidate listed first (CANDIDATES: simplest first)."""
    return choose(rows, who, lambda task: CANDIDATES[who].get(task, ()))


def seeded(results_dir: Path, model: str, pipeline: str, task: str) -> Path:
    """The results.json of a pick: the grid with seed 42, then the reporting seeds."""
    return results_dir / f"{model}-{pipeline}{SEEDED_SUFFIX}" / task_folder(task) / "results.json"


def pipelines(args, who: str, task: str) -> list[str]:
    return [p for p in CANDIDATES[who][task] if args.pipelines is None or p in args.pipelines]
