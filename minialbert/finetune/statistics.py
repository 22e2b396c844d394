"""The statistics every report and study states about fine-tuned scores, each defined once here:
the majority baseline, the share of the teacher's gain a student keeps, retention, the spread over
seeds, whether a model learned a task, and the scores of the seeds that took no part in a pick.
`minialbert report` (report.py) and the studies (scripts/studies) call these and compute no score
of their own (tests/test_studies.py checks the studies)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..errors import MiniAlbertError

# The study protocol of a pick (docs/studies/retention.md): seed 42 picks the pipeline and the
# learning rate on dev; the seeds after it, which took no part in the pick, report.
PICK_SEED = 42
REPORTING_SEEDS = (43, 44, 45)


def task_column(result: dict) -> str:
    """A results.json's task as a table column: a GLUE task's name, or ner:DATASET."""
    return result["task"] if result["task"] != "ner" else f"ner:{result.get('data_name', 'ner')}"


def majority_score(result: dict) -> float:
    """The majority baseline of the split the task's reported score comes from (NER: test), in
    percent, as `finetune` computed it from the data (results.json's `majority_baseline`)."""
    baseline = result.get("majority_baseline")
    if not baseline:
        raise MiniAlbertError(f"A {task_column(result)} results.json of {result['model']!r} has no majority_baseline "
                              "(written by an earlier version); fine-tune again to record it.")
    return 100 * baseline["test" if result["task"] == "ner" else next(iter(baseline))]


def reported_split(task: str) -> str:
    """The split a task's reported score comes from: NER test F1 (selected on devel), GLUE dev."""
    return "test" if task == "ner" or task.startswith("ner:") else "dev"


def run_score(record: dict) -> float:
    """One run's reported score in percent (a run record of `finetune`): NER test F1, else the
    selection score (GLUE dev)."""
    if record["task"].lower() == "ner":
        return 100 * record["metrics"]["test"]["f1"]
    return 100 * record["score"]


def spread(values) -> float | None:
    """The sample standard deviation over seeds; None for fewer than two (not measured, never 0)."""
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else None


def mean(values) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def gain_kept(student: float, teacher: float, teacher_std: float | None, majority: float) -> float | None:
    """The share of the teacher's gain over the majority baseline that the student keeps,
    (student - majority) / (teacher - majority); None where the teacher does not beat the baseline by
    more than its seed spread (the task says nothing about distillation then)."""
    if teacher - majority <= max(teacher_std or 0.0, 0.0):
        return None
    return (student - majority) / (teacher - majority)


def retention(student_scores, teacher_scores) -> float | None:
    """The plain ratio of the averages over the same tasks."""
    s, t = list(student_scores), list(teacher_scores)
    return sum(s) / sum(t) if s and t else None


def learned(score: float, std: float | None, majority: float) -> bool | None:
    """Whether a model learned a task: above its majority baseline by more than its seed spread;
    None where the spread was not measured (one seed)."""
    return None if std is None else score - majority > std


@dataclass(frozen=True)
class SeedScores:
    """The scores of one model on one task, per seed that took no part in the pick."""
    by_seed: dict  # seed -> score (percent)
    wanted: tuple = REPORTING_SEEDS

    @property
    def mean(self) -> float | None:
        return mean(self.by_seed.values())

    @property
    def std(self) -> float | None:
        return spread(self.by_seed.values())

    @property
    def pending(self) -> list[int]:
        """The reporting seeds not run yet."""
        return [s for s in self.wanted if s not in self.by_seed]


def reporting_scores(result: dict, records: dict, wanted=REPORTING_SEEDS) -> SeedScores:
    """Per reporting seed, the score of the picked configuration (results.json's `best`), read from
    its run records (`records`: run id -> record); the pick's own seed never counts."""
    run_ids = result["best"].get("run_ids", [])
    by_seed = {}
    for run_id in run_ids:
        record = records.get(run_id)
        if record is None:
            raise MiniAlbertError(f"The run record {run_id}.json that results.json reports is missing beside it; "
                                  "copy it in (run records are committed with their rows) or rerun the row.")
        if record["seed"] in wanted:
            by_seed[record["seed"]] = run_score(record)
    return SeedScores(dict(sorted(by_seed.items())), tuple(wanted))


def gain_retention_over_seeds(student: dict, teacher: dict, majority: dict) -> tuple[float | None, float | None,
                                                                                   dict]:
    """Gain retention with its spread over seeds. For each reporting seed, the mean over tasks of
    (student at that seed - majority) / (teacher at that seed - majority); then the mean and the
    sample standard deviation of those per-seed figures. `student`, `teacher`: task -> SeedScores
    (the tasks to average over); `majority`: task -> baseline. Only the seeds every model and task
    have are used (returned per seed)."""
    tasks = list(student)
    seeds = [s for s in REPORTING_SEEDS
             if all(s in student[t].by_seed and s in teacher[t].by_seed for t in tasks)] if tasks else []
    per_seed = {}
    for seed in seeds:
        gains = [gain_kept(student[t].by_seed[seed], teacher[t].by_seed[seed], None, majority[t]) for t in tasks]
        if all(g is not None for g in gains):
            per_seed[seed] = statistics.fmean(gains)
    return mean(per_seed.values()), spread(per_seed.values()), per_seed


def seed_range(values) -> float:
    """The spread of a repeated point as the frontier measures it: the largest minus the smallest
    score over its seeds (with two seeds, their difference)."""
    values = list(values)
    return max(values) - min(values)


def within_noise(difference: float, spread: float | None, times: float = 2.0) -> bool:
    """The noise rule: a difference within `times` the seed spread is no difference (an unmeasured
    spread counts as 0)."""
    return abs(difference) <= times * (spread or 0.0)


def ahead(difference: float, spread: float | None, first: str, second: str, tie: str = "no difference") -> str:
    """Which side a difference (first minus second) favours under the noise rule: `tie` within it."""
    return tie if within_noise(difference, spread) else first if difference > 0 else second


def gain_over(score: float, majority: float) -> float:
    """A model's gain over the majority baseline (the denominator of `gain_kept` for the teacher)."""
    return score - majority
