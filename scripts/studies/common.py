"""What the studies share: the repository's folders, the data sets' default places, the result
rows read from committed `results.json` files, and the timing of students side by side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from minialbert.records import copy_file, read_json

from .jobs import Job, run_jobs

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"
FIGURES = REPO / "docs" / "figures"
SHARED = REPO.parent / "shared" / "data"
GLUE_DIR, NER_DIR = SHARED / "glue", SHARED / "bioner"
BIOMED = SHARED / "corpora" / "biomed" / "sentences.txt"
# A result folder of a study row is named MODEL-PIPELINE, or MODEL-PIPELINE-NseedS for the same
# pipeline repeated with N seeds (e.g. student-td2-aug4, teacher-cross-3seeds); in the retention
# study N counts the reporting seeds (43-45), beside the seed-42 runs that made the pick.
# The seven tasks every fine-tuning study of the released student runs (GLUE dev, NER test F1).
STUDY_TASKS = ("stsb", "mrpc", "rte", "cola", "sst2", "ner:NCBI-disease", "ner:BC5CDR-chem")
ROW_FOLDER = re.compile(r"^(?P<model>student|teacher)-(?P<pipeline>.+?)(?:-(?P<seeds>\d+)seeds)?$")


@dataclass(frozen=True)
class Score:
    """A task's reported score (percent) from one results.json, as `minialbert report` prints it."""
    mean: float
    std: float
    seeds: int
    parameters: int  # the model's base parameters
    pipeline: str  # how the model was used (finetune, bi-encoder, task-distillation[...])
    selection: float  # finetune's own selection score (first dev set: GLUE dev, NER devel), percent


def read_score(path: Path) -> Score:
    from minialbert.finetune.report import task_score

    r = read_json(path)
    pipeline = r.get("pipeline") or ("bi-encoder" if r.get("pair_encoding") == "bi" else "finetune")
    return Score(*task_score(r), r["base_parameters"], pipeline, 100 * r["score"])


def task_label(folder_name: str) -> str:
    """A task folder's name as a table column: ner-NCBI-disease -> ner:NCBI-disease."""
    return folder_name.replace("ner-", "ner:", 1) if folder_name.startswith("ner-") else folder_name


def task_folder(task: str) -> str:
    return task.replace(":", "-")


def glue_or_ner_args(task: str, glue_dir, ner_dir) -> list[str]:
    """The finetune flags that name a task's data: GLUE by name, NER by its folder."""
    if task.startswith("ner:"):
        return ["--task", "ner", "--data-dir", str(Path(ner_dir) / task[4:])]
    return ["--task", task, "--data-dir", str(glue_dir)]


def glue_folder(task: str) -> str:
    """A GLUE task's folder in the official layout (e.g. STS-B for stsb)."""
    from minialbert.data.glue import get_task

    return get_task(task).folder


def protocol_argv(args, model: str, task: str, out: str, flags=(), teacher: str = "", lrs=("1e-4",), seeds: int = 1,
                  seed_flag: str = "--runs", save: str = "none", one_seed_on_sst2: bool = True) -> list[str]:
    """The one study protocol of a fine-tuning row, which every study's numbers come from: 3 epochs at
    batch 16 (SST-2: 1 epoch at batch 32, one seed: the large task), `seeds` seeds by `seed_flag`
    (--runs: every learning rate; --seeds-at-best: the best one), the pipeline's `flags` with
    {teacher} (the teaching model's folder) and {transfer} (the task's own text, or for NER the
    biomedical corpus) filled in, cross-encoding unless the pipeline says otherwise, in the study's
    dtype where it has one (`args.dtype`). `one_seed_on_sst2=False`: SST-2 runs its `seeds` too (a
    pick that reports seeds other than the one that picked)."""
    sst2 = task == "sst2"
    transfer = args.biomed if task.startswith("ner:") else str(Path(args.glue_dir) / glue_folder(task))
    flags = [f.format(teacher=teacher, transfer=transfer) for f in flags]
    argv = ["finetune", "--model", model, *glue_or_ner_args(task, args.glue_dir, args.ner_dir), "--lr", *lrs,
            seed_flag, str(1 if sst2 and one_seed_on_sst2 else seeds), "--epochs", "1" if sst2 else "3",
            "--batch-size", "32" if sst2 else "16", "--out", out, *flags, "--save-models", save]
    if getattr(args, "dtype", None):  # a study pinned to one dtype (--dtype auto differs between CPUs)
        argv += ["--dtype", args.dtype]
    return argv if "--pair-encoding" in flags else [*argv, "--pair-encoding", "cross"]


