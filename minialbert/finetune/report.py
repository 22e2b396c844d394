"""What fine-tuning reports: the summary of one `finetune` output folder (results.json: the mean
over seeds per configuration and the best one by dev score), and `minialbert report`, a table shaped
like the paper's Tables 1 and 2 from many of them."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from dataclasses import dataclass, field

from ..errors import MiniAlbertError
from ..records import RESULTS_FIELDS, read_json
from .options import FinetuneOptions, config_key
from .statistics import gain_kept, majority_score, mean, retention
from .statistics import task_column as _task_column


def _task_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass
class ReportOptions:
    """`minialbert report`."""
    result_dirs: list[str] = field(metadata={"positional": True,
                                             "help": "folders (searched recursively) or results.json files"})
    format: str = field(default="md", metadata={"choices": ["md", "csv", "json"], "help": (
        "md: a Markdown table for documents; csv or json for scripts")})
    paper: bool = field(default=False, metadata={"help": "append the paper's reference rows (averages)"})
    tasks: list[str] | None = field(default=None, metadata={"type": _task_list, "help": (
        "comma-separated columns to show, in this order, e.g. sst2,mrpc,ner:NCBI-disease (default: every task "
        "found)")})
    std: bool = field(default=False, metadata={"help": "show 'mean ± sample std (seeds)' for tasks run with several "
                                                       "seeds"})
    retention: str | None = field(default=None, metadata={"metavar": "TEACHER", "help": (
        "instead of scores: per model and task the share of the teacher's gain over the majority class it keeps, "
        "(model - majority) / (teacher - majority), their mean (gain retention) and the plain ratio of the averages "
        "beside it; TEACHER is the teacher's model name as results.json records it (e.g. minilm). A task where "
        "the teacher does not beat its majority baseline by more than its seed spread is named and left out")})

RESULTS_HINT = ("Run the `minialbert finetune` command that wrote it again (finished runs are reused from "
                "OUT/runs), or leave this folder out.")

GLUE_ORDER = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# docs/method.md, headline results (averages only are restated there).
PAPER_ROWS = [
    ("BERT-base / BioBERT (teacher) [paper]", "-", "110M", "", 83.81, 89.41),
    ("DistilBERT / DistilBioBERT [paper]", "-", "65M", "", 80.79, 88.62),
    ("TinyBERT / TinyBioBERT [paper]", "-", "15M", "", 75.58, 85.30),
    ("MiniALBERT-768, no adapters [paper]", "no", "31M", "", 78.63, 88.02),
    ("MiniALBERT-312 + adapters [paper]", "no", "18M", "", 79.78, 88.28),
    ("MiniALBERT-128 + adapters [paper]", "no", "12M", "", 79.92, 87.98),
    ("MiniALBERT-128, adapter-tuned [paper]", "yes", "12M", "0.9M", 78.40, 88.07),
    ("MiniALBERT-768* adapter-tuned [paper]", "yes", "31M", "0.9M", 68.25, 86.40),
]


def summarise(opts: FinetuneOptions, results: list[dict], chosen: tuple | None = None) -> dict:
    """Mean over seeds per configuration; the best configuration by dev score (or `chosen`)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        hp = r["hyperparameters"]
        groups.setdefault((hp["learning_rate"], hp["batch_size"], hp["epochs"], hp["max_steps"]), []).append(r)
    configs = []
    for (lr, bs, ep, steps), runs in groups.items():
        scores = [r["score"] for r in runs]
        configs.append({"learning_rate": lr, "batch_size": bs, "epochs": ep, "max_steps": steps,
                        "runs": len(runs), "mean_score": statistics.fmean(scores),
                        "std_score": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                        "metrics_mean": _mean_metrics([r["metrics"] for r in runs]),
                        "metrics_std": _mean_metrics([r["metrics"] for r in runs], statistics.stdev),
                        "run_ids": [r["run_id"] for r in runs],
                        "best_run": max(runs, key=lambda r: r["score"])["run_id"],
                        "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in runs)})
    best = max(configs, key=lambda c: (chosen is None or config_key(c) == chosen, c["mean_score"]))
    first = results[0]
    return {"task": opts.task.lower(), "model": opts.model, "adapter_tuning": opts.adapter_tuning,
            "pair_encoding": opts.pair_encoding, "pipeline": pipeline_name(opts), "data_name": Path(opts.data_dir).name if opts.data_dir else None,
            "grid": opts.grid, "score": best["mean_score"], "best": best, "configs": configs,
            "trainable_parameters": first["trainable_parameters"], "base_parameters": first["base_parameters"],
            "total_parameters": first["total_parameters"]}


def pipeline_name(opts: FinetuneOptions) -> str:
    """How the run used its student: 'finetune', 'bi-encoder' or 'task-distillation' (with its stages
    and transfer set, e.g. 'task-distillation[1+2,augment 4]')."""
    if not opts.teacher:
        return "bi-encoder" if opts.pair_encoding == "bi" else "finetune"
    parts = ["1+2" if opts.intermediate_epochs else "2"]
    parts += [f"augment {opts.augment}"] if opts.augment else []
    parts += ["transfer data"] if opts.transfer_data else []
    return f"task-distillation[{','.join(parts)}]" + (" bi-encoder" if opts.pair_encoding == "bi" else "")


def _mean_metrics(items: list[dict], reduce=statistics.fmean) -> dict:
    """Per split and metric, `reduce` over runs (the sample standard deviation is 0 for one run)."""
    if reduce is statistics.stdev and len(items) < 2:
        return {split: {k: 0.0 for k in items[0][split]} for split in items[0]}
    return {split: {k: reduce([m[split][k] for m in items]) for k in items[0][split]} for split in items[0]}


def collect(result_dirs) -> list[dict]:
    found = []
    for d in result_dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("results.json"))
        if not files:
            raise MiniAlbertError(f"{d} holds no results.json; give folders written by `minialbert finetune`.")
        found += [read_json(f, RESULTS_FIELDS, RESULTS_HINT) for f in files]
    return found


def task_score(result: dict) -> tuple[float, float, int]:
    """(mean, sample standard deviation over seeds, seeds) in percent, as the paper prints. NER:
    test-set F1 of the best configuration (selected on devel)."""
    best = result["best"]
    if result["task"] == "ner":
        std = best.get("metrics_std", {}).get("test", {}).get("f1", 0.0)
        return 100 * best["metrics_mean"]["test"]["f1"], 100 * std, best.get("runs", 1)
    return 100 * result["score"], 100 * best.get("std_score", 0.0), best.get("runs", 1)


def _embedding_factorised(model: str) -> str:
    """The paper's EF column, read from a local checkpoint's config.json ("" when unknown)."""
    try:
        cfg = json.loads((Path(model) / "config.json").read_text())
        return "yes" if cfg["embedding_size"] < cfg["hidden_size"] else "no"
    except (OSError, KeyError, TypeError, ValueError):
        return ""


def build_table(results: list[dict], tasks: list[str] | None = None,
                with_std: bool = False) -> tuple[list[str], list[list]]:
    """One row per (model, adapter tuning, pair encoding; bi-encoder rows are labelled so); `tasks` picks and orders the columns. The average is
    over the shown tasks and left empty for a row that misses one of them, so that averages in one
    table are always comparable; pass `tasks` to compare rows on the tasks they share."""
    rows: dict[tuple, dict] = {}
    found = []
    for r in results:
        task = r["task"] if r["task"] != "ner" else f"ner:{r.get('data_name', 'ner')}"
        found.append(task)
        key = (r["model"], r["adapter_tuning"], r.get("pair_encoding", "cross"))
        row = rows.setdefault(key, {"params": r["base_parameters"], "trainable": r["trainable_parameters"],
                                    "seconds": {}})
        row[task], row.setdefault("std", {})[task], row.setdefault("runs", {})[task] = task_score(r)
        row["seconds"][task] = r["best"].get("train_seconds_mean", 0.0)
    order = [t for t in GLUE_ORDER if t in found] + sorted({t for t in found if t.startswith("ner:")})
    if tasks:
        unknown = [t for t in tasks if t not in order]
        if unknown:
            raise MiniAlbertError(f"--tasks {','.join(unknown)}: no results for that task here; the results hold "
                                  f"{', '.join(order)}.")
        order = list(tasks)
    # train s: training time of the reported (best) configuration, summed over the row's shown tasks
    header = ["model", "adapter", "EF", "#params", "trainable", *order, "average", "train s"]
    table = []
    for (model, adapter, encoding), row in rows.items():
        scores = [row.get(t) for t in order]
        if all(s is None for s in scores):
            continue
        complete = all(s is not None for s in scores)
        label = model if encoding == "cross" else f"{model} [bi-encoder]"  # which pair encoding the row used
        table.append([label, "yes" if adapter else "no", _embedding_factorised(model),
                      f"{row['params'] / 1e6:.1f}M", f"{row['trainable'] / 1e6:.2f}M",
                      *[_cell(row, t, with_std) for t in order],
                      round(sum(scores) / len(scores), 2) if complete else None,
                      round(sum(row["seconds"].get(t, 0.0) for t in order))])
    return header, table


def _cell(row: dict, task: str, with_std: bool):
    """The task's score; with_std: 'mean ± std (n)' where several seeds were run."""
    if row.get(task) is None:
        return None
    if with_std and row["runs"][task] > 1:
        return f"{row[task]:.2f} ± {row['std'][task]:.2f} ({row['runs'][task]})"
    return round(row[task], 2)


def retention_table(results: list[dict], teacher: str, tasks: list[str] | None = None) -> tuple[list[str], list[list]]:
    """One row per model other than `teacher`: per task the share of the teacher's gain over the
    majority class it keeps, then the mean of those (gain retention) and the plain ratio of the
    averages, both over the tasks where the teacher beats the baseline by more than its seed spread
    (the others are named in the last column)."""
    by_model: dict[str, dict] = {}
    for r in results:
        column = _task_column(r)
        if column in by_model.setdefault(r["model"], {}):
            raise MiniAlbertError(f"Several results for {r['model']!r} on {column}; give the folders of one "
                                  "configuration per model and task.")
        by_model[r["model"]][column] = r
    if teacher not in by_model:
        raise MiniAlbertError(f"--retention {teacher}: no results of that model here; models: {', '.join(by_model)}.")
    reference = by_model.pop(teacher)
    order = tasks or [t for t in GLUE_ORDER if t in reference] + sorted(t for t in reference if t.startswith("ner:"))
    header = ["model", *order, "gain retention", "plain ratio", "left out"]
    table = []
    for model, row in by_model.items():
        kept, left_out, pairs = [], [], []
        for task in order:
            if task not in row or task not in reference:
                kept.append(None)
                continue
            (s, _, _), (t, t_std, _) = task_score(row[task]), task_score(reference[task])
            gain = gain_kept(s, t, t_std, majority_score(reference[task]))
            if gain is None:
                kept.append("teacher at majority")
                left_out.append(task)
                continue
            kept.append(round(gain, 3))
            pairs.append((s, t))
        gains, ratio = mean(k for k in kept if isinstance(k, float)), retention(*zip(*pairs)) if pairs else None
        table.append([model, *kept, round(gains, 4) if gains is not None else None,
                      round(ratio, 4) if ratio is not None else None, ", ".join(left_out)])
    return header, table


def render(header, table, fmt: str, paper: bool = False) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(header, row)) for row in table], indent=2)
    if paper:
        n_tasks = len(header) - 7
        table = table + [[name, ad, "", p, tr, *[None] * n_tasks, f"GLUE {glue} / NER {ner}", None]
                         for name, ad, p, tr, glue, ner in PAPER_ROWS]
    cells = [[("" if c is None else str(c)) for c in row] for row in table]
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([header, *cells])
        return buf.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c or "–" for c in row) + " |" for row in cells]
    return "\n".join(lines)
