"""`minialbert bench depth`: one fine-tuned checkpoint served at every depth. For K = 1..N
iterations and for a few early-exit thresholds: dev score, median latency per batch and the mean
number of iterations used, all measured in one run (configurations interleaved batch by batch, so
machine drift hits all alike)."""

from __future__ import annotations


import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import MiniAlbertError
from .loading import load_model
from .options import THRESHOLDS, BenchDepthOptions  # noqa: F401  (options apart: the CLI reads them without torch)

def _load(model: str):
    """A fine-tuned task model (full checkpoint or adapter task folder, as `export` loads them) and
    its tokenizer (an adapter model's name_or_path is its base)."""
    from transformers import AutoTokenizer

    net = load_model(model)
    if getattr(net.config, "model_type", None) != "minialbert" or not hasattr(net, "early_exit"):
        raise MiniAlbertError(f"bench depth needs a fine-tuned MiniALBERT classifier; {model!r} is "
                              f"{type(net).__name__}.")
    return net.eval(), AutoTokenizer.from_pretrained(net.name_or_path)


def bench_depth(model: str, task: str, data_dir: str, thresholds=THRESHOLDS, batch_size: int = 32,
                max_length: int = 128, figure: str | None = None) -> dict:
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    from ..data.glue import get_task, glue_metrics
    from ..data.ner import ner_metrics, word_level_predictions
    from ..data.tasks import DataOptions, prepare_data

    net, tokenizer = _load(model)
    ner = task.lower() == "ner"
    data = prepare_data(DataOptions(task=task, data_dir=data_dir, max_length=max_length), tokenizer)
    split = next(iter(data.evals))
    dataset, maps = data.evals[split]
    collate = DataCollatorForTokenClassification(tokenizer) if ner else DataCollatorWithPadding(tokenizer)
    rows = [{k: v for k, v in dataset[i].items() if k != "labels"} for i in range(len(dataset))]
    batches = [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    regression = net.config.num_labels == 1
    if regression:
        thresholds = ()  # entropy needs class probabilities
    N = net.config.num_hidden_layers
    configs = [("K", k) for k in range(1, N + 1)] + [("exit", t) for t in thresholds]
    logits = {c: [] for c in configs}
    seconds = {c: [] for c in configs}
    used = {c: [] for c in configs}
    with torch.inference_mode():
        for batch in batches:
            for c in configs:
                start = time.perf_counter()
                if c[0] == "K":
                    out = net(**batch, num_iterations=c[1]).logits
                    depth = torch.full((len(out),), c[1])
                else:
                    out, depth = net.early_exit(batch["input_ids"], batch["attention_mask"],
                                                batch.get("token_type_ids"), threshold=c[1])
                seconds[c].append(time.perf_counter() - start)
                logits[c] += list(out.float().numpy())
                used[c] += depth.tolist()

    def score(all_logits):
        if ner:
            gold = data.ner_splits[split]
            return ner_metrics(gold.tags, word_level_predictions(maps, all_logits, gold, data.label_names))["f1"]
        glue_task = get_task(task)
        stacked = np.stack(all_logits)
        pred = stacked[:, 0] if regression else stacked.argmax(-1)
        return glue_metrics(glue_task, pred, np.array(dataset["labels"]))["score"]

    def row(c):
        return {"score": round(100 * score(logits[c]), 2),
                "latency_ms_median": round(1000 * statistics.median(seconds[c]), 2),
                "mean_iterations": round(float(np.mean(used[c])), 3)}

    full = row(("K", N))
    result = {"model": model, "task": task, "split": split, "examples": len(dataset), "batch_size": batch_size,
              "iterations": N, "exits_trained": net.config.exit_iterations,
              "padding_fraction": round(1 - sum(int(b["attention_mask"].sum()) for b in batches)
                                        / sum(b["attention_mask"].numel() for b in batches), 4),
              "depths": [{"iterations": k, **{key: v for key, v in row(("K", k)).items()
                                               if key != "mean_iterations"}} for k in range(1, N + 1)],
              "early_exit": [{"threshold": t, **row(("exit", t))} for t in thresholds],
              "threads": torch.get_num_threads()}
    result["full_depth"] = full
    fast = [r for r in result["depths"] + result["early_exit"]
            if r["score"] >= full["score"] - 1.0 and r["latency_ms_median"] > 0]
    best = min(fast, key=lambda r: r["latency_ms_median"]) if fast else None
    if best:
        result["fastest_within_1_point"] = {**best, "speedup": round(full["latency_ms_median"] /
                                                                     best["latency_ms_median"], 2)}
    if figure:
        plot_depth(result, figure)
    return result


def plot_depth(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    d = result["depths"]
    ax.plot([r["latency_ms_median"] for r in d], [r["score"] for r in d], "o-", label="fixed depth K")
    for r in d:
        ax.annotate(f"K={r['iterations']}", (r["latency_ms_median"], r["score"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    if result["early_exit"]:
        e = result["early_exit"]
        ax.plot([r["latency_ms_median"] for r in e], [r["score"] for r in e], "s--", label="early exit (entropy)")
        for r in e:
            ax.annotate(f"{r['threshold']:g}: {r['mean_iterations']:.1f} it.", (r["latency_ms_median"], r["score"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"median latency per batch of {result['batch_size']} (ms)")
    ax.set_ylabel(f"{result['task']} {result['split']} score")
    model = Path(result["model"])
    name = model.parent.name if model.name in ("model", "adapter") else model.name  # finetune's run folder
    ax.set_title(f"One checkpoint, any depth ({name})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
