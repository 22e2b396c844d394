"""`minialbert bench infer`: latency and throughput of the student and compared models, one run."""

from __future__ import annotations


import statistics
import time

import numpy as np
import psutil
import torch

from ..errors import MiniAlbertError
from ..model import PRESETS
from .export import export_onnx, onnx_session, run_onnx
from .options import BenchInferOptions, BenchOnnxOptions  # noqa: F401  (options apart: the CLI reads them without torch)
from .loading import BERT_SHAPES, build_model, example_inputs, load_model, set_depth

@torch.inference_mode()
def bench_infer(model: str, compare: list[str], batch=8, seq=128, reps=10, compile_model=False,
                iterations: int | None = None) -> dict:
    """All models are built first, then warmed up and timed round-robin (one call each per round).
    `iterations`: MiniALBERT models run only their first K iterations (elastic depth)."""
    names = [model, *compare]
    models = {n: build_model(n).eval() for n in names}
    depths = {n: set_depth(m, iterations) for n, m in models.items()}
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    if compile_model:
        models = {n: torch.compile(m) for n, m in models.items()}
    ids = torch.randint(1000, 20000, (batch, seq))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    rows = _timed_round_robin({n: (lambda x, m=m: m(**x)) for n, m in models.items()}, inputs, reps)
    for n, row in rows.items():
        median = row["latency_ms_median"] / 1000
        rows[n] = {"parameters": params[n], "iterations": depths[n], **row, "sequences_per_s": round(batch / median, 2),
                   "tokens_per_s": round(batch * seq / median, 1)}
    base = rows[model]["latency_ms_median"]
    return {"batch": batch, "seq": seq, "reps": reps, "compiled": compile_model, "threads": torch.get_num_threads(),
            "peak_rss_mb": round(psutil.Process().memory_info().rss / 2 ** 20, 1), "models": rows,
            "student_speedup_vs": {n: round(rows[n]["latency_ms_median"] / base, 3) for n in compare}}


def dev_score(predict, task_name: str, data_dir, tokenizer, max_length=128, batch_size=32) -> dict:
    """GLUE dev metrics of `predict` (a function: inputs dict -> logits array)."""
    import numpy as np

    from ..data.glue import get_task, glue_metrics, load_glue

    task = get_task(task_name)
    split = next(s for name, s in load_glue(task, data_dir).items() if name != "train")
    preds = []
    for i in range(0, len(split.texts), batch_size):
        columns = list(zip(*split.texts[i:i + batch_size]))
        enc = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                        return_token_type_ids=True)
        logits = np.asarray(predict({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}))
        preds.append(logits.squeeze(-1) if task.labels is None else logits.argmax(-1))
    return glue_metrics(task, np.concatenate(preds), np.asarray(split.labels))


def _timed_round_robin(engines: dict, inputs, reps: int) -> dict:
    """Warm every engine up, then time one call each per round, so that drift in a noisy machine's
    speed affects all alike; median and p90 in ms."""
    for run in engines.values():
        for _ in range(2):
            run(inputs)
    times = {n: [] for n in engines}
    for _ in range(reps):
        for n, run in engines.items():
            start = time.perf_counter()
            run(inputs)
            times[n].append(time.perf_counter() - start)
    rows = {}
    for n, t in times.items():
        t.sort()
        rows[n] = {"latency_ms_median": round(1000 * statistics.median(t), 2),
                   "latency_ms_p90": round(1000 * float(np.percentile(t, 90)), 2)}
    return rows


def bench_onnx(model: str, compare=(), task: str | None = None, data_dir=None, batch=8, seq=128, reps=10,
               workdir=None, iterations: int | None = None) -> dict:
    """PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8 for `model` and each `compare` model, all
    timed round-robin in one run; with `task`, the GLUE dev score of `model` under all three engines
    and the int8 change in points."""
    import tempfile
    from pathlib import Path


    if task and (model in PRESETS or model in BERT_SHAPES):
        raise MiniAlbertError(f"--task {task}: --model {model} is a randomly initialised shape with no task head; "
                              "give a fine-tuned sequence classifier (a `minialbert finetune` model or adapter "
                              "folder) to score on the dev set, or leave out --task to time shapes only.")
    names = [model, *compare]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        engines, info = {}, {}
        for i, name in enumerate(names):
            torch_model = load_model(name).eval()  # loaded once: the files hold these very weights
            set_depth(torch_model, iterations)  # PyTorch and both ONNX files run the same K iterations
            files = {kind: Path(tmp) / f"m{i}-{kind}.onnx" for kind in ("fp32", "int8")}
            exp = export_onnx(name, files["int8"], int8=True, model=torch_model, fp32_copy=files["fp32"])
            output = exp["outputs"][0]

            def torch_predict(x, m=torch_model, output=output):
                with torch.inference_mode():
                    return m(**x)[output].numpy()

            engines[name] = {"pytorch": torch_predict}
            for kind, file in files.items():
                engines[name][f"onnx-{kind}"] = lambda x, s=onnx_session(file): run_onnx(s, x)[0]
            info[name] = {"parameters": exp["parameters"], "vocab": torch_model.config.vocab_size,
                          "file_mb": {k: round(f.stat().st_size / 2 ** 20, 2) for k, f in files.items()},
                          "fp32_max_abs_diff": exp["fp32_max_abs_diff"],
                          "int8_max_abs_diff": exp["int8_max_abs_diff"]}
            if name == model:
                tokenizer_path = torch_model.name_or_path  # an adapter task's base, or the checkpoint itself
        inputs = example_inputs(batch, seq, min(i["vocab"] for i in info.values()))
        flat = {(n, e): run for n, per in engines.items() for e, run in per.items()}
        timed = _timed_round_robin(flat, inputs, reps)
        for name in names:
            rows = {e: timed[(name, e)] for e in engines[name]}
            base = rows["pytorch"]["latency_ms_median"]
            info[name].update(engines=rows, speedup_vs_pytorch={
                e: round(base / r["latency_ms_median"], 3) for e, r in rows.items() if e != "pytorch"})
        result = {"batch": batch, "seq": seq, "reps": reps, "threads": torch.get_num_threads(), "models": info}
        if compare:  # > 1: the student is faster than the compared model with the same engine
            result["student_speedup_vs"] = {
                c: {e: round(timed[(c, e)]["latency_ms_median"] / timed[(model, e)]["latency_ms_median"], 3)
                    for e in engines[model]} for c in compare}
        if task:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
            scores = {e: dev_score(run, task, data_dir, tokenizer) for e, run in engines[model].items()}
            result["dev"] = {"task": task, "model": model, **scores,
                             "int8_change_points": round(100 * (scores["onnx-int8"]["score"]
                                                                 - scores["pytorch"]["score"]), 2)}
    return result