def format_score(score: Score | None) -> str:
    if score is None:
        return ""
    return f"{score.mean:.2f} ± {score.std:.2f} ({score.seeds})" if score.seeds > 1 else f"{score.mean:.2f} (1)"


def results_table(root: Path, tasks: list[str], kind: str, split_row) -> str:
    """Markdown: one row per result folder `root/<model>-<kind>` (`split_row` gives the two
    names), one column per task: mean ± sample std (seeds), from the committed files."""
    lines = [f"| model | {kind} | " + " | ".join(tasks) + " |", "|" + "---|" * (2 + len(tasks))]
    for folder in sorted(p for p in root.glob("*-*") if p.is_dir()):
        cells = [format_score(read_score(f)) if (f := folder / task_folder(t) / "results.json").exists() else ""
                 for t in tasks]
        if any(cells):  # e.g. teacher-mlm holds only fit_head.json
            lines.append("| " + " | ".join(split_row(folder.name)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def copy_results(work: Path, dest: Path, files) -> None:
    """Copy result files (paths inside `work`) to the same relative places under `dest`, each
    atomically and verified (records.copy_file)."""
    for f in files:
        copy_file(f, dest / Path(f).relative_to(work))


def printing(make_text):
    """A command that prints `make_text()` (a table from the committed files) and succeeds."""
    def command(args) -> int:
        print(make_text())
        return 0
    return command


def save_figure(fig, ax, path, title: str, xlabel: str | None, ylabel: str, legend: dict | None = None,
                grid_axis: str = "both") -> None:
    """The studies' figures end alike: labels, legend, grid, tight layout, written at 120 dpi."""
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(**(legend or {"fontsize": 8}))
    ax.grid(axis=grid_axis, alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def time_students(work: Path, points: dict, teacher: str, glue_dir: str, threads: int,
                  max_pairs: int | None = None) -> dict | None:
    """Sentences/s of each point and of `teacher` in ONE `bench embed --compare` run (nothing else
    may run meanwhile: a timing beside another job means nothing). `points`: name -> (its trained
    folder, the `distill` argv of its step-0 student, `--out` in it). Speed does not depend on the
    weights' values: a point whose trained folder is not on this machine (its run was made
    elsewhere) is timed as its step-0 student of the same shape, and the result names those.
    None when a job failed."""
    folders, built = {}, []
    for name, (trained, step0_argv) in points.items():
        if (Path(trained) / "config.json").exists():
            folders[name] = Path(trained)
            continue
        start = work / "speed" / name
        if not (start / "final" / "config.json").exists():
            argv = list(step0_argv)
            argv[argv.index("--out") + 1] = str(start)
            if run_jobs([Job(f"speed-{name}", argv, f"{start}/final/config.json")], work, 1, threads):
                return None
        folders[name] = start / "final"
        built.append(name)
    names = list(folders)
    target = work / "speed.json"
    argv = ["bench", "embed", "--model", str(folders[names[0]]), "--data-dir", glue_dir, "--compare",
            *[str(folders[n]) for n in names[1:]], teacher, "--out", str(target)]
    if max_pairs is not None:
        argv += ["--max-pairs", str(max_pairs)]
    target.unlink(missing_ok=True)
    if run_jobs([Job("speed", argv, str(target))], work, 1, threads):
        return None
    result = read_json(target)
    rows = {names[0]: result["sentences_per_s"], **{n: result["compare"][str(folders[n])]["sentences_per_s"]
                                                    for n in names[1:]}}
    return {"threads": result["threads"], "teacher": result["compare"][teacher]["sentences_per_s"], "points": rows,
            "timed_at_step_0": built}
