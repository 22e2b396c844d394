"""GLUE tasks: the official TSV layout (each task's columns and quirks) or the hub, and the metrics
as the paper reports them (scikit-learn / scipy; no metric downloads)."""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MiniAlbertError

logger = logging.getLogger(__name__)
STSB_RANGE = (0.0, 5.0)


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str
    text_columns: tuple[str, ...]  # header names in the TSV (CoLA: column indices, no header)
    label_column: str
    labels: tuple[str, ...] | None  # None: regression
    dev_files: tuple[str, ...] = ("dev.tsv",)
    header: bool = True
    skip_malformed: bool = False  # QQP ships malformed rows; they are skipped and counted
    hub_text: tuple[str, ...] = ()
    large: bool = False  # the paper's grid: batch 32, 3 epochs, 1 run

    @property
    def is_pair(self) -> bool:
        """A sentence-pair task (cross- or bi-encoder); the one place this is decided."""
        return len(self.text_columns) == 2

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


GLUE_TASKS = {t.name: t for t in [
    GlueTask("cola", "CoLA", ("3",), "1", ("0", "1"), header=False, hub_text=("sentence",)),
    GlueTask("sst2", "SST-2", ("sentence",), "label", ("0", "1"), hub_text=("sentence",), large=True),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), hub_text=("sentence1", "sentence2")),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, hub_text=("sentence1", "sentence2")),
    GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), skip_malformed=True,
             hub_text=("question1", "question2"), large=True),
    GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"),
             dev_files=("dev_matched.tsv", "dev_mismatched.tsv"), hub_text=("premise", "hypothesis"), large=True),
    GlueTask("qnli", "QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"),
             hub_text=("question", "sentence"), large=True),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"),
             hub_text=("sentence1", "sentence2")),
    GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), hub_text=("sentence1", "sentence2")),
]}

# Class names of the tasks whose files store 0/1, as the Hugging Face glue dataset names them (for
# answers a reader understands; the files and trained heads keep "0"/"1").
LABEL_NAMES = {"cola": ("unacceptable", "acceptable"), "sst2": ("negative", "positive"),
               "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
               "wnli": ("not_entailment", "entailment")}

# The hub's integer labels follow these orders (datasets' glue ClassLabel names).
_HUB_LABEL_NAMES = {"mnli": ("entailment", "neutral", "contradiction"), "qnli": ("entailment", "not_entailment"),
                    "rte": ("entailment", "not_entailment")}


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise MiniAlbertError(f"Unknown task {name!r}. GLUE tasks: {', '.join(GLUE_TASKS)}; or 'ner' with "
                              "--data-dir for biomedical NER.")
    return GLUE_TASKS[key]


@dataclass
class GlueSplit:
    texts: list[tuple[str, ...]]
    labels: list  # int class ids, or floats for regression
    file: str = ""
    skipped: int = 0


def read_tsv(task: GlueTask, path: Path) -> GlueSplit:
    """Rows of one GLUE TSV as (texts, label). A malformed row is an error naming the file and line
    (QQP: skipped and counted, as its official files contain some)."""
    if not path.is_file():
        raise MiniAlbertError(f"Missing split file {path} for task {task.name}; the folder needs "
                              f"train.tsv and {' and '.join(task.dev_files)} in the official GLUE layout.")
    with path.open(encoding="utf-8-sig", newline="") as f, _long_fields():
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or (task.header and len(rows) == 1):
        raise MiniAlbertError(f"{path} holds no {'rows' if rows else 'data (the file is empty)'}; GLUE {task.name} "
                              "needs the official TSV with a header and one example per line.")
    if task.header:
        header, body, first_line = rows[0], rows[1:], 2
        try:
            text_idx = [header.index(c) for c in task.text_columns]
            label_idx = header.index(task.label_column)
        except ValueError:
            raise MiniAlbertError(f"{path}: header {header} lacks the columns {list(task.text_columns)} + "
                                  f"{task.label_column!r} that GLUE {task.name} files have.") from None
    else:
        body, first_line = rows, 1
        text_idx, label_idx = [int(c) for c in task.text_columns], int(task.label_column)
    width = max(text_idx + [label_idx]) + 1
    split = GlueSplit([], [], str(path))
    for n, row in enumerate(body, start=first_line):
        if not row:
            continue
        label = row[label_idx].strip() if len(row) >= width else None
        ok = label is not None and (label in task.labels if task.labels else _is_score(label))
        if not ok:
            if task.skip_malformed:
                split.skipped += 1
                continue
            raise MiniAlbertError(f"{path}, line {n}: malformed row for GLUE {task.name} (expected at least "
                                  f"{width} tab-separated fields with a label in "
                                  f"{list(task.labels) if task.labels else 'a number in [0, 5]'}; got {row[:width]!r}).")
        split.texts.append(tuple(row[i] for i in text_idx))
        split.labels.append(float(label) if task.labels is None else task.labels.index(label))
    return split


@contextlib.contextmanager
def _long_fields():
    """GLUE rows can exceed csv's 128 KiB field limit; the limit is process-wide, so it is raised
    only while reading and restored afterwards."""
    before = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _is_score(text: str) -> bool:
    """An STS-B similarity: a finite number in [0, 5] (nan, inf and out-of-range values are errors)."""
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and STSB_RANGE[0] <= value <= STSB_RANGE[1]


def load_glue(task: GlueTask, data_dir: str | None) -> dict[str, GlueSplit]:
    """{'train': ..., 'dev' (or 'dev_matched'/'dev_mismatched'): ...}."""
    if data_dir is not None:
        folder = Path(data_dir)
        if (folder / task.folder).is_dir():
            folder = folder / task.folder
        splits = {"train": read_tsv(task, folder / "train.tsv")}
        for dev in task.dev_files:
            splits[dev.removesuffix(".tsv")] = read_tsv(task, folder / dev)
        return splits
    return _load_glue_from_hub(task)


def _load_glue_from_hub(task: GlueTask) -> dict[str, GlueSplit]:
    import datasets

    try:
        ds = datasets.load_dataset("glue", task.name)
    except Exception as e:
        raise MiniAlbertError(f"Could not load GLUE {task.name} from the hub ({e}). Offline, pass --data-dir "
                              "with the official TSV files.") from None
    names = _HUB_LABEL_NAMES.get(task.name)
    out = {}
    for split_name, dev_name in [("train", "train")] + [
            (s, s.replace("validation", "dev")) for s in ds if s.startswith("validation")]:
        part = ds[split_name]
        texts = list(zip(*[part[c] for c in task.hub_text]))
        labels = part["label"]
        if task.labels is None:
            labels = [float(x) for x in labels]
        elif names:
            labels = [task.labels.index(names[x]) for x in labels]
        out[dev_name] = GlueSplit(texts, list(labels), f"hub:glue/{task.name}/{split_name}")
    return out


def glue_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The paper's metrics; `score` is the number a results table shows for the task."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if task.labels is None:
        # A diverged run (non-finite outputs) or constant predictions have no defined correlation;
        # they carry no ranking information, so they score 0 (never NaN, which is not valid JSON).
        if not np.all(np.isfinite(predictions)) or np.ptp(predictions) == 0:
            logger.warning("GLUE %s: the predictions are %s; correlations set to 0.", task.name,
                           "constant" if np.all(np.isfinite(predictions)) else "not finite (the run diverged)")
            return {"pearson": 0.0, "spearman": 0.0, "score": 0.0}
        p, s = float(pearsonr(predictions, labels)[0]), float(spearmanr(predictions, labels)[0])
        return {"pearson": p, "spearman": s, "score": (p + s) / 2}
    m = {"accuracy": float(accuracy_score(labels, predictions))}
    if task.name == "cola":
        m["matthews_correlation"] = float(matthews_corrcoef(labels, predictions))
        m["score"] = m["matthews_correlation"]
    elif task.name in ("mrpc", "qqp"):
        m["f1"] = float(f1_score(labels, predictions))
        m["score"] = m["f1"] if task.name == "mrpc" else m["accuracy"]
    else:
        m["score"] = m["accuracy"]
    return m
